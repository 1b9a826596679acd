//! The test servers themselves: a private Postfix delivers to Maildirs and
//! returns real RFC 3464 DSNs to a VERP return path. Everything the
//! end-to-end tests of the send and feedback pipelines rely on is proven
//! here first, so a failure points at the harness and not at cartero.

mod common;

use std::fs;
use std::time::Duration;

use common::servers::{self, DOMAIN, Postfix, PostfixOptions, REFUSED_DOMAIN, SOFT_DOMAIN};

fn read(path: &std::path::Path) -> String {
    String::from_utf8_lossy(&fs::read(path).expect("read message")).into_owned()
}

/// The value of the first header `name` in a raw message (unfolded).
fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\n\n").next()?;
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

#[test]
fn postfix_delivers_to_user_maildirs() {
    let Some(pf) = Postfix::start() else { return };
    let msg = servers::test_message(
        "sender@cartero.test",
        "alice@example.org",
        "Hello Alice",
        "Personal body for alice",
    );
    servers::smtp_send(
        pf.smtp_port(),
        "sender@cartero.test",
        &["alice@example.org"],
        &msg,
    )
    .expect("postfix accepts mail for alice");
    let files = pf.wait_for_messages("alice", 1, Duration::from_secs(20));
    assert_eq!(files.len(), 1);
    let text = read(&files[0]);
    assert_eq!(header(&text, "Subject").as_deref(), Some("Hello Alice"));
    assert_eq!(
        header(&text, "Delivered-To").as_deref(),
        Some("alice@example.org")
    );
    assert!(text.contains("Personal body for alice"));
    // Nothing leaked into the other mailboxes.
    assert!(servers::maildir_messages(&pf.maildir("bob")).is_empty());
    assert!(servers::maildir_messages(&pf.maildir("bounces")).is_empty());
}

#[test]
fn plus_address_lands_in_base_mailbox_with_full_address() {
    let Some(pf) = Postfix::start() else { return };
    let to = "bounces+tok-42.abc@example.org";
    let msg = servers::test_message("x@cartero.test", to, "verp", "v");
    servers::smtp_send(pf.smtp_port_rejecting(), "x@cartero.test", &[to], &msg)
        .expect("plus address of a known user is accepted even on the rejecting port");
    let files = pf.wait_for_messages("bounces", 1, Duration::from_secs(20));
    let text = read(&files[0]);
    assert_eq!(header(&text, "X-Original-To").as_deref(), Some(to));
    assert_eq!(header(&text, "Delivered-To").as_deref(), Some(to));
}

#[test]
fn rejecting_port_refuses_unknown_user_at_rcpt() {
    let Some(pf) = Postfix::start() else { return };
    let msg = servers::test_message("a@cartero.test", "nobody@example.org", "s", "b");
    let err = servers::smtp_send(
        pf.smtp_port_rejecting(),
        "bounces+t1@example.org",
        &["nobody@example.org"],
        &msg,
    )
    .expect_err("unknown user must be rejected at RCPT");
    assert!(err.contains("550"), "{err}");
    // Rejected in the SMTP dialogue: no DSN is generated.
    std::thread::sleep(Duration::from_millis(500));
    assert!(servers::maildir_messages(&pf.maildir("bounces")).is_empty());
}

#[test]
fn unknown_user_and_refused_domain_come_back_as_dsns_to_verp_address() {
    let Some(pf) = Postfix::start() else { return };
    for (token, rcpt) in [
        ("tok-unknown", format!("nobody@{DOMAIN}")),
        ("tok-refused", format!("carol@{REFUSED_DOMAIN}")),
    ] {
        let sender = format!("bounces+{token}@{DOMAIN}");
        let msg = servers::test_message(&sender, &rcpt, "campaign", "body");
        servers::smtp_send(pf.smtp_port(), &sender, &[&rcpt], &msg)
            .expect("accepting port takes the message");
    }
    let files = pf.wait_for_messages("bounces", 2, Duration::from_secs(30));
    assert_eq!(files.len(), 2);
    let mut seen = Vec::new();
    for f in &files {
        let text = read(f);
        let to = header(&text, "X-Original-To").expect("X-Original-To");
        assert!(
            text.contains("multipart/report") && text.contains("report-type=delivery-status"),
            "not an RFC 3464 DSN:\n{text}"
        );
        assert!(text.contains("Action: failed"), "{text}");
        if to == format!("bounces+tok-unknown@{DOMAIN}") {
            assert!(text.contains(&format!("Final-Recipient: rfc822; nobody@{DOMAIN}")));
            assert!(text.contains("Status: 5.1.1"), "{text}");
        } else if to == format!("bounces+tok-refused@{DOMAIN}") {
            assert!(text.contains(&format!("Final-Recipient: rfc822; carol@{REFUSED_DOMAIN}")));
            assert!(text.contains("Status: 5.1.2"), "{text}");
        } else {
            panic!("unexpected DSN to {to}:\n{text}");
        }
        seen.push(to);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 2, "one DSN per failed send");
}

#[test]
fn soft_failing_domain_gives_a_4_4_1_dsn_after_the_queue_lifetime() {
    let Some(pf) = Postfix::start_with(PostfixOptions {
        queue_lifetime: Duration::from_secs(5),
        ..PostfixOptions::default()
    }) else {
        return;
    };
    let sender = format!("bounces+tok-soft@{DOMAIN}");
    let rcpt = format!("dave@{SOFT_DOMAIN}");
    let msg = servers::test_message(&sender, &rcpt, "s", "b");
    servers::smtp_send(pf.smtp_port(), &sender, &[&rcpt], &msg).expect("accepted");
    let files = pf.wait_for_messages("bounces", 1, Duration::from_secs(90));
    let text = read(&files[0]);
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("Status: 4.4.1"), "{text}");
    assert!(text.contains(&format!("Final-Recipient: rfc822; {rcpt}")));
}

#[test]
fn instances_are_isolated() {
    let (Some(a), Some(b)) = (Postfix::start(), Postfix::start()) else {
        return;
    };
    assert_ne!(a.smtp_port(), b.smtp_port());
    assert_ne!(a.maildir("alice"), b.maildir("alice"));
    let msg = servers::test_message("s@cartero.test", "bob@example.org", "iso", "b");
    servers::smtp_send(a.smtp_port(), "s@cartero.test", &["bob@example.org"], &msg).expect("sent");
    a.wait_for_messages("bob", 1, Duration::from_secs(20));
    assert!(servers::maildir_messages(&b.maildir("bob")).is_empty());
}

#[test]
fn smtp_sink_accepts_mail() {
    let Some(sink) = servers::SmtpSink::start() else {
        return;
    };
    let msg = servers::test_message("s@cartero.test", "x@anywhere.test", "s", "b");
    servers::smtp_send(sink.port(), "s@cartero.test", &["x@anywhere.test"], &msg)
        .expect("sink accepts");
}

/// A minimal IMAP exchange over std TCP: each command's tagged reply and
/// everything before it.
fn imap_dialogue(port: u16, commands: &[&str]) -> Vec<String> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut greeting = String::new();
    reader.read_line(&mut greeting).expect("greeting");
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let mut out = Vec::new();
    let mut writer = stream;
    for (i, cmd) in commands.iter().enumerate() {
        let tag = format!("a{i}");
        write!(writer, "{tag} {cmd}\r\n").expect("write");
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read") == 0 {
                break;
            }
            reply.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                break;
            }
        }
        out.push(reply);
    }
    out
}

#[test]
fn dovecot_serves_the_postfix_maildir_over_imap() {
    let Some(pf) = Postfix::start() else { return };
    let sender = format!("bounces+tok-imap@{DOMAIN}");
    let msg = servers::test_message(&sender, "nobody@example.org", "s", "b");
    servers::smtp_send(pf.smtp_port(), &sender, &["nobody@example.org"], &msg).expect("sent");
    pf.wait_for_messages("bounces", 1, Duration::from_secs(20));
    let Some(dovecot) = servers::Dovecot::start(&[("bounces", pf.maildir("bounces"))]) else {
        return;
    };
    let replies = imap_dialogue(
        dovecot.imap_port(),
        &[
            &format!("LOGIN bounces {}", servers::IMAP_PASSWORD),
            "SELECT INBOX",
            "FETCH 1 (BODY.PEEK[HEADER.FIELDS (X-ORIGINAL-TO)])",
            "LOGOUT",
        ],
    );
    assert!(
        replies[0].contains("a0 OK"),
        "{replies:?}\n{}",
        dovecot.log()
    );
    assert!(replies[1].contains("* 1 EXISTS"), "{replies:?}");
    assert!(
        replies[2].contains("X-Original-To: bounces+tok-imap@example.org"),
        "{replies:?}"
    );
}

#[test]
fn dovecot_rejects_a_wrong_password_and_offers_tls() {
    let Some(pf) = Postfix::start() else { return };
    let Some(dovecot) = servers::Dovecot::start_with_tls(&[("alice", pf.maildir("alice"))]) else {
        return;
    };
    let replies = imap_dialogue(
        dovecot.imap_port(),
        &["CAPABILITY", "LOGIN alice wrong-password", "LOGOUT"],
    );
    assert!(replies[0].contains("STARTTLS"), "{replies:?}");
    assert!(replies[1].contains("a1 NO"), "{replies:?}");
    assert!(dovecot.imaps_port().is_some());
    assert!(dovecot.ca_cert().exists());
}

#[test]
fn smtp_recorder_records_accepted_mail_and_refuses_as_told() {
    let rec = servers::SmtpRecorder::start();
    let msg = b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n";
    servers::smtp_send(
        rec.port(),
        "bounces+t@example.test",
        &["a@x.test", "b@x.test"],
        msg,
    )
    .expect("accepted");
    servers::smtp_send(rec.port(), "s@example.test", &["a@x.test"], msg).expect("accepted");
    let err = servers::smtp_send(rec.port(), "s@example.test", &["reject-me@x.test"], msg)
        .expect_err("550 for reject*");
    assert!(err.contains("550") || err.contains("permanent"), "{err}");
    let err = servers::smtp_send(rec.port(), "s@example.test", &["tempfail@x.test"], msg)
        .expect_err("451 for tempfail*");
    assert!(err.contains("451") || err.contains("transient"), "{err}");

    let got = rec.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].mail_from, "bounces+t@example.test");
    assert_eq!(got[0].rcpt_to, vec!["a@x.test", "b@x.test"]);
    // lettre ends DATA with CRLF.CRLF after the message's own last CRLF,
    // so the recorded data may carry one more CRLF than was given.
    assert!(
        got[0].data.starts_with(msg),
        "dot-stuffing undone: {:?}",
        String::from_utf8_lossy(&got[0].data)
    );
    let counts = rec.count_by_recipient();
    assert_eq!(counts.get("a@x.test"), Some(&2));
    assert_eq!(counts.get("b@x.test"), Some(&1));
    assert_eq!(counts.get("reject-me@x.test"), None);
    assert!(rec.connections() >= 4);
}
