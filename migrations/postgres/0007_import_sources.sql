-- Keep in step with migrations/sqlite/0007_import_sources.sql.
--
-- Case-insensitive address key (docs/ADDRESSES.md). lower() under the "C"
-- collation folds ASCII letters only, as SQLite's lower() and the Rust key
-- (`to_ascii_lowercase`) do, so both backends find the same contact. Not
-- UNIQUE: older databases may hold case variants (`contacts duplicates`).
CREATE INDEX contacts_email_fold ON contacts (lower(email COLLATE "C"));

CREATE TABLE contact_merges (
    merged_id  BIGINT NOT NULL PRIMARY KEY REFERENCES contacts(id),
    into_id    BIGINT NOT NULL REFERENCES contacts(id),
    merged_at  BIGINT NOT NULL,
    actor      TEXT   NOT NULL,
    reason     TEXT   NOT NULL
);
CREATE INDEX contact_merges_into ON contact_merges(into_id);
