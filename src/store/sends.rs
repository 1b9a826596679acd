//! Sends repository: the per-recipient state machine that makes a resumed
//! send exact.
//!
//! A send starts by snapshotting the segment into one row per recipient
//! (`snapshot`). Workers `claim` small batches, marking them `sending` with
//! their id and a lease, send outside any transaction, and their results
//! are written in groups (`record_many`, fed by the send recorder). A live
//! worker renews its leases (`renew`); rows still `sending` after their
//! lease expired (the worker died) are the in-flight window: the next
//! `claim` takes them over and the count is reported. See docs/SENDING.md.

use std::collections::{BTreeMap, HashMap};

use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use super::{Result, Store};
use crate::dispatch;
use crate::domain::time::Millis;
use crate::domain::{SendState, SkipReason};

/// A filter over `contacts c` that a stage compiles into SQL (the segment
/// language implements it). Values must be bound, never formatted in.
pub trait ContactFilter: Sync {
    fn push_sqlite(&self, qb: &mut QueryBuilder<'_, Sqlite>);
    fn push_postgres(&self, qb: &mut QueryBuilder<'_, Postgres>);
}

/// Matches every contact.
pub struct Everyone;
impl ContactFilter for Everyone {
    fn push_sqlite(&self, qb: &mut QueryBuilder<'_, Sqlite>) {
        qb.push("1 = 1");
    }
    fn push_postgres(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push("TRUE");
    }
}

/// The state of a campaign's send rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub pending: u64,
    pub sending: u64,
    pub accepted: u64,
    pub deferred: u64,
    pub failed: u64,
    pub skipped: BTreeMap<String, u64>,
}

impl Tally {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
    pub fn total(&self) -> u64 {
        self.pending
            + self.sending
            + self.accepted
            + self.deferred
            + self.failed
            + self.skipped_total()
    }
    /// Rows that still need work.
    pub fn open(&self) -> u64 {
        self.pending + self.sending + self.deferred
    }
}

const STATE_SQL: &str = "CASE WHEN c.status <> 'active' THEN 'skipped' \
     WHEN NOT EXISTS (SELECT 1 FROM contact_lists cl WHERE cl.contact_id = c.id AND cl.list_id = ";
const REASON_SQL: &str = "CASE WHEN c.status <> 'active' THEN c.status \
     WHEN NOT EXISTS (SELECT 1 FROM contact_lists cl WHERE cl.contact_id = c.id AND cl.list_id = ";

/// The values of a new send row for contact `c`, after `SELECT `: the
/// campaign and run, the address, and pending or skipped (no consent for
/// the list) by the same rule for a snapshot and for a single row
/// (`insert_one`, a journey step).
macro_rules! push_send_values {
    ($qb:ident, $campaign_id:expr, $run_id:expr, $list_id:expr, $now:expr) => {{
        $qb.push_bind($campaign_id);
        $qb.push(", ");
        $qb.push_bind($run_id);
        $qb.push(", c.id, COALESCE(c.email_ascii, c.email), ");
        $qb.push(STATE_SQL);
        $qb.push_bind($list_id);
        $qb.push(" AND cl.subscribed = 1) THEN 'skipped' ELSE 'pending' END, ");
        $qb.push(REASON_SQL);
        $qb.push_bind($list_id);
        $qb.push(" AND cl.subscribed = 1) THEN 'no_consent' ELSE NULL END, ");
        $qb.push_bind($now);
        $qb.push(", ");
        $qb.push_bind($now);
    }};
}

/// `next_attempt_at` of a pending row whose delivery time is still to be
/// worked out (`[delivery]`): no claim takes it until `set_due` gives it one.
pub const HELD: Millis = i64::MAX;

/// Snapshots the recipients of a campaign's run, once: returns false when
/// the run was already started (a resume). Suppressed contacts get a
/// `skipped` row with the reason, so the report can say who was left out and
/// why. Runs in one transaction with the run's `started_at` (and the
/// campaign's, the first time it is sent). `held`: the rows wait (`HELD`)
/// for their per-contact delivery time, so that no node claims one first.
pub async fn snapshot(
    store: &Store,
    campaign_id: i64,
    run_id: i64,
    list_id: i64,
    filter: &dyn ContactFilter,
    held: bool,
    now: Millis,
) -> Result<bool> {
    let next_attempt_at: Option<Millis> = held.then_some(HELD);
    macro_rules! body {
        ($tx:expr, $push:ident) => {{
            let started: Option<Millis> =
                sqlx::query_scalar("SELECT started_at FROM campaign_runs WHERE id = $1")
                    .bind(run_id)
                    .fetch_one(&mut *$tx)
                    .await?;
            if started.is_some() {
                return Ok(false);
            }
            let mut qb = QueryBuilder::new(
                "INSERT INTO sends (campaign_id, run_id, contact_id, email, state, skip_reason, created_at, updated_at, \
                 next_attempt_at) SELECT ",
            );
            push_send_values!(qb, campaign_id, run_id, list_id, now);
            qb.push(", ");
            qb.push_bind(next_attempt_at);
            qb.push(" FROM contacts c WHERE (");
            filter.$push(&mut qb);
            qb.push(") ORDER BY c.id ON CONFLICT (run_id, contact_id) DO NOTHING");
            qb.build().execute(&mut *$tx).await?;
            sqlx::query("UPDATE campaign_runs SET started_at = $1, state = 'sending' WHERE id = $2")
                .bind(now)
                .bind(run_id)
                .execute(&mut *$tx)
                .await?;
            sqlx::query("UPDATE campaigns SET started_at = COALESCE(started_at, $1) WHERE id = $2")
                .bind(now)
                .bind(campaign_id)
                .execute(&mut *$tx)
                .await?;
        }};
    }
    match store {
        Store::Sqlite(p) => {
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
            body!(tx, push_sqlite);
            tx.commit().await?;
        }
        Store::Postgres(p) => {
            let mut tx = p.begin().await?;
            // Two nodes starting the same run: the second waits, then sees started_at.
            sqlx::query("SELECT id FROM campaign_runs WHERE id = $1 FOR UPDATE")
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
            body!(tx, push_postgres);
            tx.commit().await?;
        }
    }
    Ok(true)
}

/// One pending row for one contact in a run, inside `tx` (a journey's send
/// step: no list is snapshotted). A suppressed contact gets a `skipped` row
/// with the reason, as in a snapshot. Unique per run and contact: a second
/// call returns the row already there. Returns the row's id.
pub async fn insert_one(
    tx: &mut super::Tx,
    campaign_id: i64,
    run_id: i64,
    list_id: i64,
    contact_id: i64,
    now: Millis,
) -> Result<i64> {
    macro_rules! body {
        ($conn:expr, $db:ty) => {{
            let mut qb = QueryBuilder::<$db>::new(
                "INSERT INTO sends (campaign_id, run_id, contact_id, email, state, skip_reason, created_at, updated_at) \
                 SELECT ",
            );
            push_send_values!(qb, campaign_id, run_id, list_id, now);
            qb.push(" FROM contacts c WHERE c.id = ");
            qb.push_bind(contact_id);
            qb.push(" ON CONFLICT (run_id, contact_id) DO NOTHING");
            qb.build().execute(&mut *$conn).await?;
            sqlx::query_scalar::<_, i64>("SELECT id FROM sends WHERE run_id = $1 AND contact_id = $2")
                .bind(run_id)
                .bind(contact_id)
                .fetch_one(&mut *$conn)
                .await?
        }};
    }
    Ok(match tx {
        super::Tx::Sqlite(t) => body!(&mut **t, Sqlite),
        super::Tx::Postgres(t) => body!(&mut **t, Postgres),
    })
}

/// What a snapshot would hold, without writing it: each matching contact
/// with its skip reason, if any (for dry runs).
pub async fn preview(
    store: &Store,
    list_id: i64,
    filter: &dyn ContactFilter,
    limit: Option<i64>,
) -> Result<Vec<(i64, Option<String>)>> {
    macro_rules! body {
        ($pool:expr, $push:ident) => {{
            let mut qb = QueryBuilder::new("SELECT c.id, ");
            qb.push(REASON_SQL);
            qb.push_bind(list_id);
            qb.push(" AND cl.subscribed = 1) THEN 'no_consent' ELSE NULL END AS reason FROM contacts c WHERE (");
            filter.$push(&mut qb);
            qb.push(") ORDER BY c.id");
            if let Some(n) = limit {
                qb.push(" LIMIT ");
                qb.push_bind(n);
            }
            qb.build()
                .fetch_all($pool)
                .await?
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>("id")?, r.try_get::<Option<String>, _>("reason")?)))
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?
        }};
    }
    Ok(match store {
        Store::Sqlite(p) => body!(p, push_sqlite),
        Store::Postgres(p) => body!(p, push_postgres),
    })
}

/// The first `limit` contacts a send would deliver to: matching the filter,
/// active and subscribed to the list, by id. The pre-flight of a send and
/// `campaign check` render for these, never for a contact the campaign
/// would not mail.
pub async fn first_recipients(
    store: &Store,
    list_id: i64,
    filter: &dyn ContactFilter,
    limit: i64,
) -> Result<Vec<i64>> {
    macro_rules! body {
        ($pool:expr, $push:ident) => {{
            let mut qb = QueryBuilder::new(
                "SELECT c.id FROM contacts c WHERE c.status = 'active' AND EXISTS \
                 (SELECT 1 FROM contact_lists cl WHERE cl.contact_id = c.id AND cl.list_id = ",
            );
            qb.push_bind(list_id);
            qb.push(" AND cl.subscribed = 1) AND (");
            filter.$push(&mut qb);
            qb.push(") ORDER BY c.id LIMIT ");
            qb.push_bind(limit);
            qb.build_query_scalar::<i64>().fetch_all($pool).await?
        }};
    }
    Ok(match store {
        Store::Sqlite(p) => body!(p, push_sqlite),
        Store::Postgres(p) => body!(p, push_postgres),
    })
}

/// The state of every send row of a campaign, over all its runs.
pub async fn tally(store: &Store, campaign_id: i64) -> Result<Tally> {
    let rows: Vec<(String, Option<String>, i64)> = dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT state, skip_reason, COUNT(*) FROM sends WHERE campaign_id = $1 GROUP BY state, skip_reason",
        )
        .bind(campaign_id)
        .fetch_all(pool)
        .await?
    });
    tally_of(rows)
}

/// The state of one run's send rows.
pub async fn tally_run(store: &Store, run_id: i64) -> Result<Tally> {
    let rows: Vec<(String, Option<String>, i64)> = dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT state, skip_reason, COUNT(*) FROM sends WHERE run_id = $1 GROUP BY state, skip_reason",
        )
        .bind(run_id)
        .fetch_all(pool)
        .await?
    });
    tally_of(rows)
}

fn tally_of(rows: Vec<(String, Option<String>, i64)>) -> Result<Tally> {
    let mut t = Tally::default();
    for (state, reason, n) in rows {
        let n = n as u64;
        match state.parse::<SendState>() {
            Ok(SendState::Pending) => t.pending += n,
            Ok(SendState::Sending) => t.sending += n,
            Ok(SendState::Accepted) => t.accepted += n,
            Ok(SendState::Deferred) => t.deferred += n,
            Ok(SendState::Failed) => t.failed += n,
            Ok(SendState::Skipped) => {
                *t.skipped
                    .entry(reason.unwrap_or_else(|| "unknown".into()))
                    .or_default() += n
            }
            Err(e) => return Err(super::StoreError::Corrupt(e)),
        }
    }
    Ok(t)
}

/// SQLite has a single writer. When two connections of this process write
/// at once, the loser gets SQLITE_BUSY and sleeps in the busy handler, 1 ms
/// at first and longer after: strace of a 20,000-message send counted 4,618
/// such sleeps between the workers' claims and the recorder. The send
/// path's writes queue here instead, which costs nothing on PostgreSQL
/// (not taken) and keeps the busy handler for other processes.
static SQLITE_WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn sqlite_writer(store: &Store) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    match store {
        Store::Sqlite(_) => Some(SQLITE_WRITER.lock().await),
        Store::Postgres(_) => None,
    }
}

/// A send row claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub contact_id: i64,
    pub email: String,
    /// Attempts so far: times a server answered for this recipient. A claim
    /// is not an attempt, so kills and outages never use up retries.
    pub attempts: i64,
    pub created_at: Millis,
    /// The Message-ID this send carries, once assigned (`assign_message_ids`):
    /// kept in `sends.message_id` from before the first attempt, so a resend
    /// carries the same one and a bounce or complaint quoting it matches.
    pub message_id: Option<String>,
    /// The row was claimed by a worker whose lease expired (a process that
    /// died or stalled): its message may have reached the server already
    /// (the in-flight window, docs/SENDING.md).
    pub taken_over: bool,
}

/// Claims up to `n` rows of a run that are due, in this order: rows whose
/// lease expired (their worker died or stalled: taken over), deferred rows
/// whose retry time passed, and pending rows. The claim is a lease held by `worker` (the
/// process's identity) until `lease_until`; a live worker extends it with
/// `renew`. One short transaction; PostgreSQL nodes skip each other's locked
/// rows, SQLite's single writer serialises the claim.
pub async fn claim(
    store: &Store,
    run_id: i64,
    worker: &str,
    n: i64,
    lease_until: Millis,
    now: Millis,
) -> Result<Vec<Claimed>> {
    let lock = match store {
        Store::Sqlite(_) => "",
        Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
    };
    // Each kind of due row in its own statement: one `state = 'pending' OR
    // (state = 'deferred' AND ...)` with ORDER BY id made SQLite read and
    // sort every row of the campaign on each claim (quadratic in the
    // campaign's size). Each branch alone is a range of the `sends_work`
    // index that LIMIT cuts short, in index order; the order of rows within
    // a claim does not matter.
    // A paused campaign or a cancelled run: no row is claimed, on any node.
    let claimable = super::runs::claimable_sql("$4");
    let claim_where = |due: &str| {
        format!(
            "UPDATE sends SET state = 'sending', claimed_by = $1, lease_until = $2, \
             updated_at = $3 WHERE id IN (SELECT id FROM sends WHERE run_id = $4 AND {claimable} \
             AND {due} LIMIT $5{lock}) RETURNING id, contact_id, email, attempts, created_at, message_id"
        )
    };
    let expired = claim_where("state = 'sending' AND (lease_until IS NULL OR lease_until <= $3)");
    // Pending rows are due at once, or at their per-contact time
    // (`[delivery]`, `set_due`): two ranges of the index, never a scan of
    // the rows that wait.
    let pending = claim_where("state = 'pending' AND next_attempt_at IS NULL");
    let timed = claim_where("state = 'pending' AND next_attempt_at <= $3 ORDER BY next_attempt_at");
    let due = claim_where("state = 'deferred' AND next_attempt_at <= $3 ORDER BY next_attempt_at");
    let mut rows: Vec<Claimed> = Vec::new();
    let _writer = sqlite_writer(store).await;
    // Retries that fell due go before rows never tried: they have waited
    // already, and a send with a long queue of pending rows must not hold
    // them back until its end (issue 16, item 10).
    for (sql, taken_over) in [
        (expired, true),
        (due, false),
        (timed, false),
        (pending, false),
    ] {
        let want = n - rows.len() as i64;
        if want <= 0 {
            break;
        }
        let got: Vec<Claimed> = dispatch!(store, pool => {
            sqlx::query(&sql)
                .bind(worker)
                .bind(lease_until)
                .bind(now)
                .bind(run_id)
                .bind(want)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    Ok(Claimed {
                        id: r.try_get("id")?,
                        contact_id: r.try_get("contact_id")?,
                        email: r.try_get("email")?,
                        attempts: r.try_get("attempts")?,
                        created_at: r.try_get("created_at")?,
                        message_id: r.try_get("message_id")?,
                        taken_over,
                    })
                })
                .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?
        });
        rows.extend(got);
    }
    rows.sort_by_key(|c| c.id);
    Ok(rows)
}

/// How many processes other than `worker` hold claims of a run (their
/// leases may be live or lapsed).
pub async fn claimants(store: &Store, run_id: i64, worker: &str) -> Result<u64> {
    let n: i64 = dispatch!(store, pool => {
        sqlx::query_scalar(
            "SELECT COUNT(DISTINCT claimed_by) FROM sends WHERE run_id = $1 AND state = 'sending' \
             AND claimed_by IS NOT NULL AND claimed_by <> $2",
        )
        .bind(run_id)
        .bind(worker)
        .fetch_one(pool)
        .await?
    });
    Ok(n.max(0) as u64)
}

/// Extends the lease of every row of a run that `worker` holds, to
/// `lease_until`; returns how many it holds. A worker that stops renewing
/// (killed, hung) loses its rows to whoever claims after the lease.
///
/// On PostgreSQL the rows another statement has locked are skipped: they are
/// this worker's results being recorded (they leave `sending` as that commits)
/// or a lapsed lease being taken over. Waiting for them instead deadlocked
/// with the recording of results, which locks the same rows in its own order.
pub async fn renew(store: &Store, run_id: i64, worker: &str, lease_until: Millis) -> Result<u64> {
    let _writer = sqlite_writer(store).await;
    let sql = match store {
        Store::Sqlite(_) => {
            "UPDATE sends SET lease_until = $1 WHERE run_id = $2 AND state = 'sending' AND claimed_by = $3"
        }
        Store::Postgres(_) => {
            "UPDATE sends SET lease_until = $1 WHERE id IN (SELECT id FROM sends WHERE run_id = $2 \
             AND state = 'sending' AND claimed_by = $3 FOR UPDATE SKIP LOCKED)"
        }
    };
    Ok(dispatch!(store, pool => {
        sqlx::query(sql)
        .bind(lease_until)
        .bind(run_id)
        .bind(worker)
        .execute(pool)
        .await?
        .rows_affected()
    }))
}

/// Stores Message-IDs for claimed rows that had none, in one statement
/// (the ids as one JSON parameter, as `record_many` does), before any of
/// them is delivered. A row that already has one keeps it.
pub async fn assign_message_ids(store: &Store, ids: &[(i64, String)]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    #[derive(serde::Serialize)]
    struct Row<'a> {
        id: i64,
        mid: &'a str,
    }
    let rows: Vec<Row<'_>> = ids.iter().map(|(id, mid)| Row { id: *id, mid }).collect();
    let rows = serde_json::to_string(&rows)
        .map_err(|e| super::StoreError::Corrupt(format!("message ids as JSON: {e}")))?;
    let _writer = sqlite_writer(store).await;
    match store {
        Store::Sqlite(p) => {
            sqlx::query(
                "WITH v AS (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.mid') AS mid \
                 FROM json_each($1)) UPDATE sends SET message_id = COALESCE(sends.message_id, v.mid) \
                 FROM v WHERE sends.id = v.id",
            )
            .bind(rows)
            .execute(p)
            .await?;
        }
        Store::Postgres(p) => {
            sqlx::query(
                "WITH v AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, mid text)) \
                 UPDATE sends SET message_id = COALESCE(sends.message_id, v.mid) \
                 FROM v WHERE sends.id = v.id",
            )
            .bind(rows)
            .execute(p)
            .await?;
        }
    }
    Ok(())
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted {
        message_id: String,
        code: Option<u16>,
        reply: String,
    },
    Deferred {
        code: Option<u16>,
        reply: String,
        retry_at: Millis,
        /// Whether this counts as an attempt: the server answered for the
        /// recipient. A connection that failed before any answer does not.
        counted: bool,
    },
    Failed {
        code: Option<u16>,
        reply: String,
    },
    Skipped(SkipReason),
}

/// One result as a row of the recorder's JSON parameter; the keys are the
/// names `RECORD_SQLITE` and `RECORD_POSTGRES` read.
#[derive(Default, serde::Serialize)]
struct RowUpdate<'a> {
    id: i64,
    at: Millis,
    state: &'static str,
    code: Option<i64>,
    reply: Option<&'a str>,
    retry_at: Option<Millis>,
    message_id: Option<&'a str>,
    reason: Option<&'static str>,
    /// 1 when the server answered for this recipient: the attempt counts.
    tried: i64,
}

impl<'a> RowUpdate<'a> {
    fn of(id: i64, outcome: &'a Outcome, at: Millis) -> Self {
        let mut row = RowUpdate {
            id,
            at,
            ..RowUpdate::default()
        };
        match outcome {
            Outcome::Accepted {
                message_id,
                code,
                reply,
            } => {
                row.state = "accepted";
                row.tried = 1;
                row.code = code.map(i64::from);
                row.reply = Some(reply);
                row.message_id = Some(message_id);
            }
            Outcome::Deferred {
                code,
                reply,
                retry_at,
                counted,
            } => {
                row.state = "deferred";
                row.tried = i64::from(*counted);
                row.code = code.map(i64::from);
                row.reply = Some(reply);
                row.retry_at = Some(*retry_at);
            }
            Outcome::Failed { code, reply } => {
                row.state = "failed";
                // A render failure or a refusal by the client itself had no
                // answer from a server: no code, no attempt.
                row.tried = i64::from(code.is_some());
                row.code = code.map(i64::from);
                row.reply = Some(reply);
            }
            Outcome::Skipped(r) => {
                row.state = "skipped";
                row.reason = Some(r.as_str());
            }
        }
        row
    }
}

/// A pooled connection the result recorder keeps for a whole send: its
/// prepared statement and page cache stay warm, and a result never waits
/// for a connection.
pub enum RecordConn {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

impl RecordConn {
    pub async fn acquire(store: &Store) -> Result<Self> {
        Ok(match store {
            Store::Sqlite(p) => RecordConn::Sqlite(p.acquire().await?),
            Store::Postgres(p) => RecordConn::Postgres(p.acquire().await?),
        })
    }
}

/// The results as one JSON array bound to one parameter: the statement's
/// text is the same for every group size, so it is prepared once. (With a
/// VALUES row per result, every group size was a new statement to prepare,
/// and a write took 750 us on average for eight rows.)
const RECORD_SQLITE: &str = "WITH v AS (SELECT json_extract(value, '$.id') AS id, \
     json_extract(value, '$.state') AS state, json_extract(value, '$.code') AS smtp_code, \
     json_extract(value, '$.reply') AS smtp_reply, json_extract(value, '$.retry_at') AS next_attempt_at, \
     json_extract(value, '$.message_id') AS message_id, json_extract(value, '$.reason') AS skip_reason, \
     json_extract(value, '$.at') AS at, json_extract(value, '$.tried') AS tried FROM json_each($1)) \
     UPDATE sends SET state = v.state, attempts = sends.attempts + v.tried, smtp_code = v.smtp_code, smtp_reply = v.smtp_reply, \
     next_attempt_at = v.next_attempt_at, message_id = COALESCE(v.message_id, sends.message_id), \
     skip_reason = v.skip_reason, claimed_by = NULL, lease_until = NULL, updated_at = v.at \
     FROM v WHERE sends.id = v.id";
const RECORD_POSTGRES: &str = "WITH v AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, \
     state text, code bigint, reply text, retry_at bigint, message_id text, reason text, at bigint, tried bigint)) \
     UPDATE sends SET state = v.state, attempts = sends.attempts + v.tried, smtp_code = v.code, smtp_reply = v.reply, \
     next_attempt_at = v.retry_at, message_id = COALESCE(v.message_id, sends.message_id), \
     skip_reason = v.reason, claimed_by = NULL, lease_until = NULL, updated_at = v.at \
     FROM v WHERE sends.id = v.id";

/// Records the results of several sends (send id, outcome, when) in one
/// statement, so one write is atomic for all of them. An accepted send also
/// stamps the contact's engagement counters through a trigger (migration
/// 0003), in the same write.
pub async fn record_many(conn: &mut RecordConn, results: &[(i64, &Outcome, Millis)]) -> Result<()> {
    let rows: Vec<RowUpdate<'_>> = results
        .iter()
        .map(|(id, outcome, at)| RowUpdate::of(*id, outcome, *at))
        .collect();
    let rows = serde_json::to_string(&rows)
        .map_err(|e| super::StoreError::Corrupt(format!("send results as JSON: {e}")))?;
    match conn {
        RecordConn::Sqlite(c) => {
            let _writer = SQLITE_WRITER.lock().await;
            sqlx::query(RECORD_SQLITE)
                .bind(rows)
                .execute(&mut **c)
                .await?;
        }
        RecordConn::Postgres(c) => {
            sqlx::query(RECORD_POSTGRES)
                .bind(rows)
                .execute(&mut **c)
                .await?;
        }
    }
    Ok(())
}

/// When work of a run may next be due: the earliest retry time of a
/// deferred row, the earliest delivery time of a pending row that waits for
/// it (`[delivery]`), or the earliest lease of a row another worker holds
/// (taken over if it is not renewed). `None`: nothing is waiting.
pub async fn next_due_at(store: &Store, run_id: i64) -> Result<Option<Millis>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar(
            "SELECT MIN(CASE WHEN state = 'sending' THEN COALESCE(lease_until, 0) ELSE next_attempt_at END) \
             FROM sends WHERE run_id = $1 AND (state IN ('deferred', 'sending') \
             OR (state = 'pending' AND next_attempt_at IS NOT NULL))",
        )
        .bind(run_id)
        .fetch_one(pool)
        .await?)
    })
}

/// Contacts among `ids` currently subscribed to `list_id`.
pub async fn subscribed_among(
    store: &Store,
    list_id: i64,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    dispatch!(store, pool => {
        // `list_id + 0` keeps SQLite off the (list_id, subscribed) index,
        // which it prefers without statistics and which walks every
        // subscriber of the list on each claim; the primary key finds the
        // claimed contacts directly. PostgreSQL plans the same way.
        let mut qb = QueryBuilder::new("SELECT contact_id FROM contact_lists WHERE contact_id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(") AND subscribed = 1 AND list_id + 0 = ");
        qb.push_bind(list_id);
        let rows = qb.build().fetch_all(pool).await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("contact_id"))
            .collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    })
}

/// A campaign's pending rows that wait for their per-contact delivery time
/// (`[delivery]`; held ones included), and the earliest such time.
pub async fn timed(store: &Store, campaign_id: i64) -> Result<(u64, Option<Millis>)> {
    let (n, first): (i64, Option<Millis>) = dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT COUNT(*), MIN(CASE WHEN next_attempt_at < $2 THEN next_attempt_at END) FROM sends \
             WHERE campaign_id = $1 AND state = 'pending' AND next_attempt_at IS NOT NULL",
        )
        .bind(campaign_id)
        .bind(HELD)
        .fetch_one(pool)
        .await?
    });
    Ok((n.max(0) as u64, first))
}

/// Pending rows of a run still `HELD`, after `after_id`, in id order: (send
/// id, contact id, the contact's time zone as stored).
pub async fn held(
    store: &Store,
    run_id: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<(i64, i64, Option<String>)>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as(
            "SELECT s.id, s.contact_id, c.timezone FROM sends s JOIN contacts c ON c.id = s.contact_id \
             WHERE s.run_id = $1 AND s.state = 'pending' AND s.next_attempt_at = $2 AND s.id > $3 \
             ORDER BY s.id LIMIT $4",
        )
        .bind(run_id)
        .bind(HELD)
        .bind(after_id)
        .bind(limit)
        .fetch_all(pool)
        .await?)
    })
}

/// The UTC hour of day at which each of `ids` opened or clicked most, from
/// their own history; machine opens and scanner clicks (the `class` the
/// event writer gave them) do not count, they follow the delivery, not the
/// reader. Ties go to the earlier hour. Contacts with no history are absent.
pub async fn best_hours(store: &Store, ids: &[i64]) -> Result<HashMap<i64, u32>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let machine = super::track::event_sql(store.backend()).machine;
    let rows: Vec<(i64, i64, i64)> = dispatch!(store, pool => {
        let mut qb = QueryBuilder::new(
            "SELECT contact_id, (occurred_at / 3600000) % 24 AS h, COUNT(*) AS n FROM events \
             WHERE contact_id IN (",
        );
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(format!(
            ") AND kind IN ('open', 'click') AND {machine} = 0 \
             GROUP BY 1, 2"
        ));
        qb.build_query_as().fetch_all(pool).await?
    });
    let mut best: HashMap<i64, (i64, i64)> = HashMap::new();
    for (contact, h, n) in rows {
        let e = best.entry(contact).or_insert((h, n));
        if n > e.1 || (n == e.1 && h < e.0) {
            *e = (h, n);
        }
    }
    Ok(best
        .into_iter()
        .map(|(c, (h, _))| (c, h.rem_euclid(24) as u32))
        .collect())
}

/// Gives held rows their delivery time, `(send id, due)`, in one statement;
/// a row no longer pending keeps what it has.
pub async fn set_due(store: &Store, due: &[(i64, Millis)]) -> Result<()> {
    if due.is_empty() {
        return Ok(());
    }
    let _writer = sqlite_writer(store).await;
    dispatch!(store, pool => {
        let mut qb = QueryBuilder::new("UPDATE sends SET next_attempt_at = CASE id");
        for (id, at) in due {
            qb.push(" WHEN ");
            qb.push_bind(*id);
            qb.push(" THEN ");
            qb.push_bind(*at);
        }
        qb.push(" END WHERE state = 'pending' AND next_attempt_at = ");
        qb.push_bind(HELD);
        qb.push(" AND id IN (");
        let mut sep = qb.separated(", ");
        for (id, _) in due {
            sep.push_bind(*id);
        }
        qb.push(")");
        qb.build().execute(pool).await?;
    });
    Ok(())
}

/// Of the contacts `ids`, those who have had `cap.max` campaign messages
/// in the `cap.period_ms` before `now` (accepted, or being sent by another
/// run now), not counting transactional campaigns or the run `run_id`
/// itself. One statement, for a claimed batch before it is rendered.
///
/// Two runs that deliver to the same contact at the same moment may both
/// see room for one more: the count covers what is accepted or claimed, and
/// the last slot can be taken twice in that race (docs/SCHEDULING.md).
pub async fn capped_among(
    store: &Store,
    run_id: i64,
    ids: &[i64],
    cap: crate::domain::send::FrequencyCap,
    now: Millis,
) -> Result<std::collections::HashSet<i64>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let since = now.saturating_sub(cap.period_ms);
    dispatch!(store, pool => {
        let mut qb = QueryBuilder::new(
            "SELECT s.contact_id FROM sends s JOIN campaigns c ON c.id = s.campaign_id WHERE s.contact_id IN (",
        );
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(") AND c.transactional = 0 AND s.run_id <> ");
        qb.push_bind(run_id);
        qb.push(" AND ((s.state = 'accepted' AND s.updated_at > ");
        qb.push_bind(since);
        qb.push(") OR s.state = 'sending') GROUP BY s.contact_id HAVING COUNT(*) >= ");
        qb.push_bind(i64::from(cap.max));
        let rows = qb.build().fetch_all(pool).await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("contact_id"))
            .collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    })
}

/// Hands the rows these workers still hold back to `pending`: a run that
/// stops on purpose (an SMTP outage that outlasted `smtp.outage_timeout_secs`)
/// had not delivered them, so a resume sends them without counting them as
/// the in-flight window. Returns how many there were.
pub async fn release_claims(store: &Store, run_id: i64, workers: &[String]) -> Result<u64> {
    if workers.is_empty() {
        return Ok(0);
    }
    let _writer = sqlite_writer(store).await;
    Ok(dispatch!(store, pool => {
        let mut qb = QueryBuilder::new(
            "UPDATE sends SET state = 'pending', claimed_by = NULL, lease_until = NULL WHERE run_id = ",
        );
        qb.push_bind(run_id);
        qb.push(" AND state = 'sending' AND claimed_by IN (");
        let mut sep = qb.separated(", ");
        for w in workers {
            sep.push_bind(w.as_str());
        }
        qb.push(")");
        qb.build().execute(pool).await?.rows_affected()
    }))
}

/// Of the contacts `ids`, those that may no longer be mailed on `list_id`,
/// with the reason: a status other than active, or no consent for the list
/// (any more). One statement, for the check just before delivery.
pub async fn suppressed_among(
    store: &Store,
    list_id: i64,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, SkipReason>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(i64, String, i32)> = dispatch!(store, pool => {
        let mut qb = QueryBuilder::new(
            "SELECT c.id, c.status, CASE WHEN EXISTS (SELECT 1 FROM contact_lists cl \
             WHERE cl.contact_id = c.id AND cl.subscribed = 1 AND cl.list_id = ",
        );
        qb.push_bind(list_id);
        qb.push(") THEN 1 ELSE 0 END FROM contacts c WHERE c.id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(")");
        qb.build_query_as().fetch_all(pool).await?
    });
    let mut out = std::collections::HashMap::new();
    let found: std::collections::HashSet<i64> = rows.iter().map(|r| r.0).collect();
    for (id, status, subscribed) in rows {
        let reason = match status.as_str() {
            "active" if subscribed == 1 => continue,
            "active" => SkipReason::NoConsent,
            // Every other status names its skip reason (`send::skip_reason_for`).
            other => other.parse().unwrap_or(SkipReason::Unsubscribed),
        };
        out.insert(id, reason);
    }
    for id in ids {
        if !found.contains(id) {
            out.insert(*id, SkipReason::Erased);
        }
    }
    Ok(out)
}

/// A row that still needs work (pending, sending or deferred), for a dry run
/// of a started campaign.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OpenRow {
    pub id: i64,
    pub contact_id: i64,
    pub email: String,
    pub state: String,
    pub next_attempt_at: Option<Millis>,
    pub attempts: i64,
    pub created_at: Millis,
}

/// The rows of a campaign that still need work, in id order.
pub async fn open_rows(store: &Store, campaign_id: i64) -> Result<Vec<OpenRow>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, OpenRow>(
            "SELECT id, contact_id, email, state, next_attempt_at, attempts, created_at FROM sends \
             WHERE campaign_id = $1 AND state IN ('pending', 'sending', 'deferred') ORDER BY id",
        )
        .bind(campaign_id)
        .fetch_all(pool)
        .await?)
    })
}

/// Returns rows that failed because their message could not be rendered
/// (their reply starts with `prefix`, and no server answered) to pending:
/// the campaign's files changed, so they may render now.
pub async fn retry_render_failures(
    store: &Store,
    run_id: i64,
    prefix: &str,
    now: Millis,
) -> Result<u64> {
    let _writer = sqlite_writer(store).await;
    let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
    Ok(dispatch!(store, pool => {
        sqlx::query(
            "UPDATE sends SET state = 'pending', smtp_reply = NULL, updated_at = $1 \
             WHERE run_id = $2 AND state = 'failed' AND smtp_code IS NULL \
             AND smtp_reply LIKE $3 ESCAPE '\\'",
        )
        .bind(now)
        .bind(run_id)
        .bind(&pattern)
        .execute(pool)
        .await?
        .rows_affected()
    }))
}

/// A send that failed or waits for a retry, for `campaign status --failed`.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Trouble {
    pub email: String,
    pub state: String,
    pub attempts: i64,
    pub smtp_code: Option<i64>,
    pub smtp_reply: Option<String>,
    pub updated_at: Millis,
    pub next_attempt_at: Option<Millis>,
}

/// The failed and deferred sends of a campaign, most recent first.
pub async fn troubles(store: &Store, campaign_id: i64) -> Result<Vec<Trouble>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, Trouble>(
            "SELECT email, state, attempts, smtp_code, smtp_reply, updated_at, next_attempt_at FROM sends \
             WHERE campaign_id = $1 AND state IN ('failed', 'deferred') ORDER BY updated_at DESC, id",
        )
        .bind(campaign_id)
        .fetch_all(pool)
        .await?)
    })
}

/// Records whether the messages of a campaign's rows still to be delivered
/// carry open or click tracking (`sends.tracked`, migration 0006): the rows
/// this run may deliver, composed with this run's settings. Rows already
/// settled keep what they were sent with; rows another live run holds
/// (`sending`) keep that run's value.
pub async fn mark_tracked(store: &Store, campaign_id: i64, tracked: bool) -> Result<()> {
    let _writer = sqlite_writer(store).await;
    dispatch!(store, pool => {
        sqlx::query(
            "UPDATE sends SET tracked = $1 WHERE campaign_id = $2 AND state IN ('pending', 'deferred') \
             AND (tracked IS NULL OR tracked <> $1)",
        )
        .bind(i64::from(tracked))
        .bind(campaign_id)
        .execute(pool)
        .await?;
    });
    Ok(())
}
