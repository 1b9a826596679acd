-- Keep in step with migrations/postgres/0006_send_tracking.sql.
--
-- Whether the message of a send carried open or click tracking: 1 when the
-- campaign's [tracking] asked for it and [serve] was configured (without
-- [serve] no pixel and no click redirect are added), 0 when it did not.
-- Set by `campaign send` for the rows it is about to deliver. NULL on rows
-- sent before this column existed: unknown, so no evidence either way.
-- `hygiene run --sunset-days` counts silence only after tracked sends
-- (docs/FEEDBACK.md).
ALTER TABLE sends ADD COLUMN tracked INTEGER CHECK (tracked IS NULL OR tracked IN (0, 1));

-- Hygiene asks, per contact, for the first accepted tracked send.
CREATE INDEX sends_tracked_by_contact ON sends(contact_id, created_at) WHERE tracked = 1;
