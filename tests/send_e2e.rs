//! End to end through a real Postfix: import, send with DKIM, read the
//! delivered messages back from the Maildirs, and see the DSN for an unknown
//! user arrive in the bounces Maildir through the VERP return path.

mod common;

use std::process::Command;
use std::time::Duration;

use common::db::TestDb;
use common::project::{Project, SECRET, stderr, stdout};
use common::servers::{Postfix, in_ci};

fn openssl(args: &[&str], dir: &std::path::Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed to make a DKIM key");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    out.stdout
}

/// Verifies a DKIM signature with dkimpy, given the public key directly (no DNS).
fn dkim_verify(message: &std::path::Path, public_key_b64: &str) -> bool {
    let script = r#"
import sys
try:
    import dkim
except ImportError:
    print("NO-DKIMPY"); sys.exit(0)
msg = open(sys.argv[1], 'rb').read()
key = sys.argv[2]
def dnsfunc(name, timeout=5):
    return ("v=DKIM1; k=rsa; p=" + key).encode()
print("PASS" if dkim.verify(msg, dnsfunc=dnsfunc) else "FAIL")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(message)
        .arg(public_key_b64)
        .output()
        .expect("python3");
    let said = stdout(&out);
    if said.trim() == "NO-DKIMPY" {
        assert!(!in_ci(), "CI=true but python3-dkim (dkimpy) is missing");
        panic!("dkimpy is needed to verify DKIM: apt-get install python3-dkim (see .ci/run)");
    }
    said.trim() == "PASS"
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    let head = head.split("\n\n").next().unwrap_or(head);
    head.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l[name.len()..].starts_with(':')
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_through_postfix_with_dkim_and_a_real_dsn() {
    for db in TestDb::all().await {
        let Some(pf) = Postfix::start() else { return };
        let project = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nconcurrency = 2\n\n\
                 [dkim]\ndomain = \"shop.example\"\nselector = \"s1\"\nprivate_key = \"dkim.pem\"\n\n\
                 [serve]\n",
                pf.smtp_port()
            ),
        );
        openssl(&["genrsa", "-out", "dkim.pem", "2048"], project.path());
        let der = openssl(
            &["rsa", "-in", "dkim.pem", "-pubout", "-outform", "DER"],
            project.path(),
        );
        use base64::Engine as _;
        let public_key = base64::engine::general_purpose::STANDARD.encode(der);

        // Content that exercises both transfer encodings and the wire: an
        // HTML part with accents and a line far over 76 characters
        // (quoted-printable, soft breaks), a short ASCII text part (7bit)
        // whose lines start with dots (SMTP dot-stuffing).
        let long_line = format!("<p>{}</p>", "Ñandú y cigüeña. ".repeat(20));
        project.write(
            "templates/c.html",
            &format!(
                "<html><body><p>Hola {{{{ contact.first_name }}}} from {{{{ contact.attributes.city }}}}!</p>\n\
                 {long_line}\n.<p>dot</p>\n<p><a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a></p></body></html>\n"
            ),
        );
        project.write(
            "templates/c.txt",
            "Hola {{ contact.first_name }}, new year.\n.\n..two dots\n.leading\nUnsubscribe:\n{{ unsubscribe_url }}\n",
        );
        project.write(
            "campaigns/c.toml",
            "name = \"Spring\"\nsubject = \"Hola {{ contact.first_name }}\"\n\
             from = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n\n\
             [template]\nhtml = \"c.html\"\ntext = \"c.txt\"\n",
        );

        let out = project.import(
            "email,first_name,city\nalice@example.org,Alice,Madrid\nbob@example.org,Bob,Lisboa\nnobody@example.org,Nadie,Nowhere\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));

        let report = project.ok(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        // Postfix accepts the unknown user too (then bounces it): 3 accepted.
        assert_eq!(report["tally"]["accepted"], 3, "{report}");

        let alice = pf.wait_for_messages("alice", 1, Duration::from_secs(30));
        assert_eq!(alice.len(), 1, "alice got her message; log:\n{}", pf.log());
        let bob = pf.wait_for_messages("bob", 1, Duration::from_secs(30));
        assert_eq!(bob.len(), 1);
        let raw = std::fs::read_to_string(&alice[0]).unwrap();

        // Personalised, with the bulk-sender headers.
        assert_eq!(header(&raw, "Subject"), Some("Hola Alice"));
        assert!(!raw.contains("Lisboa"), "no other contact's data");
        // Decoded by an independent MIME parser, both parts read as rendered.
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("a MIME message");
        let html = parsed.body_html(0).expect("an HTML part");
        assert!(html.contains("Hola Alice from Madrid!"), "{html}");
        assert!(html.contains(&long_line), "the long line intact:\n{html}");
        assert!(html.contains("\n.<p>dot</p>\n"), "{html}");
        assert!(raw.contains("Content-Transfer-Encoding: 7bit"), "{raw}");
        assert!(raw.contains("Content-Transfer-Encoding: quoted-printable"));
        let text = parsed.body_text(0).expect("a text part");
        assert!(
            // Postfix stores Maildir messages with LF line ends.
            text.starts_with("Hola Alice, new year.\n.\n..two dots\n.leading\n"),
            "{text:?}"
        );
        assert!(
            raw.lines().all(|l| l.len() <= 998),
            "no line over RFC 5322's limit"
        );
        let lu = header(&raw, "List-Unsubscribe").expect("List-Unsubscribe");
        assert!(lu.starts_with("<https://news.shop.example/u/"), "{lu}");
        assert!(
            raw.contains("<mailto:unsubscribe+"),
            "mailto unsubscribe present"
        );
        assert_eq!(
            header(&raw, "List-Unsubscribe-Post"),
            Some("List-Unsubscribe=One-Click")
        );
        let mid = header(&raw, "Message-ID").expect("Message-ID");
        assert!(
            mid.starts_with("<cartero.") && mid.ends_with("@shop.example>"),
            "{mid}"
        );
        // The VERP return path reached Postfix as the envelope sender.
        let rp = header(&raw, "Return-Path").expect("Return-Path added by Postfix");
        assert!(
            rp.starts_with("<bounces+") && rp.ends_with("@example.org>"),
            "{rp}"
        );
        let token = &rp["<bounces+".len()..rp.len() - "@example.org>".len()];
        let alice_send = cartero::domain::token::verify(
            SECRET.as_bytes(),
            cartero::domain::token::Purpose::Bounce,
            token,
        )
        .expect("the VERP token verifies");
        assert!(alice_send > 0);
        // DKIM verifies with dkimpy, and covers the RFC 8058 headers.
        assert!(
            dkim_verify(&alice[0], &public_key),
            "DKIM signature verifies:\n{raw}"
        );
        let sig = header(&raw, "DKIM-Signature").expect("signed");
        let signed = raw.split("DKIM-Signature:").nth(1).unwrap_or(sig);
        assert!(
            signed.contains("list-unsubscribe-post") || signed.contains("List-Unsubscribe-Post")
        );

        // The unknown user's DSN comes back to the VERP address.
        let dsns = pf.wait_for_messages("bounces", 1, Duration::from_secs(60));
        assert_eq!(dsns.len(), 1, "one DSN; log:\n{}", pf.log());
        let dsn = std::fs::read_to_string(&dsns[0]).unwrap();
        assert!(
            dsn.contains("multipart/report") && dsn.contains("delivery-status"),
            "{dsn}"
        );
        assert!(dsn.contains("nobody@example.org"));
        let to = header(&dsn, "X-Original-To")
            .or_else(|| header(&dsn, "Delivered-To"))
            .unwrap();
        assert!(to.starts_with("bounces+"), "{to}");
        let token = to
            .trim_start_matches("bounces+")
            .trim_end_matches("@example.org");
        let bounced_send = cartero::domain::token::verify(
            SECRET.as_bytes(),
            cartero::domain::token::Purpose::Bounce,
            token,
        )
        .expect("the DSN's VERP token verifies");
        assert_ne!(
            bounced_send, alice_send,
            "the token names nobody's send, not alice's"
        );

        // A second run resumes nothing and sends nothing.
        let again = project.ok(&["campaign", "send", "campaigns/c.toml", "--format", "json"]);
        let again: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(again["sent_this_run"], 0, "{again}");
        assert_eq!(again["started_now"], false);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            pf.wait_for_messages("alice", 1, Duration::from_secs(1))
                .len(),
            1
        );
    }
}
