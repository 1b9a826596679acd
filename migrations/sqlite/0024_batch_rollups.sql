-- The serve writer keeps the rollups of its opens and clicks itself, once
-- per batch (SQLite). Under a flood of hits the per-row trigger of 0015 ran
-- five upserts and a dozen JSON reads per click (three upserts per open) on
-- the single writer, the one thread that stores every hit; the writer now
-- groups the batch (a few rows: one per campaign, hour and class, per send,
-- per link) and upserts those, in the same transaction, with the trigger's
-- definitions (src/store/track.rs, `write_rollups`).
--
-- The trigger stays for every other writer of `events` (feedback ingest,
-- tests, a restore): it stands aside only while `report_batch.deferred` is
-- 1, which the serve writer sets and clears inside its own transaction
-- (SQLite has one writer at a time, so no other writer ever sees it set,
-- and a rollback clears it too). Same body as 0015 otherwise.
--
-- PostgreSQL's trigger is already per statement: its 0024 has the table
-- only (unused), and a lock against double-counted unique sends.

CREATE TABLE report_batch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    deferred INTEGER NOT NULL CHECK (deferred IN (0, 1))
);
INSERT INTO report_batch (id, deferred) VALUES (1, 0);

DROP TRIGGER events_report;

CREATE TRIGGER events_report AFTER INSERT ON events
WHEN NEW.campaign_id IS NOT NULL AND (SELECT deferred FROM report_batch WHERE id = 1) = 0
BEGIN
    INSERT INTO report_hourly (campaign_id, kind, machine, hour_at, events)
    VALUES (NEW.campaign_id, NEW.kind,
            CASE WHEN json_valid(NEW.data) AND json_extract(NEW.data, '$.class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END,
            NEW.occurred_at / 3600000 * 3600000, 1)
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = events + 1;

    -- Before report_sends: a send counts once, on its first event.
    INSERT INTO report_uniques (campaign_id, kind, machine, sends)
    SELECT NEW.campaign_id, k.kind, m.m, 1
    FROM (SELECT NEW.kind AS kind UNION ALL SELECT 'bounce' WHERE NEW.kind IN ('bounce_hard', 'bounce_soft')) k,
         (SELECT CASE WHEN json_valid(NEW.data) AND json_extract(NEW.data, '$.class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END AS m UNION ALL SELECT 2) m
    WHERE NEW.send_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM report_sends r
        WHERE r.send_id = NEW.send_id AND r.kind = k.kind AND (m.m = 2 OR r.machine = m.m))
    ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = sends + 1;

    INSERT INTO report_link_totals (campaign_id, url, machine, sends, events)
    SELECT NEW.campaign_id, json_extract(NEW.data, '$.url'), CASE WHEN json_valid(NEW.data) AND json_extract(NEW.data, '$.class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END,
           CASE WHEN EXISTS (SELECT 1 FROM report_links r WHERE r.campaign_id = NEW.campaign_id
                AND r.url = json_extract(NEW.data, '$.url') AND r.machine = CASE WHEN json_valid(NEW.data) AND json_extract(NEW.data, '$.class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END AND r.send_id = NEW.send_id)
                THEN 0 ELSE 1 END, 1
    WHERE NEW.kind = 'click' AND NEW.send_id IS NOT NULL AND json_valid(NEW.data)
      AND json_type(NEW.data, '$.url') = 'text'
    ON CONFLICT (campaign_id, url, machine) DO UPDATE
        SET sends = sends + excluded.sends, events = events + 1;

    INSERT INTO report_sends (send_id, kind, machine, campaign_id, first_at, events)
    SELECT NEW.send_id, k.kind,
           CASE WHEN json_valid(NEW.data) AND json_extract(NEW.data, '$.class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END,
           NEW.campaign_id, NEW.occurred_at, 1
    FROM (SELECT NEW.kind AS kind UNION ALL SELECT 'bounce' WHERE NEW.kind IN ('bounce_hard', 'bounce_soft')) k
    WHERE NEW.send_id IS NOT NULL
    ON CONFLICT (send_id, kind, machine) DO UPDATE
        SET events = events + 1, first_at = min(first_at, excluded.first_at);

    INSERT INTO report_links (campaign_id, url, machine, send_id, events)
    SELECT NEW.campaign_id, json_extract(NEW.data, '$.url'),
           CASE WHEN json_extract(NEW.data, '$.class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END,
           NEW.send_id, 1
    WHERE NEW.kind = 'click' AND NEW.send_id IS NOT NULL AND json_valid(NEW.data)
      AND json_type(NEW.data, '$.url') = 'text'
    ON CONFLICT (campaign_id, url, machine, send_id) DO UPDATE SET events = events + 1;

    INSERT INTO report_reasons (campaign_id, kind, reason, events)
    SELECT NEW.campaign_id, NEW.kind,
           COALESCE(CASE WHEN json_valid(NEW.data) AND json_type(NEW.data, '$.reason') = 'text'
                         THEN json_extract(NEW.data, '$.reason') END, 'unknown'), 1
    WHERE NEW.kind IN ('bounce_hard', 'bounce_soft')
    ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = events + 1;

    INSERT INTO report_domains (campaign_id, domain, outcome, events)
    SELECT NEW.campaign_id, c.domain, NEW.kind, 1 FROM contacts c
    WHERE c.id = NEW.contact_id AND NEW.kind IN ('bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe')
    ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = events + 1;
END;
