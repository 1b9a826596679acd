//! Mailbox sources against real servers: Postfix delivers DSNs and mail
//! into the bounces Maildir, which is read directly, as an mbox built from
//! it, and over IMAP from a Dovecot serving it (plain, STARTTLS, IMAPS).
//! Each source must yield every message once and nothing after the acks.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use cartero::config::{Config, FeedbackConfig, ImapSecurity, MailboxKind};
use cartero::feedback::source::{Mailbox, Outcome, RawMessage, SourceError};
use common::servers::{self, DOMAIN, Dovecot, IMAP_PASSWORD, Postfix};

/// Fills the bounces Maildir with `n` messages: one real DSN (unknown
/// user) and `n - 1` plain messages to VERP addresses.
fn postfix_with_bounces(n: usize) -> Option<Postfix> {
    let pf = Postfix::start()?;
    let sender = format!("bounces+tok-0@{DOMAIN}");
    let msg = servers::test_message(&sender, "ghost@example.test", "to a ghost", "b");
    servers::smtp_send(pf.smtp_port(), &sender, &[&format!("ghost@{DOMAIN}")], &msg).expect("sent");
    for i in 1..n {
        let to = format!("bounces+tok-{i}@{DOMAIN}");
        let body = format!("message {i}\r\nFrom here on the body has a From line\r\n");
        let msg = servers::test_message("x@cartero.test", &to, &format!("m{i}"), &body);
        servers::smtp_send(pf.smtp_port(), "x@cartero.test", &[&to], &msg).expect("sent");
    }
    pf.wait_for_messages("bounces", n, Duration::from_secs(30));
    Some(pf)
}

fn config(feedback: FeedbackConfig, base: &Path) -> Config {
    let mut c = Config {
        feedback,
        ..Config::default()
    };
    c.base_dir = base.to_path_buf();
    c
}

fn imap_config(port: u16, security: ImapSecurity, processed_folder: &str) -> FeedbackConfig {
    FeedbackConfig {
        source: MailboxKind::Imap,
        imap_host: "127.0.0.1".into(),
        imap_port: port,
        imap_security: security,
        imap_user: "bounces".into(),
        imap_password: IMAP_PASSWORD.into(),
        imap_processed_folder: processed_folder.into(),
        ..FeedbackConfig::default()
    }
}

async fn read_all(mailbox: &mut Mailbox) -> Vec<RawMessage> {
    let mut out = Vec::new();
    while let Some(m) = mailbox.next().await.expect("read") {
        out.push(m);
    }
    out
}

fn text(m: &RawMessage) -> String {
    String::from_utf8_lossy(&m.bytes).into_owned()
}

/// The VERP address each message was delivered to, sorted.
fn original_to(messages: &[RawMessage]) -> Vec<String> {
    let mut v: Vec<String> = messages
        .iter()
        .map(|m| {
            text(m)
                .lines()
                .find_map(|l| l.strip_prefix("X-Original-To: ").map(str::to_string))
                .expect("X-Original-To")
        })
        .collect();
    v.sort();
    v
}

fn expected_addresses(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n)
        .map(|i| format!("bounces+tok-{i}@{DOMAIN}"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn maildir_source_reads_postfix_deliveries_once() {
    let Some(pf) = postfix_with_bounces(3) else {
        return;
    };
    let maildir = pf.maildir("bounces");
    let cfg = config(
        FeedbackConfig {
            source: MailboxKind::Maildir,
            path: maildir.clone(),
            ..FeedbackConfig::default()
        },
        Path::new("/"),
    );
    let mut mailbox = Mailbox::open(&cfg).await.expect("open maildir");
    let got = read_all(&mut mailbox).await;
    assert_eq!(original_to(&got), expected_addresses(3));
    let dsn = got
        .iter()
        .find(|m| text(m).contains("report-type=delivery-status"))
        .expect("the DSN is among them");
    for m in &got {
        let outcome = if m.id == dsn.id {
            Outcome::Processed
        } else {
            Outcome::KeptAside {
                reason: "test: not a bounce".into(),
            }
        };
        mailbox.ack(&m.id, &outcome).await.expect("ack");
    }
    mailbox.close().await.expect("close");
    assert_eq!(
        servers::maildir_messages(&maildir.join(".Processed")).len(),
        1
    );
    assert_eq!(
        servers::maildir_messages(&maildir.join(".KeptAside")).len(),
        2
    );
    let mut again = Mailbox::open(&cfg).await.expect("reopen");
    assert!(
        read_all(&mut again).await.is_empty(),
        "a re-read yields nothing"
    );
}

#[tokio::test]
async fn mbox_source_reads_an_mbox_of_the_deliveries_once() {
    let Some(pf) = postfix_with_bounces(3) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let mbox = dir.path().join("bounces.mbox");
    let mut originals = Vec::new();
    let mut file = Vec::new();
    for path in servers::maildir_messages(&pf.maildir("bounces")) {
        let bytes = fs::read(&path).expect("read");
        file.extend_from_slice(b"From MAILER-DAEMON Mon Nov 23 05:00:00 2026\n");
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            // mboxrd quoting, as a delivery agent writes it.
            let quotes = line.iter().take_while(|&&b| b == b'>').count();
            if line[quotes..].starts_with(b"From ") {
                file.push(b'>');
            }
            file.extend_from_slice(line);
        }
        file.push(b'\n');
        originals.push(bytes);
    }
    fs::write(&mbox, &file).expect("write mbox");
    let cfg = config(
        FeedbackConfig {
            source: MailboxKind::Mbox,
            path: "bounces.mbox".into(),
            ..FeedbackConfig::default()
        },
        dir.path(),
    );
    let mut mailbox = Mailbox::open(&cfg).await.expect("open mbox");
    let got = read_all(&mut mailbox).await;
    let got_bytes: Vec<Vec<u8>> = got.iter().map(|m| m.bytes.clone()).collect();
    assert_eq!(got_bytes, originals, "byte for byte, quoting undone");
    // Postfix delivers the three in any order: find the one with the line.
    assert!(
        got.iter()
            .any(|m| text(m).contains("\nFrom here on the body")),
        "a body line starting with From survives the round trip"
    );
    for m in &got {
        mailbox.ack(&m.id, &Outcome::Processed).await.expect("ack");
    }
    let mut again = Mailbox::open(&cfg).await.expect("reopen");
    assert!(read_all(&mut again).await.is_empty());
    assert_eq!(
        fs::read(&mbox).expect("mbox"),
        file,
        "the mbox is untouched"
    );
}

#[tokio::test]
async fn imap_source_moves_processed_and_kept_aside_messages() {
    let Some(pf) = postfix_with_bounces(4) else {
        return;
    };
    let maildir = pf.maildir("bounces");
    let Some(dovecot) = Dovecot::start(&[("bounces", maildir.clone())]) else {
        return;
    };
    let fb = imap_config(dovecot.imap_port(), ImapSecurity::Plain, "Processed");
    let cfg = config(fb, Path::new("/"));
    let mut mailbox = Mailbox::open(&cfg).await.expect("IMAP login");
    let got = read_all(&mut mailbox).await;
    assert_eq!(
        original_to(&got),
        expected_addresses(4),
        "{}",
        dovecot.log()
    );
    // Bodies over IMAP are the delivered files, byte for byte.
    let mut on_disk: Vec<Vec<u8>> = servers::maildir_messages(&maildir)
        .iter()
        .map(|p| fs::read(p).expect("read"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace("\r\n", "\n")
                .into_bytes()
        })
        .collect();
    let mut over_imap: Vec<Vec<u8>> = got
        .iter()
        .map(|m| text(m).replace("\r\n", "\n").into_bytes())
        .collect();
    on_disk.sort();
    over_imap.sort();
    assert_eq!(on_disk, over_imap);

    for (i, m) in got.iter().enumerate() {
        let outcome = if i == 0 {
            Outcome::KeptAside {
                reason: "test".into(),
            }
        } else {
            Outcome::Processed
        };
        mailbox.ack(&m.id, &outcome).await.expect("ack");
    }
    mailbox.close().await.expect("logout");

    let mut again = Mailbox::open(&cfg).await.expect("second login");
    assert!(
        read_all(&mut again).await.is_empty(),
        "nothing new on a second run"
    );
    again.close().await.expect("logout");
    // Dovecot keeps IMAP folders as Maildir++ folders.
    assert_eq!(
        servers::maildir_messages(&maildir.join(".Processed")).len(),
        3
    );
    assert_eq!(
        servers::maildir_messages(&maildir.join(".KeptAside")).len(),
        1
    );
    assert!(servers::maildir_messages(&maildir).is_empty());
}

#[tokio::test]
async fn imap_source_flags_seen_without_a_processed_folder() {
    let Some(pf) = postfix_with_bounces(2) else {
        return;
    };
    let maildir = pf.maildir("bounces");
    let Some(dovecot) = Dovecot::start(&[("bounces", maildir.clone())]) else {
        return;
    };
    let cfg = config(
        imap_config(dovecot.imap_port(), ImapSecurity::Plain, ""),
        Path::new("/"),
    );
    let mut mailbox = Mailbox::open(&cfg).await.expect("login");
    let got = read_all(&mut mailbox).await;
    assert_eq!(got.len(), 2);
    // Only the first is acknowledged: the second must come back.
    mailbox
        .ack(&got[0].id, &Outcome::Processed)
        .await
        .expect("ack");
    mailbox.close().await.expect("logout");
    let mut again = Mailbox::open(&cfg).await.expect("login");
    let left = read_all(&mut again).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, got[1].id);
    again.close().await.expect("logout");
    // Still in the INBOX, the first one flagged seen.
    let files = servers::maildir_messages(&maildir);
    assert_eq!(files.len(), 2);
    let seen = files
        .iter()
        .filter(|p| {
            p.to_string_lossy()
                .rsplit_once(":2,")
                .is_some_and(|(_, f)| f.contains('S'))
        })
        .count();
    assert_eq!(seen, 1, "{files:?}");
}

#[tokio::test]
async fn imap_source_over_starttls_and_imaps_with_a_private_ca() {
    let Some(pf) = postfix_with_bounces(2) else {
        return;
    };
    let Some(dovecot) = Dovecot::start_with_tls(&[("bounces", pf.maildir("bounces"))]) else {
        return;
    };
    let imaps = dovecot.imaps_port().expect("imaps port");
    for (port, security) in [
        (dovecot.imap_port(), ImapSecurity::Starttls),
        (imaps, ImapSecurity::Tls),
    ] {
        let mut fb = imap_config(port, security, "Processed");
        fb.imap_ca_file = Some(dovecot.ca_cert());
        let cfg = config(fb, Path::new("/"));
        let mut mailbox = Mailbox::open(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}\n{}", dovecot.log()));
        let got = read_all(&mut mailbox).await;
        assert_eq!(got.len(), 2, "{security:?}");
        mailbox.close().await.expect("logout");
    }
    assert!(
        dovecot.log().contains("TLS"),
        "the sessions were encrypted:\n{}",
        dovecot.log()
    );
}

#[tokio::test]
async fn imap_tls_rejects_an_untrusted_certificate() {
    let Some(pf) = Postfix::start() else {
        return;
    };
    let Some(dovecot) = Dovecot::start_with_tls(&[("bounces", pf.maildir("bounces"))]) else {
        return;
    };
    let fb = imap_config(
        dovecot.imaps_port().expect("imaps"),
        ImapSecurity::Tls,
        "Processed",
    );
    let err = Mailbox::open(&config(fb, Path::new("/")))
        .await
        .err()
        .expect("no CA file: the test CA is not trusted");
    assert!(
        matches!(&err, SourceError::Imap { message, .. } if message.contains("TLS handshake")),
        "{err}"
    );
}

#[tokio::test]
async fn imap_wrong_password_is_a_clear_error() {
    let Some(pf) = Postfix::start() else {
        return;
    };
    let Some(dovecot) = Dovecot::start(&[("bounces", pf.maildir("bounces"))]) else {
        return;
    };
    let mut fb = imap_config(dovecot.imap_port(), ImapSecurity::Plain, "Processed");
    fb.imap_password = "wrong".into();
    let err = Mailbox::open(&config(fb, Path::new("/")))
        .await
        .err()
        .expect("login fails");
    let msg = err.to_string();
    assert!(msg.contains("login as \"bounces\" failed"), "{msg}");
    assert!(!msg.contains("wrong"), "the password never shows: {msg}");
}

/// `feedback.max_message_bytes` bounds what is read of each message: over
/// IMAP (a partial fetch, RFC 3501 §6.4.5) and from a Maildir, a message
/// longer than the limit arrives cut one byte past it, so the ingest sees
/// it is too long without it ever being held in memory whole; shorter ones
/// arrive whole.
#[tokio::test]
async fn a_message_is_read_only_up_to_max_message_bytes() {
    let Some(pf) = postfix_with_bounces(2) else {
        return;
    };
    let maildir = pf.maildir("bounces");
    let Some(dovecot) = Dovecot::start(&[("bounces", maildir.clone())]) else {
        return;
    };
    let sizes: Vec<usize> = servers::maildir_messages(&maildir)
        .iter()
        .map(|p| fs::read(p).expect("read").len())
        .collect();
    let limit = (*sizes.iter().min().unwrap() + *sizes.iter().max().unwrap()) / 2;
    assert!(
        sizes.iter().any(|&s| s > limit) && sizes.iter().any(|&s| s <= limit),
        "{sizes:?}"
    );
    let mut fb = imap_config(dovecot.imap_port(), ImapSecurity::Plain, "Processed");
    fb.max_message_bytes = limit as u64;
    let imap = {
        let mut mailbox = Mailbox::open(&config(fb, Path::new("/")))
            .await
            .expect("IMAP login");
        let got = read_all(&mut mailbox).await;
        mailbox.close().await.expect("close");
        got
    };
    let local = {
        let mut mailbox = Mailbox::open(&config(
            FeedbackConfig {
                source: MailboxKind::Maildir,
                path: maildir.clone(),
                max_message_bytes: limit as u64,
                ..FeedbackConfig::default()
            },
            Path::new("/"),
        ))
        .await
        .expect("open maildir");
        read_all(&mut mailbox).await
    };
    // Dovecot serves the messages with CRLF line ends (a little longer
    // than the LF files), so the small one is compared with the limit.
    for got in [&imap, &local] {
        let mut lens: Vec<usize> = got.iter().map(|m| m.bytes.len()).collect();
        lens.sort_unstable();
        assert_eq!(lens.len(), 2);
        assert!(lens[0] <= limit, "{lens:?} {limit}");
        assert_eq!(lens[1], limit + 1, "{}", dovecot.log());
    }
}
