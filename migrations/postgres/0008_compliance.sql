-- Compliance (issue 18), PostgreSQL dialect. Keep in step with
-- migrations/sqlite/0008_compliance.sql (same tables and columns).

-- The keyed ledger. `key_id` names the HMAC-SHA256 key (kept outside the
-- database) that signed the entry; NULL is the legacy form, a plain SHA-256,
-- allowed only before the switch point below. `personal_digest` is a keyed
-- digest of the entry's personal fields (ip, evidence), which the entry's
-- own hash covers instead of the fields themselves: an erasure blanks the
-- fields and sets `erased_at`, and the chain still verifies.
ALTER TABLE consent_events
    ADD COLUMN key_id TEXT,
    ADD COLUMN personal_digest TEXT,
    ADD COLUMN erased_at BIGINT;

-- Still append-only, except for the one change an erasure makes.
CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL
       AND NEW.ip IS NULL AND NEW.evidence = '{}'
       AND NEW.id = OLD.id AND NEW.contact_id = OLD.contact_id
       AND NEW.list_id IS NOT DISTINCT FROM OLD.list_id
       AND NEW.action = OLD.action AND NEW.occurred_at = OLD.occurred_at
       AND NEW.source = OLD.source AND NEW.method = OLD.method
       AND NEW.text_version IS NOT DISTINCT FROM OLD.text_version
       AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash
       AND NEW.key_id IS NOT DISTINCT FROM OLD.key_id
       AND NEW.personal_digest IS NOT DISTINCT FROM OLD.personal_digest THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent_events is append-only (an erasure may only blank ip and evidence)';
END;
$$ LANGUAGE plpgsql;

-- Where the chain became keyed: the legacy entries before it and the hash
-- they end on, signed with the key that made the switch (one row, ever).
CREATE TABLE ledger_switch (
    id           BIGINT  PRIMARY KEY CHECK (id = 1),
    legacy_count BIGINT  NOT NULL,
    legacy_head  TEXT    NOT NULL,
    key_id       TEXT    NOT NULL,
    mac          TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);

-- Addresses that must never come back (erased on request): a keyed hash
-- of the normalised address, never the address.
CREATE TABLE suppressions (
    digest     TEXT    PRIMARY KEY,
    key_id     TEXT    NOT NULL,
    reason     TEXT    NOT NULL CHECK (reason IN ('erasure')),
    contact_id BIGINT  REFERENCES contacts(id),
    created_at BIGINT  NOT NULL
);

-- What compliance commands did: erasures and retention purges.
CREATE TABLE compliance_actions (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('erase', 'purge')),
    contact_id  BIGINT  REFERENCES contacts(id),
    actor       TEXT    NOT NULL,
    reason      TEXT,
    details     TEXT    NOT NULL DEFAULT '{}',  -- JSON: rows changed per table, cut-off, ...
    occurred_at BIGINT  NOT NULL
);
CREATE INDEX compliance_actions_time ON compliance_actions(occurred_at);
CREATE INDEX consent_events_time ON consent_events(occurred_at);
