-- Journeys (issue 19), PostgreSQL dialect. Keep in step with
-- migrations/sqlite/0021_journeys.sql (same tables and columns), where the
-- comments are.

CREATE TABLE journeys (
    id          BIGSERIAL PRIMARY KEY,
    slug        TEXT   NOT NULL UNIQUE,
    name        TEXT   NOT NULL,
    file_path   TEXT   NOT NULL,
    file_hash   TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    scanned_to  BIGINT NOT NULL
);

CREATE TABLE journey_enrolments (
    id           BIGSERIAL PRIMARY KEY,
    journey_id   BIGINT NOT NULL REFERENCES journeys(id),
    contact_id   BIGINT NOT NULL REFERENCES contacts(id),
    entry        BIGINT NOT NULL CHECK (entry >= 1),
    entry_key    TEXT   NOT NULL,
    step         TEXT   NOT NULL,
    next_at      BIGINT NOT NULL,
    state        TEXT   NOT NULL CHECK (state IN ('active', 'left')),
    left_reason  TEXT   CHECK (left_reason IN ('completed', 'unsubscribed', 'suppressed',
                     'converted', 'step_removed')),
    entered_at   BIGINT NOT NULL,
    left_at      BIGINT,
    last_send_id BIGINT REFERENCES sends(id),
    claimed_by   TEXT,
    lease_until  BIGINT,
    updated_at   BIGINT NOT NULL,
    CHECK ((state = 'left') = (left_at IS NOT NULL)),
    CHECK ((state = 'left') = (left_reason IS NOT NULL)),
    UNIQUE (journey_id, contact_id, entry),
    UNIQUE (journey_id, contact_id, entry_key)
);
CREATE INDEX journey_enrolments_due ON journey_enrolments(journey_id, state, next_at);
CREATE INDEX journey_enrolments_contact ON journey_enrolments(contact_id);

CREATE TABLE journey_actions (
    id            BIGSERIAL PRIMARY KEY,
    enrolment_id  BIGINT NOT NULL REFERENCES journey_enrolments(id),
    step          TEXT   NOT NULL,
    action        TEXT   NOT NULL CHECK (action IN ('enter', 'wait', 'wait_until', 'send', 'branch',
                      'tag', 'untag', 'set', 'end', 'leave')),
    detail        TEXT,
    occurred_at   BIGINT NOT NULL
);
CREATE INDEX journey_actions_enrolment ON journey_actions(enrolment_id, id);
