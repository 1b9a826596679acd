-- Feedback ingestion and list hygiene, PostgreSQL dialect. Keep in step with
-- migrations/sqlite/0002_feedback.sql (same tables and columns).

-- One row per message read from the bounce mailbox. A message is handled
-- once: a re-run skips any message whose content hash or Message-ID is here
-- already (except one that was kept aside, which is tried again).
CREATE TABLE feedback_messages (
    id                BIGSERIAL PRIMARY KEY,
    message_id        TEXT    UNIQUE,            -- the report's own Message-ID, without <>
    content_hash      TEXT    NOT NULL UNIQUE,   -- SHA-256 of the raw bytes, hex
    received_at       BIGINT  NOT NULL,          -- when cartero read it
    source            TEXT    NOT NULL,          -- maildir | mbox | imap | file, and where in it
    kind              TEXT    NOT NULL,          -- hard | soft | complaint | autoreply | unsubscribe | none | mixed
    outcome           TEXT    NOT NULL,          -- processed | kept_aside
    kept_aside_reason TEXT,
    raw_size          BIGINT  NOT NULL,
    records           BIGINT  NOT NULL DEFAULT 0, -- recipients found in it
    matched           BIGINT  NOT NULL DEFAULT 0  -- of which matched to a contact
);
CREATE INDEX feedback_messages_received ON feedback_messages(received_at);

-- Hygiene flags per contact: why an address looks risky, as last checked.
CREATE TABLE contact_flags (
    contact_id    BIGINT  NOT NULL REFERENCES contacts(id),
    flag          TEXT    NOT NULL,   -- invalid | role | disposable | typo | mx
    detail        TEXT,               -- parse error, suggested domain, MX verdict
    first_seen_at BIGINT  NOT NULL,
    checked_at    BIGINT  NOT NULL,
    PRIMARY KEY (contact_id, flag)
);
CREATE INDEX contact_flags_flag ON contact_flags(flag);

-- The soft-bounce window counts a contact's recent bounce events.
CREATE INDEX events_contact_kind ON events(contact_id, kind, occurred_at);
CREATE INDEX events_send ON events(send_id);
CREATE INDEX status_changes_time ON status_changes(occurred_at);
