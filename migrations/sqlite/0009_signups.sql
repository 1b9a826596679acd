-- Sign-up with double opt-in (issue 21), SQLite dialect. Keep in step with
-- migrations/postgres/0009_signups.sql (same tables and columns).

-- A sign-up waiting for its confirmation. The address lives here, not in
-- `contacts`, until the person confirms: an unconfirmed address is on no
-- list and gets nothing but the one confirmation mail. The token in the
-- mail is random; only its SHA-256 is stored.
CREATE TABLE signups (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash    TEXT    NOT NULL UNIQUE,
    list_id       INTEGER NOT NULL REFERENCES lists(id),
    email         TEXT    NOT NULL,
    name          TEXT,
    -- The consent text shown by the form (a version id or its hash).
    text_version  TEXT,
    -- Asked for per-person tracking too (the optional checkbox).
    tracking      INTEGER NOT NULL DEFAULT 0 CHECK (tracking IN (0, 1)),
    state         TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'confirmed')),
    signed_up_at  INTEGER NOT NULL,
    signup_ip     TEXT,
    signup_ua     TEXT,
    mailed_at     INTEGER,
    confirmed_at  INTEGER,
    confirm_ip    TEXT,
    confirm_ua    TEXT,
    contact_id    INTEGER REFERENCES contacts(id),
    CHECK ((state = 'confirmed') = (confirmed_at IS NOT NULL))
);
CREATE INDEX signups_email ON signups(email, list_id);

-- Fixed-window request counters shared by every `cartero serve` node (the
-- per-IP sign-up limit). `bucket` is a keyed hash, never the address.
CREATE TABLE rate_limits (
    bucket       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
