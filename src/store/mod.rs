//! Storage: one `Store` over SQLite (the embedded default) and PostgreSQL.
//!
//! The store is an enum of native sqlx pools rather than `sqlx::Any` (which
//! loses JSON and typed columns) or code generic over `Database` (trait-bound
//! explosions). The `dispatch!` macro expands one method body into both arms,
//! and each arm is type-checked against its own driver. SQL lives in the
//! repository modules beside this one, one per aggregate. Nothing here knows
//! about campaigns files, templates or SMTP.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub mod archive;
pub mod campaigns;
pub mod changes;
pub mod compliance;
pub mod consent;
pub mod contacts;
pub mod conversions;
pub mod feedback;
pub mod hygiene;
pub mod journeys;
pub mod nodes;
pub mod requests;
pub mod runs;
pub mod sends;
pub mod signup;
pub mod status;
pub mod track;
pub mod tracking;
pub mod warmup;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {url:?} is not supported: use sqlite://FILE or postgres://...")]
    UnsupportedUrl { url: String },
    #[error("cannot open database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("consent ledger: {0}")]
    Ledger(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which SQL dialect a statement must be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same body against whichever pool the store holds. Inside the body
/// `$pool` is the native pool, so `sqlx::query(...).fetch_all($pool)` is
/// checked against each driver separately.
#[macro_export]
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}

/// An open transaction on either backend. SQLite transactions start with
/// `BEGIN IMMEDIATE`: taking the write lock up front avoids the deferred
/// transaction's lock upgrade, which fails at once with SQLITE_BUSY instead of
/// waiting for the busy timeout.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Like `dispatch!`, over a `Tx`: inside the body `$conn` is the native
/// connection (`&mut SqliteConnection` or `&mut PgConnection`).
#[macro_export]
macro_rules! dispatch_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *t;
                $body
            }
            $crate::store::Tx::Postgres(t) => {
                let $conn: &mut sqlx::PgConnection = &mut *t;
                $body
            }
        }
    };
}

/// A select-list item that folds every matching row into one JSON array of
/// arrays (`[[c1, c2, ...], ...]`, `[]` when nothing matches).
///
/// Batch lookups of thousands of rows use it: sqlx-sqlite hands each result
/// row from its worker thread to the caller separately, and at import sizes
/// that hand-off, not SQLite, was most of the time (perf: thread switches and
/// allocation). One text value per batch costs one hand-off and one parse.
pub fn json_rows_sql(backend: Backend, cols: &str) -> String {
    match backend {
        Backend::Sqlite => format!("json_group_array(json_array({cols}))"),
        Backend::Postgres => format!("COALESCE(json_agg(json_build_array({cols})), '[]')::text"),
    }
}

/// Parses what a [`json_rows_sql`] column returned.
pub fn parse_json_rows<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("batch lookup returned unreadable JSON: {e}")))
}

/// SQLite page cache for bulk writes, KiB (see `Tx::expect_bulk_write`).
const BULK_CACHE_KIB: u32 = 256 * 1024;

/// SQLite page cache of every pooled connection, KiB (see `Store::connect`).
const POOL_CACHE_KIB: u32 = 64 * 1024;

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(mut t) => {
                // Writes outside a transaction of ours (another tool's, a
                // statement typed by hand) must not inherit this origin.
                changes::clear_origin_sqlite(&mut t).await?;
                t.commit().await?
            }
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// Tells the database this transaction writes a large share of the
    /// tables (an import). On SQLite it widens the connection's page cache
    /// so the random inserts into the address and ledger-hash indexes stay
    /// in memory instead of spilling to the WAL and being read back. Call
    /// [`Tx::end_bulk_write`] before committing or rolling back, so the
    /// pooled connection goes back to its usual cache.
    ///
    /// It also defers SQLite's foreign-key checks to the commit (until the
    /// transaction ends): an immediate check may abort a statement, so SQLite
    /// would copy every page each multi-row INSERT into a child table touches
    /// into a statement journal first. A dangling reference still fails the
    /// commit, and the import's transaction is rolled back.
    pub async fn expect_bulk_write(&mut self) -> Result<()> {
        if let Tx::Sqlite(t) = self {
            sqlx::query(&format!("PRAGMA cache_size = -{BULK_CACHE_KIB}"))
                .execute(&mut **t)
                .await?;
            sqlx::query("PRAGMA defer_foreign_keys = ON")
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    /// Undoes [`Tx::expect_bulk_write`]. Shrinking the cache inside the
    /// transaction writes the dirty pages to the WAL, which the commit does
    /// anyway.
    pub async fn end_bulk_write(&mut self) -> Result<()> {
        if let Tx::Sqlite(t) = self {
            sqlx::query(&format!("PRAGMA cache_size = -{POOL_CACHE_KIB}"))
                .execute(&mut **t)
                .await?;
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the database named by `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn connect(url: &str) -> Result<Self> {
        let connect_err = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(connect_err)?
                .create_if_missing(true)
                // WAL lets readers run beside the single writer; NORMAL sync
                // is durable across process crashes (what the kill test needs).
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true)
                // SQLite's default page cache is 2 MiB: a large import or
                // send touches indexes far bigger than that, and every miss
                // is a pread and every spill a pwrite (measured: a third of
                // a 200k-row import was kernel copy time). The cache grows
                // only as pages are used; 64 MiB per connection at most.
                .pragma("cache_size", format!("-{POOL_CACHE_KIB}"))
                // Statement journals of multi-row statements stay in memory
                // instead of a temp file written page by page.
                .pragma("temp_store", "memory");
            // The database holds every contact: owner-only, whatever the
            // umask (SQLite gives its -wal and -shm files the same mode).
            let file = opts.get_filename().to_path_buf();
            let on_disk = !file.as_os_str().is_empty() && file.as_os_str() != ":memory:";
            // An existing file is only narrowed, never opened: closing any
            // descriptor of it would drop the POSIX locks that this
            // process's other SQLite connections hold on it (fcntl locks
            // are per process), and a second pool in one process (serve's
            // poller, a test beside the binary) then reads stale pages.
            if on_disk && file.exists() {
                crate::private_files::narrow(&file)
            } else if on_disk {
                crate::private_files::touch(&file)
            } else {
                Ok(())
            }
            .map_err(|e| connect_err(sqlx::Error::Io(e)))?;
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                // A pooled SQLite connection is a file handle in this
                // process: the ping sqlx sends before handing one out is a
                // round trip through the connection's worker thread that
                // can only succeed (about 2% of a send's CPU, profiled).
                .test_before_acquire(false)
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            if on_disk {
                for suffix in ["-wal", "-shm"] {
                    let mut side = file.clone().into_os_string();
                    side.push(suffix);
                    crate::private_files::narrow(std::path::Path::new(&side))
                        .map_err(|e| connect_err(sqlx::Error::Io(e)))?;
                }
            }
            Ok(Store::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url).map_err(connect_err)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Ok(Store::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl {
                url: redact_url(url),
            })
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await?,
            Store::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    /// The embedded migrations the database has not applied (or applied
    /// and failed), and the applied ones this binary does not know (a newer
    /// binary migrated the database): both empty when the schema is the one
    /// this binary expects. `/readyz` asks this; nothing is changed.
    pub async fn migration_gaps(&self) -> Result<(Vec<i64>, Vec<i64>)> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success";
        let (embedded, applied): (Vec<i64>, Vec<i64>) = match self {
            Store::Sqlite(p) => (
                SQLITE_MIGRATIONS.iter().map(|m| m.version).collect(),
                sqlx::query_scalar(sql).fetch_all(p).await?,
            ),
            Store::Postgres(p) => (
                POSTGRES_MIGRATIONS.iter().map(|m| m.version).collect(),
                sqlx::query_scalar(sql).fetch_all(p).await?,
            ),
        };
        let missing = embedded
            .iter()
            .filter(|v| !applied.contains(v))
            .copied()
            .collect();
        let unknown = applied
            .iter()
            .filter(|v| !embedded.contains(v))
            .copied()
            .collect();
        Ok((missing, unknown))
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Store::Sqlite(p) => {
                let mut t = p.begin_with("BEGIN IMMEDIATE").await?;
                // The change log's origin is per transaction: SQLite keeps
                // it in a row (one writer at a time), cleared here so a
                // writer that names none is not credited with the last
                // one's (store::changes).
                changes::clear_origin_sqlite(&mut t).await?;
                Tx::Sqlite(t)
            }
            Store::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Refreshes the planner's statistics after a bulk change (an import):
    /// a table filled in one transaction has none, and PostgreSQL then plans
    /// segment and lookup queries for an empty table until autovacuum gets
    /// to it. SQLite's `PRAGMA optimize` analyses only what needs it.
    pub async fn refresh_statistics(&self) -> Result<()> {
        match self {
            Store::Sqlite(p) => {
                sqlx::query("PRAGMA optimize").execute(p).await?;
            }
            Store::Postgres(p) => {
                sqlx::query("ANALYZE contacts, contact_lists, contact_tags, consent_events")
                    .execute(p)
                    .await?;
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// See [`json_rows_sql`].
    pub fn json_rows(&self, cols: &str) -> String {
        json_rows_sql(self.backend(), cols)
    }

    /// SQL for a JSON value bound as text: PostgreSQL needs the cast to JSONB.
    pub fn json_cast(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => "::jsonb",
        }
    }

    pub async fn close(&self) {
        dispatch!(self, p => p.close().await)
    }
}

/// Hides a password in a database URL before it reaches a message or log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://cartero.db"), "sqlite://cartero.db");
    }
}
