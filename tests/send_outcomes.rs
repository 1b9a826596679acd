//! What a send does with each kind of answer, and with suppressed contacts:
//! 4xx retried with back-off then failed, 5xx failed with the server's reply,
//! suppressed contacts skipped and counted by reason, dry runs write nothing,
//! the outbox gets one parseable .eml per accepted message.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::db::TestDb;
use common::project::{Project, stderr, stdout};
use common::servers::{Postfix, PostfixOptions, free_port, in_ci};

async fn sends(db: &TestDb) -> Vec<(String, String, i64, Option<String>)> {
    cartero::dispatch!(&db.store, pool => {
        sqlx::query_as("SELECT email, state, attempts, smtp_reply FROM sends ORDER BY email")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_refusals_fail_with_the_servers_reply() {
    // Postfix offers PIPELINING: once through cartero's pipelined
    // transaction, once through lettre's one-command-at-a-time path.
    for pipelining in [true, false] {
        for db in TestDb::all().await {
            let Some(pf) = Postfix::start() else { return };
            // This port refuses unknown users at RCPT with 550 5.1.1. One
            // connection, so the refused recipient sits between two
            // accepted ones and the connection must survive it (RSET).
            let p = Project::new(
                &db,
                &format!(
                    "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 1\n\
                     pipelining = {pipelining}\n",
                    pf.smtp_port_rejecting()
                ),
            );
            let out = p.import(
                "email,first_name,city\nalice@example.org,Alice,Madrid\nnobody@example.org,No,One\n\
                 bob@example.org,Bob,Lyon\n",
            );
            assert!(out.status.success(), "{}", stderr(&out));
            let out = p.run(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
            assert_eq!(
                out.status.code(),
                Some(3),
                "failures exit 3 (pipelining {pipelining}): {}",
                stderr(&out)
            );
            let rows = sends(&db).await;
            let state = |email: &str| {
                rows.iter()
                    .find(|r| r.0 == email)
                    .map(|r| r.1.clone())
                    .unwrap_or_default()
            };
            assert_eq!(state("alice@example.org"), "accepted", "{rows:?}");
            assert_eq!(state("bob@example.org"), "accepted", "{rows:?}");
            assert_eq!(state("nobody@example.org"), "failed", "{rows:?}");
            let reply = rows
                .iter()
                .find(|r| r.0 == "nobody@example.org")
                .and_then(|r| r.3.as_deref())
                .unwrap_or("");
            assert!(
                reply.contains("550") && reply.contains("5.1.1"),
                "the server's reply is kept: {reply}"
            );
            for user in ["alice", "bob"] {
                assert_eq!(
                    pf.wait_for_messages(user, 1, Duration::from_secs(30)).len(),
                    1,
                    "{user} (pipelining {pipelining})"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_refusals_are_retried_with_backoff_then_failed() {
    for db in TestDb::all().await {
        let sink = std::path::Path::new("/usr/sbin/smtp-sink");
        if !sink.exists() {
            assert!(!in_ci(), "CI=true but smtp-sink is missing");
            panic!("smtp-sink is needed: apt-get install postfix");
        }
        let port = free_port();
        // -r rcpt: every RCPT TO gets a 4xx.
        let mut child = Command::new(sink)
            .args(["-u", "postfix", "-r", "rcpt"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let p = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nmax_attempts = 3\nretry_base_secs = 1\n"
            ),
        );
        assert!(
            p.import("email,first_name,city\nana@example.com,Ana,Madrid\n")
                .status
                .success()
        );
        let started = std::time::Instant::now();
        let out = p.run(&["campaign", "send", "campaigns/c.toml"]);
        let elapsed = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let rows = sends(&db).await;
        assert_eq!(rows[0].1, "failed");
        assert_eq!(rows[0].2, 3, "three attempts");
        let reply = rows[0].3.as_deref().unwrap_or("");
        assert!(
            reply.starts_with('4') || reply.contains(" 4"),
            "a 4xx reply: {reply}"
        );
        assert!(reply.contains("gave up after 3 attempts"), "{reply}");
        // Back-off of 1 s then 2 s between the three attempts.
        assert!(
            elapsed >= Duration::from_secs(3),
            "it waited between attempts: {elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn suppressed_contacts_are_skipped_and_the_outbox_gets_the_rest() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        assert!(
            p.import("email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\ncarla@example.com,Carla,Roma\n")
                .status
                .success()
        );
        // dave has no consent for the list; bob unsubscribed; carla bounced.
        p.write(
            "more.csv",
            "email,first_name,city\ndave@example.com,Dave,Oslo\n",
        );
        assert!(p.run(&["contacts", "import", "more.csv"]).status.success());
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE contacts SET status = 'unsubscribed' WHERE email = 'bob@example.com'")
                .execute(pool).await.unwrap();
            sqlx::query("UPDATE contacts SET status = 'bounced' WHERE email = 'carla@example.com'")
                .execute(pool).await.unwrap();
        });

        // A dry run renders and counts, and writes nothing.
        let dry = p.ok(&[
            "campaign",
            "send",
            "campaigns/c.toml",
            "--dry-run",
            "--format",
            "json",
        ]);
        let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
        assert_eq!(dry["tally"]["pending"], 1, "{dry}");
        assert!(sends(&db).await.is_empty(), "dry run wrote no send rows");
        assert!(
            !p.file("outbox").exists()
                || std::fs::read_dir(p.file("outbox/c"))
                    .map(|d| d.count())
                    .unwrap_or(0)
                    == 0
        );

        let out = p.ok(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["tally"]["accepted"], 1, "{r}");
        assert_eq!(r["tally"]["skipped"]["unsubscribed"], 1);
        assert_eq!(r["tally"]["skipped"]["bounced"], 1);
        assert_eq!(r["tally"]["skipped"]["no_consent"], 1);
        let files: Vec<_> = std::fs::read_dir(p.file("outbox/c"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let raw = std::fs::read(&files[0]).unwrap();
        let msg = mail_parser::MessageParser::default()
            .parse(&raw)
            .expect("a parseable message");
        assert_eq!(msg.subject(), Some("Hola Ana"));
        assert!(msg.body_text(0).unwrap().contains("from Madrid"));
        assert!(
            msg.body_html(0)
                .unwrap()
                .contains("https://shop.example/spring?utm_source=cartero")
        );
        assert!(msg.to().unwrap().first().unwrap().address().unwrap() == "ana@example.com");

        // Acceptance stamped the contact's counters (trigger, migration 0003).
        let stats: Vec<(String, i64, Option<i64>)> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as("SELECT email, send_count, last_sent_at FROM contacts ORDER BY email")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        assert_eq!(stats[0].0, "ana@example.com");
        assert_eq!(stats[0].1, 1, "ana's send was counted once");
        assert!(stats[0].2.is_some());
        assert!(
            stats[1..].iter().all(|(_, n, at)| *n == 0 && at.is_none()),
            "{stats:?}"
        );

        // The human report names the skip reasons too.
        let again = p.ok(&["campaign", "send", "campaigns/c.toml"]);
        assert!(
            again.contains("resumed c") && again.contains("no consent for this list"),
            "{again}"
        );
    }
}

/// STARTTLS and implicit TLS (RFC 8314) to a relay whose certificate comes
/// from a private CA named by `smtp.ca_file`: Postfix's Received header says
/// TLS carried each message. Without the CA the certificate is refused
/// before anything is written.
#[tokio::test(flavor = "multi_thread")]
async fn sends_over_starttls_and_implicit_tls_with_a_private_ca() {
    let Some(pf) = Postfix::start_with(PostfixOptions {
        tls: true,
        ..Default::default()
    }) else {
        return;
    };
    let config = |mode: &str, port: u16, ca: bool| {
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{mode}\"\nconcurrency = 1\n{}",
            if ca { "ca_file = \"ca.pem\"\n" } else { "" }
        )
    };
    // Unknown issuer: refused at the pre-flight connection, nothing written.
    for (mode, port) in [("starttls", pf.smtp_port()), ("tls", pf.smtps_port())] {
        for db in TestDb::all().await {
            let p = Project::new(&db, &config(mode, port, false));
            let out = p.import("email,first_name,city\nalice@example.org,Alice,Madrid\n");
            assert!(out.status.success(), "{}", stderr(&out));
            let out = p.run(&["campaign", "send", "campaigns/c.toml"]);
            assert!(!out.status.success(), "{mode}: an unknown CA must fail");
            let err = stderr(&out);
            assert!(
                err.contains("certificate") && err.contains("127.0.0.1"),
                "{mode}: the error names the certificate and the server: {err}"
            );
            assert!(sends(&db).await.is_empty(), "{mode}: nothing written");
        }
    }
    let mut delivered = 0;
    for (mode, port) in [("starttls", pf.smtp_port()), ("tls", pf.smtps_port())] {
        for db in TestDb::all().await {
            let p = Project::new(&db, &config(mode, port, true));
            std::fs::copy(pf.ca_cert(), p.file("ca.pem")).unwrap();
            let out = p.import("email,first_name,city\nalice@example.org,Alice,Madrid\n");
            assert!(out.status.success(), "{}", stderr(&out));
            let out = p.run(&["campaign", "send", "campaigns/c.toml"]);
            assert!(out.status.success(), "{mode}: {}", stderr(&out));
            delivered += 1;
            let mut files = pf.wait_for_messages("alice", delivered, Duration::from_secs(30));
            assert_eq!(files.len(), delivered, "{mode}");
            files.sort_by_key(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok());
            let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
            let received = text
                .split("\n")
                .skip_while(|l| !l.starts_with("Received:"))
                .take_while(|l| l.starts_with("Received:") || l.starts_with([' ', '\t']))
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                received.contains("using TLS"),
                "{mode}: Postfix received it over TLS: {received}"
            );
            assert!(text.contains("Hola Alice"), "{mode}: the message itself");
        }
    }
}

/// A 5xx at RCPT (Postfix: 550 5.1.1 user unknown) is a hard bounce given at
/// once: the same classifier and policy as a bounce mail suppress the
/// contact, with the server's reply as the reason, and the next campaign
/// skips them.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_at_rcpt_suppresses_the_contact_for_the_next_campaign() {
    for db in TestDb::all().await {
        let Some(pf) = Postfix::start() else { return };
        let p = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 1\n",
                pf.smtp_port_rejecting()
            ),
        );
        let out = p.import(
            "email,first_name,city\nalice@example.org,Alice,Madrid\nnobody@example.org,No,One\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = p.run(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["suppressed_by_refusals"], 1, "{r}");
        // The summary breaks the failures down by reason (issue 16 item 12).
        assert_eq!(
            r["failed_by_reason"]["refused by the server (smtp 550)"], 1,
            "{r}"
        );

        let (status, reason): (String, Option<String>) = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as("SELECT status, status_reason FROM contacts WHERE email = 'nobody@example.org'")
                .fetch_one(pool).await.unwrap()
        });
        assert_eq!(status, "bounced");
        let reason = reason.unwrap_or_default();
        assert!(
            reason.starts_with("hard userunknown 5.1.1") && reason.contains("550"),
            "the classification and the server's reply are the cause: {reason}"
        );
        let (cause, rule, event): (String, Option<String>, String) = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as(
                "SELECT s.cause, s.rule, e.kind FROM status_changes s JOIN events e ON e.id = s.event_id \
                 JOIN contacts c ON c.id = s.contact_id WHERE c.email = 'nobody@example.org'",
            )
            .fetch_one(pool).await.unwrap()
        });
        assert_eq!(
            (cause.as_str(), rule.as_deref(), event.as_str()),
            ("bounce", Some("hard-bounce"), "bounce_hard")
        );

        // `campaign status` counts the failure by reason and lists it.
        let status = p.ok(&["campaign", "status", "c"]);
        assert!(
            status.contains("accepted                   1")
                && status.contains("refused by the server (smtp 550)"),
            "{status}"
        );
        let listed = p.ok(&[
            "campaign",
            "status",
            "campaigns/c.toml",
            "--failed",
            "--format",
            "json",
        ]);
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(listed[0]["email"], "nobody@example.org");
        assert!(
            listed[0]["smtp_reply"]
                .as_str()
                .unwrap_or("")
                .contains("5.1.1"),
            "{listed}"
        );

        // The next campaign to the same list leaves them out.
        let c = std::fs::read_to_string(p.file("campaigns/c.toml")).unwrap();
        p.write("campaigns/d.toml", &c.replace("Spring", "Summer"));
        let out = p.run(&["campaign", "send", "campaigns/d.toml", "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["tally"]["accepted"], 1, "{r}");
        assert_eq!(r["tally"]["skipped"]["bounced"], 1, "{r}");
    }
}

/// A dry run of a campaign that was already (partly) sent reports what a
/// real run would do now: nothing again for the accepted, the deferred
/// waiting for their retry, the newly suppressed skipped.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_after_a_send_reports_what_a_real_run_would_do_now() {
    for db in TestDb::all().await {
        let recorder = common::servers::SmtpRecorder::start();
        let p = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 1\n",
                recorder.port()
            ),
        );
        let out = p.import(
            "email,first_name,city\nana@example.org,Ana,Madrid\nbob@example.org,Bob,Lyon\n\
             tempfail@example.org,Temp,Oslo\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = p.run(&["campaign", "send", "campaigns/c.toml", "--no-wait"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(recorder.received().len(), 2);

        let dry = |p: &Project| {
            let out = p.ok(&[
                "campaign",
                "send",
                "campaigns/c.toml",
                "--dry-run",
                "--format",
                "json",
            ]);
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        let d = dry(&p);
        assert_eq!(d["tally"]["accepted"], 2, "{d}");
        assert_eq!(d["tally"]["pending"], 0, "nothing would be sent again: {d}");
        assert_eq!(
            d["tally"]["deferred"], 1,
            "the 451 waits for its retry: {d}"
        );

        // The deferred contact unsubscribes: a real run would skip them.
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE contacts SET status = 'unsubscribed' WHERE email = 'tempfail@example.org'")
                .execute(pool).await.unwrap();
        });
        let d = dry(&p);
        assert_eq!(d["tally"]["deferred"], 0, "{d}");
        assert_eq!(d["tally"]["skipped"]["unsubscribed"], 1, "{d}");

        let human = p.ok(&["campaign", "send", "campaigns/c.toml", "--dry-run"]);
        assert!(
            human.contains("already sent") && human.contains("would send now             0"),
            "{human}"
        );
        assert_eq!(recorder.received().len(), 2, "a dry run sends nothing");
    }
}

/// The text part keeps every link whole, however long (UTM parameters and
/// all), and the unsubscribe link carries no UTM parameters: the message has
/// one unsubscribe URL, the one in List-Unsubscribe.
#[tokio::test(flavor = "multi_thread")]
async fn links_stay_whole_in_the_text_part_and_unsubscribe_links_carry_no_utm() {
    let db = TestDb::all().await.into_iter().next().expect("a backend");
    let p = Project::new(&db, "");
    let long =
        "https://shop.example/spring/collection/women/dresses/linen/with-a-rather-long-path-name";
    p.write(
        "templates/c.html",
        &format!(
            "<html><body><p>Hola {{{{ contact.first_name }}}}, our spring collection is here, with more colours and \
             sizes than ever before and free returns for thirty days: see <a href=\"{long}\">the dresses</a> now.</p>\
             <p><a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a></p></body></html>\n"
        ),
    );
    assert!(
        p.import("email,first_name,city\nana@example.com,Ana,Madrid\n")
            .status
            .success()
    );
    p.ok(&["campaign", "send", "campaigns/c.toml"]);
    let files: Vec<_> = std::fs::read_dir(p.file("outbox/c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let raw = std::fs::read(&files[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let text = msg.body_text(0).unwrap().into_owned();
    let html = msg.body_html(0).unwrap().into_owned();
    let tracked = format!("{long}?utm_source=cartero");
    assert!(html.contains(&tracked), "{html}");
    assert!(
        text.lines().any(|l| l.contains(&tracked)),
        "the long link is whole on one line of the text part:\n{text}"
    );
    // The body's unsubscribe link (cartero's own `/u/` URL) carries no
    // tracking parameters; without [serve] the header advertises only the
    // mailto (docs/SERVE.md), with it the header's URL is this one.
    let unsub = html
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|u| u.contains("/u/"))
        .expect("an unsubscribe link in the body");
    assert!(!unsub.contains("utm_"), "{unsub}\n{html}");
    // The envelope sender SMTP would carry, recorded as a receiver would.
    let return_path = msg.header_raw("Return-Path").expect("Return-Path");
    assert!(
        return_path.trim().starts_with("<bounces+") && return_path.contains("@example.org>"),
        "{return_path}"
    );
    let header = msg
        .header_raw("List-Unsubscribe")
        .expect("List-Unsubscribe");
    if let Some(https) = header.split(['<', '>']).find(|s| s.starts_with("https://")) {
        assert_eq!(https, unsub, "the body's unsubscribe link is the header's");
    }
    assert!(
        text.lines().any(|l| l.contains(unsub)),
        "the unsubscribe link is whole in the text part:\n{text}"
    );
}

/// A template that needs an attribute some contacts lack: `campaign check`
/// renders every recipient and names each one that fails with the
/// template's file:line:col; the send names them too; once the template is
/// fixed, the next run renders and sends them.
#[tokio::test(flavor = "multi_thread")]
async fn render_failures_are_listed_named_and_retried_after_a_fix() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        p.write(
            "templates/c.html",
            "<html><body>\n<p>Hola {{ contact.first_name }}</p>\n<p>Your plan: {{ contact.attributes.plan }}</p>\n</body></html>\n",
        );
        let out = p.import(
            "email,first_name,plan\nana@example.com,Ana,gold\nbob@example.com,Bob,\ncarla@example.com,Carla,silver\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));

        let out = p.run(&["campaign", "check", "campaigns/c.toml"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("cannot render for 1 of 3 recipients"), "{err}");
        assert!(
            err.contains("bob@example.com") && err.contains("c.html:3:18") && !err.contains("ana@"),
            "the failing contact and the place in the template: {err}"
        );

        let out = p.run(&["campaign", "send", "campaigns/c.toml"]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let report = stdout(&out);
        assert!(
            report.contains("bob@example.com") && report.contains("c.html:3:18"),
            "the send names the failure: {report}"
        );

        // Fixed with a default: the next run renders and sends Bob's.
        p.write(
            "templates/c.html",
            "<html><body>\n<p>Hola {{ contact.first_name }}</p>\n<p>Your plan: {{ contact.attributes.plan | default(value=\"basic\") }}</p>\n</body></html>\n",
        );
        let out = p.run(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["tally"]["accepted"], 3, "{r}");
        assert_eq!(r["tally"]["failed"], 0, "{r}");
    }
}
