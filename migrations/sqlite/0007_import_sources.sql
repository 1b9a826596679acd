-- Keep in step with migrations/postgres/0007_import_sources.sql.
--
-- One person, one contact (docs/ADDRESSES.md): imports match addresses with
-- the ASCII letters of the whole address compared case-insensitively, so
-- `Pedro@gmail.com` and `pedro@gmail.com` are one contact. SQLite's lower()
-- folds ASCII letters only (no ICU), the same fold as the Rust key
-- (`to_ascii_lowercase`) and as PostgreSQL's lower() under the "C"
-- collation. Not UNIQUE: databases filled before this may already hold
-- case variants; `cartero contacts duplicates` lists and merges them.
CREATE INDEX contacts_email_fold ON contacts (lower(email));

-- A case-variant duplicate merged into another contact keeps its row, its
-- ledger entries and its sends (contacts are never deleted); this says
-- where it went, when, and who did it.
CREATE TABLE contact_merges (
    merged_id  INTEGER NOT NULL PRIMARY KEY REFERENCES contacts(id),
    into_id    INTEGER NOT NULL REFERENCES contacts(id),
    merged_at  INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL
);
CREATE INDEX contact_merges_into ON contact_merges(into_id);
