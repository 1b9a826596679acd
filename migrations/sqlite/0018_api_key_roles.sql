-- Roles of API keys (issue 18), SQLite dialect. Keep in step with
-- migrations/postgres/0018_api_key_roles.sql (same column and check).
--
-- What a key opens: `conversions` (POST /api/events and the postback URL,
-- every key made before this migration) or `admin-read` (the read-only
-- admin pages under /admin of `cartero serve`). One role per key, so a key
-- handed to a shop never opens the consent log and an officer's key never
-- records a purchase.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'conversions'
    CHECK (role IN ('conversions', 'admin-read'));
