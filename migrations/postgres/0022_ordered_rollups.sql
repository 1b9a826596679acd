-- Deadlocks between writers of the rollups (PostgreSQL only).
--
-- The statement-level triggers of migration 0015 upsert several rollup rows
-- per statement (one per campaign and domain, per hour, per reason...). Two
-- statements that touch the same rows in different orders deadlock: a claim
-- (pending -> sending) and a record of results (sending -> accepted) of the
-- same campaign, in two workers, each upsert report_domains rows of several
-- domains, and PostgreSQL aborted one with "deadlock detected" (CI, stop 24:
-- `campaign send` with two SMTP connections). Every upsert now inserts its
-- rows in the order of its conflict key, so all writers take the row locks
-- of one table in one order and wait for each other instead. The order of
-- the tables is the same for every call of a function (its statement).
--
-- Same bodies as 0015 otherwise.

CREATE OR REPLACE FUNCTION events_report() RETURNS trigger AS $$
BEGIN
    WITH b AS (
        SELECT n.campaign_id, n.send_id, n.contact_id, n.kind, n.occurred_at,
               CASE WHEN report_json_text(n.data, 'class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END AS machine,
               CASE WHEN n.kind = 'click' THEN report_json_text(n.data, 'url') END AS url,
               CASE WHEN n.kind IN ('bounce_hard', 'bounce_soft') THEN report_json_text(n.data, 'reason') END AS reason
        FROM new_rows n WHERE n.campaign_id IS NOT NULL
    ), k AS (
        SELECT b.campaign_id, b.send_id, k.kind, b.machine, b.occurred_at
        FROM b CROSS JOIN LATERAL
             (SELECT b.kind AS kind UNION ALL SELECT 'bounce' WHERE b.kind IN ('bounce_hard', 'bounce_soft')) k
        WHERE b.send_id IS NOT NULL
    ), uniques AS (
        -- Every sub-statement sees report_sends as it was before this
        -- statement: a send counts once, on its first event.
        INSERT INTO report_uniques AS t (campaign_id, kind, machine, sends)
        SELECT x.campaign_id, x.kind, x.m, count(DISTINCT x.send_id)
        FROM (SELECT k.campaign_id, k.send_id, k.kind, m.m FROM k
              CROSS JOIN LATERAL (SELECT k.machine AS m UNION ALL SELECT 2) m) x
        WHERE NOT EXISTS (SELECT 1 FROM report_sends r
                          WHERE r.send_id = x.send_id AND r.kind = x.kind AND (x.m = 2 OR r.machine = x.m))
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = t.sends + EXCLUDED.sends
        RETURNING 1
    ), link_totals AS (
        INSERT INTO report_link_totals AS t (campaign_id, url, machine, sends, events)
        SELECT campaign_id, url, machine, count(DISTINCT new_send), count(*)
        FROM (SELECT b.campaign_id, b.url, b.machine,
                     CASE WHEN EXISTS (SELECT 1 FROM report_links r WHERE r.campaign_id = b.campaign_id
                          AND r.url = b.url AND r.machine = b.machine AND r.send_id = b.send_id)
                          THEN NULL ELSE b.send_id END AS new_send
              FROM b WHERE b.kind = 'click' AND b.send_id IS NOT NULL AND b.url IS NOT NULL) x
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, url, machine) DO UPDATE
            SET sends = t.sends + EXCLUDED.sends, events = t.events + EXCLUDED.events
        RETURNING 1
    ), sends AS (
        INSERT INTO report_sends AS t (send_id, kind, machine, campaign_id, first_at, events)
        SELECT b.send_id, k.kind, b.machine, min(b.campaign_id), min(b.occurred_at), count(*)
        FROM b CROSS JOIN LATERAL
             (SELECT b.kind AS kind UNION ALL SELECT 'bounce' WHERE b.kind IN ('bounce_hard', 'bounce_soft')) k
        WHERE b.send_id IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (send_id, kind, machine) DO UPDATE
            SET events = t.events + EXCLUDED.events, first_at = least(t.first_at, EXCLUDED.first_at)
        RETURNING 1
    ), links AS (
        INSERT INTO report_links AS t (campaign_id, url, machine, send_id, events)
        SELECT campaign_id, url, machine, send_id, count(*) FROM b
        WHERE kind = 'click' AND send_id IS NOT NULL AND url IS NOT NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (campaign_id, url, machine, send_id) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), reasons AS (
        INSERT INTO report_reasons AS t (campaign_id, kind, reason, events)
        SELECT campaign_id, kind, COALESCE(reason, 'unknown'), count(*) FROM b
        WHERE kind IN ('bounce_hard', 'bounce_soft') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), domains AS (
        INSERT INTO report_domains AS t (campaign_id, domain, outcome, events)
        SELECT b.campaign_id, c.domain, b.kind, count(*) FROM b JOIN contacts c ON c.id = b.contact_id
        WHERE b.kind IN ('bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    )
    INSERT INTO report_hourly AS t (campaign_id, kind, machine, hour_at, events)
    SELECT campaign_id, kind, machine, occurred_at / 3600000 * 3600000, count(*) FROM b GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = t.events + EXCLUDED.events;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION sends_report_insert() RETURNS trigger AS $$
BEGIN
    WITH d AS (
        SELECT n.campaign_id, n.contact_id, n.updated_at AS at, o.outcome, n.skip_reason, 1 AS delta
        FROM new_rows n CROSS JOIN LATERAL (SELECT 'recipients' AS outcome UNION ALL SELECT n.state) o
    ), domains AS (
        INSERT INTO report_domains AS t (campaign_id, domain, outcome, events)
        SELECT d.campaign_id, c.domain, d.outcome, sum(d.delta) FROM d JOIN contacts c ON c.id = d.contact_id
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), reasons AS (
        INSERT INTO report_reasons AS t (campaign_id, kind, reason, events)
        SELECT campaign_id, 'skipped', COALESCE(skip_reason, 'unknown'), sum(delta) FROM d
        WHERE outcome = 'skipped' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    )
    INSERT INTO report_hourly AS t (campaign_id, kind, machine, hour_at, events)
    SELECT campaign_id, 'sent', 0, at / 3600000 * 3600000, sum(delta) FROM d
    WHERE outcome = 'accepted' GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = t.events + EXCLUDED.events;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION sends_report_update() RETURNS trigger AS $$
BEGIN
    WITH d AS (
        SELECT x.campaign_id, x.contact_id, x.at, x.outcome, x.skip_reason, x.delta
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        CROSS JOIN LATERAL (
            SELECT o.campaign_id, o.contact_id, o.updated_at AS at, o.state AS outcome, o.skip_reason, -1 AS delta
            UNION ALL SELECT n.campaign_id, n.contact_id, n.updated_at, n.state, n.skip_reason, 1) x
        WHERE o.state IS DISTINCT FROM n.state
    ), domains AS (
        INSERT INTO report_domains AS t (campaign_id, domain, outcome, events)
        SELECT d.campaign_id, c.domain, d.outcome, sum(d.delta) FROM d JOIN contacts c ON c.id = d.contact_id
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), reasons AS (
        INSERT INTO report_reasons AS t (campaign_id, kind, reason, events)
        SELECT campaign_id, 'skipped', COALESCE(skip_reason, 'unknown'), sum(delta) FROM d
        WHERE outcome = 'skipped' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    )
    INSERT INTO report_hourly AS t (campaign_id, kind, machine, hour_at, events)
    SELECT campaign_id, 'sent', 0, at / 3600000 * 3600000, sum(delta) FROM d
    WHERE outcome = 'accepted' GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = t.events + EXCLUDED.events;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

