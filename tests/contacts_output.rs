//! `--format` is honoured by the contacts commands, or refused with a clear
//! error, never silently ignored; `contacts show` names lists (issue 16
//! item 19). Real binary, both backends.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr, stdout};

#[tokio::test]
async fn contacts_show_and_import_honour_the_format_and_name_lists() {
    for db in TestDb::all().await {
        let p = Project::new(&db, "");
        let out = p.import(
            "email,first_name,city\nana@example.com,Ana,Madrid\nbob@example.com,Bob,Lisboa\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));

        // Table: the list by name, in the lists line and in the history.
        let show = p.ok(&["contacts", "show", "ana@example.com"]);
        assert!(!show.contains("list="), "{show}");
        assert!(show.contains("newsletter (subscribed)"), "{show}");
        let grant = show
            .lines()
            .find(|l| l.contains("grant"))
            .unwrap_or_else(|| panic!("a grant in the history: {show}"));
        assert!(grant.contains("newsletter"), "{grant}");

        // JSON: each consent entry names its list.
        let json: serde_json::Value = serde_json::from_str(&p.ok(&[
            "contacts",
            "show",
            "ana@example.com",
            "--format",
            "json",
        ]))
        .expect("json");
        assert_eq!(json["consent"][0]["list"], "newsletter", "{json}");
        assert_eq!(json["lists"][0]["name"], "newsletter", "{json}");
        assert_eq!(json["contact"]["email"], "ana@example.com", "{json}");

        // CSV makes no sense for one contact and its history: refused.
        let out = p.run(&["contacts", "show", "ana@example.com", "--format", "csv"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(stdout(&out).is_empty(), "nothing printed: {}", stdout(&out));
        assert!(stderr(&out).contains("--format json"), "{}", stderr(&out));

        // Import --format csv: the counts as one CSV row under a header.
        p.write(
            "more.csv",
            "email,first_name\ncara@example.com,Cara\nnot-an-address,X\n",
        );
        let out = p.run(&[
            "contacts",
            "import",
            "more.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "form",
            "--format",
            "csv",
        ]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "one row rejected: {}",
            stderr(&out)
        );
        let text = stdout(&out);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = r
            .headers()
            .expect("header")
            .iter()
            .map(String::from)
            .collect();
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
        assert_eq!(rows.len(), 1, "{text}");
        let get = |k: &str| {
            let i = header
                .iter()
                .position(|h| h == k)
                .unwrap_or_else(|| panic!("{k} in {header:?}"));
            rows[0][i].to_string()
        };
        assert_eq!(
            (get("rows_read"), get("inserted"), get("rejected")),
            ("2".into(), "1".into(), "1".into())
        );
        assert_eq!(get("consent_granted"), "1");

        // Import --format json still carries everything.
        p.write("again.csv", "email\ndan@example.com\n");
        let out = p.run(&[
            "contacts",
            "import",
            "again.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "form",
            "--format",
            "json",
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["inserted"], 1, "{json}");

        // Duplicates --format csv is CSV, not the table.
        let dup = p.ok(&["contacts", "duplicates", "--format", "csv"]);
        assert_eq!(
            dup.lines().next(),
            Some("key,action,id,status,email"),
            "{dup}"
        );
    }
}
