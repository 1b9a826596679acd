//! Mailbox providers whose replies have a documented meaning of their own:
//! error codes in their own numbering (GoDaddy's `IB607`, Spectrum's
//! `AUP#1310`, Orange and La Poste's `LPN000_630`), documented tables of
//! reply code, status and text (Google, Mimecast), and texts that mean one
//! thing from them and another from anyone else (AOL, KDDI, NTT DOCOMO).
//!
//! A provider is recognised from the failed recipient's domain, else the
//! remote MTA, else the reporting MTA (the order Sisimai's `rhost` modules
//! use, whose tables these follow). Only the recognised provider's table is
//! read. This module maps a provider's words to a reason; it does not find
//! the words in a message (`dsn` and `vendors` do).

use super::reason::Reason;

/// What the report says about one failed recipient.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts<'a> {
    /// Remote MTA first, then reporting MTA.
    pub hosts: &'a [&'a str],
    pub recipient: &'a str,
    /// The recipient's error text, folded (`reason::fold`).
    pub text: &'a str,
    /// RFC 3463 status code.
    pub status: Option<&'a str>,
    /// SMTP reply code.
    pub reply_code: Option<&'a str>,
    /// The SMTP command the server refused.
    pub command: Option<&'a str>,
}

struct Provider {
    /// Recipient domains the provider hosts.
    domains: &'static [&'static str],
    /// Suffixes of its receiving or reporting hosts.
    hosts: &'static [&'static str],
    reason: fn(&Facts<'_>) -> Option<Reason>,
}

const PROVIDERS: &[Provider] = &[
    Provider {
        domains: &["aol.com"],
        hosts: &[".mail.aol.com", ".mx.aol.com"],
        reason: aol,
    },
    Provider {
        domains: &["ezweb.ne.jp", "au.com"],
        hosts: &[".ezweb.ne.jp", ".au.com"],
        reason: kddi,
    },
    Provider {
        domains: &["docomo.ne.jp"],
        hosts: &["mfsmax.docomo.ne.jp"],
        reason: nttdocomo,
    },
    Provider {
        domains: &["secureserver.net"],
        hosts: &["secureserver.net"],
        reason: godaddy,
    },
    Provider {
        domains: &["charter.net", "spectrum.net"],
        hosts: &["charter.net"],
        reason: spectrum,
    },
    Provider {
        domains: &["laposte.net", "orange.fr", "wanadoo.fr"],
        hosts: &[".laposte.net", ".orange.fr", ".wanadoo.fr"],
        reason: france_ptt,
    },
    Provider {
        domains: &[],
        hosts: &[".mimecast.com"],
        reason: mimecast,
    },
    Provider {
        domains: &["gmail.com"],
        hosts: &["aspmx.l.google.com", "gmail-smtp-in.l.google.com"],
        reason: google,
    },
];

fn ends_with_label(host: &str, suffix: &str) -> bool {
    let bare = suffix.trim_start_matches('.');
    host == bare || host.ends_with(&format!(".{bare}"))
}

/// The reason the recognised provider's documentation gives, if any.
pub fn reason(f: &Facts<'_>) -> Option<Reason> {
    let domain = f
        .recipient
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let by_domain = PROVIDERS
        .iter()
        .find(|p| p.domains.iter().any(|d| ends_with_label(&domain, d)));
    let provider = by_domain.or_else(|| {
        f.hosts.iter().find_map(|h| {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            PROVIDERS
                .iter()
                .find(|p| p.hosts.iter().any(|s| ends_with_label(&h, s)))
        })
    })?;
    (provider.reason)(f)
}

fn first_phrase(text: &str, table: &[(&str, Reason)]) -> Option<Reason> {
    table
        .iter()
        .find(|(p, _)| text.contains(p))
        .map(|(_, r)| *r)
}

/// AOL's relays report an unusable MX answer as a domain that takes no
/// mail, and a missing domain in their own words.
fn aol(f: &Facts<'_>) -> Option<Reason> {
    first_phrase(
        f.text,
        &[
            ("host or domain name not found", Reason::HostUnknown),
            (
                "type=mx: malformed or unexpected name server reply",
                Reason::NotAccept,
            ),
        ],
    )
}

/// KDDI (au, ezweb) answers "550 <address>: User unknown" for an address
/// that does not exist, and "550 : User unknown", naming nobody, when the
/// subscriber's own filter refuses the sender.
fn kddi(f: &Facts<'_>) -> Option<Reason> {
    first_phrase(
        f.text,
        &[
            ("550 : user unknown", Reason::Filtered),
            (">: user unknown", Reason::UserUnknown),
        ],
    )
}

/// NTT DOCOMO says "550 Unknown user" at every stage: at RCPT TO (or with
/// 5.1.1) the address is unknown; after DATA it is the subscriber's filter
/// (5.2.0) or a refusal of the sender.
fn nttdocomo(f: &Facts<'_>) -> Option<Reason> {
    match f.status {
        Some("5.1.1") => return Some(Reason::UserUnknown),
        Some("5.2.0") => return Some(Reason::Filtered),
        _ => {}
    }
    if let Some(r) = first_phrase(
        f.text,
        &[
            ("552 too much mail data", Reason::MailboxFull),
            ("552 too many recipients", Reason::TooManyConn),
            ("503 bad sequence of commands", Reason::SyntaxError),
            ("504 command parameter not implemented", Reason::SyntaxError),
        ],
    ) {
        return Some(r);
    }
    if f.status == Some("5.0.0") {
        return match f.command {
            Some("RCPT") => Some(Reason::UserUnknown),
            Some("DATA") => Some(Reason::Rejected),
            _ => None,
        };
    }
    None
}

/// GoDaddy ends its refusals with an `IBnnn` code
/// (godaddy.com/help/fix-rejected-email-with-a-bounce-error-40685).
fn godaddy(f: &Facts<'_>) -> Option<Reason> {
    use Reason::*;
    const CODES: &[(&str, Reason)] = &[
        ("401", SecurityError),
        ("501", NotCompliantRfc),
        ("502", NotCompliantRfc),
        ("506", Rejected),
        ("508", AuthFailure),
        ("108", RequirePtr),
        ("212", SpamDetected),
        ("705", VirusDetected),
        ("605", TooManyConn),
        ("007", TooManyConn),
        ("101", Speeding),
        ("110", Blocked),
        ("111", Blocked),
        ("112", Blocked),
        ("113", Blocked),
        ("504", Speeding),
        ("510", Speeding),
        ("607", Speeding),
        ("103", BadReputation),
        ("104", Blocked),
        ("105", Blocked),
        ("106", Blocked),
    ];
    let code = f.text.match_indices(" ib").find_map(|(i, _)| {
        let rest = &f.text[i + 3..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (digits.len() == 3).then_some(digits)
    });
    if let Some(code) = code {
        return CODES.iter().find(|(c, _)| *c == code).map(|(_, r)| *r);
    }
    first_phrase(
        f.text,
        &[
            ("rbl reject", Blocked),
            ("www.spamhaus.org/query/bl?ip=", Blocked),
            ("has been in the queue too long", Expired),
            ("delivery timeout", Expired),
            ("account storage limit", MailboxFull),
            ("message rejected for spam or virus content", SpamDetected),
            ("account disabled", Suspend),
            ("message is looping", SystemError),
            ("recipient not found", UserUnknown),
            ("account does not exist", UserUnknown),
        ],
    )
}

/// Spectrum (Charter) ends its refusals with `AUP#nnnn`
/// (spectrum.net/support/internet/understanding-email-error-codes).
fn spectrum(f: &Facts<'_>) -> Option<Reason> {
    use Reason::*;
    const RANGES: &[(u16, u16, Reason)] = &[
        (1000, 1000, Blocked),
        (1010, 1010, Rejected),
        (1020, 1080, Rejected),
        (1090, 1090, SystemError),
        (1100, 1150, RequirePtr),
        (1160, 1190, PolicyViolation),
        (1200, 1250, Blocked),
        (1260, 1260, NetworkError),
        (1300, 1340, TooManyConn),
        (1350, 1490, Speeding),
        (1500, 1500, Rejected),
        (1520, 1520, Rejected),
        (1530, 1530, MesgTooBig),
        (1540, 1550, Speeding),
        (1560, 1560, PolicyViolation),
        (1580, 1580, Speeding),
    ];
    let at = f.text.find("aup#")?;
    // "AUP#1310", "AUP#In-1310", "AUP#O-1000": the first run of four digits.
    let rest = &f.text[at + 4..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let digits: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let code: u16 = digits.parse().ok().filter(|_| digits.len() == 4)?;
    RANGES
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&code))
        .map(|(_, _, r)| *r)
}

/// Orange and La Poste end their refusals with a label and a three-digit
/// code (`LPN007_102`, `OFR004_201`, `OUK_513`); the code says why.
fn france_ptt(f: &Facts<'_>) -> Option<Reason> {
    use Reason::*;
    const CODES: &[(&str, Reason)] = &[
        ("101", Blocked),
        ("102", Blocked),
        ("103", Blocked),
        ("104", TooManyConn),
        ("305", SecurityError),
        ("401", AuthFailure),
        ("402", SecurityError),
        ("403", Rejected),
        ("405", Rejected),
        ("415", Rejected),
        ("416", UserUnknown),
        ("417", MailboxFull),
        ("420", Suspend),
        ("421", Rejected),
        ("426", Suspend),
        ("505", SystemError),
        ("506", SpamDetected),
        ("510", Blocked),
        ("514", MesgTooBig),
        ("517", AuthFailure),
        ("630", PolicyViolation),
        ("999", Blocked),
    ];
    let text = f.text.replace('_', "-");
    let label = ["lpn", "ofr", "ouk"]
        .iter()
        .filter_map(|l| text.rfind(l))
        .max();
    if let Some(at) = label {
        let token = text[at..].split_whitespace().next().unwrap_or("");
        let token = token.trim_end_matches(|c: char| !c.is_ascii_digit());
        if token.len() >= 3 && token.is_char_boundary(token.len() - 3) {
            let code = &token[token.len() - 3..];
            if let Some((_, r)) = CODES.iter().find(|(c, _)| *c == code) {
                return Some(*r);
            }
        }
    }
    first_phrase(f.text, &[("spf/dns de votre nom de domaine", AuthFailure)])
}

/// Mimecast's documented rejections, each under its reply code
/// (community.mimecast.com, "Mimecast SMTP error codes").
fn mimecast(f: &Facts<'_>) -> Option<Reason> {
    use Reason::*;
    #[rustfmt::skip]
    const TABLE: &[(&str, &str, Reason)] = &[
        ("550", "spf sender invalid - envelope rejected", AuthFailure),
        ("550", "dkim sender invalid - envelope rejected", AuthFailure),
        ("550", "dmarc sender invalid - envelope rejected", AuthFailure),
        ("451", "internal resources are temporarily unavailable", BadReputation),
        ("550", "local ct ip reputation - (reject)", BadReputation),
        ("421", "sender address blocked", Blocked),
        ("451", "recipient temporarily unavailable", Blocked),
        ("451", "ip temporarily blacklisted", Blocked),
        ("550", "journal messages past the expiration", Expired),
        ("553", "this route requires encryption (tls)", FailedStartTls),
        ("553", "this route requires tls version 1.2 or greater", FailedStartTls),
        ("553", "this route requires high-strength ciphers", FailedStartTls),
        ("554", "configuration is invalid for this certificate", FailedStartTls),
        ("554", "maximum email size exceeded", MesgTooBig),
        ("451", "the incorrect hostname used for inbounds", NetworkError),
        ("550", "the incorrect hostname used for inbounds", NetworkError),
        ("554", "mail loop detected", NetworkError),
        ("451", "open relay not allowed", NoRelaying),
        ("451", "open relay is not allowed", NoRelaying),
        ("451", "account inbounds disabled", NotAccept),
        ("451", "account outbounds disabled", OnHold),
        ("451", "hostname is not authorized", OnHold),
        ("550", "journal message past expiration", OnHold),
        ("550", "anti-spoofing policy - inbound not allowed", PolicyViolation),
        ("550", "rejected by header-based anti-spoofing policy", PolicyViolation),
        ("550", "message bounced due to content examination policy", PolicyViolation),
        ("554", "host network not allowed", PolicyViolation),
        ("554", "host network, not allowed", PolicyViolation),
        ("550", "administrative prohibition envelope blocked", Rejected),
        ("550", "envelope blocked - user entry", Rejected),
        ("550", "envelope blocked - user domain entry", Rejected),
        ("550", "rejected by header-based manually blocked senders", Rejected),
        ("550", "rejected by header-based blocked senders", Rejected),
        ("550", "envelope rejected - block policy for envelope from address", Rejected),
        ("535", "incorrect authentication data", SecurityError),
        ("550", "submitter failed to disabled", SecurityError),
        ("550", "submitter failed to authenticate", SecurityError),
        ("451", "unable to process connection at this time", SystemError),
        ("451", "message ended early", SystemError),
        ("451", "unable to process command", SystemError),
        ("451", "unable to process an email at this time", SystemError),
        ("451", "account service is temporarily unavailable", TooManyConn),
        ("452", "too many recipients", TooManyConn),
        ("550", "exceeding outbound thread limit", TooManyConn),
        ("501", "invalid address", UserUnknown),
        ("503", "user unknown", UserUnknown),
        ("550", "invalid recipient", UserUnknown),
        ("554", "email rejected due to security policies", VirusDetected),
    ];
    let code = f.reply_code?;
    TABLE
        .iter()
        .find(|(c, p, _)| *c == code && f.text.contains(p))
        .map(|(_, _, r)| *r)
}

/// Google's documented SMTP errors (support.google.com/a/answer/3726730):
/// reply code, status and text together. The class digit of the reply
/// and of the status is not compared (Google sends the same text as 4xx
/// and 5xx).
fn google(f: &Facts<'_>) -> Option<Reason> {
    use Reason::*;
    #[rustfmt::skip]
    const TABLE: &[(&str, &str, &str, Reason)] = &[
        ("451", "4.7.24", "the spf record of the sending domain", AuthFailure),
        ("550", "5.7.24", "the spf record of the sending domain", AuthFailure),
        ("421", "4.7.26", "senders to authenticate with either spf or dkim", AuthFailure),
        ("550", "5.7.26", "senders to authenticate with either spf or dkim", AuthFailure),
        ("550", "5.7.26", "fails to pass spf checks for an spf record with a hard fail", AuthFailure),
        ("550", "5.7.26", "has an spf record with a hard fail policy", AuthFailure),
        ("451", "4.7.26", "is not accepted due to domain's dmarc policy", AuthFailure),
        ("550", "5.7.26", "is not accepted due to domain's dmarc policy", AuthFailure),
        ("550", "5.7.26", "is not accepted due to domain's dmarc policy", AuthFailure),
        ("550", "5.7.1", "fails to pass authentication checks", AuthFailure),
        ("550", "5.7.26", "fails to pass authentication checks", AuthFailure),
        ("421", "4.7.27", "senders to authenticate with spf", AuthFailure),
        ("421", "4.7.27", "senders to authenticate their email with spf", AuthFailure),
        ("550", "5.7.27", "senders to authenticate with spf", AuthFailure),
        ("421", "4.7.30", "senders to authenticate their email with dkim", AuthFailure),
        ("550", "5.7.30", "senders to authenticate with dkim", AuthFailure),
        ("421", "4.7.32", "aligned with either the authenticated spf or dkim", AuthFailure),
        ("421", "4.7.0", "very low reputation of the sending ip address", BadReputation),
        ("421", "4.7.0", "very low reputation of the sending domain", BadReputation),
        ("550", "5.7.1", "due to the very low reputation of the sending ip address", BadReputation),
        ("550", "5.7.1", "due to the very low reputation of the sending domain", BadReputation),
        ("421", "4.7.0", "ip not in whitelist for rcpt domain", Blocked),
        ("421", "4.7.0", "try again later, closing connection.", Blocked),
        ("501", "5.5.4", "empty helo/ehlo argument not allowed", Blocked),
        ("501", "5.5.4", "helo/ehlo argument is invalid", Blocked),
        ("421", "4.7.0", "an unusual rate of unsolicited mail", Blocked),
        ("421", "4.7.28", "an unusual rate of mail", Blocked),
        ("550", "5.7.1", "an unusual rate of unsolicited mail", Blocked),
        ("550", "5.7.28", "an unusual rate of unsolicited mail", Blocked),
        ("552", "5.2.3", "exceeded google's message size limits", ExceedLimit),
        ("552", "5.3.4", "exceeds google's limit of limit attachments.", ExceedLimit),
        ("552", "5.3.4", "your message exceeded google's message header size limits", ExceedLimit),
        ("552", "5.3.4", "bytes per individual header size", ExceedLimit),
        ("552", "5.3.4", "exceeds google's header name limit of", ExceedLimit),
        ("552", "5.3.4", "exceeds google's message header size limit", ExceedLimit),
        ("421", "4.7.0", "connection expired", Expired),
        ("451", "4.4.2", "timeout - closing connection", Expired),
        ("530", "5.7.0", "must issue a starttls command first", FailedStartTls),
        ("454", "5.5.1", "starttls may not be repeated", FailedStartTls),
        ("421", "4.7.0", "tls required for rcpt domain", FailedStartTls),
        ("421", "4.7.29", "senders to use tls/ssl for smtp", FailedStartTls),
        ("550", "5.7.29", "senders to use tls/ssl for smtp", FailedStartTls),
        ("452", "4.2.2", "inbox is out of storage space", MailboxFull),
        ("552", "5.2.2", "inbox is out of storage space and inactive", MailboxFull),
        ("452", "4.2.2", "is over quota", MailboxFull),
        ("552", "5.2.2", "is over quota", MailboxFull),
        ("550", "5.7.1", "email quota exceeded", MailboxFull),
        ("552", "5.3.4", "exceeded google's message size limits", MesgTooBig),
        ("552", "5.3.4", "exceeds google's message size limit of", MesgTooBig),
        ("554", "5.4.6", "message exceeded 50 hops", NetworkError),
        ("554", "5.6.0", "message exceeded 50 hops", NetworkError),
        ("550", "5.7.0", "mail relay denied", NoRelaying),
        ("550", "5.7.1", "invalid credentials for relay", NoRelaying),
        ("550", "5.7.1", "is not authorized to send email directly to our servers", NoRelaying),
        ("550", "5.7.1", "missing a valid address in the from: header", NotCompliantRfc),
        ("550", "5.7.1", "multiple addresses in from: header are not accepted", NotCompliantRfc),
        ("550", "5.7.1", "is not rfc 5322 compliant", NotCompliantRfc),
        ("550", "5.7.1", "missing a valid message-id: header", NotCompliantRfc),
        ("550", "5.7.1", "contains a unicode character in a disallowed header", NotCompliantRfc),
        ("550", "5.7.1", "encoded-word syntax is not permitted", NotCompliantRfc),
        ("553", "5.1.7", "is not a valid rfc 5321 address", NotCompliantRfc),
        ("554", "5.6.0", "mail message is malformed", NotCompliantRfc),
        ("552", "5.7.0", "illegal attachment on your message", PolicyViolation),
        ("552", "5.7.0", "blocked because its content presents a potential security issue", PolicyViolation),
        ("550", "5.7.1", "you are sending to (or from) has a policy that prohibited", PolicyViolation),
        ("421", "4.7.28", "sending messages with the same message-id:", PolicyViolation),
        ("550", "5.7.0", "mail sending denied", Rejected),
        ("550", "5.7.1", "unauthenticated email is not accepted", Rejected),
        ("421", "4.7.0", "does not have a ptr record", RequirePtr),
        ("421", "4.7.23", " have a ptr record, or the ptr record", RequirePtr),
        ("550", "5.7.1", "does not meet ipv6 sending guidelines regarding ptr records and authentication", RequirePtr),
        ("550", "5.7.25", "does not have a ptr record", RequirePtr),
        ("550", "5.7.25", "does not match the ip address of the hostname", RequirePtr),
        ("454", "4.7.0", "too many login attempts", SecurityError),
        ("501", "5.5.2", "cannot decode response", SecurityError),
        ("503", "5.7.0", "no identity changes permitted", SecurityError),
        ("530", "5.5.1", "authentication required.", SecurityError),
        ("530", "5.7.0", "authentication required.", SecurityError),
        ("535", "5.7.1", "application-specific password required", SecurityError),
        ("535", "5.7.9", "application-specific password required", SecurityError),
        ("535", "5.7.1", "please log in with your web browser", SecurityError),
        ("534", "5.7.9", "please log in with your web browser", SecurityError),
        ("534", "5.7.14", "please log in through your web browser", SecurityError),
        ("535", "5.7.1", "username and password not accepted", SecurityError),
        ("535", "5.7.8", "username and password not accepted", SecurityError),
        ("421", "4.7.0", "due to the nature of the content or the links within", SpamDetected),
        ("550", "5.7.1", "likely unsolicited mail", SpamDetected),
        ("450", "4.2.1", "is receiving mail too quickly", Speeding),
        ("450", "4.2.1", "peak smtp relay limit exceeded for customer", Speeding),
        ("450", "4.2.1", "rate that prevents additional messages from being delivered", Speeding),
        ("550", "5.2.1", "rate that prevents additional messages from being delivered", Speeding),
        ("550", "5.4.5", "daily sending quota exceeded", Speeding),
        ("550", "5.4.5", "daily user sending limit exceeded", Speeding),
        ("550", "5.4.5", "daily smtp relay limit exceeded for", Speeding),
        ("550", "5.7.1", "daily smtp relay limit exceeded for", Speeding),
        ("550", "5.7.1", "daily smtp relay sending limit exceeded for", Speeding),
        ("550", "5.7.1", "this mail has been rate limited", Speeding),
        ("550", "5.2.1", "account that you tried to reach is disabled", Suspend),
        ("550", "5.2.1", "account that you tried to reach is inactive", Suspend),
        ("451", "4.5.0", "smtp protocol violation", SyntaxError),
        ("454", "4.5.0", "smtp protocol violation", SyntaxError),
        ("525", "5.7.10", "smtp protocol violation", SyntaxError),
        ("535", "5.5.4", "optional argument not permitted", SyntaxError),
        ("501", "5.7.11", "syntax error", SyntaxError),
        ("501", "5.5.2", "syntax error", SyntaxError),
        ("555", "5.5.2", "syntax error", SyntaxError),
        ("502", "5.5.1", "too many unrecognized commands, goodbye", SyntaxError),
        ("502", "5.5.1", "unimplemented command", SyntaxError),
        ("502", "5.5.1", "unrecognized command", SyntaxError),
        ("503", "5.5.1", "bad sequence of commands", SyntaxError),
        ("503", "5.5.1", "ehlo/helo first", SyntaxError),
        ("503", "5.5.1", "mail first", SyntaxError),
        ("503", "5.5.1", "rcpt first", SyntaxError),
        ("503", "5.5.1", "no data after bdat", SyntaxError),
        ("504", "5.7.4", "unrecognized authentication type", SyntaxError),
        ("504", "5.7.4", "xoauth is no longer supported", SyntaxError),
        ("554", "5.7.0", "too many unauthenticated commands", SyntaxError),
        ("421", "4.3.0", "temporary system problem", SystemError),
        ("421", "4.7.0", "temporary system problem", SystemError),
        ("421", "4.4.5", "server busy", SystemError),
        ("451", "4.3.0", "multiple destination domains per transaction is unsupported", SystemError),
        ("451", "4.3.0", "mail server has temporarily rejected this message", SystemError),
        ("451", "4.3.0", "mail server temporarily rejected message", SystemError),
        ("452", "4.5.3", "domain policy size per transaction exceeded", SystemError),
        ("454", "4.7.0", "cannot authenticate due to temporary system problem", SystemError),
        ("452", "4.5.3", "your message has too many recipients", TooManyConn),
        ("550", "5.5.3", "too many recipients for this sender", TooManyConn),
        ("550", "5.1.1", "the email account that you tried to reach does not exist", UserUnknown),
        ("553", "5.1.2", "we weren't able to find the recipient domain", UserUnknown),
        ("553", "5.1.3", "is not a valid rfc 5321 address", UserUnknown),

    ];
    let reply = f.reply_code?;
    let status = f.status?;
    if reply.len() != 3 || status.len() < 5 {
        return None;
    }
    TABLE
        .iter()
        .find(|(r, s, text, _)| {
            r.get(1..) == reply.get(1..) && s.get(2..) == status.get(2..) && f.text.contains(text)
        })
        .map(|(_, _, _, reason)| *reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(hosts: &'a [&'a str], recipient: &'a str, text: &'a str) -> Facts<'a> {
        Facts {
            hosts,
            recipient,
            text,
            ..Facts::default()
        }
    }

    #[test]
    fn kddi_tells_unknown_address_from_subscriber_filter() {
        assert_eq!(
            reason(&facts(
                &[],
                "a@ezweb.ne.jp",
                "550: <a@ezweb.ne.jp>: user unknown"
            )),
            Some(Reason::UserUnknown)
        );
        assert_eq!(
            reason(&facts(
                &[],
                "a@ezweb.ne.jp",
                "the response was: 550 : user unknown"
            )),
            Some(Reason::Filtered)
        );
        assert_eq!(
            reason(&facts(
                &[],
                "a@example.org",
                "550: <a@example.org>: user unknown"
            )),
            None
        );
    }

    #[test]
    fn aol_is_found_by_its_relay_host() {
        let text = "name service error for name=example.org type=mx: malformed or unexpected name server reply";
        assert_eq!(
            reason(&facts(&["omr-a01.mx.aol.com"], "a@example.org", text)),
            Some(Reason::NotAccept)
        );
        assert_eq!(
            reason(&facts(&["mx.example.net"], "a@example.org", text)),
            None
        );
    }

    #[test]
    fn godaddy_spectrum_and_orange_codes() {
        let gd =
            "550 192.0.2.1 has sent to too many recipients this hour. ib607 <http://x.co/rlbounce>";
        assert_eq!(
            reason(&facts(&["smtp.secureserver.net"], "a@example.com", gd)),
            Some(Reason::Speeding)
        );
        let sp =
            "550 5.1.0 sender rejected. please see https://www.spectrum.net/support aup#in-1310";
        assert_eq!(
            reason(&facts(&[], "a@charter.net", sp)),
            Some(Reason::TooManyConn)
        );
        let fr = "554 5.7.1 client host rejected: #216 lpn lpn000_630";
        assert_eq!(
            reason(&facts(&["smtpz4.laposte.net"], "a@laposte.net", fr)),
            Some(Reason::PolicyViolation)
        );
        let fr2 = "550 5.7.1 service refused. lpn007_416 (in reply to rcpt to command)";
        assert_eq!(
            reason(&facts(&[], "a@orange.fr", fr2)),
            Some(Reason::UserUnknown)
        );
    }

    #[test]
    fn nttdocomo_reads_status_and_stage() {
        let text = "550 unknown user a@docomo.ne.jp";
        let mut f = facts(&["mfsmax.docomo.ne.jp"], "a@docomo.ne.jp", text);
        f.status = Some("5.0.0");
        f.command = Some("DATA");
        assert_eq!(reason(&f), Some(Reason::Rejected));
        f.command = Some("RCPT");
        assert_eq!(reason(&f), Some(Reason::UserUnknown));
        f.status = Some("5.2.0");
        assert_eq!(reason(&f), Some(Reason::Filtered));
    }

    #[test]
    fn google_matches_reply_status_and_text() {
        let text = "550-5.2.1 the user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.";
        let mut f = facts(&["gmail-smtp-in.l.google.com"], "a@example.com", text);
        f.reply_code = Some("550");
        f.status = Some("5.2.1");
        assert_eq!(reason(&f), Some(Reason::Speeding));
        // The same words under another status are not Google's entry.
        f.status = Some("5.7.1");
        assert_eq!(reason(&f), None);
        // 4xx and 5xx forms are one entry.
        f.reply_code = Some("450");
        f.status = Some("4.2.1");
        assert_eq!(reason(&f), Some(Reason::Speeding));
    }

    #[test]
    fn mimecast_needs_the_reply_code_too() {
        let text =
            "554 host network not allowed - https://community.mimecast.com/docs/doc-1369#554";
        let mut f = facts(&["us-smtp-inbound-1.mimecast.com"], "a@example.com", text);
        assert_eq!(reason(&f), None);
        f.reply_code = Some("554");
        assert_eq!(reason(&f), Some(Reason::PolicyViolation));
        f.reply_code = Some("550");
        assert_eq!(reason(&f), None);
    }
}
