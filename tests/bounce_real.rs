//! Real bounces from a real MTA: a private Postfix returns RFC 3464 DSNs for
//! the conditions that produce each reason, and `classify` must read each
//! one right. Postfix makes some of them itself (unknown user, a domain its
//! transport refuses, a domain it cannot reach until the queue lifetime
//! runs out); for the rest it relays to a scripted SMTP server on loopback
//! that answers each recipient at RCPT or after DATA with a real MTA's
//! reply text, and Postfix reports that answer in its own DSN template.
//!
//! The committed fixtures `tests/fixtures/bounces/postfix-real-*.eml` are
//! DSNs this test produced (run it with `CARTERO_WRITE_FIXTURES=1` to write
//! them again); `feedback_parse` checks them against `expected.jsonl`.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cartero::feedback::bounce::{Kind, Reason, classify};
use common::servers::{self, DOMAIN, Postfix, PostfixOptions, REFUSED_DOMAIN, SOFT_DOMAIN};

/// The remote domain Postfix relays to the scripted server.
const REMOTE: &str = "remote.example.net";

/// When the scripted server answers, and with what.
#[derive(Clone, Copy)]
enum Stage {
    Rcpt,
    Data,
}

/// One condition: the recipient that triggers it, the scripted reply (none
/// for conditions Postfix makes itself), and what the DSN must classify as.
struct Case {
    name: &'static str,
    recipient: String,
    reply: Option<(Stage, &'static str)>,
    kind: Kind,
    reason: Reason,
    status: &'static str,
}

fn cases() -> Vec<Case> {
    let remote = |name: &'static str,
                  stage: Stage,
                  reply: &'static str,
                  kind: Kind,
                  reason: Reason,
                  status: &'static str| Case {
        name,
        recipient: format!("{name}@{REMOTE}"),
        reply: Some((stage, reply)),
        kind,
        reason,
        status,
    };
    use Reason::*;
    use Stage::*;
    vec![
        // Postfix's own: virtual(8) has no such mailbox.
        Case {
            name: "unknown-user",
            recipient: format!("nobody@{DOMAIN}"),
            reply: None,
            kind: Kind::Hard,
            reason: UserUnknown,
            status: "5.1.1",
        },
        // Postfix's own: error(8) transport refuses the domain.
        Case {
            name: "refused-domain",
            recipient: format!("someone@{REFUSED_DOMAIN}"),
            reply: None,
            kind: Kind::Hard,
            reason: HostUnknown,
            status: "5.1.2",
        },
        // Postfix's own: deferred until the queue lifetime ran out.
        Case {
            name: "unreachable-expired",
            recipient: format!("someone@{SOFT_DOMAIN}"),
            reply: None,
            kind: Kind::Soft,
            reason: Expired,
            status: "4.4.1",
        },
        remote(
            "rcpt-user-unknown",
            Rcpt,
            "550 5.1.1 <rcpt-user-unknown@remote.example.net>: Recipient address rejected: User unknown in virtual mailbox table",
            Kind::Hard,
            UserUnknown,
            "5.1.1",
        ),
        // No enhanced code and words no table knows, at RCPT: the mailbox.
        remote(
            "rcpt-unknown-words",
            Rcpt,
            "550 Postfach gibt es hier nicht",
            Kind::Hard,
            UserUnknown,
            "5.0.0",
        ),
        remote(
            "mailbox-full",
            Rcpt,
            "552 5.2.2 <mailbox-full@remote.example.net>: Mailbox full, quota exceeded",
            Kind::Soft,
            MailboxFull,
            "5.2.2",
        ),
        remote(
            "mailbox-full-temporary",
            Rcpt,
            "452 4.2.2 <mailbox-full-temporary@remote.example.net>: Mailbox is full, try again later",
            Kind::Soft,
            MailboxFull,
            "4.2.2",
        ),
        remote(
            "message-too-big",
            Data,
            "552 5.3.4 Message size exceeds fixed maximum message size",
            Kind::Soft,
            MesgTooBig,
            "5.3.4",
        ),
        remote(
            "relay-denied",
            Rcpt,
            "554 5.7.1 <relay-denied@remote.example.net>: Relay access denied",
            Kind::Soft,
            NoRelaying,
            "5.7.1",
        ),
        remote(
            "spam-after-data",
            Data,
            "550 5.7.1 Message rejected as spam by content filtering",
            Kind::Soft,
            SpamDetected,
            "5.7.1",
        ),
        remote(
            "account-disabled",
            Rcpt,
            "550 5.2.1 <account-disabled@remote.example.net>: This mailbox has been disabled",
            Kind::Soft,
            Suspend,
            "5.2.1",
        ),
        remote(
            "blocked-ip",
            Rcpt,
            "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org",
            Kind::Soft,
            Blocked,
            "5.7.1",
        ),
        remote(
            "temporary-unknown-words",
            Rcpt,
            "451 Bitte spaeter nochmal versuchen",
            Kind::Soft,
            Expired,
            "4.0.0",
        ),
    ]
}

/// A scripted SMTP server: answers each recipient per `cases()`, everything
/// else with 250. One thread per connection; stops on drop.
struct Scripted {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    fn start() -> Scripted {
        let port = servers::free_port();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind scripted");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || {
                            let _ = session(stream);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Scripted { port, stop }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reply_for(rcpt: &str) -> Option<(Stage, &'static str)> {
    let local = rcpt.split('@').next().unwrap_or("");
    cases()
        .into_iter()
        .find(|c| c.reply.is_some() && c.name == local)
        .and_then(|c| c.reply)
}

fn session(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    out.write_all(b"220 mx.remote.example.net ESMTP scripted\r\n")?;
    // The reply to give after DATA, set by an accepted recipient.
    let mut after_data: Option<&'static str> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            out.write_all(b"250-mx.remote.example.net\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("HELO") || cmd.starts_with("MAIL") || cmd.starts_with("RSET") {
            if cmd.starts_with("MAIL") || cmd.starts_with("RSET") {
                after_data = None;
            }
            out.write_all(b"250 ok\r\n")?;
        } else if cmd.starts_with("RCPT") {
            let rcpt = line
                .split(['<', '>'])
                .nth(1)
                .unwrap_or("")
                .to_ascii_lowercase();
            match reply_for(&rcpt) {
                Some((Stage::Rcpt, text)) => out.write_all(format!("{text}\r\n").as_bytes())?,
                Some((Stage::Data, text)) => {
                    after_data = Some(text);
                    out.write_all(b"250 ok\r\n")?;
                }
                None => out.write_all(b"250 ok\r\n")?,
            }
        } else if cmd == "DATA" {
            out.write_all(b"354 go ahead\r\n")?;
            loop {
                line.clear();
                if lines.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line.trim_end() == "." {
                    break;
                }
            }
            let reply = after_data.take().unwrap_or("250 ok queued");
            out.write_all(format!("{reply}\r\n").as_bytes())?;
        } else if cmd.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"502 5.5.2 not implemented\r\n")?;
        }
    }
}

#[test]
fn postfix_dsns_for_each_condition_classify_right() {
    let scripted = Scripted::start();
    let Some(pf) = Postfix::start_with(PostfixOptions {
        relay_port: Some(scripted.port),
        queue_lifetime: Duration::from_secs(6),
        ..PostfixOptions::default()
    }) else {
        return;
    };
    let cases = cases();
    for c in &cases {
        // One message per condition, each with its own VERP return path, so
        // each DSN names one recipient and says which case it is.
        let from = format!("bounces+{}@{DOMAIN}", c.name);
        let msg = servers::test_message(&from, &c.recipient, c.name, "hello");
        servers::smtp_send(pf.smtp_port(), &from, &[&c.recipient], &msg)
            .unwrap_or_else(|e| panic!("{}: Postfix refused the message: {e}", c.name));
    }
    let files = pf.wait_for_messages("bounces", cases.len(), Duration::from_secs(120));
    let write_to = std::env::var("CARTERO_WRITE_FIXTURES")
        .is_ok_and(|v| v == "1")
        .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces"));
    let mut seen = Vec::new();
    for file in files {
        let raw = std::fs::read(&file).expect("read DSN");
        let c = classify(&raw);
        let token = c
            .verp_token
            .clone()
            .expect("the DSN came back to a VERP address");
        let case = cases
            .iter()
            .find(|k| k.name == token)
            .unwrap_or_else(|| panic!("a DSN for an unknown case {token}"));
        assert_eq!(c.records.len(), 1, "{token}: {:?}", c.records);
        let r = &c.records[0];
        let what = format!("{token}: {r:?}");
        assert_eq!(
            r.recipient.as_deref(),
            Some(case.recipient.as_str()),
            "{what}"
        );
        assert_eq!(r.kind, case.kind, "{what}");
        assert_eq!(r.reason, case.reason, "{what}");
        assert_eq!(r.status.as_deref(), Some(case.status), "{what}");
        if let Some(dir) = &write_to {
            std::fs::write(dir.join(format!("postfix-real-{token}.eml")), &raw)
                .expect("write fixture");
        }
        seen.push(token);
    }
    seen.sort();
    let mut want: Vec<String> = cases.iter().map(|c| c.name.to_string()).collect();
    want.sort();
    assert_eq!(seen, want);
}
