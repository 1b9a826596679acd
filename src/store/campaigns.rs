//! Campaigns repository: one row per campaign file, keyed by its slug.

use super::{Result, Store};
use crate::dispatch;
use crate::domain::time::Millis;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub file_hash: String,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// Returns the campaign with `slug`, creating it on first use. The stored
/// name, path and hash follow the file (it may be edited between runs).
pub async fn upsert(
    store: &Store,
    slug: &str,
    name: &str,
    file_path: &str,
    file_hash: &str,
    list_name: Option<&str>,
    now: Millis,
) -> Result<CampaignRow> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, CampaignRow>(
            "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6) \
             ON CONFLICT (slug) DO UPDATE SET name = excluded.name, file_path = excluded.file_path, \
             file_hash = excluded.file_hash, list_name = excluded.list_name \
             RETURNING id, slug, name, file_hash, started_at, finished_at",
        )
        .bind(slug)
        .bind(name)
        .bind(file_path)
        .bind(file_hash)
        .bind(list_name)
        .bind(now)
        .fetch_one(pool)
        .await?)
    })
}

pub async fn find(store: &Store, slug: &str) -> Result<Option<CampaignRow>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, CampaignRow>(
            "SELECT id, slug, name, file_hash, started_at, finished_at FROM campaigns WHERE slug = $1",
        )
        .bind(slug)
        .fetch_optional(pool)
        .await?)
    })
}

pub async fn mark_finished(store: &Store, id: i64, now: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE campaigns SET finished_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Records the campaign file's `attribution_days` (conversions read it).
pub async fn set_attribution_days(store: &Store, id: i64, days: u32) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE campaigns SET attribution_days = $1 WHERE id = $2")
            .bind(i64::from(days))
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Records whether a campaign is transactional (outside the frequency cap),
/// as its file says now.
pub async fn set_transactional(store: &Store, id: i64, transactional: bool) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE campaigns SET transactional = $1 WHERE id = $2")
            .bind(i64::from(transactional))
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A campaign as the admin pages list it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CampaignListing {
    pub slug: String,
    pub name: String,
    pub list_name: Option<String>,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// Every campaign, the most recently started (or created) first.
pub async fn list(store: &Store) -> Result<Vec<CampaignListing>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, CampaignListing>(
            "SELECT slug, name, list_name, created_at, started_at, finished_at FROM campaigns \
             ORDER BY COALESCE(started_at, created_at) DESC, id DESC",
        )
        .fetch_all(pool)
        .await?)
    })
}

/// The campaign with `slug`, created (as `upsert` would) when it does not
/// exist; an existing row is left as it is, so the file hash a send compares
/// against stays the one of its last send.
pub async fn ensure(
    store: &Store,
    slug: &str,
    name: &str,
    file_path: &str,
    file_hash: &str,
    list_name: Option<&str>,
    now: Millis,
) -> Result<CampaignRow> {
    dispatch!(store, pool => {
        sqlx::query(
            "INSERT INTO campaigns (slug, name, file_path, file_hash, list_name, created_at) \
             VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (slug) DO NOTHING",
        )
        .bind(slug)
        .bind(name)
        .bind(file_path)
        .bind(file_hash)
        .bind(list_name)
        .bind(now)
        .execute(pool)
        .await?;
    });
    find(store, slug)
        .await?
        .ok_or_else(|| super::StoreError::Corrupt(format!("campaign {slug:?} vanished")))
}

/// Whether a campaign is paused: since when, and why.
pub async fn paused(store: &Store, id: i64) -> Result<Option<(Millis, Option<String>)>> {
    let row: Option<(Option<Millis>, Option<String>)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT paused_at, paused_reason FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.and_then(|(at, why)| at.map(|at| (at, why))))
}

/// Pauses (`Some(reason)`) or resumes (`None`) a campaign. Returns whether
/// anything changed: pausing a paused campaign keeps its first pause.
pub async fn set_paused(store: &Store, id: i64, pause: Option<&str>, now: Millis) -> Result<bool> {
    let changed = dispatch!(store, pool => {
        match pause {
            Some(reason) => sqlx::query(
                "UPDATE campaigns SET paused_at = $1, paused_reason = $2 WHERE id = $3 AND paused_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(pool)
            .await?,
            None => sqlx::query(
                "UPDATE campaigns SET paused_at = NULL, paused_reason = NULL WHERE id = $1 AND paused_at IS NOT NULL",
            )
            .bind(id)
            .execute(pool)
            .await?,
        }
        .rows_affected()
    });
    Ok(changed > 0)
}
