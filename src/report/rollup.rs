//! The rollups recomputed from the raw rows: the same definitions as the
//! triggers of migrations 0015 and 0023, as plain GROUP BY queries. `cartero report
//! rebuild` runs it after a restore, a bulk load that bypassed the
//! triggers, or to check the triggers (the tests compare both).

use crate::dispatch_tx;
use crate::store::{Backend, Store, Tx};

use super::Result;

/// The rollup tables, in the order they are emptied and refilled.
pub const TABLES: [&str; 7] = [
    "report_hourly",
    "report_uniques",
    "report_link_totals",
    "report_sends",
    "report_links",
    "report_reasons",
    "report_domains",
];

fn statements(backend: Backend) -> Vec<String> {
    let crate::store::track::EventSql {
        machine,
        url,
        reason,
    } = crate::store::track::event_sql(backend);
    let mut out: Vec<String> = TABLES.iter().map(|t| format!("DELETE FROM {t}")).collect();
    out.extend([
        format!(
            "INSERT INTO report_hourly (campaign_id, kind, machine, hour_at, events) \
             SELECT campaign_id, kind, {machine}, occurred_at / 3600000 * 3600000, count(*) FROM events \
             WHERE campaign_id IS NOT NULL GROUP BY 1, 2, 3, 4"
        ),
        "INSERT INTO report_hourly (campaign_id, kind, machine, hour_at, events) \
         SELECT campaign_id, 'sent', 0, updated_at / 3600000 * 3600000, count(*) FROM sends \
         WHERE state = 'accepted' GROUP BY 1, 2, 3, 4 \
         ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = report_hourly.events + excluded.events"
            .to_string(),
        format!(
            "INSERT INTO report_sends (send_id, kind, machine, campaign_id, first_at, events) \
             SELECT send_id, kind, {machine}, min(campaign_id), min(occurred_at), count(*) FROM events \
             WHERE campaign_id IS NOT NULL AND send_id IS NOT NULL GROUP BY 1, 2, 3"
        ),
        format!(
            "INSERT INTO report_sends (send_id, kind, machine, campaign_id, first_at, events) \
             SELECT send_id, 'bounce', {machine}, min(campaign_id), min(occurred_at), count(*) FROM events \
             WHERE campaign_id IS NOT NULL AND send_id IS NOT NULL AND kind IN ('bounce_hard', 'bounce_soft') \
             GROUP BY 1, 2, 3"
        ),
        format!(
            "INSERT INTO report_links (campaign_id, url, machine, send_id, events) \
             SELECT campaign_id, u, m, send_id, count(*) FROM \
             (SELECT campaign_id, {url} AS u, {machine} AS m, send_id FROM events \
              WHERE kind = 'click' AND campaign_id IS NOT NULL AND send_id IS NOT NULL) x \
             WHERE u IS NOT NULL GROUP BY 1, 2, 3, 4"
        ),
        "INSERT INTO report_uniques (campaign_id, kind, machine, sends) \
         SELECT campaign_id, kind, machine, count(*) FROM report_sends GROUP BY 1, 2, 3"
            .to_string(),
        "INSERT INTO report_uniques (campaign_id, kind, machine, sends) \
         SELECT campaign_id, kind, 2, count(DISTINCT send_id) FROM report_sends GROUP BY 1, 2, 3"
            .to_string(),
        // Accepted sends with a bounce event (migration 0023): what
        // `delivered` leaves out of `sent`.
        "INSERT INTO report_uniques (campaign_id, kind, machine, sends) \
         SELECT r.campaign_id, 'bounced_accepted', 0, count(DISTINCT r.send_id) FROM report_sends r \
         JOIN sends s ON s.id = r.send_id WHERE r.kind = 'bounce' AND s.state = 'accepted' GROUP BY 1"
            .to_string(),
        "INSERT INTO report_link_totals (campaign_id, url, machine, sends, events) \
         SELECT campaign_id, url, machine, count(*), sum(events) FROM report_links GROUP BY 1, 2, 3"
            .to_string(),
        format!(
            "INSERT INTO report_reasons (campaign_id, kind, reason, events) \
             SELECT campaign_id, kind, COALESCE({reason}, 'unknown'), count(*) FROM events \
             WHERE campaign_id IS NOT NULL AND kind IN ('bounce_hard', 'bounce_soft') GROUP BY 1, 2, 3"
        ),
        "INSERT INTO report_reasons (campaign_id, kind, reason, events) \
         SELECT campaign_id, 'skipped', COALESCE(skip_reason, 'unknown'), count(*) FROM sends \
         WHERE state = 'skipped' GROUP BY 1, 2, 3"
            .to_string(),
        "INSERT INTO report_domains (campaign_id, domain, outcome, events) \
         SELECT s.campaign_id, c.domain, o.outcome, count(*) FROM sends s JOIN contacts c ON c.id = s.contact_id \
         JOIN (SELECT 'recipients' AS outcome UNION ALL SELECT 'pending' UNION ALL SELECT 'sending' \
               UNION ALL SELECT 'accepted' UNION ALL SELECT 'deferred' UNION ALL SELECT 'failed' \
               UNION ALL SELECT 'skipped') o ON o.outcome = 'recipients' OR o.outcome = s.state \
         GROUP BY 1, 2, 3"
            .to_string(),
        "INSERT INTO report_domains (campaign_id, domain, outcome, events) \
         SELECT e.campaign_id, c.domain, e.kind, count(*) FROM events e JOIN contacts c ON c.id = e.contact_id \
         WHERE e.campaign_id IS NOT NULL AND e.kind IN ('bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe') \
         GROUP BY 1, 2, 3"
            .to_string(),
    ]);
    out
}

/// Empties the rollups and recomputes them from `events` and `sends`, in
/// one transaction (readers see the old or the new figures, never half).
pub async fn rebuild(store: &Store) -> Result<()> {
    let mut tx = store.begin().await?;
    rebuild_in(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn rebuild_in(tx: &mut Tx) -> Result<()> {
    for sql in statements(tx.backend()) {
        dispatch_tx!(tx, conn => {
            sqlx::query(&sql).execute(&mut *conn).await?;
        });
    }
    Ok(())
}
