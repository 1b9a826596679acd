//! The life of one message to one recipient.

use std::fmt;
use std::str::FromStr;

/// States of a send row. `Sending` is the in-flight window: the row is
/// claimed by a worker whose lease has not yet expired, and the message may or
/// may not have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendState {
    Pending,
    Sending,
    Accepted,
    Deferred,
    Failed,
    Skipped,
}

impl SendState {
    pub const ALL: [SendState; 6] = [
        Self::Pending,
        Self::Sending,
        Self::Accepted,
        Self::Deferred,
        Self::Failed,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Accepted => "accepted",
            Self::Deferred => "deferred",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

impl fmt::Display for SendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SendState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown send state {s:?}"))
    }
}

/// Why a recipient in the segment was not mailed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    Unsubscribed,
    Bounced,
    Complained,
    Erased,
    Sunset,
    NoConsent,
    /// `cartero campaign cancel` stopped the run before this row was sent.
    Cancelled,
    /// The contact had their `[frequency] max_messages` in the period.
    FrequencyCap,
}

/// At most `max` campaign messages per contact in any `period_ms` before
/// a send (`[frequency]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    pub max: u32,
    pub period_ms: i64,
}

impl SkipReason {
    pub const ALL: [SkipReason; 8] = [
        Self::Unsubscribed,
        Self::Bounced,
        Self::Complained,
        Self::Erased,
        Self::Sunset,
        Self::NoConsent,
        Self::Cancelled,
        Self::FrequencyCap,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Erased => "erased",
            Self::Sunset => "sunset",
            Self::NoConsent => "no_consent",
            Self::Cancelled => "cancelled",
            Self::FrequencyCap => "frequency_cap",
        }
    }
}

impl FromStr for SkipReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown skip reason {s:?}"))
    }
}
