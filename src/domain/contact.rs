//! A contact's deliverability status and the actions of the consent ledger.

use std::fmt;
use std::str::FromStr;

/// Whether cartero may mail a contact at all, whatever their list consent.
/// Anything but `Active` is a suppression: the send path skips the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactStatus {
    Active,
    Unsubscribed,
    Bounced,
    Complained,
    Erased,
    /// No opens or clicks for a long time despite being mailed: left out of
    /// sends by `hygiene run --sunset-days` (consent is untouched, and an
    /// operator can reinstate the contact).
    Sunset,
    /// A case variant of another contact's address, merged into it by
    /// `contacts duplicates --merge` (`contact_merges` says which); kept
    /// for its history, never mailed, never matched by an import.
    Merged,
}

impl ContactStatus {
    pub const ALL: [ContactStatus; 7] = [
        Self::Active,
        Self::Unsubscribed,
        Self::Bounced,
        Self::Complained,
        Self::Erased,
        Self::Sunset,
        Self::Merged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Unsubscribed => "unsubscribed",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Erased => "erased",
            Self::Sunset => "sunset",
            Self::Merged => "merged",
        }
    }
}

impl fmt::Display for ContactStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContactStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown contact status {s:?}"))
    }
}

/// An entry of the append-only consent ledger either grants or withdraws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentAction {
    Grant,
    Withdraw,
    /// An operator's reversal of a withdrawal cartero made in error (a
    /// wrongful suppression): the list's consent as it was before, with the
    /// withdrawn entry and the reason as evidence. Not a new grant by the
    /// person; the ledger keeps the withdrawal it reverses.
    Restore,
}

impl ConsentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Withdraw => "withdraw",
            Self::Restore => "restore",
        }
    }

    /// Whether the list is subscribed after this entry.
    pub fn subscribes(self) -> bool {
        matches!(self, Self::Grant | Self::Restore)
    }
}

impl FromStr for ConsentAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "grant" => Ok(Self::Grant),
            "withdraw" => Ok(Self::Withdraw),
            "restore" => Ok(Self::Restore),
            _ => Err(format!("unknown consent action {s:?}")),
        }
    }
}
