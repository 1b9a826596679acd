//! Campaign runs repository: one row per time a campaign is sent.
//!
//! A run owns its send rows (unique per run and contact). The command line's
//! `campaign send` works on the campaign's manual run (occurrence `manual`),
//! creating it on first use and resuming it after; a scheduler creates one
//! run per occurrence, once, through the unique (campaign, occurrence).

use super::{Result, Store};
use crate::dispatch;
use crate::domain::time::Millis;

/// The occurrence of the run the command line sends.
pub const MANUAL: &str = "manual";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub campaign_id: i64,
    pub trigger: String,
    pub occurrence: String,
    pub state: String,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Why the run was skipped or cancelled.
    pub note: Option<String>,
}

impl RunRow {
    pub fn note_text(&self) -> &str {
        self.note.as_deref().unwrap_or("no reason recorded")
    }
}

const COLUMNS: &str =
    "id, campaign_id, trigger, occurrence, state, created_at, started_at, finished_at, note";

/// Returns the run of `campaign_id` for `occurrence`, creating it (state
/// `pending`) when there is none. Two processes asking at once get the same
/// row: the insert does nothing on conflict and the row is read back.
pub async fn get_or_create(
    store: &Store,
    campaign_id: i64,
    trigger: &str,
    occurrence: &str,
    now: Millis,
) -> Result<RunRow> {
    Ok(create_as(
        store,
        campaign_id,
        trigger,
        occurrence,
        Initial::Pending,
        now,
    )
    .await?
    .0)
}

/// The state a new run starts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    /// To be sent.
    Pending,
    /// A missed occurrence the campaign's `missed = "skip"` (or a later
    /// missed one) passes over, with the reason in words.
    Skipped(String),
}

/// Returns the run of `campaign_id` for `occurrence`, creating it in the
/// `initial` state when there is none. Whoever inserts first decides: two
/// nodes that disagree (one saw the occurrence in time, one late) both get
/// the one row back.
pub async fn create_as(
    store: &Store,
    campaign_id: i64,
    trigger: &str,
    occurrence: &str,
    initial: Initial,
    now: Millis,
) -> Result<(RunRow, bool)> {
    let (state, note, finished) = match &initial {
        Initial::Pending => ("pending", None, None),
        Initial::Skipped(why) => ("skipped", Some(why.as_str()), Some(now)),
    };
    dispatch!(store, pool => {
        let inserted = sqlx::query(
            "INSERT INTO campaign_runs (campaign_id, trigger, occurrence, state, created_at, note, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (campaign_id, occurrence) DO NOTHING",
        )
        .bind(campaign_id)
        .bind(trigger)
        .bind(occurrence)
        .bind(state)
        .bind(now)
        .bind(note)
        .bind(finished)
        .execute(pool)
        .await?
        .rows_affected();
        let row = sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {COLUMNS} FROM campaign_runs WHERE campaign_id = $1 AND occurrence = $2"
        ))
        .bind(campaign_id)
        .bind(occurrence)
        .fetch_one(pool)
        .await?;
        Ok((row, inserted > 0))
    })
}

/// Marks a run started (`sending`), once: a journey step's run, which
/// takes rows one by one rather than from a snapshot. The campaign is
/// stamped started too, the first time.
pub async fn mark_started(store: &Store, run_id: i64, campaign_id: i64, now: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query(
            "UPDATE campaign_runs SET started_at = $1, state = 'sending' \
             WHERE id = $2 AND started_at IS NULL",
        )
        .bind(now)
        .bind(run_id)
        .execute(pool)
        .await?;
        sqlx::query("UPDATE campaigns SET started_at = COALESCE(started_at, $1) WHERE id = $2")
            .bind(now)
            .bind(campaign_id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The runs of a campaign, oldest first.
pub async fn of_campaign(store: &Store, campaign_id: i64) -> Result<Vec<RunRow>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {COLUMNS} FROM campaign_runs WHERE campaign_id = $1 ORDER BY id"
        ))
        .bind(campaign_id)
        .fetch_all(pool)
        .await?)
    })
}

/// Marks a run finished (every row settled), once.
pub async fn mark_finished(store: &Store, run_id: i64, now: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query(
            "UPDATE campaign_runs SET state = 'finished', finished_at = $1 \
             WHERE id = $2 AND state <> 'finished'",
        )
        .bind(now)
        .bind(run_id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Whether the workers of a run may claim its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Go,
    /// `cartero campaign pause`: rows wait until `campaign resume`.
    Paused {
        reason: Option<String>,
    },
    /// `cartero campaign cancel`: the run's unsent rows were skipped.
    Cancelled,
    /// The occurrence was skipped, or the run does not exist.
    Over,
}

/// The SQL condition, on a run id bound as `$n`, under which its rows may
/// be claimed: the run was not cancelled or skipped, and its campaign is not
/// paused. A finished run may get rows back (render failures retried after
/// the files changed), so `finished` does not stop a claim. `sends::claim`
/// puts it in every claim, so a pause committed by any node stops every
/// node's next claim.
pub fn claimable_sql(run_param: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM campaign_runs r JOIN campaigns c ON c.id = r.campaign_id \
         WHERE r.id = {run_param} AND r.state NOT IN ('cancelled', 'skipped') AND c.paused_at IS NULL)"
    )
}

/// Whether a run's rows may be claimed now, and if not, why.
pub async fn control(store: &Store, run_id: i64) -> Result<Control> {
    let row: Option<(String, Option<i64>, Option<String>)> = dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT r.state, c.paused_at, c.paused_reason FROM campaign_runs r \
             JOIN campaigns c ON c.id = r.campaign_id WHERE r.id = $1",
        )
        .bind(run_id)
        .fetch_optional(pool)
        .await?
    });
    Ok(match row {
        None => Control::Over,
        Some((state, _, _)) if state == "cancelled" => Control::Cancelled,
        Some((state, _, _)) if state == "skipped" => Control::Over,
        Some((_, Some(_), reason)) => Control::Paused { reason },
        Some(_) => Control::Go,
    })
}

/// A run the scheduler's delivery takes up: made by a schedule or a
/// send_at and open, or a journey step's with rows to deliver; its campaign
/// not paused.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueRun {
    pub run_id: i64,
    pub campaign_id: i64,
    pub slug: String,
    pub trigger: String,
    pub occurrence: String,
}

pub async fn due(store: &Store) -> Result<Vec<DueRun>> {
    // A journey step's run takes rows one by one as contacts reach the
    // step: it is due while it has rows to deliver, finished or not.
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, DueRun>(
            "SELECT r.id AS run_id, r.campaign_id, c.slug, r.trigger, r.occurrence FROM campaign_runs r \
             JOIN campaigns c ON c.id = r.campaign_id \
             WHERE c.paused_at IS NULL AND ( \
               (r.state IN ('pending', 'sending') AND r.trigger IN ('schedule', 'send_at')) \
               OR (r.trigger = 'journey' AND r.state NOT IN ('cancelled', 'skipped') \
                   AND EXISTS (SELECT 1 FROM sends s WHERE s.run_id = r.id \
                               AND s.state IN ('pending', 'deferred', 'sending')))) \
             ORDER BY r.id",
        )
        .fetch_all(pool)
        .await?)
    })
}

/// What the scheduler knows of one campaign's schedule (`campaign_schedules`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScheduleRow {
    pub campaign_id: i64,
    pub spec: String,
    /// When a scheduler first saw the schedule.
    pub since: Millis,
    /// Every occurrence up to here has its run (or its skip).
    pub checked_upto: Millis,
}

/// The schedule row of a campaign, made on first sight: `since` = `now`,
/// and occurrences from `checked_from` on are considered (a send_at written
/// for "now" is sent; one long past is not). A changed spec is recorded;
/// what was decided stays decided.
pub async fn schedule_seen(
    store: &Store,
    campaign_id: i64,
    spec: &str,
    checked_from: Millis,
    now: Millis,
) -> Result<ScheduleRow> {
    dispatch!(store, pool => {
        sqlx::query(
            "INSERT INTO campaign_schedules (campaign_id, spec, since, checked_upto) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (campaign_id) DO UPDATE SET spec = excluded.spec \
             WHERE campaign_schedules.spec <> excluded.spec",
        )
        .bind(campaign_id)
        .bind(spec)
        .bind(now)
        .bind(checked_from)
        .execute(pool)
        .await?;
        Ok(sqlx::query_as::<_, ScheduleRow>(
            "SELECT campaign_id, spec, since, checked_upto FROM campaign_schedules WHERE campaign_id = $1",
        )
        .bind(campaign_id)
        .fetch_one(pool)
        .await?)
    })
}

/// The schedule row of a campaign, if a scheduler has seen it.
pub async fn schedule_of(store: &Store, campaign_id: i64) -> Result<Option<ScheduleRow>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, ScheduleRow>(
            "SELECT campaign_id, spec, since, checked_upto FROM campaign_schedules WHERE campaign_id = $1",
        )
        .bind(campaign_id)
        .fetch_optional(pool)
        .await?)
    })
}

/// Every occurrence up to `upto` has been decided; never moves back.
pub async fn schedule_checked(store: &Store, campaign_id: i64, upto: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query(
            "UPDATE campaign_schedules SET checked_upto = $1 WHERE campaign_id = $2 AND checked_upto < $1",
        )
        .bind(upto)
        .bind(campaign_id)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The latest run of a campaign made by its schedule or send_at.
pub async fn last_scheduled(store: &Store, campaign_id: i64) -> Result<Option<RunRow>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {COLUMNS} FROM campaign_runs WHERE campaign_id = $1 \
             AND trigger IN ('schedule', 'send_at') ORDER BY occurrence DESC LIMIT 1"
        ))
        .bind(campaign_id)
        .fetch_optional(pool)
        .await?)
    })
}

/// `cartero campaign cancel`: every open run of the campaign is cancelled,
/// and its rows not yet handed to a server (pending, deferred, or claimed
/// by a worker whose lease lapsed) are skipped as `cancelled`. Rows on the
/// wire now are recorded as their server answers. Returns (runs, rows).
pub async fn cancel_open(
    store: &Store,
    campaign_id: i64,
    why: &str,
    now: Millis,
) -> Result<(u64, u64)> {
    let _writer = super::sends::sqlite_writer(store).await;
    let mut tx = store.begin().await?;
    let (runs, rows) = crate::dispatch_tx!(&mut tx, conn => {
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE campaign_runs SET state = 'cancelled', note = $1, finished_at = $2 \
             WHERE campaign_id = $3 AND state IN ('pending', 'sending') RETURNING id",
        )
        .bind(why)
        .bind(now)
        .bind(campaign_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut rows = 0;
        for id in &ids {
            rows += sqlx::query(SKIP_UNSENT)
                .bind(now)
                .bind(*id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }
        (ids.len() as u64, rows)
    });
    tx.commit().await?;
    Ok((runs, rows))
}

/// A cancelled run's rows that no live worker holds become skipped
/// (`cancelled`).
const SKIP_UNSENT: &str = "UPDATE sends SET state = 'skipped', skip_reason = 'cancelled', \
     claimed_by = NULL, lease_until = NULL, updated_at = $1 WHERE run_id = $2 \
     AND (state IN ('pending', 'deferred') \
     OR (state = 'sending' AND (lease_until IS NULL OR lease_until <= $1)))";

/// Skips a cancelled run's rows that no live worker holds; the workers of a
/// cancelled run call it again after releasing their claims.
pub async fn skip_unsent(store: &Store, run_id: i64, now: Millis) -> Result<u64> {
    let _writer = super::sends::sqlite_writer(store).await;
    Ok(dispatch!(store, pool => {
        sqlx::query(SKIP_UNSENT)
            .bind(now)
            .bind(run_id)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}
