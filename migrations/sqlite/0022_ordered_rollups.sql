-- No change on SQLite: its single writer serialises the rollup triggers,
-- so they cannot deadlock. PostgreSQL's 0022 orders its rollup upserts; the
-- file is here so both backends number their migrations alike.
SELECT 1;
