-- An API key's whole life (SPEC section 1), as keys-core's ApiKey states
-- it: a status with what each stage carries, an expiry, scopes, an owner in
-- the customer's system, free-form meta, and when it was last used.
ALTER TABLE api_keys
    ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'rolled')),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{}' CHECK (cardinality(scopes) <= 64),
    ADD COLUMN external_id text CHECK (char_length(external_id) BETWEEN 1 AND 255),
    ADD COLUMN meta text CHECK (octet_length(meta) <= 4096 AND jsonb_typeof(meta::jsonb) = 'object'),
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN disabled_by_name text,
    ADD COLUMN disabled_by_email text,
    ADD COLUMN rolled_at timestamptz,
    ADD COLUMN rolled_by_name text,
    ADD COLUMN rolled_by_email text,
    ADD COLUMN updated_at timestamptz,
    ADD COLUMN updated_by_name text,
    ADD COLUMN updated_by_email text;

UPDATE api_keys
SET updated_at = created_at, updated_by_name = created_by_name, updated_by_email = created_by_email;

ALTER TABLE api_keys ALTER COLUMN updated_at SET NOT NULL;

-- An active key has no disable or roll data; a disabled key has its
-- disable time; a rolled key always has its roll time and an expiry.
ALTER TABLE api_keys ADD CONSTRAINT api_keys_lifecycle CHECK (
    (status = 'active' AND disabled_at IS NULL AND rolled_at IS NULL)
    OR (status = 'disabled' AND disabled_at IS NOT NULL AND rolled_at IS NULL)
    OR (status = 'rolled' AND rolled_at IS NOT NULL AND expires_at IS NOT NULL AND disabled_at IS NULL)
);
