-- A send's acceptance stamps the contact's counters in the same statement,
-- so recording a result is one write instead of a transaction of two.
CREATE TRIGGER sends_accepted_stats AFTER UPDATE OF state ON sends
WHEN NEW.state = 'accepted' AND OLD.state <> 'accepted'
BEGIN
    UPDATE contacts SET last_sent_at = NEW.updated_at, send_count = send_count + 1
    WHERE id = NEW.contact_id;
END;
