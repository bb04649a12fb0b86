-- PostgreSQL's migration 0007 keeps a count of each workspace's live API
-- keys for its one-statement create. SQLite has one writer at a time
-- (`BEGIN IMMEDIATE`), so its creates count under that lock and need no
-- such table; this migration keeps the two histories the same length.
SELECT 1;
