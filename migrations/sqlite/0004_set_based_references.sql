-- Keep in step with migrations/postgres/0004_set_based_references.sql.
--
-- SQLite keeps its foreign keys: it checks one with a direct probe of the
-- parent's index, no query per row, so they cost an import little. The
-- rules PostgreSQL now enforces for its set-based checks hold here too, so
-- both backends refuse the same things: contacts and lists are never
-- deleted (erasure is a status, and the ledger keeps its references) and
-- keep their ids.

CREATE TRIGGER contacts_never_deleted BEFORE DELETE ON contacts
BEGIN
    SELECT RAISE(ABORT, 'contacts rows are never deleted and keep their ids (an erased contact keeps its row, status "erased")');
END;
CREATE TRIGGER contacts_keep_ids BEFORE UPDATE OF id ON contacts
WHEN OLD.id IS NOT NEW.id
BEGIN
    SELECT RAISE(ABORT, 'contacts rows are never deleted and keep their ids (an erased contact keeps its row, status "erased")');
END;
CREATE TRIGGER lists_never_deleted BEFORE DELETE ON lists
BEGIN
    SELECT RAISE(ABORT, 'lists rows are never deleted and keep their ids');
END;
CREATE TRIGGER lists_keep_ids BEFORE UPDATE OF id ON lists
WHEN OLD.id IS NOT NEW.id
BEGIN
    SELECT RAISE(ABORT, 'lists rows are never deleted and keep their ids');
END;

-- Nearly every contact is active: an index of the other statuses finds the
-- bounced, complained or erased ones, and inserting an active contact no
-- longer adds an entry to an index that could not serve `status = 'active'`.
DROP INDEX contacts_status;
CREATE INDEX contacts_status ON contacts (status) WHERE status <> 'active';

-- The ledger's hash stays UNIQUE here, unlike PostgreSQL: SQLite drops a
-- column constraint only by rebuilding the table, and the append-only ledger
-- is the one table not to copy and rename for a few percent of an import.
