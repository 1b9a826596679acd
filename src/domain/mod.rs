//! Domain types, valid by construction. Nothing here does I/O or knows about
//! storage; everything else in the crate trusts these types once parsed.

pub mod contact;
pub mod email;
pub mod evidence;
pub mod ledger_key;
pub mod send;
pub mod text;
pub mod time;
pub mod token;
pub mod warmup;

pub use contact::{ConsentAction, ContactStatus};
pub use email::{AddressError, EmailAddress};
pub use evidence::FeedbackEvidence;
pub use send::{SendState, SkipReason};
pub use time::Millis;
