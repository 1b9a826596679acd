-- Reports and the contact change log (issue 18), PostgreSQL dialect. Keep
-- in step with migrations/sqlite/0015_reports_and_changes.sql (same tables
-- and columns; the comments there say what each holds).
--
-- The rollups are kept by statement-level triggers over transition tables:
-- one aggregated upsert per INSERT or UPDATE statement, however many rows
-- it wrote (the serve writer inserts a batch of events in one statement).

CREATE TABLE report_hourly (
    campaign_id BIGINT  NOT NULL REFERENCES campaigns(id),
    kind        TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    hour_at     BIGINT  NOT NULL,
    events      BIGINT  NOT NULL,
    PRIMARY KEY (campaign_id, kind, machine, hour_at)
);

CREATE TABLE report_sends (
    send_id     BIGINT  NOT NULL REFERENCES sends(id),
    kind        TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    campaign_id BIGINT  NOT NULL REFERENCES campaigns(id),
    first_at    BIGINT  NOT NULL,
    events      BIGINT  NOT NULL,
    PRIMARY KEY (send_id, kind, machine)
);
CREATE INDEX report_sends_campaign ON report_sends(campaign_id, kind, machine);

CREATE TABLE report_links (
    campaign_id BIGINT  NOT NULL REFERENCES campaigns(id),
    url         TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    send_id     BIGINT  NOT NULL REFERENCES sends(id),
    events      BIGINT  NOT NULL,
    PRIMARY KEY (campaign_id, url, machine, send_id)
);

CREATE TABLE report_reasons (
    campaign_id BIGINT  NOT NULL REFERENCES campaigns(id),
    kind        TEXT    NOT NULL CHECK (kind IN ('skipped', 'bounce_hard', 'bounce_soft')),
    reason      TEXT    NOT NULL,
    events      BIGINT  NOT NULL,
    PRIMARY KEY (campaign_id, kind, reason)
);

CREATE TABLE report_domains (
    campaign_id BIGINT  NOT NULL REFERENCES campaigns(id),
    domain      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('recipients', 'pending', 'sending', 'accepted',
                    'deferred', 'failed', 'skipped', 'bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe')),
    events      BIGINT  NOT NULL,
    PRIMARY KEY (campaign_id, domain, outcome)
);

CREATE TABLE report_uniques (
    campaign_id BIGINT  NOT NULL REFERENCES campaigns(id),
    kind        TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1, 2)),
    sends       BIGINT  NOT NULL,
    PRIMARY KEY (campaign_id, kind, machine)
);

CREATE TABLE report_link_totals (
    campaign_id BIGINT  NOT NULL REFERENCES campaigns(id),
    url         TEXT    NOT NULL,
    machine     INTEGER NOT NULL CHECK (machine IN (0, 1)),
    sends       BIGINT  NOT NULL,
    events      BIGINT  NOT NULL,
    PRIMARY KEY (campaign_id, url, machine)
);

-- events.data is JSON written by cartero; anything else counts as human
-- and without a URL or reason rather than failing the insert.
-- PostgreSQL's JSON refuses \u0000 (a bounce's diagnostic may hold one):
-- such rows take the slow path, which drops the escape and never fails.
CREATE FUNCTION report_json_text_slow(data TEXT, key TEXT) RETURNS TEXT AS $$
BEGIN
    RETURN replace(data, '\u0000', '')::jsonb ->> key;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$ LANGUAGE plpgsql IMMUTABLE;

CREATE FUNCTION report_json_text(data TEXT, key TEXT) RETURNS TEXT AS $$
    SELECT CASE WHEN left(data, 1) = '{' AND right(data, 1) = '}'
                THEN CASE WHEN strpos(data, '\u0000') = 0 THEN data::jsonb ->> key
                          ELSE report_json_text_slow(data, key) END END
$$ LANGUAGE sql IMMUTABLE;

CREATE FUNCTION events_report() RETURNS trigger AS $$
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
        GROUP BY 1, 2, 3
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
        GROUP BY 1, 2, 3
        ON CONFLICT (campaign_id, url, machine) DO UPDATE
            SET sends = t.sends + EXCLUDED.sends, events = t.events + EXCLUDED.events
        RETURNING 1
    ), sends AS (
        INSERT INTO report_sends AS t (send_id, kind, machine, campaign_id, first_at, events)
        SELECT b.send_id, k.kind, b.machine, min(b.campaign_id), min(b.occurred_at), count(*)
        FROM b CROSS JOIN LATERAL
             (SELECT b.kind AS kind UNION ALL SELECT 'bounce' WHERE b.kind IN ('bounce_hard', 'bounce_soft')) k
        WHERE b.send_id IS NOT NULL GROUP BY 1, 2, 3
        ON CONFLICT (send_id, kind, machine) DO UPDATE
            SET events = t.events + EXCLUDED.events, first_at = least(t.first_at, EXCLUDED.first_at)
        RETURNING 1
    ), links AS (
        INSERT INTO report_links AS t (campaign_id, url, machine, send_id, events)
        SELECT campaign_id, url, machine, send_id, count(*) FROM b
        WHERE kind = 'click' AND send_id IS NOT NULL AND url IS NOT NULL GROUP BY 1, 2, 3, 4
        ON CONFLICT (campaign_id, url, machine, send_id) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), reasons AS (
        INSERT INTO report_reasons AS t (campaign_id, kind, reason, events)
        SELECT campaign_id, kind, COALESCE(reason, 'unknown'), count(*) FROM b
        WHERE kind IN ('bounce_hard', 'bounce_soft') GROUP BY 1, 2, 3
        ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), domains AS (
        INSERT INTO report_domains AS t (campaign_id, domain, outcome, events)
        SELECT b.campaign_id, c.domain, b.kind, count(*) FROM b JOIN contacts c ON c.id = b.contact_id
        WHERE b.kind IN ('bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe') GROUP BY 1, 2, 3
        ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    )
    INSERT INTO report_hourly AS t (campaign_id, kind, machine, hour_at, events)
    SELECT campaign_id, kind, machine, occurred_at / 3600000 * 3600000, count(*) FROM b GROUP BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = t.events + EXCLUDED.events;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_report AFTER INSERT ON events
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION events_report();

-- Sends: each row's change of state as (campaign, contact, time, state,
-- skip reason, +1 or -1) rows `d`, summed into the rollups.
CREATE FUNCTION sends_report_insert() RETURNS trigger AS $$
BEGIN
    WITH d AS (
        SELECT n.campaign_id, n.contact_id, n.updated_at AS at, o.outcome, n.skip_reason, 1 AS delta
        FROM new_rows n CROSS JOIN LATERAL (SELECT 'recipients' AS outcome UNION ALL SELECT n.state) o
    ), domains AS (
        INSERT INTO report_domains AS t (campaign_id, domain, outcome, events)
        SELECT d.campaign_id, c.domain, d.outcome, sum(d.delta) FROM d JOIN contacts c ON c.id = d.contact_id
        GROUP BY 1, 2, 3
        ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), reasons AS (
        INSERT INTO report_reasons AS t (campaign_id, kind, reason, events)
        SELECT campaign_id, 'skipped', COALESCE(skip_reason, 'unknown'), sum(delta) FROM d
        WHERE outcome = 'skipped' GROUP BY 1, 2, 3
        ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    )
    INSERT INTO report_hourly AS t (campaign_id, kind, machine, hour_at, events)
    SELECT campaign_id, 'sent', 0, at / 3600000 * 3600000, sum(delta) FROM d
    WHERE outcome = 'accepted' GROUP BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = t.events + EXCLUDED.events;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION sends_report_update() RETURNS trigger AS $$
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
        GROUP BY 1, 2, 3
        ON CONFLICT (campaign_id, domain, outcome) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    ), reasons AS (
        INSERT INTO report_reasons AS t (campaign_id, kind, reason, events)
        SELECT campaign_id, 'skipped', COALESCE(skip_reason, 'unknown'), sum(delta) FROM d
        WHERE outcome = 'skipped' GROUP BY 1, 2, 3
        ON CONFLICT (campaign_id, kind, reason) DO UPDATE SET events = t.events + EXCLUDED.events
        RETURNING 1
    )
    INSERT INTO report_hourly AS t (campaign_id, kind, machine, hour_at, events)
    SELECT campaign_id, 'sent', 0, at / 3600000 * 3600000, sum(delta) FROM d
    WHERE outcome = 'accepted' GROUP BY 1, 2, 3, 4
    ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = t.events + EXCLUDED.events;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sends_report_insert AFTER INSERT ON sends
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sends_report_insert();
CREATE TRIGGER sends_report_update AFTER UPDATE ON sends
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sends_report_update();

CREATE TABLE contact_changes (
    id          BIGSERIAL PRIMARY KEY,
    contact_id  BIGINT  NOT NULL REFERENCES contacts(id),
    field       TEXT    NOT NULL CHECK (field IN ('created', 'email', 'first_name', 'last_name', 'locale',
                    'timezone', 'attributes', 'status', 'status_reason', 'erased')),
    old_value   TEXT,
    new_value   TEXT,
    origin      TEXT,
    occurred_at BIGINT  NOT NULL
);
CREATE INDEX contact_changes_contact ON contact_changes(contact_id, id);
CREATE INDEX contact_changes_time ON contact_changes(occurred_at);

-- Unused on PostgreSQL (the origin is the transaction-local setting
-- `cartero.origin`); kept so both backends have the same tables.
CREATE TABLE change_origin (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    origin TEXT
);
INSERT INTO change_origin (id, origin) VALUES (1, NULL);

CREATE FUNCTION change_now() RETURNS BIGINT AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
$$ LANGUAGE sql;

CREATE FUNCTION contacts_change_insert() RETURNS trigger AS $$
BEGIN
    INSERT INTO contact_changes (contact_id, field, old_value, new_value, origin, occurred_at)
    SELECT n.id, 'created', NULL, n.email, NULLIF(current_setting('cartero.origin', true), ''), change_now()
    FROM new_rows n;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER contacts_change_insert AFTER INSERT ON contacts
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION contacts_change_insert();

CREATE FUNCTION contacts_change_update() RETURNS trigger AS $$
DECLARE
    origin TEXT := NULLIF(current_setting('cartero.origin', true), '');
BEGIN
    IF NEW.status = 'erased' THEN
        IF OLD.status <> 'erased' THEN
            UPDATE contact_changes SET old_value = NULL, new_value = NULL WHERE contact_id = NEW.id;
            INSERT INTO contact_changes (contact_id, field, old_value, new_value, origin, occurred_at)
            VALUES (NEW.id, 'status', OLD.status, NEW.status, origin, change_now()),
                   (NEW.id, 'erased', NULL, NULL, origin, change_now());
        END IF;
        RETURN NULL;
    END IF;
    INSERT INTO contact_changes (contact_id, field, old_value, new_value, origin, occurred_at)
    SELECT NEW.id, f.field, f.old, f.new, origin, change_now()
    FROM (VALUES ('email', OLD.email, NEW.email),
                 ('first_name', OLD.first_name, NEW.first_name),
                 ('last_name', OLD.last_name, NEW.last_name),
                 ('locale', OLD.locale, NEW.locale),
                 ('timezone', OLD.timezone, NEW.timezone),
                 ('attributes', OLD.attributes::text, NEW.attributes::text),
                 ('status', OLD.status, NEW.status),
                 ('status_reason', OLD.status_reason, NEW.status_reason)) AS f (field, old, new)
    WHERE f.old IS DISTINCT FROM f.new;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER contacts_change_update AFTER UPDATE ON contacts FOR EACH ROW
WHEN (OLD.email IS DISTINCT FROM NEW.email OR OLD.first_name IS DISTINCT FROM NEW.first_name
   OR OLD.last_name IS DISTINCT FROM NEW.last_name OR OLD.locale IS DISTINCT FROM NEW.locale
   OR OLD.timezone IS DISTINCT FROM NEW.timezone OR OLD.attributes IS DISTINCT FROM NEW.attributes
   OR OLD.status IS DISTINCT FROM NEW.status OR OLD.status_reason IS DISTINCT FROM NEW.status_reason)
EXECUTE FUNCTION contacts_change_update();
