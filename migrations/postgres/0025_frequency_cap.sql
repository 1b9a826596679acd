-- The frequency cap (issue 19; `[frequency]` in cartero.toml). PostgreSQL
-- dialect; keep in step with migrations/sqlite/0025_frequency_cap.sql.
--
-- A transactional campaign (`transactional = true` in its file) neither
-- counts towards a contact's cap nor is capped; the flag is written from
-- the file on every send.
ALTER TABLE campaigns ADD COLUMN transactional BIGINT NOT NULL DEFAULT 0
    CHECK (transactional IN (0, 1));

-- The cap counts a contact's recent sends before each batch is delivered,
-- and access and erasure read a contact's sends: by contact. Its key never
-- changes after the insert, so claims and results do not write it.
CREATE INDEX sends_contact ON sends(contact_id);
