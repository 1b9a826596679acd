//! Who sent a feedback mail, as far as the mail itself can prove it.
//!
//! A report matched to a contact by address alone proves nothing: anyone
//! can write one. It becomes stronger when the domain of that address
//! authenticated it: a DKIM signature (RFC 6376) that verifies, checked
//! here with mail-auth over hickory DNS (`dns.nameservers`), or an SPF or
//! DKIM pass in an Authentication-Results header (RFC 8601) written by the
//! MTA that delivers the feedback mailbox, trusted only when its
//! authserv-id is `feedback.authserv_id` (that MTA must remove such headers
//! arriving from outside, RFC 8601 §5). SPF cannot be checked here directly:
//! it needs the connecting IP address, which only the receiving MTA knew.
//!
//! Alignment is DMARC's relaxed one (RFC 7489 §3.1.1) without the public
//! suffix list: the authenticated domain and the address's domain are the
//! same, or one is a subdomain of the other. Nothing here touches the
//! database or decides policy; it runs before the ingest's transaction.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

// mail-auth resolves through its own hickory (a newer one than cartero's
// `hygiene::mx`), so its configuration types come from its re-export.
use mail_auth::hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("dns.nameservers[{index}]: {value:?} is not an IP address or IP:port")]
    NameServer { index: usize, value: String },
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConfig(String),
}

/// How a domain authenticated a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Dkim,
    Spf,
}

/// The domains that authenticated one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authenticated {
    /// `d=` of every DKIM signature that verified (or that the trusted
    /// Authentication-Results reports as passed).
    pub dkim: Vec<String>,
    /// Domains of the envelope sender (`smtp.mailfrom`) that passed SPF,
    /// from the trusted Authentication-Results.
    pub spf: Vec<String>,
}

impl Authenticated {
    /// How `address`'s own domain authenticated the message, if it did.
    pub fn aligned_with(&self, address: &str) -> Option<AuthMethod> {
        let domain = address.rsplit_once('@')?.1.trim_end_matches('.');
        if self.dkim.iter().any(|d| aligned(d, domain)) {
            return Some(AuthMethod::Dkim);
        }
        if self.spf.iter().any(|d| aligned(d, domain)) {
            return Some(AuthMethod::Spf);
        }
        None
    }
}

/// Relaxed alignment: equal, or one a subdomain of the other. A bare
/// top-level name (`d=com`) aligns with nothing.
fn aligned(authenticated: &str, domain: &str) -> bool {
    let a = authenticated.trim_end_matches('.').to_ascii_lowercase();
    let d = idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_ascii_lowercase());
    if a.is_empty() || !a.contains('.') || d.is_empty() {
        return false;
    }
    a == d || d.ends_with(&format!(".{a}")) || (d.contains('.') && a.ends_with(&format!(".{d}")))
}

/// Checks messages' DKIM signatures and reads trusted Authentication-Results.
pub struct SenderAuth {
    authenticator: MessageAuthenticator,
    authserv_id: Option<String>,
    timeout: Duration,
}

impl SenderAuth {
    pub fn from_config(cfg: &Config) -> Result<Self, AuthError> {
        let dns = &cfg.dns;
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(dns.timeout_ms.max(1));
        opts.attempts = 1;
        opts.ndots = 0;
        let authenticator = if dns.nameservers.is_empty() {
            let (config, system) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| AuthError::SystemConfig(e.to_string()))?;
            opts.timeout = system.timeout.min(opts.timeout);
            MessageAuthenticator::new(config, opts)
        } else {
            let mut group = NameServerConfigGroup::with_capacity(dns.nameservers.len() * 2);
            for (index, value) in dns.nameservers.iter().enumerate() {
                let addr = nameserver(value).ok_or_else(|| AuthError::NameServer {
                    index,
                    value: value.clone(),
                })?;
                group.push(NameServerConfig::new(addr, ProtocolConfig::Udp));
                // DKIM keys (RSA 2048 and up) often need TCP.
                group.push(NameServerConfig::new(addr, ProtocolConfig::Tcp));
            }
            MessageAuthenticator::new(ResolverConfig::from_parts(None, Vec::new(), group), opts)
        }
        .map_err(|e| AuthError::SystemConfig(e.to_string()))?;
        let id = cfg.feedback.authserv_id.trim();
        Ok(Self {
            authenticator,
            authserv_id: (!id.is_empty()).then(|| id.to_ascii_lowercase()),
            timeout: Duration::from_millis(dns.timeout_ms.max(1)) * 3,
        })
    }

    /// The domains that authenticated `raw`. A DNS failure or timeout
    /// authenticates nothing: weak evidence stays weak.
    pub async fn check(&self, raw: &[u8]) -> Authenticated {
        let mut out = Authenticated::default();
        if let Some(id) = &self.authserv_id {
            trusted_results(raw, id, &mut out);
        }
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return out;
        };
        let verify = self.authenticator.verify_dkim(&msg);
        if let Ok(results) = tokio::time::timeout(self.timeout, verify).await {
            for r in results {
                if matches!(r.result(), DkimResult::Pass)
                    && let Some(sig) = r.signature()
                {
                    out.dkim.push(sig.d.to_ascii_lowercase());
                }
            }
        }
        out
    }
}

/// `IP` or `IP:port`; port 53 when absent (as `dns.nameservers` reads).
fn nameserver(value: &str) -> Option<SocketAddr> {
    let value = value.trim();
    value.parse::<SocketAddr>().ok().or_else(|| {
        value
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// Passes reported by Authentication-Results headers (RFC 8601 §2.2) of the
/// header block whose authserv-id is `authserv_id`.
fn trusted_results(raw: &[u8], authserv_id: &str, out: &mut Authenticated) {
    let end = memchr::memmem::find(raw, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    let unfolded = head
        .replace("\r\n", "\n")
        .replace("\n ", " ")
        .replace("\n\t", " ");
    for line in unfolded.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("authentication-results") {
            continue;
        }
        let value = strip_comments(value);
        let mut parts = value.split(';');
        let id = parts
            .next()
            .and_then(|p| p.split_whitespace().next())
            .unwrap_or("");
        if !id.eq_ignore_ascii_case(authserv_id) {
            continue;
        }
        for resinfo in parts {
            let mut words = resinfo.split_whitespace();
            let Some(result) = words.next() else { continue };
            let Some((method, verdict)) = result.split_once('=') else {
                continue;
            };
            if !verdict.eq_ignore_ascii_case("pass") {
                continue;
            }
            for prop in words {
                let Some((key, val)) = prop.split_once('=') else {
                    continue;
                };
                let val = val.trim_matches('"');
                let domain = val
                    .rsplit_once('@')
                    .map_or(val, |(_, d)| d)
                    .to_ascii_lowercase();
                match (
                    method.to_ascii_lowercase().as_str(),
                    key.to_ascii_lowercase().as_str(),
                ) {
                    ("dkim", "header.d") | ("dkim", "header.i") => out.dkim.push(domain),
                    ("spf", "smtp.mailfrom") => out.spf.push(domain),
                    _ => {}
                }
            }
        }
    }
}

/// RFC 5322 comments (parentheses, nested) removed.
fn strip_comments(s: &str) -> String {
    let mut depth = 0u32;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_relaxed_but_never_to_a_bare_tld() {
        assert!(aligned("customer.example", "customer.example"));
        assert!(aligned("customer.example", "mail.customer.example"));
        assert!(aligned("mx.customer.example", "customer.example"));
        assert!(!aligned("other.example", "customer.example"));
        assert!(!aligned("example", "customer.example"));
        assert!(!aligned("tomer.example", "customer.example"));
    }

    #[test]
    fn only_the_trusted_authserv_id_counts() {
        let raw = b"Authentication-Results: evil.example; spf=pass smtp.mailfrom=a@victim.example\r\n\
Authentication-Results: mx.shop.example (Postfix); spf=pass (sender ok) smtp.mailfrom=bounce@customer.example;\r\n dkim=pass header.d=customer.example; dkim=fail header.d=bad.example\r\n\
Subject: x\r\n\r\nAuthentication-Results: mx.shop.example; spf=pass smtp.mailfrom=body.example\r\n";
        let mut a = Authenticated::default();
        trusted_results(raw, "mx.shop.example", &mut a);
        assert_eq!(a.spf, vec!["customer.example"]);
        assert_eq!(a.dkim, vec!["customer.example"]);
        assert_eq!(
            a.aligned_with("ana@customer.example"),
            Some(AuthMethod::Dkim)
        );
        assert_eq!(a.aligned_with("ana@victim.example"), None);
        assert_eq!(a.aligned_with("not-an-address"), None);
    }
}
