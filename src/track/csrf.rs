//! Form tokens against cross-site request forgery on every form POST of
//! `cartero serve` except RFC 8058's one-click POST (which by §3.1 carries
//! no cookie, no page and no context, and whose URL is itself the
//! credential).
//!
//! A token is `EXPIRY.MAC`: the expiry in milliseconds since the epoch
//! (decimal) and HMAC-SHA256(secret, "cartero-csrf-v1" ‖ purpose ‖ expiry),
//! 16 bytes in lower-case hex. The purpose binds it to one form of one
//! page (callers put the page's own link token in it), so a token served
//! for one contact's page cannot post another's. No cookie and no server
//! state: any node of a cluster checks any token. The second guard is
//! [`same_origin`] (the browser's `Sec-Fetch-Site` or `Origin`), as
//! OWASP's CSRF cheat sheet recommends beside tokens.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::time::Millis;

type HmacSha256 = Hmac<Sha256>;

/// How long a served form can be posted: long enough to read a page and
/// decide, short enough that a leaked page is soon useless.
pub const LIFETIME_MS: Millis = 2 * 60 * 60 * 1000;

const CONTEXT: &[u8] = b"cartero-csrf-v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the form carries no token")]
    Missing,
    #[error("the form token is malformed")]
    Malformed,
    #[error("the form has expired; reload the page")]
    Expired,
    #[error("the form token is not this page's")]
    Forged,
}

fn mac(secret: &[u8], purpose: &str, expiry: Millis) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(CONTEXT);
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(expiry.to_string().as_bytes());
    m
}

/// A token for `purpose`, valid for [`LIFETIME_MS`] from `now`.
pub fn issue(secret: &[u8], purpose: &str, now: Millis) -> String {
    let expiry = now.saturating_add(LIFETIME_MS);
    let tag = mac(secret, purpose, expiry).finalize().into_bytes();
    let hex: String = tag[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{expiry}.{hex}")
}

/// Checks `token` for `purpose` at `now`, in constant time over the MAC.
pub fn check(secret: &[u8], purpose: &str, token: &str, now: Millis) -> Result<(), CsrfError> {
    if token.is_empty() {
        return Err(CsrfError::Missing);
    }
    let (expiry, hex) = token.split_once('.').ok_or(CsrfError::Malformed)?;
    if expiry.is_empty() || expiry.len() > 19 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CsrfError::Malformed);
    }
    let expiry: Millis = expiry.parse().map_err(|_| CsrfError::Malformed)?;
    let bytes = unhex16(hex).ok_or(CsrfError::Malformed)?;
    mac(secret, purpose, expiry)
        .verify_truncated_left(&bytes)
        .map_err(|_| CsrfError::Forged)?;
    // Checked after the MAC, so an attacker learns nothing about expiry
    // handling from a forged token.
    if expiry < now || expiry > now.saturating_add(LIFETIME_MS) {
        return Err(CsrfError::Expired);
    }
    Ok(())
}

fn unhex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The browser's word on where a POST came from. `Sec-Fetch-Site` (Fetch
/// Metadata) when sent: only `same-origin` and `none` (typed or bookmarked)
/// pass. Else `Origin` when sent: it must be `public` (the service's public
/// origin, as behind a proxy) or this request's own `Host` (as on
/// loopback). A request with neither header is not a browser's (every
/// current browser sends `Origin` on a form POST) and is left to the token.
pub fn same_origin(headers: &HeaderMap, public: &url::Url) -> bool {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = h("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = h("origin") else {
        return true;
    };
    if origin == public.origin().ascii_serialization() {
        return true;
    }
    match h("host") {
        Some(host) => origin == format!("http://{host}") || origin == format!("https://{host}"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_checks_for_its_purpose_until_it_expires() {
        let t = issue(K, "prefs:abc", 1_000);
        assert_eq!(check(K, "prefs:abc", &t, 1_000), Ok(()));
        assert_eq!(check(K, "prefs:abc", &t, 1_000 + LIFETIME_MS), Ok(()));
        assert_eq!(
            check(K, "prefs:abc", &t, 1_001 + LIFETIME_MS),
            Err(CsrfError::Expired)
        );
        assert_eq!(check(K, "prefs:abd", &t, 1_000), Err(CsrfError::Forged));
        assert_eq!(
            check(b"another key", "prefs:abc", &t, 1_000),
            Err(CsrfError::Forged)
        );
        assert_eq!(check(K, "prefs:abc", "", 1_000), Err(CsrfError::Missing));
    }

    #[test]
    fn altered_tokens_are_refused() {
        let t = issue(K, "p", 5);
        let (exp, mac) = t.split_once('.').unwrap();
        // A later expiry with the old MAC.
        let later = format!("{}.{mac}", exp.parse::<i64>().unwrap() + 1);
        assert_eq!(check(K, "p", &later, 5), Err(CsrfError::Forged));
        for bad in [
            mac.to_string(),
            format!("{exp}.{}", mac.to_uppercase()),
            format!("{exp}.{}", &mac[..31]),
            format!("-{exp}.{mac}"),
            format!("{exp}.{mac}0"),
            "99999999999999999999999.00".into(),
        ] {
            assert!(check(K, "p", &bad, 5).is_err(), "{bad}");
        }
        // A token from the far future (a forged expiry would need the key,
        // but a clock step back must not make one live for ever).
        let future = issue(K, "p", 10 * LIFETIME_MS);
        assert_eq!(check(K, "p", &future, 0), Err(CsrfError::Expired));
    }

    #[test]
    fn origin_checks() {
        let public = url::Url::parse("https://news.shop.example/").unwrap();
        let mk = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(same_origin(&mk(&[]), &public));
        assert!(same_origin(
            &mk(&[("sec-fetch-site", "same-origin")]),
            &public
        ));
        assert!(!same_origin(
            &mk(&[("sec-fetch-site", "cross-site")]),
            &public
        ));
        assert!(!same_origin(
            &mk(&[("sec-fetch-site", "same-site")]),
            &public
        ));
        assert!(same_origin(
            &mk(&[("origin", "https://news.shop.example")]),
            &public
        ));
        assert!(!same_origin(
            &mk(&[("origin", "https://evil.example")]),
            &public
        ));
        assert!(same_origin(
            &mk(&[("origin", "http://127.0.0.1:5"), ("host", "127.0.0.1:5")]),
            &public
        ));
        assert!(!same_origin(
            &mk(&[("origin", "null"), ("host", "127.0.0.1:5")]),
            &public
        ));
    }
}
