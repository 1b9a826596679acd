//! Hygiene: keep the contact database deliverable. Address risk flags (role,
//! disposable, typo), MX checks of domains, and sunsetting of contacts that
//! never engage. Nothing is deleted silently: every change is a recorded
//! status change with its cause.

pub mod flags;
pub mod mx;
pub mod run;
