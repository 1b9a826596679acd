//! Signed tokens: VERP return paths and, later, tracking links.
//!
//! A token names one send row and carries a truncated HMAC-SHA256 over it, so
//! a bounce or a click can be mapped back to its send without a lookup table,
//! and nobody can forge one for another recipient. Tokens are lower-case
//! base32 (RFC 4648 alphabet, no padding): some MTAs lower-case local parts,
//! and the token must survive that inside `bounces+TOKEN@domain`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of MAC kept: 80 bits, ample against guessing a valid token online.
const MAC_LEN: usize = 10;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not lower-case base32")]
    Encoding,
    #[error("the token has the wrong length")]
    Length,
    #[error("the token's signature does not match")]
    Signature,
}

/// What a token is for; part of the MAC, so a VERP token is not a click token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Bounce = 1,
    Unsubscribe = 2,
}

pub fn sign(secret: &[u8], purpose: Purpose, send_id: i64) -> String {
    let mut raw = Vec::with_capacity(8 + MAC_LEN);
    raw.extend_from_slice(&send_id.to_be_bytes());
    raw.extend_from_slice(&mac(secret, purpose, send_id)[..MAC_LEN]);
    encode(&raw)
}

pub fn verify(secret: &[u8], purpose: Purpose, token: &str) -> Result<i64, TokenError> {
    let raw = decode(&token.to_ascii_lowercase())?;
    if raw.len() != 8 + MAC_LEN {
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

fn mac(secret: &[u8], purpose: Purpose, send_id: i64) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(&[purpose as u8]);
    m.update(&send_id.to_be_bytes());
    m.finalize().into_bytes().into()
}

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

fn decode(s: &str) -> Result<Vec<u8>, TokenError> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or(TokenError::Encoding)? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
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
}
