-- Service tokens with a role, an optional workspace limit (comma-joined
-- slugs, as allowed_domains: a slug never holds a comma), an expiry, a
-- masked prefix for lists, who made and who revoked them, and when they
-- were last used (SPEC section 6). Every token made before roles existed is
-- an admin token; its masked prefix was never kept, so lists show the bare
-- prefix for it.
ALTER TABLE service_tokens ADD COLUMN masked_token text NOT NULL DEFAULT 'kst_*****';
ALTER TABLE service_tokens ADD COLUMN role text NOT NULL DEFAULT 'admin'
    CONSTRAINT service_tokens_role CHECK (role IN ('admin', 'manage', 'verify'));
-- As keys-core's TokenWorkspaces and ServiceTokenRecord::create state it:
-- an admin token reaches every workspace; a limit names 1 to 100 of them
-- (a column's CHECK may read the row's other columns).
ALTER TABLE service_tokens ADD COLUMN workspaces text CONSTRAINT service_tokens_workspaces CHECK (
    workspaces IS NULL OR (role <> 'admin' AND workspaces <> ''
        AND length(workspaces) - length(replace(workspaces, ',', '')) < 100)
);
ALTER TABLE service_tokens ADD COLUMN expires_at integer;
ALTER TABLE service_tokens ADD COLUMN created_by_name text;
ALTER TABLE service_tokens ADD COLUMN created_by_email text;
ALTER TABLE service_tokens ADD COLUMN last_used_at integer;
-- A revoker is only ever recorded with its revocation.
ALTER TABLE service_tokens ADD COLUMN revoked_by_name text CONSTRAINT service_tokens_revoked_by CHECK (
    revoked_at IS NOT NULL OR revoked_by_name IS NULL
);
ALTER TABLE service_tokens ADD COLUMN revoked_by_email text;
