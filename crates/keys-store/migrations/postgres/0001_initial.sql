-- keysd schema, PostgreSQL.
--
-- Identifiers are text in the "C" collation so that ordering by id (the
-- tie-break of every list) is byte order, as in SQLite. Timestamps are
-- timestamptz (microsecond precision). No column ever holds a secret: API
-- keys and service tokens are kept as SHA-256 digests, signing keys as
-- public key PEM only.

CREATE TABLE organisations (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    CONSTRAINT organisations_name_key UNIQUE (name)
);

CREATE TABLE service_tokens (
    id               text COLLATE "C" PRIMARY KEY,
    organisation_id  text COLLATE "C" NOT NULL REFERENCES organisations (id),
    name             text NOT NULL,
    digest           bytea NOT NULL CHECK (octet_length(digest) = 32),
    actor_name       text NOT NULL,
    actor_email      text NOT NULL,
    created_at       timestamptz NOT NULL,
    revoked_at       timestamptz,
    CONSTRAINT service_tokens_digest_key UNIQUE (digest)
);
CREATE INDEX service_tokens_organisation_idx ON service_tokens (organisation_id);

CREATE TABLE workspaces (
    uid               text COLLATE "C" PRIMARY KEY,
    organisation_id   text COLLATE "C" NOT NULL REFERENCES organisations (id),
    slug              text NOT NULL,
    name              text NOT NULL,
    description       text,
    mode              text NOT NULL CHECK (mode IN ('sandbox', 'production')),
    created_at        timestamptz NOT NULL,
    created_by_name   text,
    created_by_email  text,
    CONSTRAINT workspaces_organisation_slug_key UNIQUE (organisation_id, slug)
);
CREATE INDEX workspaces_organisation_created_idx ON workspaces (organisation_id, created_at DESC, uid DESC);

CREATE TABLE api_keys (
    id                text COLLATE "C" PRIMARY KEY,
    workspace_uid     text COLLATE "C" NOT NULL REFERENCES workspaces (uid),
    name              text NOT NULL,
    description       text,
    digest            bytea NOT NULL CHECK (octet_length(digest) = 32),
    masked_api_key    text NOT NULL,
    created_at        timestamptz NOT NULL,
    created_by_name   text,
    created_by_email  text,
    deleted_at        timestamptz,
    deleted_by_name   text,
    deleted_by_email  text,
    CONSTRAINT api_keys_digest_key UNIQUE (digest)
);
CREATE INDEX api_keys_workspace_created_idx ON api_keys (workspace_uid, created_at DESC, id DESC);

CREATE TABLE public_keys (
    id                      text COLLATE "C" PRIMARY KEY,
    workspace_uid           text COLLATE "C" NOT NULL REFERENCES workspaces (uid),
    value                   text COLLATE "C" NOT NULL,
    name                    text NOT NULL,
    description             text,
    allowed_domains         text[],
    is_secure_mode_enabled  boolean NOT NULL,
    is_default              boolean NOT NULL,
    created_at              timestamptz NOT NULL,
    created_by_name         text,
    created_by_email        text,
    rotated_at              timestamptz,
    rotated_by_name         text,
    rotated_by_email        text,
    updated_at              timestamptz NOT NULL,
    updated_by_name         text,
    updated_by_email        text,
    deleted_at              timestamptz,
    deleted_by_name         text,
    deleted_by_email        text,
    CONSTRAINT public_keys_value_key UNIQUE (value)
);
CREATE INDEX public_keys_workspace_created_idx ON public_keys (workspace_uid, created_at DESC, id DESC);
-- At most one default among the live keys of a workspace.
CREATE UNIQUE INDEX public_keys_one_default ON public_keys (workspace_uid)
    WHERE is_default AND deleted_at IS NULL;

CREATE TABLE workspace_signing_keys (
    id                text COLLATE "C" PRIMARY KEY,
    uid               text COLLATE "C" NOT NULL,
    workspace_uid     text COLLATE "C" NOT NULL REFERENCES workspaces (uid),
    -- SPKI PEM of the public key; a private key can never be stored here.
    public_key_pem    text NOT NULL CHECK (position('PRIVATE KEY' IN public_key_pem) = 0),
    status            text NOT NULL CHECK (status IN ('active', 'rolled')),
    allowed_domains   text[],
    expiry_at         timestamptz,
    created_at        timestamptz NOT NULL,
    created_by_name   text,
    created_by_email  text,
    rolled_at         timestamptz,
    rolled_by_name    text,
    rolled_by_email   text,
    deleted_at        timestamptz,
    deleted_by_name   text,
    deleted_by_email  text,
    CONSTRAINT workspace_signing_keys_uid_key UNIQUE (uid)
);
CREATE INDEX workspace_signing_keys_workspace_created_idx
    ON workspace_signing_keys (workspace_uid, created_at DESC, id DESC);
-- The invariant of the product: at most one non-deleted active signing key
-- per workspace, whatever the number of concurrent writers.
CREATE UNIQUE INDEX workspace_signing_keys_one_active ON workspace_signing_keys (workspace_uid)
    WHERE status = 'active' AND deleted_at IS NULL;

CREATE TABLE organisation_keys (
    id                text COLLATE "C" PRIMARY KEY,
    organisation_id   text COLLATE "C" NOT NULL REFERENCES organisations (id),
    name              text NOT NULL,
    public_key_pem    text NOT NULL CHECK (position('PRIVATE KEY' IN public_key_pem) = 0),
    created_at        timestamptz NOT NULL,
    created_by_name   text,
    created_by_email  text,
    deleted_at        timestamptz,
    deleted_by_name   text,
    deleted_by_email  text
);
CREATE INDEX organisation_keys_organisation_created_idx
    ON organisation_keys (organisation_id, created_at DESC, id DESC);

CREATE TABLE audit_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id  text COLLATE "C" NOT NULL REFERENCES organisations (id),
    workspace_uid    text COLLATE "C" REFERENCES workspaces (uid),
    actor_name       text,
    actor_email      text,
    action           text NOT NULL,
    target_id        text NOT NULL,
    at               timestamptz NOT NULL
);
CREATE INDEX audit_events_organisation_at_idx ON audit_events (organisation_id, at DESC, id DESC);
