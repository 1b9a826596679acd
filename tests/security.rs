//! What a hostile contact record, template or server must not achieve
//! (issue 15, docs/SECURITY.md): each test runs the real binary against a
//! real database on both backends.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr, stdout};

/// The header block of a message, unfolded, as (name, value) pairs.
fn headers(msg: &str) -> Vec<(String, String)> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.to_string(), v.trim().to_string()));
        }
    }
    out
}

fn outbox_messages(p: &Project) -> Vec<String> {
    let dir = p.file("outbox/c");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

/// Issue 15, item 3: a line break or control character in one contact's
/// name fails (or is cleaned for) that contact alone; `check`, `preview`,
/// `--dry-run` and `send` go on for everyone, and the pre-flight never
/// renders a contact who is not on the campaign's list.
#[tokio::test(flavor = "multi_thread")]
async fn a_control_character_in_one_name_stops_nobody_else() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        // The lowest id, on another list, without the `city` the template
        // needs: the campaign would never mail Zed, so nothing may render
        // for Zed.
        p.write("other.csv", "email,first_name\nzed@example.com,Zed\n");
        let out = p.run(&[
            "contacts",
            "import",
            "other.csv",
            "--list",
            "other",
            "--consent-source",
            "test",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = p.import(
            "email,first_name,city\n\
             ana@example.com,\"Ana\r\nBcc: evil@attacker.example\u{1b}]0;pwned\u{7}\",Madrid\n\
             bob@example.com,Bob,Lisboa\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));

        let check = p.run(&["campaign", "check", "campaigns/c.toml"]);
        assert!(check.status.success(), "{}", stderr(&check));
        let printed = stdout(&check);
        assert!(!printed.contains("zed@"), "{printed}");

        let preview = p.run(&[
            "campaign",
            "preview",
            "campaigns/c.toml",
            "--contact",
            "ana@example.com",
        ]);
        assert!(preview.status.success(), "{}", stderr(&preview));
        let msg = stdout(&preview);
        let hs = headers(&msg);
        assert!(
            !hs.iter().any(|(n, _)| n.eq_ignore_ascii_case("bcc")),
            "{msg}"
        );
        let to = &hs.iter().find(|(n, _)| n == "To").expect("To").1;
        assert!(to.ends_with("<ana@example.com>"), "{to}");
        assert!(!msg.contains('\u{1b}') && !msg.contains('\u{7}'), "{msg}");
        // The name is kept, cleaned to one line: its controls became
        // spaces, and lettre encodes the phrase per RFC 2047 (it holds
        // specials that a bare phrase may not, RFC 5322 §3.2.3).
        let subject = &hs.iter().find(|(n, _)| n == "Subject").expect("Subject").1;
        assert_eq!(subject, "Hola Ana Bcc: evil@attacker.example ]0;pwned");
        let word = to
            .strip_prefix("=?utf-8?b?")
            .and_then(|w| w.split_once("?=").map(|x| x.0))
            .unwrap_or_else(|| panic!("{to}"));
        use base64::Engine;
        let name = base64::engine::general_purpose::STANDARD
            .decode(word)
            .unwrap();
        assert_eq!(name, b"Ana Bcc: evil@attacker.example ]0;pwned");

        let dry = p.run(&["campaign", "send", "campaigns/c.toml", "--dry-run"]);
        assert!(dry.status.success(), "{}", stderr(&dry));
        let report = stdout(&dry);
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("would send") && l.trim_end().ends_with(" 2")),
            "{report}"
        );

        let sent = p.run(&["campaign", "send", "campaigns/c.toml"]);
        assert!(sent.status.success(), "{}", stderr(&sent));
        let report = stdout(&sent);
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("accepted") && l.split_whitespace().nth(1) == Some("2")),
            "{report}"
        );
        let msgs = outbox_messages(&p);
        assert_eq!(msgs.len(), 2);
        for m in &msgs {
            assert!(
                !headers(m)
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("bcc")),
                "{m}"
            );
        }
    }
}

/// Issue 15, item 4: a template cannot read the process environment (the
/// SMTP password, the signing secret), whatever the command.
#[tokio::test(flavor = "multi_thread")]
async fn templates_cannot_read_the_environment() {
    const CANARY: &str = "canary-5b1e-smtp-password";
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        assert!(
            p.import("email,first_name,city\nana@example.com,Ana,Madrid\n")
                .status
                .success()
        );
        p.write(
            "templates/c.html",
            "<p>{{ get_env(name=\"SECURITY_TEST_CANARY\", default=\"none\") }}</p>",
        );
        for args in [
            &["campaign", "check", "campaigns/c.toml"][..],
            &[
                "campaign",
                "preview",
                "campaigns/c.toml",
                "--contact",
                "ana@example.com",
            ],
            &["campaign", "send", "campaigns/c.toml", "--dry-run"],
            &["campaign", "send", "campaigns/c.toml"],
        ] {
            let out = p
                .command(args)
                .env("SECURITY_TEST_CANARY", CANARY)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
            assert!(!stdout(&out).contains(CANARY) && !stderr(&out).contains(CANARY));
        }
        assert!(!p.file("outbox").exists() || outbox_messages(&p).is_empty());
    }
}

/// A plain-text SMTP server that offers AUTH and no STARTTLS (as a server
/// whose STARTTLS an attacker stripped looks), recording every AUTH line.
struct AuthNoTls {
    addr: std::net::SocketAddr,
    auth_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AuthNoTls {
    fn start(ip: std::net::IpAddr) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
        let addr = listener.local_addr().unwrap();
        let auth_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = auth_lines.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || -> std::io::Result<()> {
                    let mut out = stream.try_clone()?;
                    let mut input = BufReader::new(stream);
                    out.write_all(b"220 stripped.test ESMTP\r\n")?;
                    let mut line = String::new();
                    let mut in_data = false;
                    loop {
                        line.clear();
                        if input.read_line(&mut line)? == 0 {
                            return Ok(());
                        }
                        if in_data {
                            if line == ".\r\n" {
                                in_data = false;
                                out.write_all(b"250 2.0.0 queued\r\n")?;
                            }
                            continue;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" => {
                                b"250-stripped.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
                            }
                            "AUTH" => {
                                seen.lock().unwrap().push(line.trim_end().to_string());
                                b"235 2.7.0 accepted\r\n"
                            }
                            "DATA" => {
                                in_data = true;
                                b"354 go on\r\n"
                            }
                            "QUIT" => {
                                out.write_all(b"221 bye\r\n")?;
                                return Ok(());
                            }
                            _ => b"250 2.0.0 ok\r\n",
                        };
                        out.write_all(reply)?;
                    }
                });
            }
        });
        AuthNoTls { addr, auth_lines }
    }

    fn auth_lines(&self) -> Vec<String> {
        self.auth_lines.lock().unwrap().clone()
    }
}

/// An address of this machine that is not loopback (the source address of
/// a route out), or None when the machine has none.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    for target in ["192.0.2.1:9", "10.255.255.1:9", "198.51.100.1:9"] {
        let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        if sock.connect(target).is_ok()
            && let Ok(local) = sock.local_addr()
            && !local.ip().is_loopback()
            && !local.ip().is_unspecified()
        {
            return Some(local.ip());
        }
    }
    None
}

/// Issue 15, item 5: with `tls = "opportunistic"` (the default) and a
/// server that offers no STARTTLS, the password is never sent beyond
/// loopback: the send stops before AUTH and writes nothing. To a loopback
/// relay it still authenticates (the control half: the same server and
/// config do get AUTH there). `campaign check` says what will happen.
#[tokio::test(flavor = "multi_thread")]
async fn no_smtp_auth_in_clear_beyond_loopback() {
    let Some(remote_ip) = non_loopback_address() else {
        eprintln!("skipping: this machine has no address beyond loopback");
        return;
    };
    for db in TestDb::all().await {
        for (ip, may_auth) in [(remote_ip, false), ("127.0.0.1".parse().unwrap(), true)] {
            let server = AuthNoTls::start(ip);
            let p = Project::new(
                &db,
                &format!(
                    "[smtp]\nhost = \"{}\"\nport = {}\ntls = \"opportunistic\"\n\
                     username = \"news\"\npassword = \"hunter2-secret\"\ntimeout_secs = 5\n",
                    ip,
                    server.addr.port()
                ),
            );
            assert!(
                p.import("email,first_name,city\nana.{ip}@example.com,Ana,Madrid\n")
                    .status
                    .success()
            );
            let check = p.run(&["campaign", "check", "campaigns/c.toml"]);
            assert!(check.status.success(), "{}", stderr(&check));
            let said = stdout(&check);
            let sent = p.run(&["campaign", "send", "campaigns/c.toml", "--no-wait"]);
            if may_auth {
                assert!(said.contains("relay is on loopback"), "{said}");
                assert!(sent.status.success(), "{}", stderr(&sent));
                assert!(!server.auth_lines().is_empty());
            } else {
                assert!(
                    said.contains("warning") && said.contains("only after STARTTLS"),
                    "{said}"
                );
                assert_eq!(sent.status.code(), Some(1), "{}", stdout(&sent));
                let err = stderr(&sent);
                assert!(
                    err.contains("refusing to send the SMTP password without TLS"),
                    "{err}"
                );
                assert!(!err.contains("hunter2"), "{err}");
                assert_eq!(server.auth_lines(), Vec::<String>::new());
                let sends: i64 = cartero::dispatch!(&db.store, pool => {
                    sqlx::query_scalar("SELECT COUNT(*) FROM sends").fetch_one(pool).await.unwrap()
                });
                assert_eq!(sends, 0);
                // tls = "none" beyond loopback fails the check outright.
                let cfg = std::fs::read_to_string(p.file("cartero.toml")).unwrap();
                p.write(
                    "cartero.toml",
                    &cfg.replace("tls = \"opportunistic\"", "tls = \"none\""),
                );
                let check = p.run(&["campaign", "check", "campaigns/c.toml"]);
                assert_eq!(check.status.code(), Some(1));
                assert!(stderr(&check).contains("never sends the password in clear"));
            }
        }
    }
}

/// Issue 15, item 6: a template linked to a file outside `templates/` is
/// refused (a preview mailed /etc/passwd), and a campaign `id` that could
/// name a path is refused at its place, so no `.eml` lands outside the
/// outbox.
#[tokio::test(flavor = "multi_thread")]
async fn templates_and_ids_cannot_leave_their_folders() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        assert!(
            p.import("email,first_name,city\nana@example.com,Ana,Madrid\n")
                .status
                .success()
        );
        p.write("private/secret.txt", "root:x:0:0:canary-7d2a\n");
        std::fs::remove_file(p.file("templates/c.html")).unwrap();
        std::os::unix::fs::symlink(p.file("private/secret.txt"), p.file("templates/c.html"))
            .unwrap();
        for args in [
            &["campaign", "check", "campaigns/c.toml"][..],
            &[
                "campaign",
                "preview",
                "campaigns/c.toml",
                "--contact",
                "ana@example.com",
            ],
            &["campaign", "send", "campaigns/c.toml"],
        ] {
            let out = p.run(args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert!(
                err.contains("c.toml:7:8:") && err.contains("outside the templates folder"),
                "{err}"
            );
            assert!(!stdout(&out).contains("canary-7d2a"));
        }

        let p = Project::new(&db, "");
        assert!(
            p.import("email,first_name,city\nana@example.com,Ana,Madrid\n")
                .status
                .success()
        );
        let c = std::fs::read_to_string(p.file("campaigns/c.toml")).unwrap();
        p.write("campaigns/c.toml", &format!("id = \"..\"\n{c}"));
        let out = p.run(&["campaign", "send", "campaigns/c.toml"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("c.toml:1:6:"), "{}", stderr(&out));
        let stray: Vec<_> = std::fs::read_dir(p.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .collect();
        assert!(stray.is_empty());
    }
}

/// Issue 15 (Message-IDs): each send's Message-ID holds 128 random bits,
/// is stored in `sends.message_id` before delivery, and is the same when
/// the send is delivered again (a resend after a crash).
#[tokio::test(flavor = "multi_thread")]
async fn message_ids_are_random_stored_and_stable_across_a_resend() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        assert!(
            p.import(
                "email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n\
                 carl@example.com,Carl,Roma\n"
            )
            .status
            .success()
        );
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        let stored = || async {
            cartero::dispatch!(&db.store, pool => {
                sqlx::query_as::<_, (i64, Option<String>)>(
                    "SELECT id, message_id FROM sends ORDER BY id",
                )
                .fetch_all(pool)
                .await
                .unwrap()
            })
        };
        let rows = stored().await;
        assert_eq!(rows.len(), 3);
        let in_file = |id: i64| {
            let m = std::fs::read_to_string(p.file(&format!("outbox/c/{id}.eml"))).unwrap();
            headers(&m)
                .into_iter()
                .find(|(n, _)| n == "Message-ID")
                .map(|(_, v)| v)
                .unwrap()
        };
        let mut seen = std::collections::HashSet::new();
        for (id, mid) in &rows {
            let mid = mid.clone().expect("stored Message-ID");
            let (local, domain) = mid.split_once('@').unwrap();
            assert_eq!(domain, "shop.example");
            let hex = local.strip_prefix("cartero.").unwrap();
            assert_eq!(hex.len(), 32, "{mid}");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{mid}");
            assert!(seen.insert(hex.to_string()));
            assert_eq!(in_file(*id), format!("<{mid}>"));
        }
        // Deliver the first row again, as after a crash: same Message-ID.
        let (first, first_mid) = rows[0].clone();
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE sends SET state = 'pending' WHERE id = $1")
                .bind(first)
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("UPDATE campaigns SET finished_at = NULL")
                .execute(pool)
                .await
                .unwrap();
        });
        std::fs::remove_file(p.file(&format!("outbox/c/{first}.eml"))).unwrap();
        p.ok(&["campaign", "send", "campaigns/c.toml"]);
        assert_eq!(stored().await, rows);
        assert_eq!(in_file(first), format!("<{}>", first_mid.unwrap()));
    }
}

/// Issue 15 (files on disk): under umask 022 the SQLite database, the
/// outbox and its messages, and the rejects of an import are readable by
/// their owner only.
#[tokio::test(flavor = "multi_thread")]
async fn personal_data_files_are_owner_only_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        // A fresh SQLite file the binary creates itself, beside the project.
        let db_url = if db.url.starts_with("sqlite:") {
            format!("sqlite://{}", p.file("own.db").display())
        } else {
            db.url.clone()
        };
        p.write(
            "contacts.csv",
            "email,first_name,city\nana@example.com,Ana,Madrid\nnot an address,X,Y\n",
        );
        let run = |args: &[&str]| {
            let out = std::process::Command::new("sh")
                .current_dir(p.path())
                .arg("-c")
                .arg("umask 022 && exec \"$0\" \"$@\"")
                .arg(env!("CARGO_BIN_EXE_cartero"))
                .arg("--database-url")
                .arg(&db_url)
                .arg("--quiet")
                .args(args)
                .env_remove("CARTERO_CONFIG")
                .env_remove("CARTERO_DATABASE_URL")
                .output()
                .unwrap();
            // An import with a rejected row exits non-zero on purpose.
            assert!(out.status.code().is_some(), "{}", stderr(&out));
        };
        run(&[
            "contacts",
            "import",
            "contacts.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "test",
        ]);
        run(&["campaign", "send", "campaigns/c.toml"]);
        run(&[
            "campaign",
            "preview",
            "campaigns/c.toml",
            "--contact",
            "ana@example.com",
            "-o",
            "ana.eml",
        ]);
        if db.url.starts_with("sqlite:") {
            assert_eq!(mode(&p.file("own.db")), 0o600);
            for side in ["own.db-wal", "own.db-shm"] {
                if p.file(side).exists() {
                    assert_eq!(mode(&p.file(side)), 0o600, "{side}");
                }
            }
        }
        assert_eq!(mode(&p.file("contacts.csv.rejects.csv")), 0o600);
        assert_eq!(mode(&p.file("outbox")), 0o700);
        assert_eq!(mode(&p.file("outbox/c")), 0o700);
        let msgs: Vec<_> = std::fs::read_dir(p.file("outbox/c"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(msgs.len(), 1);
        for m in msgs {
            assert_eq!(mode(&m), 0o600, "{}", m.display());
        }
        assert_eq!(mode(&p.file("ana.eml")), 0o600);
    }
}

/// Issue 15 (the command line): terminal escape sequences in mail anyone
/// can send, and in contact data, never reach the operator's terminal raw.
#[tokio::test(flavor = "multi_thread")]
async fn terminal_escapes_in_mail_and_contacts_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bounces/postfix-userunknown.eml"
    ))
    .unwrap()
    .replace(
        "Diagnostic-Code: smtp; 550 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1 \u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m",
    );
    let file = dir.path().join("evil\u{1b}[31m.eml");
    std::fs::write(&file, dsn).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
        .args(["feedback", "parse"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("\\x1b]0;pwned\\x07"), "{shown}");
    for raw in ['\u{1b}', '\u{7}', '\u{9b}'] {
        assert!(!shown.contains(raw), "{shown:?}");
    }

    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import(
            "email,first_name,city\nana@example.com,\"Ana\u{1b}]0;pwned\u{7}\",Madrid\n\
             \"bad\u{1b}[2J@\",X,Y\n",
        );
        for text in [stdout(&out), stderr(&out)] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}'),
                "{text:?}"
            );
        }
        let out = p.run(&["contacts", "show", "ana@example.com"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let shown = stdout(&out);
        assert!(shown.contains("Ana\\x1b]0;pwned\\x07"), "{shown}");
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
    }
}

/// Issue 15 (segments): a filter beyond what the databases take is refused
/// by the checker with its position; one at the bound runs on both.
#[tokio::test(flavor = "multi_thread")]
async fn segment_filters_are_bounded_with_a_position() {
    use cartero::segment::{MAX_STRING, MAX_TERMS, Segment};
    let terms = |n: usize| {
        (0..n)
            .map(|i| format!("first_name == \"n{i}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let at_bound = Segment::parse("s", &terms(MAX_TERMS)).unwrap();
    let e = Segment::parse("s", &terms(MAX_TERMS + 1)).unwrap_err();
    let text = terms(MAX_TERMS + 1);
    let last_or = text.rfind(" or ").unwrap() + 1;
    assert_eq!(e.span(), Some(last_or..last_or + 2), "{e}");
    assert!(e.to_string().contains("at most 200 conditions"), "{e}");
    let long = format!("email contains \"{}\"", "%_".repeat(MAX_STRING));
    let e = Segment::parse("s", &long).unwrap_err();
    assert_eq!(e.span().map(|s| s.start), Some(15), "{e}");
    let fits = Segment::parse(
        "s",
        &format!("email contains \"{}\"", "a".repeat(MAX_STRING)),
    )
    .unwrap();
    for db in TestDb::all().await {
        assert_eq!(
            cartero::segment::count(&db.store, &at_bound).await.unwrap(),
            0
        );
        assert_eq!(cartero::segment::count(&db.store, &fits).await.unwrap(), 0);
    }
}

/// Issue 15 (address check): stdin is read strictly (invalid UTF-8 is an
/// error naming the line, as the importer rejects it), and a mixed-script
/// (homoglyph) domain gets a flag.
#[test]
fn address_check_reads_stdin_strictly_and_flags_homoglyph_domains() {
    use std::io::Write;
    let run = |input: &[u8]| {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
            .current_dir(dir.path())
            .args(["address", "check", "-", "--format", "json"])
            .env_remove("CARTERO_CONFIG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(b"ana@example.com\nbo\xffb@example.com\n");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("stdin line 2: not valid UTF-8 (at byte 3)"),
        "{err}"
    );

    let out = run("ana@pаypal.com\nana@paypal.com\n".as_bytes());
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", stderr(&out));
    let flags = |v: &serde_json::Value| v["flags"].to_string();
    assert!(flags(&lines[0]).contains("mixed-script"), "{}", lines[0]);
    assert!(!flags(&lines[1]).contains("mixed-script"), "{}", lines[1]);
}
