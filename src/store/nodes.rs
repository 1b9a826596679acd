//! Service nodes repository: the `cartero serve` processes whose scheduler
//! runs, each by its worker identity, and when each was last alive. The
//! global send rate is divided among the nodes alive.

use super::{Result, Store};
use crate::dispatch;
use crate::domain::time::Millis;

/// Records that node `id` is alive at `now`.
pub async fn beat(store: &Store, id: &str, now: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query(
            "INSERT INTO service_nodes (id, started_at, seen_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// Nodes seen alive at or after `since` (this one included once it beat).
pub async fn alive(store: &Store, since: Millis) -> Result<u64> {
    let n: i64 = dispatch!(store, pool => {
        sqlx::query_scalar("SELECT COUNT(*) FROM service_nodes WHERE seen_at >= $1")
            .bind(since)
            .fetch_one(pool)
            .await?
    });
    Ok(n.max(0) as u64)
}

/// A node that stops cleanly leaves at once, so the others take its share
/// of the rate without waiting for it to be missed.
pub async fn leave(store: &Store, id: &str) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("DELETE FROM service_nodes WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}
