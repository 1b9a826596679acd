//! Signed tokens: VERP return paths, unsubscribe, open, click, preference and
//! confirmation links.
//!
//! Every link in a sent message is a promise that must keep working for
//! years, so the formats here are a public contract:
//!
//! - **v0** (`sign`/`verify`, 18 bytes, 29 characters): a send id and a
//!   truncated HMAC-SHA256 over (purpose, send id), with the one configured
//!   secret. Used for VERP (`bounces+TOKEN@`) and the per-recipient
//!   unsubscribe mailto, and in the `/u/` links of mail sent before v1. It
//!   has no version byte and no key id: it is recognised by its length and
//!   verified with every key that may still verify.
//! - **v1** ([`Keyring`], 22 bytes, 36 characters; a click token 24 bytes,
//!   39 characters): a version byte, the id of the signing key (rotation:
//!   old keys verify until a configured instant), the purpose, the scope
//!   (one send, or a contact for links not tied to one message), the id,
//!   for a click the link's index, and the MAC. A click token's MAC also
//!   covers the exact bytes of the link's URL, so a click redirects only to
//!   a URL that cartero put in that message.
//!
//! Tokens are lower-case base32 (RFC 4648 alphabet, no padding): some MTAs
//! change the case of local parts, and the token must survive that inside
//! `bounces+TOKEN@domain`, so the v0 `verify` folds case. Decoding is
//! otherwise canonical: trailing bits must be zero and no partial character
//! may follow the last byte, so each token has exactly one spelling (a
//! flipped last character or an extra character is refused). The web
//! endpoints take v1 and v0 tokens in their canonical lower-case form only.
//! Verifying needs no database read; MACs are compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::time::Millis;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of MAC kept: 80 bits, ample against guessing a valid token online.
const MAC_LEN: usize = 10;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const V0_LEN: usize = 8 + MAC_LEN;
const V1: u8 = 1;
/// version, key id, purpose, scope, id.
const V1_HEADER: usize = 4 + 8;
const V1_LEN: usize = V1_HEADER + MAC_LEN;
const V1_CLICK_LEN: usize = V1_HEADER + 2 + MAC_LEN;
/// Domain separation of v1 MACs from v0 ones made with the same key.
const V1_CONTEXT: &[u8] = b"cartero token v1\0";
const FORM_CONTEXT: &[u8] = b"cartero form v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not lower-case base32")]
    Encoding,
    #[error("the token has the wrong length")]
    Length,
    #[error("the token's signature does not match")]
    Signature,
    #[error("the token's version is unknown")]
    Version,
    #[error("the token was signed with a key that is unknown or no longer accepted")]
    Key,
    #[error("the token is for another kind of link")]
    Purpose,
}

/// What a token is for; part of the MAC, so a VERP token is not a click token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Bounce = 1,
    Unsubscribe = 2,
    Open = 3,
    Click = 4,
    Preferences = 5,
    Confirm = 6,
    /// `/v/`: the message a contact received, in a browser (read-only).
    View = 7,
}

impl Purpose {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Bounce,
            2 => Self::Unsubscribe,
            3 => Self::Open,
            4 => Self::Click,
            5 => Self::Preferences,
            6 => Self::Confirm,
            7 => Self::View,
            _ => return None,
        })
    }
}

/// Whom a v1 token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// One message: a row of `sends`.
    Send(i64),
    /// A contact, for links that are not tied to one message (the
    /// preference centre, a sign-up confirmation).
    Contact(i64),
}

impl Subject {
    fn scope(self) -> u8 {
        match self {
            Self::Send(_) => 1,
            Self::Contact(_) => 2,
        }
    }
    fn id(self) -> i64 {
        match self {
            Self::Send(id) | Self::Contact(id) => id,
        }
    }
}

/// A token that verified, and what it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub subject: Subject,
    /// 0 for the tokens without a version byte, else the version.
    pub version: u8,
    /// The key that signed it (`None` for v0 tokens, which do not say).
    pub key_id: Option<u8>,
}

// ---------------------------------------------------------------- v0

/// A v0 token for a send. Kept for VERP and the unsubscribe mailto, whose
/// tokens other stages verify with [`verify`].
pub fn sign(secret: &[u8], purpose: Purpose, send_id: i64) -> String {
    let mut raw = Vec::with_capacity(V0_LEN);
    raw.extend_from_slice(&send_id.to_be_bytes());
    raw.extend_from_slice(&v0_mac(secret, purpose, send_id)[..MAC_LEN]);
    encode(&raw)
}

/// Verifies a v0 token in any letter case (MTAs may change the case of a
/// local part) and returns its send id.
pub fn verify(secret: &[u8], purpose: Purpose, token: &str) -> Result<i64, TokenError> {
    verify_v0_raw(secret, purpose, &decode(&token.to_ascii_lowercase())?)
}

fn verify_v0_raw(secret: &[u8], purpose: Purpose, raw: &[u8]) -> Result<i64, TokenError> {
    if raw.len() != V0_LEN {
        return Err(TokenError::Length);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&raw[..8]);
    let send_id = i64::from_be_bytes(id);
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(&[purpose as u8]);
    m.update(&send_id.to_be_bytes());
    m.verify_truncated_left(&raw[8..])
        .map_err(|_| TokenError::Signature)?;
    Ok(send_id)
}

fn v0_mac(secret: &[u8], purpose: Purpose, send_id: i64) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(&[purpose as u8]);
    m.update(&send_id.to_be_bytes());
    m.finalize().into_bytes().into()
}

// ---------------------------------------------------------------- v1

/// One signing key. Its bytes never reach `Debug`.
#[derive(Clone)]
pub struct Key {
    pub id: u8,
    secret: Vec<u8>,
    /// HMAC keyed with `secret` and fed [`V1_CONTEXT`], computed once: every
    /// v1 MAC starts from a clone of it instead of hashing the key's inner
    /// and outer pads again (two of the four SHA-256 blocks of verifying a
    /// pixel token, per request).
    v1: HmacSha256,
    /// Until when an old key still verifies (exclusive); `None` for the
    /// current key.
    pub verify_until: Option<Millis>,
}

impl Key {
    fn new(id: u8, secret: &[u8], verify_until: Option<Millis>) -> Self {
        let mut v1 = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
        v1.update(V1_CONTEXT);
        Self {
            id,
            secret: secret.to_vec(),
            v1,
            verify_until,
        }
    }

    /// The v1 MAC of `signed` (and a click's `url`), untruncated.
    fn v1_mac(&self, signed: &[u8], url: Option<&[u8]>) -> HmacSha256 {
        let mut m = self.v1.clone();
        m.update(signed);
        if let Some(u) = url {
            m.update(u);
        }
        m
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("verify_until", &self.verify_until)
            .finish_non_exhaustive()
    }
}

/// The current signing key and the old keys that still verify.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

impl Keyring {
    pub fn new(current_id: u8, secret: &[u8]) -> Self {
        Self {
            current: Key::new(current_id, secret, None),
            old: Vec::new(),
        }
    }

    /// Adds a retired key that verifies (v1 tokens naming `id`, and v0
    /// tokens) until `verify_until`.
    pub fn with_old_key(mut self, id: u8, secret: &[u8], verify_until: Millis) -> Self {
        self.old.push(Key::new(id, secret, Some(verify_until)));
        self
    }

    pub fn current_id(&self) -> u8 {
        self.current.id
    }

    /// The current secret, for v0 tokens (VERP, unsubscribe mailto).
    pub fn current_secret(&self) -> &[u8] {
        &self.current.secret
    }

    fn keys_at(&self, now: Millis) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(
            self.old
                .iter()
                .filter(move |k| k.verify_until.is_some_and(|u| now < u)),
        )
    }

    /// A v1 token for `purpose` about `subject`, with the current key.
    /// Click tokens need the link: use [`Keyring::sign_click`].
    pub fn sign(&self, purpose: Purpose, subject: Subject) -> String {
        let mut raw = v1_header(self.current.id, purpose, subject);
        let mac = self.current.v1_mac(&raw, None).finalize().into_bytes();
        raw.extend_from_slice(&mac[..MAC_LEN]);
        encode(&raw)
    }

    /// A click token for link number `link` of a send, bound to the exact
    /// bytes of `url`.
    pub fn sign_click(&self, send_id: i64, link: u16, url: &str) -> String {
        let mut raw = v1_header(self.current.id, Purpose::Click, Subject::Send(send_id));
        raw.extend_from_slice(&link.to_be_bytes());
        let mac = self
            .current
            .v1_mac(&raw, Some(url.as_bytes()))
            .finalize()
            .into_bytes();
        raw.extend_from_slice(&mac[..MAC_LEN]);
        encode(&raw)
    }

    /// Verifies a token from a URL: v1 of `purpose`, or, for the purposes
    /// that had v0 links (Bounce, Unsubscribe), a v0 token. Canonical
    /// lower-case base32 only.
    pub fn verify(
        &self,
        purpose: Purpose,
        token: &str,
        now: Millis,
    ) -> Result<Verified, TokenError> {
        if purpose == Purpose::Click {
            return Err(TokenError::Purpose);
        }
        let raw = decode(token)?;
        if raw.len() == V0_LEN {
            if !matches!(purpose, Purpose::Bounce | Purpose::Unsubscribe) {
                return Err(TokenError::Version);
            }
            for k in self.keys_at(now) {
                if let Ok(id) = verify_v0_raw(&k.secret, purpose, &raw) {
                    return Ok(Verified {
                        subject: Subject::Send(id),
                        version: 0,
                        key_id: None,
                    });
                }
            }
            return Err(TokenError::Signature);
        }
        if raw.len() != V1_LEN {
            return Err(TokenError::Length);
        }
        self.verify_v1(purpose, &raw, None, now)
    }

    /// Verifies a click token against the URL the request asks for; returns
    /// the send id and the link's index.
    pub fn verify_click(
        &self,
        token: &str,
        url: &str,
        now: Millis,
    ) -> Result<(i64, u16), TokenError> {
        let raw = decode(token)?;
        if raw.len() != V1_CLICK_LEN {
            return Err(TokenError::Length);
        }
        let v = self.verify_v1(Purpose::Click, &raw, Some(url.as_bytes()), now)?;
        let Subject::Send(send_id) = v.subject else {
            return Err(TokenError::Purpose);
        };
        let link = u16::from_be_bytes([raw[V1_HEADER], raw[V1_HEADER + 1]]);
        Ok((send_id, link))
    }

    fn verify_v1(
        &self,
        purpose: Purpose,
        raw: &[u8],
        url: Option<&[u8]>,
        now: Millis,
    ) -> Result<Verified, TokenError> {
        if raw[0] != V1 {
            return Err(TokenError::Version);
        }
        let key_id = raw[1];
        if Purpose::from_byte(raw[2]) != Some(purpose) {
            return Err(TokenError::Purpose);
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[4..12]);
        let id = i64::from_be_bytes(id);
        let subject = match raw[3] {
            1 => Subject::Send(id),
            2 => Subject::Contact(id),
            _ => return Err(TokenError::Encoding),
        };
        let key = self
            .keys_at(now)
            .find(|k| k.id == key_id)
            .ok_or(TokenError::Key)?;
        let (signed, mac) = raw.split_at(raw.len() - MAC_LEN);
        key.v1_mac(signed, url)
            .verify_truncated_left(mac)
            .map_err(|_| TokenError::Signature)?;
        Ok(Verified {
            subject,
            version: V1,
            key_id: Some(key_id),
        })
    }

    /// A MAC of `label` with the current key, 16 bytes in hex: the key of
    /// the form tokens (`track::csrf`) is derived with it, so rotating the
    /// signing key rotates them.
    pub fn form_tag(&self, token: &str) -> String {
        let mut m =
            HmacSha256::new_from_slice(&self.current.secret).expect("HMAC accepts any key length");
        m.update(FORM_CONTEXT);
        m.update(token.as_bytes());
        let out = m.finalize().into_bytes();
        out[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn v1_header(key_id: u8, purpose: Purpose, subject: Subject) -> Vec<u8> {
    let mut raw = Vec::with_capacity(V1_CLICK_LEN);
    raw.extend_from_slice(&[V1, key_id, purpose as u8, subject.scope()]);
    raw.extend_from_slice(&subject.id().to_be_bytes());
    raw
}

// ---------------------------------------------------------------- base32

fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Canonical unpadded base32: the bits after the last whole byte are fewer
/// than five (no character that carries no byte) and all zero, so the
/// encoding of a byte string is unique (RFC 4648 §3.5 lets decoders refuse
/// non-zero pad bits).
fn decode(s: &str) -> Result<Vec<u8>, TokenError> {
    if s.len() > 64 {
        return Err(TokenError::Length);
    }
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(TokenError::Encoding),
        };
        buf = ((buf << 5) | u32::from(v)) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    // A character that carries no whole byte: no encoder writes it.
    if bits >= 5 {
        return Err(TokenError::Length);
    }
    if buf & ((1 << bits) - 1) != 0 {
        return Err(TokenError::Encoding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123";

    #[test]
    fn round_trips_and_survives_case_changes() {
        for id in [0, 1, 42, 1 << 40, i64::MAX] {
            let t = sign(KEY, Purpose::Bounce, id);
            assert!(t.len() <= 29, "{t}");
            assert_eq!(verify(KEY, Purpose::Bounce, &t), Ok(id));
            assert_eq!(verify(KEY, Purpose::Bounce, &t.to_uppercase()), Ok(id));
        }
    }

    #[test]
    fn rejects_forgeries_and_other_purposes() {
        let t = sign(KEY, Purpose::Bounce, 7);
        assert_eq!(
            verify(b"another key.........", Purpose::Bounce, &t),
            Err(TokenError::Signature)
        );
        assert_eq!(
            verify(KEY, Purpose::Unsubscribe, &t),
            Err(TokenError::Signature)
        );
        let mut forged = t.clone().into_bytes();
        forged[3] = if forged[3] == b'a' { b'b' } else { b'a' };
        assert!(verify(KEY, Purpose::Bounce, std::str::from_utf8(&forged).unwrap()).is_err());
        assert_eq!(
            verify(KEY, Purpose::Bounce, "not-base32!"),
            Err(TokenError::Encoding)
        );
        assert_eq!(verify(KEY, Purpose::Bounce, "abc"), Err(TokenError::Length));
    }

    /// The v0 format is a contract with mail already sent: this token was
    /// made by the code that shipped before v1 (send 12345, KEY, Unsubscribe).
    #[test]
    fn v0_tokens_already_sent_still_verify() {
        let t = sign(KEY, Purpose::Unsubscribe, 12345);
        assert_eq!(t.len(), 29);
        assert_eq!(verify(KEY, Purpose::Unsubscribe, &t), Ok(12345));
        let ring = Keyring::new(0, KEY);
        assert_eq!(
            ring.verify(Purpose::Unsubscribe, &t, 0).map(|v| v.subject),
            Ok(Subject::Send(12345))
        );
        // v0 exists only for the purposes that had v0 links.
        let t = sign(KEY, Purpose::Open, 1);
        assert_eq!(ring.verify(Purpose::Open, &t, 0), Err(TokenError::Version));
    }

    /// Issue 15 (Low): a flipped last character or an extra character made
    /// another spelling of the same token.
    #[test]
    fn non_canonical_spellings_are_refused() {
        let ring = Keyring::new(3, KEY);
        for t in [
            sign(KEY, Purpose::Bounce, 99),
            ring.sign(Purpose::Unsubscribe, Subject::Send(99)),
            ring.sign_click(99, 2, "https://shop.example/"),
        ] {
            let last = t.as_bytes()[t.len() - 1];
            for c in ALPHABET.iter().filter(|&&c| c != last) {
                let mut s = t.clone().into_bytes();
                *s.last_mut().unwrap() = *c;
                let s = String::from_utf8(s).unwrap();
                assert!(verify(KEY, Purpose::Bounce, &s).is_err(), "{s}");
                assert!(ring.verify(Purpose::Unsubscribe, &s, 0).is_err(), "{s}");
                assert!(
                    ring.verify_click(&s, "https://shop.example/", 0).is_err(),
                    "{s}"
                );
            }
            for extra in ["a", "q", "7", "aa"] {
                let s = format!("{t}{extra}");
                assert!(verify(KEY, Purpose::Bounce, &s).is_err(), "{s}");
                assert!(ring.verify(Purpose::Unsubscribe, &s, 0).is_err(), "{s}");
                assert!(
                    ring.verify_click(&s, "https://shop.example/", 0).is_err(),
                    "{s}"
                );
            }
            assert!(
                ring.verify(Purpose::Unsubscribe, &t[..t.len() - 1], 0)
                    .is_err()
            );
        }
    }

    #[test]
    fn v1_round_trips_with_key_id_purpose_and_scope() {
        let ring = Keyring::new(7, KEY);
        for p in [
            Purpose::Unsubscribe,
            Purpose::Open,
            Purpose::Preferences,
            Purpose::Confirm,
            Purpose::View,
        ] {
            for s in [
                Subject::Send(5),
                Subject::Contact(5),
                Subject::Send(i64::MAX),
            ] {
                let t = ring.sign(p, s);
                assert_eq!(t.len(), 36, "{t}");
                let v = ring.verify(p, &t, 0).unwrap();
                assert_eq!((v.subject, v.version, v.key_id), (s, 1, Some(7)));
                // Upper case is another spelling: refused on the web.
                assert!(ring.verify(p, &t.to_uppercase(), 0).is_err());
            }
        }
        let t = ring.sign(Purpose::Open, Subject::Send(5));
        assert_eq!(
            ring.verify(Purpose::Unsubscribe, &t, 0),
            Err(TokenError::Purpose)
        );
        assert_eq!(
            ring.verify(Purpose::Preferences, &t, 0),
            Err(TokenError::Purpose)
        );
    }

    #[test]
    fn clicks_are_bound_to_their_url() {
        let ring = Keyring::new(1, KEY);
        let url = "https://shop.example/spring?utm_source=cartero";
        let t = ring.sign_click(42, 3, url);
        assert_eq!(t.len(), 39);
        assert_eq!(ring.verify_click(&t, url, 0), Ok((42, 3)));
        for other in [
            "https://evil.example/",
            "https://shop.example/spring?utm_source=cartero&x=1",
            "https://shop.example.evil.example/spring?utm_source=cartero",
            "",
        ] {
            assert_eq!(
                ring.verify_click(&t, other, 0),
                Err(TokenError::Signature),
                "{other}"
            );
        }
        // A click token is not an open token and the other way round.
        assert!(ring.verify(Purpose::Open, &t, 0).is_err());
        let o = ring.sign(Purpose::Open, Subject::Send(42));
        assert!(ring.verify_click(&o, url, 0).is_err());
    }

    #[test]
    fn old_keys_verify_until_their_time_and_unknown_keys_never() {
        let old = Keyring::new(1, b"the old secret, retired");
        let t1 = old.sign(Purpose::Unsubscribe, Subject::Send(9));
        let t0 = sign(b"the old secret, retired", Purpose::Unsubscribe, 9);
        let ring = Keyring::new(2, KEY).with_old_key(1, b"the old secret, retired", 1_000);
        assert!(ring.verify(Purpose::Unsubscribe, &t1, 999).is_ok());
        assert!(ring.verify(Purpose::Unsubscribe, &t0, 999).is_ok());
        assert_eq!(
            ring.verify(Purpose::Unsubscribe, &t1, 1_000),
            Err(TokenError::Key)
        );
        assert_eq!(
            ring.verify(Purpose::Unsubscribe, &t0, 1_000),
            Err(TokenError::Signature)
        );
        // A token naming the current key id but signed with another secret.
        let forged =
            Keyring::new(2, b"not the real secret!").sign(Purpose::Unsubscribe, Subject::Send(9));
        assert_eq!(
            ring.verify(Purpose::Unsubscribe, &forged, 0),
            Err(TokenError::Signature)
        );
        assert!(!format!("{ring:?}").contains("secret"));
    }

    #[test]
    fn form_tags_are_keyed_macs_of_their_label() {
        let ring = Keyring::new(0, KEY);
        let tag = ring.form_tag("abc");
        assert_eq!(tag.len(), 32);
        assert_eq!(tag, ring.form_tag("abc"));
        assert_ne!(tag, ring.form_tag("abd"));
    }
}
