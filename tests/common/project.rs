//! `Project`: a cartero project folder in a temporary directory (cartero.toml,
//! campaigns/, templates/) bound to a test database, and a way to run the
//! real binary in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::db::TestDb;

pub const SECRET: &str = "test-secret-0123456789abcdef";

pub struct Project {
    pub dir: tempfile::TempDir,
    pub db_url: String,
}

impl Project {
    /// A project with the given `[smtp]`/extra config appended to a base
    /// configuration, an HTML and a text template, and a campaign `c.toml`.
    pub fn new(db: &TestDb, extra_config: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("campaigns")).unwrap();
        std::fs::create_dir_all(p.join("templates")).unwrap();
        std::fs::write(
            p.join("cartero.toml"),
            format!(
                "[sender]\nbounce_domain = \"example.org\"\nbounce_local = \"bounces\"\n\
                 base_url = \"https://news.shop.example\"\nunsubscribe_mailto = \"unsubscribe@example.org\"\n\
                 message_id_domain = \"shop.example\"\nsecret = \"{SECRET}\"\n\n{extra_config}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            p.join("templates/c.html"),
            "<html><body><p>Hola {{ contact.first_name }} from {{ contact.attributes.city }}!</p>\
             <p><a href=\"https://shop.example/spring\">Spring</a></p>\
             <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>\n",
        )
        .unwrap();
        std::fs::write(
            p.join("campaigns/c.toml"),
            "name = \"Spring\"\nsubject = \"Hola {{ contact.first_name }}\"\n\
             from = \"Shop <news@shop.example>\"\nlist = \"newsletter\"\n\n[template]\nhtml = \"c.html\"\n\n\
             [utm]\nsource = \"cartero\"\n",
        )
        .unwrap();
        Project {
            dir,
            db_url: db.url.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let f = self.file(rel);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(f, text).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cartero"));
        c.current_dir(self.path())
            .arg("--database-url")
            .arg(&self.db_url)
            .arg("--quiet")
            .args(args)
            .env_remove("CARTERO_CONFIG")
            .env_remove("CARTERO_DATABASE_URL");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run cartero")
    }

    /// `campaign send FILE ... --format json` (with `args` before the
    /// format), asserting success: the report's `tally`.
    pub fn send_tally(&self, file: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["campaign", "send", file];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "json"]);
        let out = self.run(&all);
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        v["tally"].clone()
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cartero {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a contacts CSV and imports it into the `newsletter` list.
    pub fn import(&self, csv: &str) -> Output {
        self.write("contacts.csv", csv);
        self.run(&[
            "contacts",
            "import",
            "contacts.csv",
            "--list",
            "newsletter",
            "--consent-source",
            "test signup form",
        ])
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
