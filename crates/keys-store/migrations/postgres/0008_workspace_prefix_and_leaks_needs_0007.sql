-- Leaked keys and key prefixes (docs/API.md, Workspaces and Leaked keys):
-- a workspace's prefix for its new API keys and what a leak report does to
-- its keys, and the detail an audit event may carry (the source URL of a
-- leak). An expansion: schema 7's binaries ignore the new columns, and what
-- they insert gets the defaults.
ALTER TABLE workspaces
    ADD COLUMN api_key_prefix text COLLATE "C" CHECK (api_key_prefix ~ '^[a-z][a-z0-9]{1,15}_(live|test)$'),
    ADD COLUMN on_leak text NOT NULL DEFAULT 'disable' CHECK (on_leak IN ('disable', 'notify'));

ALTER TABLE audit_events
    ADD COLUMN detail text CHECK (char_length(detail) <= 2048);
