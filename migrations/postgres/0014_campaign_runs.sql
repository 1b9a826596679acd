-- Runs: a campaign can be sent more than once (a schedule, a resend to late
-- joiners, an A/B winner), so send rows belong to a run and are unique per
-- (run, contact). Every campaign that exists gets one run holding all of its
-- sends, so no history is lost. `sends.campaign_id` stays: it is the run's
-- campaign, and reports, feedback and tracking keep reading it.
CREATE TABLE campaign_runs (
    id          BIGSERIAL PRIMARY KEY,
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
    -- What made the run: the command line, a cron schedule, a send_at.
    trigger     TEXT   NOT NULL CHECK (trigger IN ('manual', 'schedule', 'send_at')),
    -- Which occurrence this is: 'manual' for the command line's run, the
    -- occurrence's instant (RFC 3339, UTC) for a scheduled one. Unique per
    -- campaign, so an occurrence runs once across restarts and nodes.
    occurrence  TEXT   NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('pending', 'sending', 'finished', 'cancelled')),
    created_at  BIGINT NOT NULL,
    started_at  BIGINT,
    finished_at BIGINT,
    UNIQUE (campaign_id, occurrence)
);

INSERT INTO campaign_runs (campaign_id, trigger, occurrence, state, created_at, started_at, finished_at)
SELECT id, 'manual', 'manual',
       CASE WHEN finished_at IS NOT NULL THEN 'finished'
            WHEN started_at IS NOT NULL THEN 'sending'
            ELSE 'pending' END,
       created_at, started_at, finished_at
FROM campaigns;

-- NULL only for rows written outside the send path (tools and fixtures that
-- predate runs); every row the send path writes has its run.
ALTER TABLE sends ADD COLUMN run_id BIGINT REFERENCES campaign_runs(id);
UPDATE sends SET run_id = r.id FROM campaign_runs r WHERE r.campaign_id = sends.campaign_id;
ALTER TABLE sends DROP CONSTRAINT sends_campaign_id_contact_id_key;
ALTER TABLE sends ADD CONSTRAINT sends_run_contact UNIQUE (run_id, contact_id);
DROP INDEX sends_work;
CREATE INDEX sends_work ON sends(run_id, state, next_attempt_at);
CREATE INDEX sends_campaign ON sends(campaign_id, state);
