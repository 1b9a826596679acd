-- A send's acceptance stamps the contact's counters in the same statement,
-- so recording a result is one write instead of a transaction of two.
CREATE FUNCTION sends_accepted_stats() RETURNS trigger AS $$
BEGIN
    UPDATE contacts SET last_sent_at = NEW.updated_at, send_count = send_count + 1
    WHERE id = NEW.contact_id;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER sends_accepted_stats AFTER UPDATE OF state ON sends
FOR EACH ROW WHEN (NEW.state = 'accepted' AND OLD.state <> 'accepted')
EXECUTE FUNCTION sends_accepted_stats();
