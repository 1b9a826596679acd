//! How strongly a feedback report is tied to the contact it names.
//!
//! Anyone can mail the bounce, FBL and unsubscribe addresses, so what a
//! report may do depends on what proves who it is about (docs/SECURITY.md,
//! "Feedback mail"). This module only names the kinds of evidence and says
//! which are strong; `feedback::policy` decides what each may change.

use std::fmt;
use std::str::FromStr;

/// The evidence a feedback event was matched by, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackEvidence {
    /// A VERP token (`bounces+TOKEN@…`) that verified: cartero signed it for
    /// this send, so the report came back through that message's return path.
    VerpToken,
    /// An unsubscribe token (`LOCAL+TOKEN@…`, the per-recipient mailto of
    /// the message's List-Unsubscribe) that verified.
    UnsubscribeToken,
    /// The quoted Message-ID is one cartero stored as issued for the send,
    /// and it is random (at least 128 bits): only someone who saw the
    /// message can know it.
    IssuedMessageId,
    /// The quoted Message-ID names a send, but it could have been guessed
    /// (the old derived form `cartero.CAMPAIGN.SEND.TIME@…`): no stronger
    /// than the address.
    GuessableMessageId,
    /// Matched by address, and the report is authenticated (DKIM, or SPF
    /// through a trusted Authentication-Results) by a domain aligned with
    /// that address's own domain.
    AuthenticatedAddress,
    /// Matched by the address the report names, nothing more: anyone could
    /// have written it.
    AddressOnly,
}

impl FeedbackEvidence {
    pub const ALL: [FeedbackEvidence; 6] = [
        Self::VerpToken,
        Self::UnsubscribeToken,
        Self::IssuedMessageId,
        Self::GuessableMessageId,
        Self::AuthenticatedAddress,
        Self::AddressOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerpToken => "verp_token",
            Self::UnsubscribeToken => "unsubscribe_token",
            Self::IssuedMessageId => "issued_message_id",
            Self::GuessableMessageId => "guessable_message_id",
            Self::AuthenticatedAddress => "authenticated_address",
            Self::AddressOnly => "address_only",
        }
    }

    /// Whether the evidence proves the report came from someone who saw the
    /// message cartero sent: only then may it suppress and withdraw consent
    /// at once.
    pub fn is_strong(self) -> bool {
        matches!(
            self,
            Self::VerpToken | Self::UnsubscribeToken | Self::IssuedMessageId
        )
    }
}

impl fmt::Display for FeedbackEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeedbackEvidence {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown feedback evidence {s:?}"))
    }
}

/// Whether a Message-ID is too random to guess: its local part has a
/// `.`-separated segment worth at least 128 bits, counting each character
/// at the size of the smallest usual alphabet (hex, base32, base36, base62,
/// base64url) that holds the whole segment. Segments of digits only count
/// nothing: they are counters and timestamps, which is what made the old
/// `cartero.CAMPAIGN.SEND.TIME@…` IDs guessable (issue 15).
pub fn message_id_is_unguessable(message_id: &str) -> bool {
    let local = message_id
        .trim()
        .trim_matches(['<', '>'])
        .rsplit_once('@')
        .map_or(message_id, |(l, _)| l);
    local.split('.').any(|seg| segment_bits(seg) >= 128.0)
}

fn segment_bits(seg: &str) -> f64 {
    if seg.is_empty() || seg.bytes().all(|b| b.is_ascii_digit()) {
        return 0.0;
    }
    let all = |f: fn(u8) -> bool| seg.bytes().all(f);
    let per_char: f64 = if all(|b| b.is_ascii_hexdigit()) {
        4.0
    } else if all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
        || all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
    {
        5.0
    } else if all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        || all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        36f64.log2()
    } else if all(|b| b.is_ascii_alphanumeric()) {
        62f64.log2()
    } else if all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        6.0
    } else {
        // Anything else is not a token alphabet cartero would use.
        return 0.0;
    };
    per_char * seg.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_only_tokens_and_random_ids_are_strong() {
        for e in FeedbackEvidence::ALL {
            assert_eq!(e.as_str().parse::<FeedbackEvidence>(), Ok(e));
        }
        let strong: Vec<_> = FeedbackEvidence::ALL
            .into_iter()
            .filter(|e| e.is_strong())
            .collect();
        assert_eq!(
            strong,
            [
                FeedbackEvidence::VerpToken,
                FeedbackEvidence::UnsubscribeToken,
                FeedbackEvidence::IssuedMessageId
            ]
        );
    }

    #[test]
    fn derived_message_ids_are_guessable_random_ones_are_not() {
        assert!(!message_id_is_unguessable(
            "cartero.12.3456.1790000000000@cartero.example"
        ));
        assert!(!message_id_is_unguessable("<1790000000000.42@x>"));
        assert!(!message_id_is_unguessable("deadbeef@x"));
        // 32 hex digits, 26 base32 characters, a UUID: 128 bits or more.
        assert!(message_id_is_unguessable(
            "cartero.0123456789abcdef0123456789abcdef@cartero.example"
        ));
        assert!(message_id_is_unguessable(
            "abcdefghijklmnopqrstuvwxyz@cartero.example"
        ));
        assert!(message_id_is_unguessable(
            "<6f1c2a9e-3b7d-4c55-9a0e-1d2f3b4c5d6e@x>"
        ));
        assert!(!message_id_is_unguessable("no-at-sign"));
    }
}
