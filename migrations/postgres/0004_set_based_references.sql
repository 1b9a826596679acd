-- Import speed on PostgreSQL (issue 2): a 1M-row import spent about 40% of
-- the server's time in foreign-key checks. PostgreSQL checks a foreign key
-- with one query per inserted row (an executor start-up, an index probe and
-- a row lock each, ~30 us), and an import writes five checked references
-- per contact (its tags, its list state, its ledger entry). The three tables
-- an import fills keep the same guarantees here, checked per statement over
-- the statement's rows (`contacts_exist` below), a few microseconds a
-- contact at most (`bench/import.sh`; docs/PERFORMANCE.md has the figures).
--
-- A per-row foreign key also locks the parent row so that no concurrent
-- transaction deletes it before commit. Contacts and lists are never
-- deleted (erasure is a status and the ledger keeps its references), so
-- instead the database refuses to delete or truncate them or to change
-- their ids, and a check that sees the parent sees it for good.
--
-- Every other reference to contacts (sends, events, status changes, flags)
-- stays a declarative foreign key: those rows are written a few at a time.

ALTER TABLE contact_lists
    DROP CONSTRAINT contact_lists_contact_id_fkey,
    DROP CONSTRAINT contact_lists_list_id_fkey;
ALTER TABLE contact_tags
    DROP CONSTRAINT contact_tags_contact_id_fkey;
ALTER TABLE consent_events
    DROP CONSTRAINT consent_events_contact_id_fkey,
    DROP CONSTRAINT consent_events_list_id_fkey;

-- `contacts_exist` is the check of a statement's contact ids. The ids an
-- import writes are mostly consecutive (the contacts it just inserted), and
-- ids are unique: when the rows of `contacts` between the smallest and the
-- largest id number exactly max - min + 1, every id in between exists, and
-- one walk along the primary key proves it for the whole statement. When
-- the range is sparse or has a gap, each distinct id is probed.
--
-- The checks run with sequential scans and hash and merge joins disabled:
-- PL/pgSQL caches the plan of its first call, often made when `contacts`
-- is nearly empty, and a cached sequential scan of a table that then grows
-- to a million rows would make every later statement of an import scan it.
-- With those settings the plans are index scans of the primary keys.
CREATE FUNCTION contacts_exist(ids BIGINT[], tbl TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
    lo BIGINT;
    hi BIGINT;
    missing BIGINT;
BEGIN
    SELECT count(*), min(k), max(k) INTO n, lo, hi
      FROM (SELECT DISTINCT k FROM unnest(ids) AS u (k)) d;
    IF n = 0 THEN
        RETURN;
    END IF;
    IF hi - lo < 2 * n
       AND (SELECT count(*) FROM contacts WHERE id BETWEEN lo AND hi) = hi - lo + 1 THEN
        RETURN;
    END IF;
    SELECT d.k INTO missing
      FROM (SELECT DISTINCT k FROM unnest(ids) AS u (k)) d
     WHERE NOT EXISTS (SELECT 1 FROM contacts p WHERE p.id = d.k)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates a reference: contact % does not exist',
            tbl, missing USING ERRCODE = 'foreign_key_violation';
    END IF;
END $$ SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

CREATE FUNCTION references_contacts_and_lists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing BIGINT;
BEGIN
    PERFORM contacts_exist((SELECT array_agg(contact_id) FROM new_rows), TG_TABLE_NAME);
    SELECT n.k INTO missing
      FROM (SELECT DISTINCT list_id AS k FROM new_rows WHERE list_id IS NOT NULL) n
     WHERE NOT EXISTS (SELECT 1 FROM lists p WHERE p.id = n.k)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates a reference: list % does not exist',
            TG_TABLE_NAME, missing USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$ SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

CREATE FUNCTION references_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM contacts_exist((SELECT array_agg(contact_id) FROM new_rows), TG_TABLE_NAME);
    RETURN NULL;
END $$;

-- A trigger with a transition table names one event, hence two per table.
CREATE TRIGGER contact_lists_references_insert AFTER INSERT ON contact_lists
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION references_contacts_and_lists();
CREATE TRIGGER contact_lists_references_update AFTER UPDATE ON contact_lists
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION references_contacts_and_lists();
CREATE TRIGGER consent_events_references_insert AFTER INSERT ON consent_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION references_contacts_and_lists();
CREATE TRIGGER contact_tags_references_insert AFTER INSERT ON contact_tags
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION references_contacts();
CREATE TRIGGER contact_tags_references_update AFTER UPDATE ON contact_tags
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION references_contacts();

CREATE FUNCTION never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted and keep their ids (an erased contact keeps its row, status "erased")',
        TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER contacts_never_deleted BEFORE DELETE OR TRUNCATE ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION never_deleted();
CREATE TRIGGER contacts_keep_ids BEFORE UPDATE OF id ON contacts
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION never_deleted();
CREATE TRIGGER lists_never_deleted BEFORE DELETE OR TRUNCATE ON lists
    FOR EACH STATEMENT EXECUTE FUNCTION never_deleted();
CREATE TRIGGER lists_keep_ids BEFORE UPDATE OF id ON lists
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION never_deleted();

-- Nearly every contact is active: an index of the other statuses finds the
-- bounced, complained or erased ones, and inserting an active contact no
-- longer adds an entry to an index that could not serve `status = 'active'`.
DROP INDEX contacts_status;
CREATE INDEX contacts_status ON contacts (status) WHERE status <> 'active';

-- Byte order for the indexed text a contact carries. Addresses, domains and
-- tags are compared for equality and prefix, never sorted for people, and
-- the database's locale would make every comparison in their indexes a
-- strcoll() (an import descends those indexes millions of times).
ALTER TABLE contacts
    ALTER COLUMN email TYPE TEXT COLLATE "C",
    ALTER COLUMN domain TYPE TEXT COLLATE "C";
ALTER TABLE contact_tags
    ALTER COLUMN tag TYPE TEXT COLLATE "C";

-- The ledger's hashes were UNIQUE: an index over random 64-character keys,
-- one random leaf page per entry. Nothing looks an entry up by its hash, and
-- no uniqueness check could catch a fork (two entries after the same head
-- have different hashes); appends are serialised by an advisory lock and
-- `verify_chain` finds any break.
ALTER TABLE consent_events DROP CONSTRAINT consent_events_hash_key;
