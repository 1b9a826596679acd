-- The scheduler (issue 19): runs made by a cron schedule or a send_at, an
-- occurrence skipped by the campaign's `missed = "skip"` recorded as a run in
-- state 'skipped' (so no node sends it later, and `schedule list` can say
-- why), runs of journey steps, and a note on a run (why it was skipped or
-- cancelled). SQLite cannot change a CHECK in place: the table is rebuilt
-- keeping every id, as migration 0014 rebuilt `sends` (the rows copied aside
-- first; `sends.run_id` points nowhere between the DROP and the INSERT, a
-- deferred violation the INSERT settles before the commit checks).
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE campaign_runs_copy AS SELECT * FROM campaign_runs;
DROP TABLE campaign_runs;
CREATE TABLE campaign_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    trigger     TEXT    NOT NULL CHECK (trigger IN ('manual', 'schedule', 'send_at', 'journey')),
    occurrence  TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'sending', 'finished', 'cancelled', 'skipped')),
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    -- Why a run was skipped or cancelled, in words for `schedule list`.
    note        TEXT,
    UNIQUE (campaign_id, occurrence)
);
INSERT INTO campaign_runs (id, campaign_id, trigger, occurrence, state, created_at, started_at, finished_at)
SELECT id, campaign_id, trigger, occurrence, state, created_at, started_at, finished_at
FROM campaign_runs_copy;
DROP TABLE campaign_runs_copy;
CREATE INDEX campaign_runs_open ON campaign_runs(state) WHERE state IN ('pending', 'sending');

-- `cartero campaign pause`: a paused campaign's runs are not claimed by any
-- node until `campaign resume`; its scheduled occurrences still get their
-- runs, which wait.
ALTER TABLE campaigns ADD COLUMN paused_at INTEGER;
ALTER TABLE campaigns ADD COLUMN paused_reason TEXT;

-- What the scheduler knows of a campaign's schedule: when it first saw it
-- (occurrences before that are never sent: a file committed with a past
-- send_at does not fire), and up to when every occurrence has been decided
-- (run created, or recorded as skipped). Shared by every node.
CREATE TABLE campaign_schedules (
    campaign_id  INTEGER PRIMARY KEY REFERENCES campaigns(id),
    spec         TEXT    NOT NULL,
    since        INTEGER NOT NULL,
    checked_upto INTEGER NOT NULL
);

-- The `cartero serve` nodes whose scheduler is running, by the process's
-- worker identity, with the last time each said it was alive: the global
-- rate limit (smtp.rate_limit) is divided among the nodes alive.
CREATE TABLE service_nodes (
    id         TEXT    PRIMARY KEY,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);
