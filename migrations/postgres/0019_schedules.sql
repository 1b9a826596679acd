-- The scheduler (issue 19): runs made by a cron schedule or a send_at, an
-- occurrence skipped by the campaign's `missed = "skip"` recorded as a run in
-- state 'skipped' (so no node sends it later, and `schedule list` can say
-- why), runs of journey steps, and a note on a run (why it was skipped or
-- cancelled).
ALTER TABLE campaign_runs DROP CONSTRAINT campaign_runs_trigger_check;
ALTER TABLE campaign_runs ADD CONSTRAINT campaign_runs_trigger_check
    CHECK (trigger IN ('manual', 'schedule', 'send_at', 'journey'));
ALTER TABLE campaign_runs DROP CONSTRAINT campaign_runs_state_check;
ALTER TABLE campaign_runs ADD CONSTRAINT campaign_runs_state_check
    CHECK (state IN ('pending', 'sending', 'finished', 'cancelled', 'skipped'));
-- Why a run was skipped or cancelled, in words for `schedule list`.
ALTER TABLE campaign_runs ADD COLUMN note TEXT;
CREATE INDEX campaign_runs_open ON campaign_runs(state) WHERE state IN ('pending', 'sending');

-- `cartero campaign pause`: a paused campaign's runs are not claimed by any
-- node until `campaign resume`; its scheduled occurrences still get their
-- runs, which wait.
ALTER TABLE campaigns ADD COLUMN paused_at BIGINT;
ALTER TABLE campaigns ADD COLUMN paused_reason TEXT;

-- What the scheduler knows of a campaign's schedule: when it first saw it
-- (occurrences before that are never sent: a file committed with a past
-- send_at does not fire), and up to when every occurrence has been decided
-- (run created, or recorded as skipped). Shared by every node.
CREATE TABLE campaign_schedules (
    campaign_id  BIGINT PRIMARY KEY REFERENCES campaigns(id),
    spec         TEXT   NOT NULL,
    since        BIGINT NOT NULL,
    checked_upto BIGINT NOT NULL
);

-- The `cartero serve` nodes whose scheduler is running, by the process's
-- worker identity, with the last time each said it was alive: the global
-- rate limit (smtp.rate_limit) is divided among the nodes alive.
CREATE TABLE service_nodes (
    id         TEXT    PRIMARY KEY,
    started_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL
);
