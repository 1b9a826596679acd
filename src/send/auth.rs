//! When the SMTP password may be sent: only over TLS, or to this machine.
//!
//! AUTH PLAIN and LOGIN carry the password in base64 (RFC 4616 §4: the
//! mechanism is for use over a protected channel). With `tls =
//! "opportunistic"` an attacker on the path only has to strip STARTTLS from
//! the server's EHLO reply to read it; the same holds for `tls = "none"`.
//! So, whatever `tls` says, cartero authenticates only on an encrypted
//! connection, or when the connected socket's peer is a loopback address
//! (127.0.0.0/8, ::1, or an IPv4-mapped 127/8): traffic that never leaves
//! the machine, as the IMAP source already requires. The peer address is the
//! one the socket is connected to, not the configured host name, so a name
//! that resolves elsewhere does not count as local.

use std::net::IpAddr;

/// True for addresses whose traffic stays on this machine.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// May the password go over this connection?
pub fn may_authenticate(encrypted: bool, peer: IpAddr) -> bool {
    encrypted || is_loopback(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_or_loopback_may_carry_the_password() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for local in [
            "127.0.0.1",
            "127.0.0.2",
            "127.255.255.254",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(may_authenticate(false, ip(local)), "{local}");
        }
        for remote in [
            "192.0.2.2",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "::ffff:192.0.2.1",
            "2001:db8::1",
            "fe80::1",
            "128.0.0.1",
        ] {
            assert!(!may_authenticate(false, ip(remote)), "{remote}");
            assert!(may_authenticate(true, ip(remote)), "{remote}");
        }
    }
}
