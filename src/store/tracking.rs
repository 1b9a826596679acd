//! What consent to track needs from the database: each campaign's list,
//! who consents to tracking, and the aggregate hits (no contact, no send).

use std::collections::{HashMap, HashSet};

use sqlx::QueryBuilder;

use super::track::NewHit;
use super::{Result, Tx};
use crate::dispatch_tx;

/// The list name of each of `ids` (campaigns that exist).
pub async fn campaign_lists(tx: &mut Tx, ids: &[i64]) -> Result<HashMap<i64, Option<String>>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(1000) {
        dispatch_tx!(tx, conn => {
            let mut qb = QueryBuilder::new("SELECT id, list_name FROM campaigns WHERE id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(")");
            let rows: Vec<(i64, Option<String>)> = qb.build_query_as().fetch_all(&mut *conn).await?;
            out.extend(rows);
        });
    }
    Ok(out)
}

/// (contact, list name) for every current grant of a list whose name starts
/// with `prefix` (the consent-to-track purpose lists) among `contacts`.
pub async fn tracking_consents(
    tx: &mut Tx,
    contacts: &[i64],
    prefix: &str,
) -> Result<HashSet<(i64, String)>> {
    let mut out = HashSet::new();
    for chunk in contacts.chunks(1000) {
        dispatch_tx!(tx, conn => {
            let mut qb = QueryBuilder::new(
                "SELECT cl.contact_id, l.name FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
                 WHERE cl.subscribed = 1 AND l.name LIKE ",
            );
            // The prefix has no LIKE wildcards (`tracking:`).
            qb.push_bind(format!("{prefix}%"));
            qb.push(" AND cl.contact_id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(")");
            let rows: Vec<(i64, String)> = qb.build_query_as().fetch_all(&mut *conn).await?;
            out.extend(rows);
        });
    }
    Ok(out)
}

/// Stores hits without their contact and send; no contact's counters move.
pub async fn insert_aggregate(tx: &mut Tx, hits: &[NewHit]) -> Result<()> {
    for chunk in hits.chunks(1000) {
        dispatch_tx!(tx, conn => {
            let mut qb = QueryBuilder::new(
                "INSERT INTO events (contact_id, campaign_id, send_id, kind, channel, occurred_at, data) ",
            );
            qb.push_values(chunk.iter(), |mut b, h| {
                b.push_bind(None::<i64>)
                    .push_bind(h.campaign_id)
                    .push_bind(None::<i64>)
                    .push_bind(h.kind)
                    .push_bind("email")
                    .push_bind(h.occurred_at)
                    .push_bind(h.data.as_str());
            });
            qb.build().execute(&mut *conn).await?;
        });
    }
    Ok(())
}
