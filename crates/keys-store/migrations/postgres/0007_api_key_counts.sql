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

-- Statement-level, over the transition tables: one counter update per
-- statement and workspace, so a statement that writes many keys (an
-- import) costs one update of the count, not one per row.
CREATE FUNCTION workspace_api_key_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workspace_api_key_counts AS counts (workspace_uid, live)
    SELECT workspace_uid, COUNT(*) FROM inserted_rows WHERE deleted_at IS NULL GROUP BY workspace_uid
    ON CONFLICT (workspace_uid) DO UPDATE SET live = counts.live + EXCLUDED.live;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_count_inserts AFTER INSERT ON api_keys
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION workspace_api_key_counts_inserted();

CREATE FUNCTION workspace_api_key_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workspace_api_key_counts AS counts SET live = counts.live + changed.delta
    FROM (
        SELECT new_rows.workspace_uid,
               SUM(CASE WHEN old_rows.deleted_at IS NULL AND new_rows.deleted_at IS NOT NULL THEN -1
                        WHEN old_rows.deleted_at IS NOT NULL AND new_rows.deleted_at IS NULL THEN 1
                        ELSE 0 END) AS delta
        FROM old_rows JOIN new_rows ON new_rows.id = old_rows.id
        GROUP BY new_rows.workspace_uid
    ) AS changed
    WHERE counts.workspace_uid = changed.workspace_uid AND changed.delta <> 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_count_updates AFTER UPDATE ON api_keys
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION workspace_api_key_counts_updated();

CREATE FUNCTION workspace_api_key_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE workspace_api_key_counts AS counts SET live = counts.live - gone.live
    FROM (SELECT workspace_uid, COUNT(*) AS live FROM deleted_rows WHERE deleted_at IS NULL GROUP BY workspace_uid) AS gone
    WHERE counts.workspace_uid = gone.workspace_uid;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_count_deletes AFTER DELETE ON api_keys
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION workspace_api_key_counts_deleted();
