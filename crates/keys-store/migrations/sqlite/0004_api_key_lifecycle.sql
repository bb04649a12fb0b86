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
ALTER TABLE api_keys ADD COLUMN rolled_at integer;
ALTER TABLE api_keys ADD COLUMN rolled_by_name text;
ALTER TABLE api_keys ADD COLUMN rolled_by_email text;
ALTER TABLE api_keys ADD COLUMN updated_at integer;
ALTER TABLE api_keys ADD COLUMN updated_by_name text;
ALTER TABLE api_keys ADD COLUMN updated_by_email text;

UPDATE api_keys
SET updated_at = created_at, updated_by_name = created_by_name, updated_by_email = created_by_email;

-- An active key has no disable or roll data; a disabled key has its
-- disable time; a rolled key always has its roll time and an expiry; every
-- key has its update time. SQLite cannot add a CHECK across columns to an
-- existing table, so two triggers refuse such rows on insert and update.
CREATE TRIGGER api_keys_lifecycle_insert
BEFORE INSERT ON api_keys
WHEN NEW.updated_at IS NULL OR NOT (
    (NEW.status = 'active' AND NEW.disabled_at IS NULL AND NEW.rolled_at IS NULL)
    OR (NEW.status = 'disabled' AND NEW.disabled_at IS NOT NULL AND NEW.rolled_at IS NULL)
    OR (NEW.status = 'rolled' AND NEW.rolled_at IS NOT NULL AND NEW.expires_at IS NOT NULL
        AND NEW.disabled_at IS NULL)
)
BEGIN
    SELECT RAISE(ABORT, 'api_keys_lifecycle');
END;

CREATE TRIGGER api_keys_lifecycle_update
BEFORE UPDATE ON api_keys
WHEN NEW.updated_at IS NULL OR NOT (
    (NEW.status = 'active' AND NEW.disabled_at IS NULL AND NEW.rolled_at IS NULL)
    OR (NEW.status = 'disabled' AND NEW.disabled_at IS NOT NULL AND NEW.rolled_at IS NULL)
    OR (NEW.status = 'rolled' AND NEW.rolled_at IS NOT NULL AND NEW.expires_at IS NOT NULL
        AND NEW.disabled_at IS NULL)
)
BEGIN
    SELECT RAISE(ABORT, 'api_keys_lifecycle');
END;
