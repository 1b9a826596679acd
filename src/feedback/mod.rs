//! Feedback: what comes back after a send. Mailbox sources (Maildir, mbox,
//! IMAP) yield raw messages; `bounce` classifies each one (DSN, non-standard
//! bounces, ARF complaints, auto-replies, unsubscribe mails) without touching
//! the database; the policy applies the results to contacts and consent.

pub mod auth;
pub mod bounce;
pub mod ingest;
pub mod policy;
pub mod poll;
pub mod refusal;
pub mod review;
pub mod source;
