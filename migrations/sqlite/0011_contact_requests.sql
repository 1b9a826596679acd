-- Preference centre (issue 21), SQLite dialect. Keep in step with
-- migrations/postgres/0011_contact_requests.sql (same table and columns).

-- What a contact changed or asked for themselves, beyond consent (which is
-- the ledger's): a frequency choice, a correction of their own data, a
-- request to be forgotten. Each row keeps the old and new values and the
-- evidence (method, IP as `serve.ip_storage` allows, user agent).
-- An erasure request is `open` until an officer acts on it; the others are
-- `done` when written.
CREATE TABLE contact_requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  INTEGER NOT NULL REFERENCES contacts(id),
    kind        TEXT    NOT NULL CHECK (kind IN ('frequency', 'correction', 'erasure')),
    status      TEXT    NOT NULL CHECK (status IN ('done', 'open', 'closed')),
    old_value   TEXT,                          -- JSON
    new_value   TEXT,                          -- JSON
    evidence    TEXT    NOT NULL DEFAULT '{}', -- JSON
    occurred_at INTEGER NOT NULL
);
CREATE INDEX contact_requests_contact ON contact_requests(contact_id);
CREATE INDEX contact_requests_open ON contact_requests(kind, status);
