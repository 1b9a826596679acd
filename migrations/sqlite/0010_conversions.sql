-- Conversions API (issue 21), SQLite dialect. Keep in step with
-- migrations/postgres/0010_conversions.sql (same tables and columns).

-- Keys of the events API. Only the SHA-256 of the secret part is kept; the
-- key's public prefix finds the row.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL UNIQUE,
    secret_hash TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    last_used_at INTEGER
);

-- A purchase or other conversion reported by a shop. `value_minor` is the
-- amount in the currency's minor units (no floating point anywhere).
CREATE TABLE conversions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    contact_id   INTEGER REFERENCES contacts(id),
    value_minor  INTEGER NOT NULL CHECK (value_minor >= 0),
    currency     TEXT    NOT NULL CHECK (length(currency) = 3),
    occurred_at  INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    api_key_id   INTEGER NOT NULL REFERENCES api_keys(id),
    via          TEXT    NOT NULL CHECK (via IN ('api', 'postback')),
    -- The last click within the campaign's attribution window, if any.
    campaign_id  INTEGER REFERENCES campaigns(id),
    click_event_id INTEGER REFERENCES events(id),
    link         TEXT
);
CREATE INDEX conversions_campaign ON conversions(campaign_id);

-- `attribution_days` of the campaign file, written when the campaign is sent.
ALTER TABLE campaigns ADD COLUMN attribution_days INTEGER;
