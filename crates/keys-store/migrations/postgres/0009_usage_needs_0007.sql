-- Usage (docs/API.md, Usage): verifications counted per key and outcome in
-- buckets of a minute, an hour and a day. Every replica adds its counts to
-- the same rows (`count = count + excluded.count`), so the counts of all
-- replicas add up; each write is one batch, whose id is recorded in the
-- same transaction, so a batch retried after a lost answer is not counted
-- twice. An expansion: schema 7's binaries never read these tables.
CREATE TABLE usage_counts (
    granularity    text NOT NULL CHECK (granularity IN ('minute', 'hour', 'day')),
    bucket         timestamptz NOT NULL,
    -- '' for what belongs to no workspace (an organisation key).
    workspace_uid  text COLLATE "C" NOT NULL,
    key_id         text COLLATE "C" NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 64),
    outcome        text COLLATE "C" NOT NULL CHECK (outcome ~ '^[a-z_]{1,64}$'),
    count          bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (workspace_uid, key_id, granularity, bucket, outcome)
);
-- A workspace's totals over a window.
CREATE INDEX usage_counts_workspace_idx ON usage_counts (workspace_uid, granularity, bucket);
-- The prune of what is past its retention.
CREATE INDEX usage_counts_prune_idx ON usage_counts (granularity, bucket);

CREATE TABLE usage_batches (
    id          text COLLATE "C" PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 64),
    written_at  timestamptz NOT NULL
);
CREATE INDEX usage_batches_written_idx ON usage_batches (written_at);
