-- Journeys (issue 19), SQLite dialect. Keep in step with
-- migrations/postgres/0021_journeys.sql (same tables and columns).
--
-- A journey is a file in campaigns/ (src/campaign/journey.rs); the database
-- keeps where each contact stands in it, so a restart resumes exactly
-- there, and what each step did. docs/JOURNEYS.md.

-- One row per journey file, keyed by its id. `scanned_to` is how far the
-- trigger's sources (sign-ups, consent grants, events) have been read: the
-- next tick reads from a little before it (late commits), and enrolments
-- are unique, so reading twice enrols nobody twice.
CREATE TABLE journeys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    file_path   TEXT    NOT NULL,
    file_hash   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    scanned_to  INTEGER NOT NULL
);

-- A contact's walk through a journey. `entry` counts the contact's
-- entries (1 unless the journey allows re-entry); `entry_key` names what
-- enrolled them (the sign-up, the grant, the event, the day), so one
-- trigger enrols once. `step` is the id of the step the contact is at, to
-- run at `next_at`; every move is a conditional UPDATE on the old step, so
-- two nodes never apply a step twice. A worker holds the rows it is moving
-- with a lease (`claimed_by`, `lease_until`) that lapses if it dies.
CREATE TABLE journey_enrolments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    journey_id   INTEGER NOT NULL REFERENCES journeys(id),
    contact_id   INTEGER NOT NULL REFERENCES contacts(id),
    entry        INTEGER NOT NULL CHECK (entry >= 1),
    entry_key    TEXT    NOT NULL,
    step         TEXT    NOT NULL,
    next_at      INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('active', 'left')),
    left_reason  TEXT    CHECK (left_reason IN ('completed', 'unsubscribed', 'suppressed',
                     'converted', 'step_removed')),
    entered_at   INTEGER NOT NULL,
    left_at      INTEGER,
    -- The send row of the contact's last message in this journey, for
    -- "opened / clicked the previous step".
    last_send_id INTEGER REFERENCES sends(id),
    claimed_by   TEXT,
    lease_until  INTEGER,
    updated_at   INTEGER NOT NULL,
    CHECK ((state = 'left') = (left_at IS NOT NULL)),
    CHECK ((state = 'left') = (left_reason IS NOT NULL)),
    UNIQUE (journey_id, contact_id, entry),
    UNIQUE (journey_id, contact_id, entry_key)
);
CREATE INDEX journey_enrolments_due ON journey_enrolments(journey_id, state, next_at);
CREATE INDEX journey_enrolments_contact ON journey_enrolments(contact_id);

-- What each step did to whom, once: the journey's own log (tags, which the
-- contact change log does not cover, are recorded here; attribute changes
-- are in contact_changes too, with the journey and step as origin).
CREATE TABLE journey_actions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    enrolment_id  INTEGER NOT NULL REFERENCES journey_enrolments(id),
    step          TEXT    NOT NULL,
    action        TEXT    NOT NULL CHECK (action IN ('enter', 'wait', 'wait_until', 'send', 'branch',
                      'tag', 'untag', 'set', 'end', 'leave')),
    detail        TEXT,
    occurred_at   INTEGER NOT NULL
);
CREATE INDEX journey_actions_enrolment ON journey_actions(enrolment_id, id);

-- A journey's send step is a campaign whose runs have the trigger
-- 'journey' (migration 0019 admits it).
