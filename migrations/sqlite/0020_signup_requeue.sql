-- `cartero signup retry` (issue 21): an operator re-queues the confirmation
-- mails the background mailer gave up on. SQLite dialect; keep in step with
-- migrations/postgres/0020_signup_requeue.sql.

-- When the mail was last re-queued by hand (ms since the epoch); NULL:
-- never. The mailer stops trying a sign-up three days after it was made;
-- a re-queued one gets its three days from here instead, while
-- `signed_up_at` stays the time of the sign-up itself (the evidence, and
-- what `signup purge` ages by).
ALTER TABLE signups ADD COLUMN mail_requeued_at INTEGER;
