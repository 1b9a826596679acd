-- Feedback trust (issue 15), SQLite dialect. Keep in step with
-- migrations/postgres/0005_feedback_trust.sql (same tables and columns).

-- How a feedback event was tied to its contact, strongest first
-- (docs/FEEDBACK.md, docs/SECURITY.md): a verified VERP or unsubscribe
-- token, a Message-ID cartero issued at random, a Message-ID that could be
-- guessed, an address whose own domain authenticated the report (DKIM),
-- or the address alone. NULL for events that are not feedback, and for
-- feedback events recorded before this migration.
ALTER TABLE events ADD COLUMN evidence TEXT CHECK (evidence IS NULL OR evidence IN
    ('verp_token', 'unsubscribe_token', 'issued_message_id', 'guessable_message_id',
     'authenticated_address', 'address_only'));

-- Reports whose evidence was too weak to act on alone: recorded and held
-- until an operator confirms (the policy is applied then) or dismisses them
-- (`cartero feedback review | confirm | dismiss`).
CREATE TABLE feedback_holds (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            INTEGER NOT NULL UNIQUE REFERENCES events(id),
    feedback_message_id INTEGER NOT NULL REFERENCES feedback_messages(id),
    contact_id          INTEGER NOT NULL REFERENCES contacts(id),
    kind                TEXT    NOT NULL CHECK (kind IN ('hard', 'soft', 'complaint', 'unsubscribe')),
    evidence            TEXT    NOT NULL CHECK (evidence IN
        ('verp_token', 'unsubscribe_token', 'issued_message_id', 'guessable_message_id',
         'authenticated_address', 'address_only')),
    state               TEXT    NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'confirmed', 'dismissed')),
    held_at             INTEGER NOT NULL,
    decided_at          INTEGER,
    decided_by          TEXT,
    decision_reason     TEXT,
    CHECK ((state = 'held') = (decided_at IS NULL))
);
CREATE INDEX feedback_holds_state ON feedback_holds(state, id);
CREATE INDEX feedback_holds_contact ON feedback_holds(contact_id);
