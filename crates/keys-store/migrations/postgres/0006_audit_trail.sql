-- The audit trail as an API (SPEC section 7): each event names the service
-- token that acted (null for the CLI) and the HTTP request it came from;
-- indexes for paging an organisation's events newest first, also within a
-- workspace, an action or a target; and the append-only rule, held by the
-- database itself.
ALTER TABLE audit_events
    ADD COLUMN token_id text COLLATE "C",
    ADD COLUMN request_id text COLLATE "C" CHECK (request_id ~ '^[A-Za-z0-9._:-]{1,128}$');

-- Keyset pagination on (at, id): `(at, id) < ($n, $m)` walks these in order.
-- audit_events_organisation_at_idx (migration 0001) serves the unfiltered list.
CREATE INDEX audit_events_workspace_at_idx ON audit_events (organisation_id, workspace_uid, at DESC, id DESC);
CREATE INDEX audit_events_action_at_idx ON audit_events (organisation_id, action, at DESC, id DESC);
CREATE INDEX audit_events_target_at_idx ON audit_events (organisation_id, target_id, at DESC, id DESC);

-- No UPDATE and no TRUNCATE, ever. A DELETE only of the events of the
-- organisation that `keysd audit prune` names, inside its transaction, by
-- `set_config('keysd.audit_prune', <organisation id>, true)`: the setting is
-- transaction-local, so it ends with the prune.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.organisation_id = current_setting('keysd.audit_prune', true) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only: % refused (deletes only through keysd audit prune)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_prune_only BEFORE DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
