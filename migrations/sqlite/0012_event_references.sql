-- Kept in step with migrations/postgres/0012_event_references.sql, which
-- replaces the per-row foreign keys of `events` with a check per statement
-- (PostgreSQL locked the same parent rows once per hit). SQLite checks a
-- foreign key with an index probe and no lock, and changing one means
-- rebuilding the table: its schema stays as it is.
SELECT 1;
