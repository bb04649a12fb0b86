-- Metering (docs/METERING.md): the rate limits and credits of API keys and
-- identities, and the counters every replica shares. An expansion: schema
-- 7's binaries never read these tables, and the new column of api_keys is
-- nullable (NULL: the key is the first of its roll chain).
--
-- A key's meter is the row of subject 'key:<root>', where root is the id of
-- the first key of its roll chain (api_keys.meter_root, or its own id): a
-- roll gives the new key the old key's root, so both draw on one row.
-- An identity is the row of subject 'identity:<external_id>'.
ALTER TABLE api_keys ADD COLUMN meter_root text COLLATE "C";

CREATE TABLE meters (
    workspace_uid  text COLLATE "C" NOT NULL REFERENCES workspaces (uid),
    subject        text COLLATE "C" NOT NULL CHECK (subject ~ '^(key|identity):.'),
    -- The limits as JSON, [{name, limit, duration_seconds, auto_apply}].
    ratelimits     text NOT NULL,
    -- Whether the subject spends credits, and how they refill (JSON).
    metered        boolean NOT NULL,
    refill         text,
    -- The balance while replicas hold slices of it (keys_core::CreditPool):
    -- never below zero, whatever two replicas do at once.
    unleased       bigint NOT NULL CHECK (unleased BETWEEN 0 AND 1000000000000),
    debt           bigint NOT NULL CHECK (debt BETWEEN 0 AND 1000000000000),
    epoch          bigint NOT NULL CHECK (epoch >= 0),
    -- When the debt last grew: forgiven 10 s later (CreditPool::DEBT_WINDOW).
    debt_at        timestamptz NOT NULL,
    refilled_at    timestamptz NOT NULL,
    -- An identity's meta (a JSON object); NULL for keys.
    meta           text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (workspace_uid, subject)
);

-- One GCRA counter per (subject, limit): the theoretical arrival time in
-- ticks of 1/denominator ns (keys_core::RateLimitState).
CREATE TABLE ratelimit_counters (
    workspace_uid  text COLLATE "C" NOT NULL,
    subject        text COLLATE "C" NOT NULL,
    name           text COLLATE "C" NOT NULL CHECK (char_length(name) BETWEEN 1 AND 64),
    tat_nanos      bigint NOT NULL,
    remainder      bigint NOT NULL CHECK (remainder >= 0),
    denominator    bigint NOT NULL CHECK (denominator > 0 AND remainder < denominator),
    PRIMARY KEY (workspace_uid, subject, name),
    FOREIGN KEY (workspace_uid, subject) REFERENCES meters (workspace_uid, subject) ON DELETE CASCADE
);
