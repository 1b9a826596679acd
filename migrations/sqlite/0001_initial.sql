-- cartero schema, SQLite dialect. Keep in step with migrations/postgres/0001_initial.sql:
-- a test checks both end with the same tables and columns.
-- Instants are INTEGER milliseconds since the Unix epoch.

CREATE TABLE contacts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,   -- normalised address (NFC, domain lower-case Unicode)
    email_ascii   TEXT,                      -- domain in punycode; NULL when the local part needs SMTPUTF8
    domain        TEXT    NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    locale        TEXT,
    timezone      TEXT,
    attributes    TEXT    NOT NULL DEFAULT '{}',  -- JSON object of typed extra columns
    status        TEXT    NOT NULL DEFAULT 'active',
    status_reason TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_sent_at  INTEGER,
    last_open_at  INTEGER,
    last_click_at INTEGER,
    send_count    INTEGER NOT NULL DEFAULT 0,
    open_count    INTEGER NOT NULL DEFAULT 0,
    click_count   INTEGER NOT NULL DEFAULT 0,
    bounce_count  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX contacts_domain ON contacts(domain);
CREATE INDEX contacts_status ON contacts(status);

CREATE TABLE lists (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Current consent per contact and list, derived from consent_events and
-- written in the same transaction as the ledger entry that changes it.
CREATE TABLE contact_lists (
    contact_id INTEGER NOT NULL REFERENCES contacts(id),
    list_id    INTEGER NOT NULL REFERENCES lists(id),
    subscribed INTEGER NOT NULL,          -- 1 while the latest ledger entry is a grant
    changed_at INTEGER NOT NULL,
    PRIMARY KEY (contact_id, list_id)
);
CREATE INDEX contact_lists_list ON contact_lists(list_id, subscribed);

CREATE TABLE contact_tags (
    contact_id INTEGER NOT NULL REFERENCES contacts(id),
    tag        TEXT    NOT NULL,
    PRIMARY KEY (contact_id, tag)
);
CREATE INDEX contact_tags_tag ON contact_tags(tag);

-- The consent ledger: append-only. Each row carries the hash of the previous
-- row, so any edit or deletion breaks the chain (tamper evidence).
CREATE TABLE consent_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id   INTEGER NOT NULL REFERENCES contacts(id),
    list_id      INTEGER REFERENCES lists(id),   -- NULL: applies to every list
    action       TEXT    NOT NULL,               -- grant | withdraw
    occurred_at  INTEGER NOT NULL,
    source       TEXT    NOT NULL,               -- e.g. "signup form 2025", "bounce", "one-click"
    method       TEXT    NOT NULL,               -- import | form | double-opt-in | one-click | mail | operator | feedback
    ip           TEXT,
    text_version TEXT,
    evidence     TEXT    NOT NULL DEFAULT '{}',  -- JSON
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE
);
CREATE INDEX consent_events_contact ON consent_events(contact_id, id);

CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only'); END;
CREATE TRIGGER consent_events_no_delete BEFORE DELETE ON consent_events
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only'); END;

-- Every change of a contact's status, with its cause; reversible by an operator.
CREATE TABLE status_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  INTEGER NOT NULL REFERENCES contacts(id),
    from_status TEXT    NOT NULL,
    to_status   TEXT    NOT NULL,
    cause       TEXT    NOT NULL,      -- bounce | complaint | unsubscribe | operator | hygiene | import
    rule        TEXT,                  -- which policy rule fired
    event_id    INTEGER,               -- the event that caused it, when there is one
    actor       TEXT    NOT NULL,      -- "cartero" or the operator's name
    reason      TEXT,
    occurred_at INTEGER NOT NULL
);
CREATE INDEX status_changes_contact ON status_changes(contact_id, id);

CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    file_path   TEXT    NOT NULL,
    file_hash   TEXT    NOT NULL,
    list_name   TEXT,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);

-- One row per recipient per campaign: the snapshot of the segment taken when
-- the send starts, and the state machine that makes a resumed send exact.
CREATE TABLE sends (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id     INTEGER NOT NULL REFERENCES campaigns(id),
    contact_id      INTEGER NOT NULL REFERENCES contacts(id),
    email           TEXT    NOT NULL,
    state           TEXT    NOT NULL,   -- pending | sending | accepted | deferred | failed | skipped
    skip_reason     TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    lease_until     INTEGER,
    next_attempt_at INTEGER,
    message_id      TEXT,
    smtp_code       INTEGER,
    smtp_reply      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (campaign_id, contact_id)
);
CREATE INDEX sends_work ON sends(campaign_id, state, next_attempt_at);
CREATE INDEX sends_message_id ON sends(message_id);

-- Interactions: opens, clicks, bounces, complaints, unsubscribes, conversions.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  INTEGER REFERENCES contacts(id),
    campaign_id INTEGER REFERENCES campaigns(id),
    send_id     INTEGER REFERENCES sends(id),
    kind        TEXT    NOT NULL,
    channel     TEXT    NOT NULL DEFAULT 'email',
    occurred_at INTEGER NOT NULL,
    data        TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX events_contact ON events(contact_id, occurred_at);
CREATE INDEX events_campaign ON events(campaign_id, kind);
