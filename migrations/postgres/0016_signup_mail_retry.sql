-- The sign-up confirmation mail leaves the request (issue 21): `cartero
-- serve` sends it from a background task and retries it, and the pending
-- row is the durable state, so a node that stops loses nothing (another
-- node, or the next start, sends what is due). PostgreSQL dialect; keep in step
-- with migrations/sqlite/0016_signup_mail_retry.sql.

-- Attempts made so far (a permanent refusal sets it to the limit).
ALTER TABLE signups ADD COLUMN mail_attempts BIGINT NOT NULL DEFAULT 0;
-- No attempt before this time (ms since the epoch); NULL: due now. A node
-- that claims the row moves it forward first, so two nodes never send the
-- same attempt and a node that dies mid-send is retried after it.
ALTER TABLE signups ADD COLUMN mail_due_at BIGINT;
CREATE INDEX signups_unmailed ON signups(mail_due_at) WHERE mailed_at IS NULL AND state = 'pending';
