//! The contact change log's origin: what the current write transaction is
//! doing (the command and file, the HTTP request, the rule), read by the
//! triggers of migration 0015 that write `contact_changes`. PostgreSQL keeps
//! it in the transaction-local setting `cartero.origin`; SQLite, which has
//! one writer at a time, in the one row of `change_origin`, cleared by
//! `Store::begin`. Nothing here decides what is logged: the triggers do.

use super::{Result, Tx};

/// Longest origin kept; a longer one is cut at a character boundary.
const MAX_ORIGIN: usize = 500;

/// Names what the rest of `tx` does, for the change log.
pub async fn set_origin(tx: &mut Tx, origin: &str) -> Result<()> {
    let mut end = origin.len().min(MAX_ORIGIN);
    while !origin.is_char_boundary(end) {
        end -= 1;
    }
    let origin = &origin[..end];
    match tx {
        Tx::Sqlite(t) => {
            sqlx::query("UPDATE change_origin SET origin = NULLIF($1, '') WHERE id = 1")
                .bind(origin)
                .execute(&mut **t)
                .await?;
        }
        Tx::Postgres(t) => {
            sqlx::query("SELECT set_config('cartero.origin', $1, true)")
                .bind(origin)
                .execute(&mut **t)
                .await?;
        }
    }
    Ok(())
}

/// The origin set in `tx`, if any.
pub async fn origin(tx: &mut Tx) -> Result<Option<String>> {
    Ok(match tx {
        Tx::Sqlite(t) => sqlx::query_scalar("SELECT origin FROM change_origin WHERE id = 1")
            .fetch_optional(&mut **t)
            .await?
            .flatten(),
        Tx::Postgres(t) => {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT NULLIF(current_setting('cartero.origin', true), '')",
            )
            .fetch_one(&mut **t)
            .await?
        }
    })
}

/// Clears the origin at the start of a SQLite write transaction.
pub(super) async fn clear_origin_sqlite(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
) -> Result<()> {
    sqlx::query("UPDATE change_origin SET origin = NULL WHERE id = 1 AND origin IS NOT NULL")
        .execute(&mut **t)
        .await?;
    Ok(())
}
