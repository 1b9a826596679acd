-- The warm-up plan (issue 19; `[warmup]` in cartero.toml). PostgreSQL dialect;
-- keep in step with migrations/sqlite/0026_warmup.sql.
--
-- One row per day of the plan: the day's cap and how much of it claims
-- have taken, across every campaign, journey and node. A claim reserves
-- its rows here first (one conditional UPDATE, so two nodes never both
-- take the last of a day) and gives back what it did not send.
CREATE TABLE warmup_days (
    day        TEXT    NOT NULL PRIMARY KEY,   -- the plan's local date, YYYY-MM-DD
    cap        BIGINT  NOT NULL CHECK (cap >= 0),
    used       BIGINT  NOT NULL DEFAULT 0 CHECK (used >= 0),
    -- What the last reservation got (read back by the statement itself).
    last_grant BIGINT  NOT NULL DEFAULT 0
);
