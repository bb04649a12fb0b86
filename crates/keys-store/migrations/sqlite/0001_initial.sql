-- keysd schema, SQLite.
--
-- STRICT tables, so a value of the wrong type is refused rather than kept.
-- Timestamps are INTEGER microseconds since the Unix epoch: exact, and
-- ordered like the instants they stand for. Booleans are INTEGER 0/1.
-- `allowed_domains` is NULL (any origin) or the patterns joined by commas
-- (a pattern never contains one). No column ever holds a secret: API keys and
-- service tokens are kept as SHA-256 digests, signing keys as public key PEM
-- only.

CREATE TABLE organisations (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    CONSTRAINT organisations_name_key UNIQUE (name)
) STRICT;

CREATE TABLE service_tokens (
    id               TEXT PRIMARY KEY NOT NULL,
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    name             TEXT NOT NULL,
    digest           BLOB NOT NULL CHECK (length(digest) = 32),
    actor_name       TEXT NOT NULL,
    actor_email      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    CONSTRAINT service_tokens_digest_key UNIQUE (digest)
) STRICT;
CREATE INDEX service_tokens_organisation_idx ON service_tokens (organisation_id);

CREATE TABLE workspaces (
    uid               TEXT PRIMARY KEY NOT NULL,
    organisation_id   TEXT NOT NULL REFERENCES organisations (id),
    slug              TEXT NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT,
    mode              TEXT NOT NULL CHECK (mode IN ('sandbox', 'production')),
    created_at        INTEGER NOT NULL,
    created_by_name   TEXT,
    created_by_email  TEXT,
    CONSTRAINT workspaces_organisation_slug_key UNIQUE (organisation_id, slug)
) STRICT;
CREATE INDEX workspaces_organisation_created_idx ON workspaces (organisation_id, created_at DESC, uid DESC);

CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY NOT NULL,
    workspace_uid     TEXT NOT NULL REFERENCES workspaces (uid),
    name              TEXT NOT NULL,
    description       TEXT,
    digest            BLOB NOT NULL CHECK (length(digest) = 32),
    masked_api_key    TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by_name   TEXT,
    created_by_email  TEXT,
    deleted_at        INTEGER,
    deleted_by_name   TEXT,
    deleted_by_email  TEXT,
    CONSTRAINT api_keys_digest_key UNIQUE (digest)
) STRICT;
CREATE INDEX api_keys_workspace_created_idx ON api_keys (workspace_uid, created_at DESC, id DESC);

CREATE TABLE public_keys (
    id                      TEXT PRIMARY KEY NOT NULL,
    workspace_uid           TEXT NOT NULL REFERENCES workspaces (uid),
    value                   TEXT NOT NULL,
    name                    TEXT NOT NULL,
    description             TEXT,
    allowed_domains         TEXT,
    is_secure_mode_enabled  INTEGER NOT NULL CHECK (is_secure_mode_enabled IN (0, 1)),
    is_default              INTEGER NOT NULL CHECK (is_default IN (0, 1)),
    created_at              INTEGER NOT NULL,
    created_by_name         TEXT,
    created_by_email        TEXT,
    rotated_at              INTEGER,
    rotated_by_name         TEXT,
    rotated_by_email        TEXT,
    updated_at              INTEGER NOT NULL,
    updated_by_name         TEXT,
    updated_by_email        TEXT,
    deleted_at              INTEGER,
    deleted_by_name         TEXT,
    deleted_by_email        TEXT,
    CONSTRAINT public_keys_value_key UNIQUE (value)
) STRICT;
CREATE INDEX public_keys_workspace_created_idx ON public_keys (workspace_uid, created_at DESC, id DESC);
-- At most one default among the live keys of a workspace.
CREATE UNIQUE INDEX public_keys_one_default ON public_keys (workspace_uid)
    WHERE is_default = 1 AND deleted_at IS NULL;

CREATE TABLE workspace_signing_keys (
    id                TEXT PRIMARY KEY NOT NULL,
    uid               TEXT NOT NULL,
    workspace_uid     TEXT NOT NULL REFERENCES workspaces (uid),
    -- SPKI PEM of the public key; a private key can never be stored here.
    public_key_pem    TEXT NOT NULL CHECK (instr(public_key_pem, 'PRIVATE KEY') = 0),
    status            TEXT NOT NULL CHECK (status IN ('active', 'rolled')),
    allowed_domains   TEXT,
    expiry_at         INTEGER,
    created_at        INTEGER NOT NULL,
    created_by_name   TEXT,
    created_by_email  TEXT,
    rolled_at         INTEGER,
    rolled_by_name    TEXT,
    rolled_by_email   TEXT,
    deleted_at        INTEGER,
    deleted_by_name   TEXT,
    deleted_by_email  TEXT,
    CONSTRAINT workspace_signing_keys_uid_key UNIQUE (uid)
) STRICT;
CREATE INDEX workspace_signing_keys_workspace_created_idx
    ON workspace_signing_keys (workspace_uid, created_at DESC, id DESC);
-- The invariant of the product: at most one non-deleted active signing key
-- per workspace, whatever the number of concurrent writers.
CREATE UNIQUE INDEX workspace_signing_keys_one_active ON workspace_signing_keys (workspace_uid)
    WHERE status = 'active' AND deleted_at IS NULL;

CREATE TABLE organisation_keys (
    id                TEXT PRIMARY KEY NOT NULL,
    organisation_id   TEXT NOT NULL REFERENCES organisations (id),
    name              TEXT NOT NULL,
    public_key_pem    TEXT NOT NULL CHECK (instr(public_key_pem, 'PRIVATE KEY') = 0),
    created_at        INTEGER NOT NULL,
    created_by_name   TEXT,
    created_by_email  TEXT,
    deleted_at        INTEGER,
    deleted_by_name   TEXT,
    deleted_by_email  TEXT
) STRICT;
CREATE INDEX organisation_keys_organisation_created_idx
    ON organisation_keys (organisation_id, created_at DESC, id DESC);

CREATE TABLE audit_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    workspace_uid    TEXT REFERENCES workspaces (uid),
    actor_name       TEXT,
    actor_email      TEXT,
    action           TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    at               INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_events_organisation_at_idx ON audit_events (organisation_id, at DESC, id DESC);
