-- Conversions API (issue 21), PostgreSQL dialect. Keep in step with
-- migrations/sqlite/0010_conversions.sql (same tables and columns).

-- Keys of the events API. Only the SHA-256 of the secret part is kept; the
-- key's public prefix finds the row.
CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL UNIQUE,
    secret_hash TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT,
    last_used_at BIGINT
);

-- A purchase or other conversion reported by a shop. `value_minor` is the
-- amount in the currency's minor units (no floating point anywhere).
CREATE TABLE conversions (
    id           BIGSERIAL PRIMARY KEY,
    order_id     TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL,
    contact_id   BIGINT  REFERENCES contacts(id),
    value_minor  BIGINT  NOT NULL CHECK (value_minor >= 0),
    currency     TEXT    NOT NULL CHECK (length(currency) = 3),
    occurred_at  BIGINT  NOT NULL,
    received_at  BIGINT  NOT NULL,
    api_key_id   BIGINT  NOT NULL REFERENCES api_keys(id),
    via          TEXT    NOT NULL CHECK (via IN ('api', 'postback')),
    -- The last click within the campaign's attribution window, if any.
    campaign_id  BIGINT  REFERENCES campaigns(id),
    click_event_id BIGINT  REFERENCES events(id),
    link         TEXT
);
CREATE INDEX conversions_campaign ON conversions(campaign_id);

-- `attribution_days` of the campaign file, written when the campaign is sent.
ALTER TABLE campaigns ADD COLUMN attribution_days BIGINT ;
