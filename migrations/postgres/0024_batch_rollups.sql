-- Unique counts under concurrent writers (PostgreSQL).
--
-- `cartero serve` runs three event writers on PostgreSQL. The rollup
-- trigger of events (0015, ordered in 0022) counts a send in report_uniques
-- (and a send of a link in report_link_totals) when report_sends
-- (report_links) has no row for it yet; two writers storing the first hits
-- of the same send at once each saw no row (neither had committed), both
-- counted it, and the second's upsert, which waits for the first's row
-- lock, added its count on top: tests/serve.rs found 4 unique opens of 2
-- recipients where `cartero report rebuild` computes 2. The trigger now
-- takes a transaction advisory lock first, so each statement's checks run
-- on a snapshot that holds every earlier writer's rows. Writers already
-- waited for each other at these upserts' row locks (the same rows: one
-- campaign, one hour) until commit; the lock moves that wait before the
-- checks. Same body as 0022 otherwise.
--
-- SQLite has one writer at a time; its 0024 has the serve writer write
-- these rollups once per batch.

CREATE OR REPLACE FUNCTION events_report() RETURNS trigger AS $$
BEGIN
    -- One events statement's rollups at a time, each taken with a snapshot
    -- from after the previous one committed ("rollups" in ASCII names the
    -- lock). Read committed gives every statement of this function a new
    -- snapshot, so the checks below, run after the lock, see the
    -- report_sends and report_links rows of every writer before.
    PERFORM pg_advisory_xact_lock(32210658811801715);
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

-- Unused on PostgreSQL (its rollup trigger is per statement, so the serve
-- writer never defers it); kept so both backends have the same tables
-- (tests/import.rs compares them), as SQLite's 0024 creates it.
CREATE TABLE report_batch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    deferred INTEGER NOT NULL CHECK (deferred IN (0, 1))
);
INSERT INTO report_batch (id, deferred) VALUES (1, 0);
