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
}

const COLUMNS: &str =
    "id, campaign_id, trigger, occurrence, state, created_at, started_at, finished_at";

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
    dispatch!(store, pool => {
        sqlx::query(
            "INSERT INTO campaign_runs (campaign_id, trigger, occurrence, state, created_at) \
             VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (campaign_id, occurrence) DO NOTHING",
        )
        .bind(campaign_id)
        .bind(trigger)
        .bind(occurrence)
        .bind(now)
        .execute(pool)
        .await?;
        Ok(sqlx::query_as::<_, RunRow>(&format!(
            "SELECT {COLUMNS} FROM campaign_runs WHERE campaign_id = $1 AND occurrence = $2"
        ))
        .bind(campaign_id)
        .bind(occurrence)
        .fetch_one(pool)
        .await?)
    })
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
