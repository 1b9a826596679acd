-- `delivered` from a rollup (issue 18), PostgreSQL dialect. Keep in step
-- with migrations/sqlite/0023_delivered_rollup.sql, which says why.
--
-- One report_uniques row per campaign, kind `bounced_accepted`, machine 0:
-- the accepted sends that have a bounce event. Statement-level triggers of
-- their own, beside events_report and sends_report_update (0015, 0022),
-- which are left as they are; like 0022 they upsert in key order.

CREATE FUNCTION events_report_bounced_accepted() RETURNS trigger AS $$
BEGIN
    -- The sends whose every bounce event is in this statement: their first.
    INSERT INTO report_uniques AS t (campaign_id, kind, machine, sends)
    SELECT b.campaign_id, 'bounced_accepted', 0, count(*)
    FROM (SELECT n.send_id, min(n.campaign_id) AS campaign_id, count(*) AS here
          FROM new_rows n
          WHERE n.campaign_id IS NOT NULL AND n.send_id IS NOT NULL AND n.kind IN ('bounce_hard', 'bounce_soft')
          GROUP BY n.send_id) b
    JOIN sends s ON s.id = b.send_id AND s.state = 'accepted'
    WHERE (SELECT count(*) FROM events e WHERE e.send_id = b.send_id AND e.campaign_id IS NOT NULL
           AND e.kind IN ('bounce_hard', 'bounce_soft')) = b.here
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = t.sends + EXCLUDED.sends;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_report_bounced_accepted AFTER INSERT ON events
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION events_report_bounced_accepted();

CREATE FUNCTION sends_report_bounced_accepted() RETURNS trigger AS $$
BEGIN
    INSERT INTO report_uniques AS t (campaign_id, kind, machine, sends)
    SELECT b.campaign_id, 'bounced_accepted', 0, sum(CASE WHEN n.state = 'accepted' THEN 1 ELSE -1 END)
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    CROSS JOIN LATERAL (SELECT min(e.campaign_id) AS campaign_id FROM events e
                        WHERE e.send_id = n.id AND e.campaign_id IS NOT NULL
                          AND e.kind IN ('bounce_hard', 'bounce_soft')) b
    WHERE o.state IS DISTINCT FROM n.state AND (o.state = 'accepted' OR n.state = 'accepted')
      AND b.campaign_id IS NOT NULL
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = t.sends + EXCLUDED.sends;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sends_report_bounced_accepted AFTER UPDATE ON sends
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sends_report_bounced_accepted();
