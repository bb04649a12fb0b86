-- The audit trail as an API (SPEC section 7): each event names the service
-- token that acted (null for the CLI) and the HTTP request it came from;
-- indexes for paging an organisation's events newest first, also within a
-- workspace, an action or a target; and the append-only rule, held by the
-- database itself.
ALTER TABLE audit_events ADD COLUMN token_id TEXT;
ALTER TABLE audit_events ADD COLUMN request_id TEXT
    CHECK (length(request_id) BETWEEN 1 AND 128 AND request_id NOT GLOB '*[^A-Za-z0-9._:-]*');

-- Keyset pagination on (at, id): `(at, id) < ($n, $m)` walks these in order.
-- audit_events_organisation_at_idx (migration 0001) serves the unfiltered list.
CREATE INDEX audit_events_workspace_at_idx ON audit_events (organisation_id, workspace_uid, at DESC, id DESC);
CREATE INDEX audit_events_action_at_idx ON audit_events (organisation_id, action, at DESC, id DESC);
CREATE INDEX audit_events_target_at_idx ON audit_events (organisation_id, target_id, at DESC, id DESC);

-- SQLite has no transaction-local settings: `keysd audit prune` writes the
-- organisation it prunes into this table, deletes, and removes the row again,
-- all in its one write transaction (which excludes every other writer, and
-- whose uncommitted row no reader sees). Outside such a transaction the table
-- is empty.
CREATE TABLE audit_prune_guard (
    organisation_id TEXT PRIMARY KEY
) STRICT;

CREATE TRIGGER audit_events_no_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused');
END;

CREATE TRIGGER audit_events_prune_only
BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_prune_guard WHERE organisation_id = OLD.organisation_id)
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused (deletes only through keysd audit prune)');
END;
