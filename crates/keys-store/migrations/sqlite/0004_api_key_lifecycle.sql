-- An API key's whole life (SPEC section 1), as keys-core's ApiKey states
-- it: a status with what each stage carries, an expiry, scopes (comma-joined,
-- as allowed_domains: a scope never holds a comma), an owner in the
-- customer's system, free-form meta, and when it was last used.
ALTER TABLE api_keys ADD COLUMN status text NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'disabled', 'rolled'));
ALTER TABLE api_keys ADD COLUMN expires_at integer;
ALTER TABLE api_keys ADD COLUMN scopes text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN external_id text CHECK (length(external_id) BETWEEN 1 AND 255);
ALTER TABLE api_keys ADD COLUMN meta text
    CHECK (length(CAST(meta AS BLOB)) <= 4096 AND json_valid(meta) AND json_type(meta) = 'object');
ALTER TABLE api_keys ADD COLUMN last_used_at integer;
ALTER TABLE api_keys ADD COLUMN disabled_at integer;
ALTER TABLE api_keys ADD COLUMN disabled_by_name text;
ALTER TABLE api_keys ADD COLUMN disabled_by_email text;
-- The lifecycle, as keys-core's ApiKeyLifecycle states it: an active key
-- has no disable or roll data; a disabled key has its disable time; a
-- rolled key always has its roll time and an expiry. (A column's CHECK may
-- read the row's other columns; SQLite cannot add a table CHECK.)
ALTER TABLE api_keys ADD COLUMN rolled_at integer CONSTRAINT api_keys_lifecycle CHECK (
    (status = 'active' AND disabled_at IS NULL AND rolled_at IS NULL)
    OR (status = 'disabled' AND disabled_at IS NOT NULL AND rolled_at IS NULL)
    OR (status = 'rolled' AND rolled_at IS NOT NULL AND expires_at IS NOT NULL AND disabled_at IS NULL)
);
ALTER TABLE api_keys ADD COLUMN rolled_by_name text;
ALTER TABLE api_keys ADD COLUMN rolled_by_email text;
ALTER TABLE api_keys ADD COLUMN updated_at integer;
ALTER TABLE api_keys ADD COLUMN updated_by_name text;
ALTER TABLE api_keys ADD COLUMN updated_by_email text;

UPDATE api_keys
SET updated_at = created_at, updated_by_name = created_by_name, updated_by_email = created_by_email;
