-- Reports and the contact change log (issue 18), SQLite dialect. Keep in
-- step with migrations/postgres/0015_reports_and_changes.sql (same tables
-- and columns).
--
-- The report_* tables are rollups of `events` and `sends`, kept by the
-- triggers below in the same transaction as the row that changes them, so
-- every writer (the serve writer, the send recorder, feedback ingest, and
-- any later one) keeps them without knowing of them. `cartero report
-- rebuild` recomputes them from the raw rows (src/report/rollup.rs holds the
-- same definitions as plain GROUP BY queries). docs/REPORTS.md.
--
-- `machine` is 1 for hits that `cartero serve` classified as a prefetch or
-- a scanner (events.data.class), 0 otherwise (people, mail providers' image
-- proxies, and every event that is not a hit).

-- Events per campaign, hour, kind and human/machine; kind `sent` counts
-- sends accepted by the receiving server in that hour.
CREATE TABLE report_hourly (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    kind        TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    hour_at     INTEGER NOT NULL,   -- start of the hour, ms since the epoch
    events      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, kind, machine, hour_at)
);

-- One row per send, kind and human/machine it had at least one event of:
-- the unique counts. Kind `bounce` is a hard or a soft bounce.
CREATE TABLE report_sends (
    send_id     INTEGER NOT NULL REFERENCES sends(id),
    kind        TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    first_at    INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (send_id, kind, machine)
);
CREATE INDEX report_sends_campaign ON report_sends(campaign_id, kind, machine);

-- Clicks per campaign, link target, human/machine and send.
CREATE TABLE report_links (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    url         TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    send_id     INTEGER NOT NULL REFERENCES sends(id),
    events      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, url, machine, send_id)
);

-- Skipped sends by skip reason, bounce events by classified reason.
CREATE TABLE report_reasons (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    kind        TEXT    NOT NULL CHECK (kind IN ('skipped', 'bounce_hard', 'bounce_soft')),
    reason      TEXT    NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, kind, reason)
);

-- Per campaign and recipient domain: recipients, sends by current state,
-- and feedback events. The domain is the contact's when the row changed.
CREATE TABLE report_domains (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    domain      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('recipients', 'pending', 'sending', 'accepted',
                    'deferred', 'failed', 'skipped', 'bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe')),
    events      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, domain, outcome)
);

-- The unique counts themselves, kept beside report_sends so a report reads
-- a few rows however many recipients engaged: sends per campaign, kind and
-- human (0), machine (1) or either (2).
CREATE TABLE report_uniques (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    kind        TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1, 2)),
    sends       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, kind, machine)
);

-- Per link: sends that clicked it and clicks, human or machine.
CREATE TABLE report_link_totals (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
    url         TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    sends       INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, url, machine)
);

CREATE TRIGGER events_report AFTER INSERT ON events WHEN NEW.campaign_id IS NOT NULL
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

CREATE TRIGGER sends_report_insert AFTER INSERT ON sends
BEGIN
    INSERT INTO report_domains (campaign_id, domain, outcome, events)
    SELECT NEW.campaign_id, c.domain, o.outcome, 1
    FROM contacts c, (SELECT 'recipients' AS outcome UNION ALL SELECT NEW.state) o
    WHERE c.id = NEW.contact_id
    ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = events + 1;

    INSERT INTO report_reasons (campaign_id, kind, reason, events)
    SELECT NEW.campaign_id, 'skipped', COALESCE(NEW.skip_reason, 'unknown'), 1
    WHERE NEW.state = 'skipped'
    ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = events + 1;

    INSERT INTO report_hourly (campaign_id, kind, machine, hour_at, events)
    SELECT NEW.campaign_id, 'sent', 0, NEW.updated_at / 3600000 * 3600000, 1
    WHERE NEW.state = 'accepted'
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = events + 1;
END;

CREATE TRIGGER sends_report_state AFTER UPDATE OF state ON sends WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO report_domains (campaign_id, domain, outcome, events)
    SELECT NEW.campaign_id, c.domain, o.outcome, o.delta
    FROM contacts c, (SELECT OLD.state AS outcome, -1 AS delta UNION ALL SELECT NEW.state, 1) o
    WHERE c.id = NEW.contact_id
    ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = events + excluded.events;

    INSERT INTO report_reasons (campaign_id, kind, reason, events)
    SELECT NEW.campaign_id, 'skipped', r.reason, r.delta
    FROM (SELECT COALESCE(OLD.skip_reason, 'unknown') AS reason, -1 AS delta WHERE OLD.state = 'skipped'
          UNION ALL SELECT COALESCE(NEW.skip_reason, 'unknown'), 1 WHERE NEW.state = 'skipped') r
    WHERE true
    ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = events + excluded.events;

    INSERT INTO report_hourly (campaign_id, kind, machine, hour_at, events)
    SELECT NEW.campaign_id, 'sent', 0, s.at / 3600000 * 3600000, s.delta
    FROM (SELECT OLD.updated_at AS at, -1 AS delta WHERE OLD.state = 'accepted'
          UNION ALL SELECT NEW.updated_at, 1 WHERE NEW.state = 'accepted') s
    WHERE true
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = events + excluded.events;
END;

-- The contact change log: every insert, every change of a field people
-- see or a status, and every erasure, with old and new value, when, and by
-- what (`origin`: the command and file, the HTTP request, the rule). Kept
-- by the triggers below; counters and timestamps are not logged. An
-- erasure blanks the values of the contact's earlier entries and records
-- that it happened, not what was erased.
CREATE TABLE contact_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  INTEGER NOT NULL REFERENCES contacts(id),
    field       TEXT    NOT NULL CHECK (field IN ('created', 'email', 'first_name', 'last_name', 'locale',
                    'timezone', 'attributes', 'status', 'status_reason', 'erased')),
    old_value   TEXT,
    new_value   TEXT,
    origin      TEXT,
    occurred_at INTEGER NOT NULL
);
CREATE INDEX contact_changes_contact ON contact_changes(contact_id, id);
CREATE INDEX contact_changes_time ON contact_changes(occurred_at);

-- What the current write transaction is doing, for the change log. SQLite
-- has one writer at a time; `Store::begin` clears it and the writers set
-- it (`store::changes::set_origin`). PostgreSQL uses a transaction-local
-- setting instead (`cartero.origin`).
CREATE TABLE change_origin (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    origin TEXT
);
INSERT INTO change_origin (id, origin) VALUES (1, NULL);

CREATE TRIGGER contacts_change_insert AFTER INSERT ON contacts
BEGIN
    INSERT INTO contact_changes (contact_id, field, old_value, new_value, origin, occurred_at)
    VALUES (NEW.id, 'created', NULL, NEW.email, (SELECT origin FROM change_origin WHERE id = 1),
           CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER contacts_change_update AFTER UPDATE ON contacts
WHEN OLD.email IS NOT NEW.email OR OLD.first_name IS NOT NEW.first_name OR OLD.last_name IS NOT NEW.last_name
  OR OLD.locale IS NOT NEW.locale OR OLD.timezone IS NOT NEW.timezone OR OLD.attributes IS NOT NEW.attributes
  OR OLD.status IS NOT NEW.status OR OLD.status_reason IS NOT NEW.status_reason
BEGIN
    INSERT INTO contact_changes (contact_id, field, old_value, new_value, origin, occurred_at)
    SELECT NEW.id, f.field, f.old, f.new, (SELECT origin FROM change_origin WHERE id = 1),
           CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM (SELECT 'email' AS field, OLD.email AS old, NEW.email AS new
          UNION ALL SELECT 'first_name', OLD.first_name, NEW.first_name
          UNION ALL SELECT 'last_name', OLD.last_name, NEW.last_name
          UNION ALL SELECT 'locale', OLD.locale, NEW.locale
          UNION ALL SELECT 'timezone', OLD.timezone, NEW.timezone
          UNION ALL SELECT 'attributes', OLD.attributes, NEW.attributes
          UNION ALL SELECT 'status', OLD.status, NEW.status
          UNION ALL SELECT 'status_reason', OLD.status_reason, NEW.status_reason) f
    WHERE f.old IS NOT f.new AND NEW.status <> 'erased';

    UPDATE contact_changes SET old_value = NULL, new_value = NULL
    WHERE contact_id = NEW.id AND NEW.status = 'erased' AND OLD.status <> 'erased';

    INSERT INTO contact_changes (contact_id, field, old_value, new_value, origin, occurred_at)
    SELECT NEW.id, f.field, f.old, f.new, (SELECT origin FROM change_origin WHERE id = 1),
           CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM (SELECT 'status' AS field, OLD.status AS old, NEW.status AS new
          UNION ALL SELECT 'erased', NULL, NULL) f
    WHERE NEW.status = 'erased' AND OLD.status <> 'erased';
END;
