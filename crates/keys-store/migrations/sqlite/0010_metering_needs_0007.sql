-- Metering: see the PostgreSQL migration of the same number.
ALTER TABLE api_keys ADD COLUMN meter_root TEXT;

CREATE TABLE meters (
    workspace_uid  TEXT NOT NULL REFERENCES workspaces (uid),
    subject        TEXT NOT NULL CHECK (subject GLOB 'key:?*' OR subject GLOB 'identity:?*'),
    ratelimits     TEXT NOT NULL,
    metered        INTEGER NOT NULL CHECK (metered IN (0, 1)),
    refill         TEXT,
    unleased       INTEGER NOT NULL CHECK (unleased BETWEEN 0 AND 1000000000000),
    debt           INTEGER NOT NULL CHECK (debt BETWEEN 0 AND 1000000000000),
    epoch          INTEGER NOT NULL CHECK (epoch >= 0),
    debt_at        INTEGER NOT NULL,
    refilled_at    INTEGER NOT NULL,
    meta           TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (workspace_uid, subject)
) STRICT, WITHOUT ROWID;

CREATE TABLE ratelimit_counters (
    workspace_uid  TEXT NOT NULL,
    subject        TEXT NOT NULL,
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    tat_nanos      INTEGER NOT NULL,
    remainder      INTEGER NOT NULL CHECK (remainder >= 0),
    denominator    INTEGER NOT NULL CHECK (denominator > 0 AND remainder < denominator),
    PRIMARY KEY (workspace_uid, subject, name),
    FOREIGN KEY (workspace_uid, subject) REFERENCES meters (workspace_uid, subject) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
