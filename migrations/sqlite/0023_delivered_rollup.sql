-- `delivered` from a rollup (issue 18), SQLite dialect. Keep in step with
-- migrations/postgres/0023_delivered_rollup.sql.
--
-- A campaign's `delivered` is its accepted sends less the accepted sends
-- that have a bounce event (docs/REPORTS.md). The report counted the
-- second part by joining the campaign's bounced sends (report_sends) with
-- `sends`: a read that grows with the bounces, 1 s at 10M events on
-- PostgreSQL. It is now one report_uniques row per campaign, kind
-- `bounced_accepted`, machine 0, kept by the two triggers below:
--
-- * a send's first bounce event, while the send is accepted: +1;
-- * a send with a bounce event moving into accepted: +1, out of it: -1.
--
-- Both look at `events` through events_send (a send has a handful of
-- events), not at report_sends, so they hold whatever order the triggers on
-- `events` fire in and however the other rollups are fed. The events
-- trigger is a trigger of its own: events_report (0015) is left as it is.
-- `cartero report rebuild` recomputes the row (src/report/rollup.rs).

CREATE TRIGGER events_report_bounced_accepted AFTER INSERT ON events
WHEN NEW.campaign_id IS NOT NULL AND NEW.send_id IS NOT NULL AND NEW.kind IN ('bounce_hard', 'bounce_soft')
BEGIN
    INSERT INTO report_uniques (campaign_id, kind, machine, sends)
    SELECT NEW.campaign_id, 'bounced_accepted', 0, 1
    WHERE (SELECT state FROM sends WHERE id = NEW.send_id) = 'accepted'
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.send_id = NEW.send_id AND e.id <> NEW.id
                      AND e.campaign_id IS NOT NULL AND e.kind IN ('bounce_hard', 'bounce_soft'))
    ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = sends + excluded.sends;
END;

CREATE TRIGGER sends_report_bounced_accepted AFTER UPDATE OF state ON sends
WHEN OLD.state IS NOT NEW.state AND (OLD.state = 'accepted' OR NEW.state = 'accepted')
BEGIN
    INSERT INTO report_uniques (campaign_id, kind, machine, sends)
    SELECT b.campaign_id, 'bounced_accepted', 0, CASE WHEN NEW.state = 'accepted' THEN 1 ELSE -1 END
    FROM (SELECT min(e.campaign_id) AS campaign_id FROM events e
          WHERE e.send_id = NEW.id AND e.campaign_id IS NOT NULL AND e.kind IN ('bounce_hard', 'bounce_soft')) b
    WHERE b.campaign_id IS NOT NULL
    ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = sends + excluded.sends;
END;
