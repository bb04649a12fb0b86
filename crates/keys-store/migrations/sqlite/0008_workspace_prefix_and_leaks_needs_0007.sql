-- Leaked keys and key prefixes: see the PostgreSQL migration of the same
-- number. SQLite's CHECK has no regular expressions; keys-core's
-- `ApiKeyPrefix` is the one check of the prefix's shape here.
ALTER TABLE workspaces ADD COLUMN api_key_prefix TEXT CHECK (length(api_key_prefix) BETWEEN 7 AND 21);
ALTER TABLE workspaces ADD COLUMN on_leak TEXT NOT NULL DEFAULT 'disable' CHECK (on_leak IN ('disable', 'notify'));
ALTER TABLE audit_events ADD COLUMN detail TEXT CHECK (length(detail) <= 2048);
