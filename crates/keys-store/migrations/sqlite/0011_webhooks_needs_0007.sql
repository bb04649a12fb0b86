-- Webhooks: see the PostgreSQL migration of the same number.
CREATE TABLE webhook_endpoints (
    id                     TEXT PRIMARY KEY CHECK (id GLOB 'we_[0-9A-Z]*' AND length(id) = 29),
    organisation_id        TEXT NOT NULL REFERENCES organisations (id),
    url                    TEXT NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    events                 TEXT NOT NULL CHECK (events GLOB ' * '),
    workspaces             TEXT CHECK (workspaces GLOB ' * '),
    description            TEXT,
    status                 TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  INTEGER,
    failing_since          INTEGER,
    created_at             INTEGER NOT NULL,
    created_by_name        TEXT,
    created_by_email       TEXT,
    updated_at             INTEGER NOT NULL,
    CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL))
) STRICT;
CREATE INDEX webhook_endpoints_organisation_idx ON webhook_endpoints (organisation_id, created_at DESC, id DESC);

CREATE TABLE webhook_warnings (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organisation_id  TEXT NOT NULL REFERENCES organisations (id),
    workspace_uid    TEXT REFERENCES workspaces (uid),
    type             TEXT NOT NULL,
    dedupe           TEXT NOT NULL UNIQUE,
    data             TEXT NOT NULL,
    at               INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_warnings_at_idx ON webhook_warnings (at);

CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id       TEXT NOT NULL,
    type             TEXT NOT NULL,
    audit_event_id   INTEGER,
    warning_id       INTEGER,
    created_at       INTEGER NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  INTEGER,
    claimed_until    INTEGER,
    claim            TEXT,
    finished_at      INTEGER,
    CHECK ((audit_event_id IS NULL) <> (warning_id IS NULL)),
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    UNIQUE (endpoint_id, message_id)
) STRICT;
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (finished_at) WHERE state <> 'pending';

CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id  INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id  TEXT NOT NULL,
    at           INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);

CREATE TRIGGER audit_events_to_webhooks AFTER INSERT ON audit_events
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, message_id, type, audit_event_id, created_at, next_attempt_at)
    SELECT ep.id, 'evt_' || NEW.id, NEW.action, NEW.id, NEW.at, NEW.at
    FROM webhook_endpoints ep
    WHERE ep.organisation_id = NEW.organisation_id AND ep.status = 'enabled'
      AND (ep.events = ' * ' OR instr(ep.events, ' ' || NEW.action || ' ') > 0)
      AND (ep.workspaces IS NULL OR instr(ep.workspaces, ' ' || NEW.workspace_uid || ' ') > 0);
END;

CREATE TRIGGER webhook_warnings_to_webhooks AFTER INSERT ON webhook_warnings
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, message_id, type, warning_id, created_at, next_attempt_at)
    SELECT ep.id, 'wrn_' || NEW.id, NEW.type, NEW.id, NEW.at, NEW.at
    FROM webhook_endpoints ep
    WHERE ep.organisation_id = NEW.organisation_id AND ep.status = 'enabled'
      AND (ep.events = ' * ' OR instr(ep.events, ' ' || NEW.type || ' ') > 0)
      AND (ep.workspaces IS NULL OR instr(ep.workspaces, ' ' || NEW.workspace_uid || ' ') > 0);
END;

-- The expiry warnings' scan: the live, active keys that expire soon.
CREATE INDEX api_keys_expiring_idx ON api_keys (expires_at) WHERE deleted_at IS NULL AND expires_at IS NOT NULL;
