-- A signing key's lifecycle, as keys-core's SigningKeyLifecycle states it:
-- an active key has no roll data; a rolled key always has its roll time and
-- an expiry that is not before it. SQLite cannot add a CHECK to an existing
-- table, so two triggers refuse such rows on insert and update.
CREATE TRIGGER workspace_signing_keys_lifecycle_insert
BEFORE INSERT ON workspace_signing_keys
WHEN NOT (
    (NEW.status = 'active' AND NEW.rolled_at IS NULL AND NEW.expiry_at IS NULL)
    OR (NEW.status = 'rolled' AND NEW.rolled_at IS NOT NULL AND NEW.expiry_at IS NOT NULL
        AND NEW.expiry_at >= NEW.rolled_at)
)
BEGIN
    SELECT RAISE(ABORT, 'workspace_signing_keys_lifecycle');
END;

CREATE TRIGGER workspace_signing_keys_lifecycle_update
BEFORE UPDATE ON workspace_signing_keys
WHEN NOT (
    (NEW.status = 'active' AND NEW.rolled_at IS NULL AND NEW.expiry_at IS NULL)
    OR (NEW.status = 'rolled' AND NEW.rolled_at IS NOT NULL AND NEW.expiry_at IS NOT NULL
        AND NEW.expiry_at >= NEW.rolled_at)
)
BEGIN
    SELECT RAISE(ABORT, 'workspace_signing_keys_lifecycle');
END;
