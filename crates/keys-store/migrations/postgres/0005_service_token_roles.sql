-- Service tokens with a role, an optional workspace limit, an expiry, a
-- masked prefix for lists, who made and who revoked them, and when they
-- were last used (SPEC section 6). Every token made before roles existed is
-- an admin token; its masked prefix was never kept, so lists show the bare
-- prefix for it.
ALTER TABLE service_tokens
    ADD COLUMN masked_token text NOT NULL DEFAULT 'kst_*****',
    ADD COLUMN role text NOT NULL DEFAULT 'admin'
        CONSTRAINT service_tokens_role CHECK (role IN ('admin', 'manage', 'verify')),
    ADD COLUMN workspaces text[],
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN created_by_name text,
    ADD COLUMN created_by_email text,
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN revoked_by_name text,
    ADD COLUMN revoked_by_email text;

-- As keys-core's TokenWorkspaces and ServiceTokenRecord::create state it:
-- an admin token reaches every workspace; a limit names 1 to 100 of them.
ALTER TABLE service_tokens ADD CONSTRAINT service_tokens_workspaces CHECK (
    workspaces IS NULL OR (role <> 'admin' AND cardinality(workspaces) BETWEEN 1 AND 100)
);
-- A revoker is only ever recorded with its revocation.
ALTER TABLE service_tokens ADD CONSTRAINT service_tokens_revoked_by CHECK (
    revoked_at IS NOT NULL OR revoked_by_name IS NULL
);
