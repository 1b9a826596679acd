//! The warm-up plan's daily budget (`send::warmup`), shared by every node:
//! one row per day in `warmup_days` (migration 0026).

use super::{Result, Store};
use crate::dispatch;

/// Takes up to `want` of `day`'s `cap`; returns how many it got (0 when the
/// day is spent). One conditional UPDATE: the grant is computed from the
/// row as it was, so concurrent claims never take more than the cap.
pub async fn reserve(store: &Store, day: &str, cap: u64, want: u64) -> Result<u64> {
    let _writer = super::sends::sqlite_writer(store).await;
    let (cap, want) = (cap as i64, want as i64);
    let granted: i64 = dispatch!(store, pool => {
        // The cap follows the file: a plan edited today applies today.
        sqlx::query(
            "INSERT INTO warmup_days (day, cap, used) VALUES ($1, $2, 0) \
             ON CONFLICT (day) DO UPDATE SET cap = excluded.cap",
        )
        .bind(day)
        .bind(cap)
        .execute(pool)
        .await?;
        sqlx::query_scalar(
            "UPDATE warmup_days SET \
             last_grant = CASE WHEN cap - used <= 0 THEN 0 WHEN cap - used < $2 THEN cap - used ELSE $2 END, \
             used = used + CASE WHEN cap - used <= 0 THEN 0 WHEN cap - used < $2 THEN cap - used ELSE $2 END \
             WHERE day = $1 RETURNING last_grant",
        )
        .bind(day)
        .bind(want)
        .fetch_one(pool)
        .await?
    });
    Ok(granted.max(0) as u64)
}

/// Gives back `n` of `day`'s reservation that was not sent (fewer rows to
/// claim than reserved, rows skipped at the re-check).
pub async fn give_back(store: &Store, day: &str, n: u64) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let _writer = super::sends::sqlite_writer(store).await;
    dispatch!(store, pool => {
        sqlx::query(
            "UPDATE warmup_days SET used = CASE WHEN used >= $2 THEN used - $2 ELSE 0 END WHERE day = $1",
        )
        .bind(day)
        .bind(n as i64)
        .execute(pool)
        .await?;
    });
    Ok(())
}
