//! `TestDb`: a `Store` on a fresh, private database that disappears with it.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a uniquely named
//! database created on the server at `CARTERO_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped on `Drop`, even
//! when the test panicked. When that server cannot be reached the PostgreSQL
//! constructors return `None` (the test says it skipped), except under
//! `CI=true`, where a missing server fails the test.

use std::sync::atomic::{AtomicU32, Ordering};

use cartero::store::{Backend, Store};
use sqlx::Connection;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestDb {
    pub store: Store,
    /// The URL the store was opened with, e.g. for `cartero --database-url`.
    pub url: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop, and the admin URL to drop it from.
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A migrated SQLite database in a new temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("cartero.db").display());
        let store = Store::open(&url).await.expect("open SQLite store");
        TestDb {
            store,
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A migrated, newly created PostgreSQL database; `None` when no server
    /// is reachable outside CI.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url =
            std::env::var("CARTERO_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true but PostgreSQL at {admin_url} is unreachable: {e}");
                }
                eprintln!(
                    "skipping the PostgreSQL half of this test: {admin_url} unreachable: {e}"
                );
                return None;
            }
        };
        let name = unique_name();
        // The name is generated above from digits and ASCII letters: safe to
        // write into DDL, which cannot take a bound parameter.
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        let store = Store::open(&url).await.expect("open PostgreSQL store");
        Some(TestDb {
            store,
            url,
            _dir: None,
            pg: Some((name, admin_url)),
        })
    }

    /// One fresh database per backend under test. `CARTERO_TEST_DATABASE`
    /// picks one (`sqlite` or `postgres`; .ci/test runs the suite once with
    /// each); unset, both: SQLite always, PostgreSQL when reachable (always
    /// under CI=true).
    pub async fn all() -> Vec<TestDb> {
        match std::env::var("CARTERO_TEST_DATABASE").as_deref() {
            Ok("sqlite") => vec![TestDb::sqlite().await],
            Ok("postgres") => vec![
                TestDb::postgres()
                    .await
                    .expect("CARTERO_TEST_DATABASE=postgres but PostgreSQL is unreachable"),
            ],
            Ok(other) => panic!("CARTERO_TEST_DATABASE={other:?}: use sqlite or postgres"),
            Err(_) => {
                let mut dbs = vec![TestDb::sqlite().await];
                if let Some(pg) = TestDb::postgres().await {
                    dbs.push(pg);
                }
                dbs
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Like [`TestDb::all`], but the databases are brought only up to the
    /// migrations numbered below `before`: for tests of a migration over
    /// existing data (finish with `store.migrate()`).
    #[allow(dead_code)]
    pub async fn all_before(before: i64) -> Vec<TestDb> {
        let mut out = Vec::new();
        for db in TestDb::all().await {
            out.push(db.reset_to(before).await);
        }
        out
    }

    /// A fresh database of the same backend, migrated below `before`.
    async fn reset_to(self, before: i64) -> TestDb {
        let (store, url, dir, pg) = match self.backend() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("cartero.db").display());
                let store = Store::connect(&url).await.expect("open SQLite store");
                (store, url, Some(dir), None)
            }
            Backend::Postgres => {
                let admin_url = std::env::var("CARTERO_TEST_PG_URL")
                    .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("PostgreSQL");
                let name = unique_name();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let url = with_database(&admin_url, &name);
                let store = Store::connect(&url).await.expect("open PostgreSQL store");
                (store, url, None, Some((name, admin_url)))
            }
        };
        let dir_name = match store.backend() {
            Backend::Sqlite => "migrations/sqlite",
            Backend::Postgres => "migrations/postgres",
        };
        let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(&format!(
            "{}/{dir_name}",
            env!("CARGO_MANIFEST_DIR")
        )))
        .await
        .expect("read migrations");
        migrator.migrations = migrator
            .migrations
            .iter()
            .filter(|m| m.version < before)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        match &store {
            Store::Sqlite(p) => migrator.run(p).await,
            Store::Postgres(p) => migrator.run(p).await,
        }
        .expect("migrate");
        TestDb {
            store,
            url,
            _dir: dir,
            pg,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((name, admin_url)) = self.pg.take() else {
            return;
        };
        // Drop runs outside async; a short-lived runtime on its own thread
        // works whether or not the caller is inside one. WITH (FORCE)
        // (PostgreSQL 13+) ends the store's pooled connections.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cartero_test_{}_{n}_{nanos}", std::process::id())
}

/// The admin URL with its database name replaced by `name`.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let authority_end = base
        .find("://")
        .map(|s| s + 3)
        .and_then(|s| base[s..].find('/').map(|i| s + i))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}
