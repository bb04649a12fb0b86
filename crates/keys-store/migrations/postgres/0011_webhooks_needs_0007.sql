-- Webhooks (docs/WEBHOOKS.md): endpoints, the warnings that are not audit
-- events, and one delivery row per (endpoint, event), written by triggers
-- in the transaction of the event itself. An expansion: schema 10's
-- binaries never read these tables; their audit inserts fire the trigger
-- too, so a rollback loses no event (the deliveries wait for an upgrade).

CREATE TABLE webhook_endpoints (
    id                     text COLLATE "C" PRIMARY KEY CHECK (id ~ '^we_[0-9A-Z]{26}$'),
    organisation_id        text COLLATE "C" NOT NULL REFERENCES organisations (id),
    url                    text NOT NULL CHECK (char_length(url) BETWEEN 8 AND 2048),
    -- ' a b c ' or ' * ' (keys_core::webhook::EventFilter::stored).
    events                 text COLLATE "C" NOT NULL CHECK (events LIKE ' % '),
    -- ' wksp_… wksp_… ', or NULL for every workspace and the organisation.
    workspaces             text COLLATE "C" CHECK (workspaces LIKE ' % '),
    description            text,
    status                 text NOT NULL CHECK (status IN ('enabled', 'disabled')),
    -- The signing secrets (signing needs them; never shown after the
    -- answer that makes them). The previous one signs until its time.
    secret                 text NOT NULL,
    previous_secret        text,
    previous_secret_until  timestamptz,
    failing_since          timestamptz,
    created_at             timestamptz NOT NULL,
    created_by_name        text,
    created_by_email       text,
    updated_at             timestamptz NOT NULL,
    CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL))
);
CREATE INDEX webhook_endpoints_organisation_idx ON webhook_endpoints (organisation_id, created_at DESC, id DESC);

-- The warnings: one row per occurrence, de-duplicated across replicas by
-- the unique key (e.g. 'api_key.expiring:<key>:604800').
CREATE TABLE webhook_warnings (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id  text COLLATE "C" NOT NULL REFERENCES organisations (id),
    workspace_uid    text COLLATE "C" REFERENCES workspaces (uid),
    type             text COLLATE "C" NOT NULL,
    dedupe           text COLLATE "C" NOT NULL UNIQUE,
    data             text NOT NULL,
    at               timestamptz NOT NULL
);
CREATE INDEX webhook_warnings_at_idx ON webhook_warnings (at);

CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      text COLLATE "C" NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The webhook-id: 'evt_<audit event>' or 'wrn_<warning>'.
    message_id       text COLLATE "C" NOT NULL,
    type             text COLLATE "C" NOT NULL,
    audit_event_id   bigint,
    warning_id       bigint,
    created_at       timestamptz NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         bigint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz,
    -- A replica's claim on an attempt in flight (SKIP LOCKED decides who).
    claimed_until    timestamptz,
    claim            text,
    finished_at      timestamptz,
    CHECK ((audit_event_id IS NULL) <> (warning_id IS NULL)),
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    UNIQUE (endpoint_id, message_id)
);
-- What is due, per endpoint: the deliverer asks each enabled endpoint
-- (one probe each), never the whole backlog.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (finished_at) WHERE state <> 'pending';

CREATE TABLE webhook_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id  text COLLATE "C" NOT NULL,
    at           timestamptz NOT NULL,
    status_code  bigint,
    error        text,
    duration_ms  bigint NOT NULL,
    CHECK (status_code IS NOT NULL OR error IS NOT NULL)
);
CREATE INDEX webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);

-- Every event, whatever wrote it, gets its deliveries in its own
-- transaction: an event that commits has them, whatever its commit order.
CREATE FUNCTION webhook_deliveries_of_audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, message_id, type, audit_event_id, created_at, next_attempt_at)
    SELECT ep.id, 'evt_' || NEW.id, NEW.action, NEW.id, NEW.at, NEW.at
    FROM webhook_endpoints ep
    WHERE ep.organisation_id = NEW.organisation_id AND ep.status = 'enabled'
      AND (ep.events = ' * ' OR strpos(ep.events, ' ' || NEW.action || ' ') > 0)
      AND (ep.workspaces IS NULL OR strpos(ep.workspaces, ' ' || NEW.workspace_uid || ' ') > 0);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_events_to_webhooks AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_of_audit_event();

CREATE FUNCTION webhook_deliveries_of_warning() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, message_id, type, warning_id, created_at, next_attempt_at)
    SELECT ep.id, 'wrn_' || NEW.id, NEW.type, NEW.id, NEW.at, NEW.at
    FROM webhook_endpoints ep
    WHERE ep.organisation_id = NEW.organisation_id AND ep.status = 'enabled'
      AND (ep.events = ' * ' OR strpos(ep.events, ' ' || NEW.type || ' ') > 0)
      AND (ep.workspaces IS NULL OR strpos(ep.workspaces, ' ' || NEW.workspace_uid || ' ') > 0);
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_warnings_to_webhooks AFTER INSERT ON webhook_warnings
    FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_of_warning();

-- The expiry warnings' scan: the live, active keys that expire soon.
CREATE INDEX api_keys_expiring_idx ON api_keys (expires_at) WHERE deleted_at IS NULL AND expires_at IS NOT NULL;
