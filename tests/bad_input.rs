//! Bad input gets a clear message naming the place and a non-zero exit, and
//! leaves the database as it was.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr, stdout};
use common::servers::free_port;

/// Row counts of every table a send or import writes.
async fn snapshot(db: &TestDb) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for t in [
        "contacts",
        "lists",
        "contact_lists",
        "contact_tags",
        "consent_events",
        "campaigns",
        "sends",
        "events",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {t}");
        let n: i64 = cartero::dispatch!(&db.store, pool => {
            sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap()
        });
        out.push((t.to_string(), n));
    }
    out
}

const GOOD_CSV: &str =
    "email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n";

#[tokio::test(flavor = "multi_thread")]
async fn malformed_rows_are_rejected_with_row_numbers_and_the_rest_imported() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import(
            "email,first_name,city\nana@example.com,Ana,Madrid\nnot an address,X,Y\nbob@example.com,Bob\n\"carl@example.com\",Carl,\"Ro\"\"ma\"\nana@example.com,Ana again,Sevilla\n",
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "partial import exits 3: {}",
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("contacts.csv:3: row 2: invalid email \"not an address\""),
            "{err}"
        );
        assert!(
            err.contains("contacts.csv:4: row 3: has 2 fields, the header has 3"),
            "{err}"
        );
        assert!(err.contains("row 5: duplicate of row 1"), "{err}");
        let s = stdout(&out);
        assert!(s.contains("inserted                   2"), "{s}");
        let rejects = std::fs::read_to_string(p.file("contacts.csv.rejects.csv")).unwrap();
        assert_eq!(
            rejects.lines().count(),
            4,
            "header + 3 rejected rows:\n{rejects}"
        );
        assert!(
            !rejects.contains("carl@example.com"),
            "a quoted field is a good row"
        );
        let carl = p.ok(&["contacts", "show", "carl@example.com", "--format", "json"]);
        let carl: serde_json::Value = serde_json::from_str(&carl).unwrap();
        assert_eq!(carl["contact"]["attributes"]["city"], "Ro\"ma");
        let counts = snapshot(&db).await;
        assert_eq!(counts[0], ("contacts".into(), 2));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_import_and_bad_headers_write_nothing() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        assert!(p.import(GOOD_CSV).status.success());
        let before = snapshot(&db).await;

        p.write(
            "bad.csv",
            "email,first_name\nnew@example.com,New\nbroken,Row\n",
        );
        let out = p.run(&[
            "contacts",
            "import",
            "bad.csv",
            "--strict",
            "--list",
            "newsletter",
            "--consent-source",
            "x",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout(&out).contains("nothing was written"));
        assert_eq!(
            snapshot(&db).await,
            before,
            "strict import left the database as it was"
        );

        p.write("nohead.csv", "mail,name\na@example.com,A\n");
        let out = p.run(&["contacts", "import", "nohead.csv"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("nohead.csv: no `email` column"),
            "{}",
            stderr(&out)
        );

        let out = p.run(&["contacts", "import", "missing.csv"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));
        assert_eq!(snapshot(&db).await, before);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_campaign_files_point_at_file_line_and_column() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        assert!(p.import(GOOD_CSV).status.success());
        let before = snapshot(&db).await;

        // Invalid TOML.
        p.write(
            "campaigns/bad.toml",
            "name = \"X\"\nsubject = \"unterminated\nfrom = \"a@b.example\"\n",
        );
        let out = p.run(&["campaign", "check", "campaigns/bad.toml"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("campaigns/bad.toml:2:"),
            "{}",
            stderr(&out)
        );

        // Unknown key.
        let good = std::fs::read_to_string(p.file("campaigns/c.toml")).unwrap();
        p.write(
            "campaigns/typo.toml",
            &good.replace("list = ", "lsit = \"x\"\nlist = "),
        );
        let out = p.run(&["campaign", "send", "campaigns/typo.toml"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("campaigns/typo.toml:4:1:") && stderr(&out).contains("lsit"),
            "{}",
            stderr(&out)
        );

        // Unknown segment field, inline.
        p.write(
            "campaigns/seg.toml",
            &format!(
                "{good}\n[segment]\nfilter = 'attributes.city == \"Madrid\" and shoe_size > 40'\n"
            ),
        );
        let out = p.run(&["campaign", "check", "campaigns/seg.toml"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("campaigns/seg.toml:") && err.contains("shoe_size"),
            "{err}"
        );

        // Unknown named segment.
        p.write(
            "campaigns/segments.toml",
            "[segments.madrid]\nfilter = 'attributes.city == \"Madrid\"'\n",
        );
        p.write(
            "campaigns/named.toml",
            &good.replace(
                "list = \"newsletter\"",
                "list = \"newsletter\"\nsegment = \"madird\"",
            ),
        );
        let out = p.run(&["campaign", "send", "campaigns/named.toml"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("campaigns/named.toml:5:") && stderr(&out).contains("madird"),
            "{}",
            stderr(&out)
        );

        // A template with a syntax error, and one with an undefined variable.
        p.write("templates/broken.html", "<p>{{ contact.first_name </p>");
        p.write(
            "campaigns/broken.toml",
            &good.replace("c.html", "broken.html"),
        );
        let out = p.run(&["campaign", "send", "campaigns/broken.toml"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("broken.html"), "{}", stderr(&out));
        p.write(
            "templates/undef.html",
            "<p>{{ contact.attributes.shoe_size }}</p>",
        );
        p.write(
            "campaigns/undef.toml",
            &good.replace("c.html", "undef.html"),
        );
        let out = p.run(&["campaign", "check", "campaigns/undef.toml"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("undef.html") && stderr(&out).contains("shoe_size"),
            "{}",
            stderr(&out)
        );
        let out = p.run(&["campaign", "send", "campaigns/undef.toml"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stderr(&out).contains("shoe_size"), "{}", stderr(&out));

        assert_eq!(
            snapshot(&db).await,
            before,
            "no campaign or send rows were written"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_smtp_server_fails_before_writing_anything() {
    for db in TestDb::all().await {
        // A port nothing listens on.
        let port = free_port();
        let p = Project::new(
            &db,
            &format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout_secs = 2\n\
                 outage_timeout_secs = 1\n"
            ),
        );
        assert!(p.import(GOOD_CSV).status.success());
        let before = snapshot(&db).await;
        let out = p.run(&["campaign", "send", "campaigns/c.toml"]);
        // An outage: waited out for smtp.outage_timeout_secs, then exit 4.
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("cannot reach the SMTP server")
                && err.contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
        assert_eq!(snapshot(&db).await, before);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_names_its_place() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "[smtp]\nhost = \"x\"\nprot = 25\n");
        let out = p.run(&["campaign", "check", "campaigns/c.toml"]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("cartero.toml:") && err.contains("prot"),
            "{err}"
        );
    }
}
