//! Delivery: SMTP workers, rate limits, retries, the outbox transport.
