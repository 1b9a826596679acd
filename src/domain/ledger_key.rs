//! The secret keys of the consent ledger: HMAC-SHA256 keys that are never
//! stored in the database, so someone with write access to the database
//! alone cannot recompute the chain after editing it.
//!
//! A key is named by an id derived from the key itself (`k` + 12 hex digits
//! of a SHA-256 over it), stored beside every entry it signed: rotating the
//! key means moving the old one to the retired keys, which keep verifying
//! the entries they signed. The id reveals nothing usable about a key of 32
//! or more characters. Nothing here does I/O.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted key, in bytes: 256 bits of a random key written as
/// base64 (`openssl rand -base64 32` prints 44 characters).
pub const MIN_KEY_LEN: usize = 32;

/// One key: its id and the HMAC state with the key already absorbed.
#[derive(Clone)]
pub struct LedgerKey {
    id: String,
    mac: HmacSha256,
}

impl fmt::Debug for LedgerKey {
    // The secret never reaches a log or an error message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerKey").field("id", &self.id).finish()
    }
}

impl LedgerKey {
    pub fn new(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.len() < MIN_KEY_LEN {
            return Err(format!(
                "a ledger key must be at least {MIN_KEY_LEN} characters (e.g. `openssl rand -base64 32`)"
            ));
        }
        let digest = Sha256::new()
            .chain_update(b"cartero ledger key id\0")
            .chain_update(secret.as_bytes())
            .finalize();
        let id = format!("k{}", &hex(&digest)[..12]);
        let mac = HmacSha256::new_from_slice(secret.as_bytes())
            .map_err(|e| format!("unusable ledger key: {e}"))?;
        Ok(Self { id, mac })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh HMAC computation under this key.
    pub fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

/// The key that signs new entries and the retired ones that still verify.
#[derive(Debug, Clone)]
pub struct LedgerKeys {
    current: LedgerKey,
    retired: Vec<LedgerKey>,
}

impl LedgerKeys {
    pub fn new(current: &str, retired: &[String]) -> Result<Self, String> {
        let current = LedgerKey::new(current)?;
        let mut keys = Vec::with_capacity(retired.len());
        for (i, r) in retired.iter().enumerate() {
            keys.push(LedgerKey::new(r).map_err(|e| format!("retired key {}: {e}", i + 1))?);
        }
        Ok(Self {
            current,
            retired: keys,
        })
    }

    pub fn current(&self) -> &LedgerKey {
        &self.current
    }

    /// The key with this id, current or retired.
    pub fn get(&self, id: &str) -> Option<&LedgerKey> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|k| k.id == id)
    }

    /// Every key, the current one first.
    pub fn all(&self) -> impl Iterator<Item = &LedgerKey> {
        std::iter::once(&self.current).chain(&self.retired)
    }
}

/// Lower-case hex, as the ledger stores its hashes.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// Feeds length-prefixed fields into a hash or MAC, so that no two different
/// field lists produce the same byte string.
pub fn field(update: &mut impl FnMut(&[u8]), b: &[u8]) {
    update(&(b.len() as u64).to_be_bytes());
    update(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_and_secrets_stay_out_of_debug() {
        let a = LedgerKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let b = LedgerKey::new("0123456789abcdef0123456789abcdeF").unwrap();
        assert_eq!(
            a.id(),
            LedgerKey::new(" 0123456789abcdef0123456789abcdef\n")
                .unwrap()
                .id()
        );
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 13);
        assert!(!format!("{a:?}").contains("0123456789"));
        assert!(LedgerKey::new("short").is_err());
    }

    #[test]
    fn retired_keys_are_found_by_id() {
        let old = "old-key-old-key-old-key-old-key-old";
        let keys = LedgerKeys::new("new-key-new-key-new-key-new-key-new", &[old.into()]).unwrap();
        let old_id = LedgerKey::new(old).unwrap().id().to_string();
        assert_eq!(keys.get(&old_id).unwrap().id(), old_id);
        assert!(keys.get("k000000000000").is_none());
        assert_eq!(keys.all().count(), 2);
    }
}
