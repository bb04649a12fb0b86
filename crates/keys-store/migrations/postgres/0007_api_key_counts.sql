-- The live (not deleted) API keys of each workspace, kept by triggers, so
-- that an API-key create is admitted under the per-workspace cap in one
-- statement: it locks this row (`SELECT ... WHERE live < cap FOR UPDATE`,
-- which re-reads the row's newest version after waiting) instead of the
-- workspace row across the whole transaction. Every other write of
-- `api_keys` (rolls, deletes, the locked pipeline) moves the count through
-- the trigger, so both paths see one number.

CREATE TABLE workspace_api_key_counts (
    workspace_uid text COLLATE "C" PRIMARY KEY REFERENCES workspaces (uid) ON DELETE CASCADE,
    live          bigint NOT NULL CONSTRAINT workspace_api_key_counts_live CHECK (live >= 0)
);

INSERT INTO workspace_api_key_counts (workspace_uid, live)
SELECT w.uid, (SELECT count(*) FROM api_keys k WHERE k.workspace_uid = w.uid AND k.deleted_at IS NULL)
FROM workspaces w;

CREATE FUNCTION workspace_api_key_counts_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workspace_api_key_counts (workspace_uid, live) VALUES (NEW.uid, 0)
    ON CONFLICT (workspace_uid) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER workspaces_api_key_count AFTER INSERT ON workspaces
    FOR EACH ROW EXECUTE FUNCTION workspace_api_key_counts_open();

CREATE FUNCTION workspace_api_key_counts_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.deleted_at IS NULL THEN
            INSERT INTO workspace_api_key_counts AS counts (workspace_uid, live) VALUES (NEW.workspace_uid, 1)
            ON CONFLICT (workspace_uid) DO UPDATE SET live = counts.live + 1;
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
            UPDATE workspace_api_key_counts SET live = live - 1 WHERE workspace_uid = OLD.workspace_uid;
        ELSIF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN
            UPDATE workspace_api_key_counts SET live = live + 1 WHERE workspace_uid = OLD.workspace_uid;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.deleted_at IS NULL THEN
            UPDATE workspace_api_key_counts SET live = live - 1 WHERE workspace_uid = OLD.workspace_uid;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_count AFTER INSERT OR UPDATE OF deleted_at OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION workspace_api_key_counts_keep();
