-- Opens and clicks (issue 21): `cartero serve` writes them in batches of up
-- to a thousand rows, and PostgreSQL checked each row's three foreign keys
-- (contact, campaign, send) with one query and one row lock each. Every
-- hit of a message names the same contact, campaign and send, so a flood
-- of hits took thousands of share locks a second on the same three rows:
-- 100,000 inserted events took 17.8 s with the foreign keys and 7.2 s
-- without them on the shared 2-core machine (docs/PERFORMANCE.md). As
-- migration 0004 did for the import's tables, the references are checked
-- once per statement over its rows, and the parents can no longer go away
-- under a check: sends and campaigns, like contacts and lists, are never
-- deleted and keep their ids (nothing in cartero deletes them; a send is
-- the record that a message went out).

ALTER TABLE events
    DROP CONSTRAINT events_contact_id_fkey,
    DROP CONSTRAINT events_campaign_id_fkey,
    DROP CONSTRAINT events_send_id_fkey;

CREATE FUNCTION events_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing BIGINT;
BEGIN
    PERFORM contacts_exist(
        (SELECT array_agg(contact_id) FROM new_rows WHERE contact_id IS NOT NULL), TG_TABLE_NAME);
    SELECT n.k INTO missing
      FROM (SELECT DISTINCT send_id AS k FROM new_rows WHERE send_id IS NOT NULL) n
     WHERE NOT EXISTS (SELECT 1 FROM sends p WHERE p.id = n.k)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates a reference: send % does not exist',
            TG_TABLE_NAME, missing USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT n.k INTO missing
      FROM (SELECT DISTINCT campaign_id AS k FROM new_rows WHERE campaign_id IS NOT NULL) n
     WHERE NOT EXISTS (SELECT 1 FROM campaigns p WHERE p.id = n.k)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "%" violates a reference: campaign % does not exist',
            TG_TABLE_NAME, missing USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$ SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;

CREATE TRIGGER events_references_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_references();
CREATE TRIGGER events_references_update AFTER UPDATE ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION events_references();

CREATE TRIGGER sends_never_deleted BEFORE DELETE OR TRUNCATE ON sends
    FOR EACH STATEMENT EXECUTE FUNCTION never_deleted();
CREATE TRIGGER sends_keep_ids BEFORE UPDATE OF id ON sends
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION never_deleted();
CREATE TRIGGER campaigns_never_deleted BEFORE DELETE OR TRUNCATE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION never_deleted();
CREATE TRIGGER campaigns_keep_ids BEFORE UPDATE OF id ON campaigns
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION never_deleted();
