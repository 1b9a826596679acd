-- Compliance (issue 18), SQLite dialect. Keep in step with
-- migrations/postgres/0008_compliance.sql (same tables and columns).

-- The keyed ledger. `key_id` names the HMAC-SHA256 key (kept outside the
-- database) that signed the entry; NULL is the legacy form, a plain SHA-256,
-- allowed only before the switch point below. `personal_digest` is a keyed
-- digest of the entry's personal fields (ip, evidence), which the entry's
-- own hash covers instead of the fields themselves: an erasure blanks the
-- fields and sets `erased_at`, and the chain still verifies.
ALTER TABLE consent_events ADD COLUMN key_id TEXT;
ALTER TABLE consent_events ADD COLUMN personal_digest TEXT;
ALTER TABLE consent_events ADD COLUMN erased_at INTEGER;

-- Still append-only, except for the one change an erasure makes.
DROP TRIGGER consent_events_no_update;
CREATE TRIGGER consent_events_no_update BEFORE UPDATE ON consent_events
WHEN NOT (OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL
      AND NEW.ip IS NULL AND NEW.evidence = '{}'
      AND NEW.id = OLD.id AND NEW.contact_id = OLD.contact_id AND NEW.list_id IS OLD.list_id
      AND NEW.action = OLD.action AND NEW.occurred_at = OLD.occurred_at
      AND NEW.source = OLD.source AND NEW.method = OLD.method
      AND NEW.text_version IS OLD.text_version AND NEW.prev_hash = OLD.prev_hash
      AND NEW.hash = OLD.hash AND NEW.key_id IS OLD.key_id
      AND NEW.personal_digest IS OLD.personal_digest)
BEGIN SELECT RAISE(ABORT, 'consent_events is append-only (an erasure may only blank ip and evidence)'); END;

-- Where the chain became keyed: the legacy entries before it and the hash
-- they end on, signed with the key that made the switch (one row, ever).
CREATE TABLE ledger_switch (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    legacy_count INTEGER NOT NULL,
    legacy_head  TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    mac          TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Addresses that must never come back (erased on request): a keyed hash
-- of the normalised address, never the address.
CREATE TABLE suppressions (
    digest     TEXT    PRIMARY KEY,
    key_id     TEXT    NOT NULL,
    reason     TEXT    NOT NULL CHECK (reason IN ('erasure')),
    contact_id INTEGER REFERENCES contacts(id),
    created_at INTEGER NOT NULL
);

-- What compliance commands did: erasures and retention purges.
CREATE TABLE compliance_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL CHECK (kind IN ('erase', 'purge')),
    contact_id  INTEGER REFERENCES contacts(id),
    actor       TEXT    NOT NULL,
    reason      TEXT,
    details     TEXT    NOT NULL DEFAULT '{}',  -- JSON: rows changed per table, cut-off, ...
    occurred_at INTEGER NOT NULL
);
CREATE INDEX compliance_actions_time ON compliance_actions(occurred_at);
CREATE INDEX consent_events_time ON consent_events(occurred_at);
