-- Usage: see the PostgreSQL migration of the same number.
CREATE TABLE usage_counts (
    granularity    TEXT NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    bucket         INTEGER NOT NULL,
    workspace_uid  TEXT NOT NULL,
    key_id         TEXT NOT NULL CHECK (length(key_id) BETWEEN 1 AND 64),
    outcome        TEXT NOT NULL CHECK (length(outcome) BETWEEN 1 AND 64 AND outcome NOT GLOB '*[^a-z_]*'),
    count          INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (workspace_uid, key_id, granularity, bucket, outcome)
) STRICT, WITHOUT ROWID;
CREATE INDEX usage_counts_workspace_idx ON usage_counts (workspace_uid, granularity, bucket);
CREATE INDEX usage_counts_prune_idx ON usage_counts (granularity, bucket);

CREATE TABLE usage_batches (
    id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 64),
    written_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX usage_batches_written_idx ON usage_batches (written_at);
