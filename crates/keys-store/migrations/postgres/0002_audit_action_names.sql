-- The audit actions take the names of the product contract (SPEC section 7).
-- Events are append-only for every client; this one-time rename of the
-- stored names is the schema's own doing.
UPDATE audit_events SET action = CASE action
    WHEN 'organisation.create' THEN 'organisation.created'
    WHEN 'workspace.create' THEN 'workspace.created'
    WHEN 'service_token.create' THEN 'service_token.generated'
    WHEN 'api_key.create' THEN 'api_key.generated'
    WHEN 'api_key.delete' THEN 'api_key.deleted'
    WHEN 'public_key.create' THEN 'public_api_key.generated'
    WHEN 'public_key.update' THEN 'public_api_key.updated'
    WHEN 'public_key.rotate' THEN 'public_api_key.rotated'
    WHEN 'public_key.delete' THEN 'public_api_key.deleted'
    WHEN 'signing_key.create' THEN 'signing_api_key.generated'
    WHEN 'signing_key.roll' THEN 'signing_api_key.rolled'
    WHEN 'signing_key.delete' THEN 'signing_api_key.deleted'
    WHEN 'organisation_key.create' THEN 'organisation_key.generated'
    WHEN 'organisation_key.delete' THEN 'organisation_key.deleted'
    ELSE action
END;
