-- Runs: a campaign can be sent more than once (a schedule, a resend to late
-- joiners, an A/B winner), so send rows belong to a run and are unique per
-- (run, contact). Every campaign that exists gets one run holding all of its
-- sends, so no history is lost. `sends.campaign_id` stays: it is the run's
-- campaign, and reports, feedback and tracking keep reading it.
CREATE TABLE campaign_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    -- What made the run: the command line, a cron schedule, a send_at.
    trigger     TEXT    NOT NULL CHECK (trigger IN ('manual', 'schedule', 'send_at')),
    -- Which occurrence this is: 'manual' for the command line's run, the
    -- occurrence's instant (RFC 3339, UTC) for a scheduled one. Unique per
    -- campaign, so an occurrence runs once across restarts and nodes.
    occurrence  TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'sending', 'finished', 'cancelled')),
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    UNIQUE (campaign_id, occurrence)
);

INSERT INTO campaign_runs (campaign_id, trigger, occurrence, state, created_at, started_at, finished_at)
SELECT id, 'manual', 'manual',
       CASE WHEN finished_at IS NOT NULL THEN 'finished'
            WHEN started_at IS NOT NULL THEN 'sending'
            ELSE 'pending' END,
       created_at, started_at, finished_at
FROM campaigns;

-- SQLite cannot drop the table's UNIQUE (campaign_id, contact_id): the table
-- is rebuilt, keeping every id. Foreign keys stay on (sqlx runs a migration
-- inside a transaction, where `PRAGMA foreign_keys` does nothing), so the
-- rows are copied aside first, the old table dropped (which leaves
-- `events.send_id` pointing nowhere, counted as deferred violations), and
-- the new table filled from the copy, which settles every one of them
-- before the commit checks.
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE sends_copy AS
SELECT s.*, (SELECT r.id FROM campaign_runs r WHERE r.campaign_id = s.campaign_id) AS run_id
FROM sends s;
-- Its indexes and trigger go with it.
DROP TABLE sends;
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
    -- NULL only for rows written outside the send path (tools and fixtures
    -- that predate runs); every row the send path writes has its run.
    run_id          INTEGER REFERENCES campaign_runs(id),
    -- Migration 0006: whether the message carried open or click tracking.
    tracked         INTEGER CHECK (tracked IS NULL OR tracked IN (0, 1)),
    UNIQUE (run_id, contact_id)
);
INSERT INTO sends (id, campaign_id, contact_id, email, state, skip_reason, attempts, claimed_by,
                   lease_until, next_attempt_at, message_id, smtp_code, smtp_reply, created_at,
                   updated_at, run_id, tracked)
SELECT id, campaign_id, contact_id, email, state, skip_reason, attempts, claimed_by,
       lease_until, next_attempt_at, message_id, smtp_code, smtp_reply, created_at,
       updated_at, run_id, tracked
FROM sends_copy;
DROP TABLE sends_copy;
CREATE INDEX sends_work ON sends(run_id, state, next_attempt_at);
CREATE INDEX sends_campaign ON sends(campaign_id, state);
CREATE INDEX sends_message_id ON sends(message_id);
-- Migration 0006's index, dropped with the old table.
CREATE INDEX sends_tracked_by_contact ON sends(contact_id, created_at) WHERE tracked = 1;
-- Dropped with the old table (migration 0003): recreated as it was.
CREATE TRIGGER sends_accepted_stats AFTER UPDATE OF state ON sends
WHEN NEW.state = 'accepted' AND OLD.state <> 'accepted'
BEGIN
    UPDATE contacts SET last_sent_at = NEW.updated_at, send_count = send_count + 1
    WHERE id = NEW.contact_id;
END;
