//! What `cartero serve` reads and writes: the send a token names and its
//! campaign's list, a contact's lists with their consent, and opens and
//! clicks written in batches. Nothing here decides anything; `track` does.

use sqlx::{QueryBuilder, Row};

use super::{Result, Store, Tx};
use crate::domain::time::Millis;
use crate::{dispatch, dispatch_tx};

/// SQL expressions over `events.data` that the rollups are defined by, per
/// backend: `machine` (1 for a prefetcher's or a scanner's hit, else 0),
/// `url` (a click's target) and `reason` (a bounce's). `report rebuild`,
/// the reclassification of a click burst and the send-time history all read
/// events through these, so they agree with each other and with the
/// triggers. Data that is not a JSON object reads as human, no URL, no
/// reason.
pub struct EventSql {
    pub machine: &'static str,
    pub url: &'static str,
    pub reason: &'static str,
}

pub fn event_sql(backend: super::Backend) -> EventSql {
    match backend {
        super::Backend::Sqlite => EventSql {
            machine: "CASE WHEN json_valid(data) AND json_extract(data, '$.class') IN ('prefetch', 'scanner') \
                      THEN 1 ELSE 0 END",
            url: "CASE WHEN json_valid(data) AND json_type(data, '$.url') = 'text' THEN json_extract(data, '$.url') END",
            reason: "CASE WHEN json_valid(data) AND json_type(data, '$.reason') = 'text' \
                     THEN json_extract(data, '$.reason') END",
        },
        super::Backend::Postgres => EventSql {
            machine: "CASE WHEN report_json_text(data, 'class') IN ('prefetch', 'scanner') THEN 1 ELSE 0 END",
            url: "report_json_text(data, 'url')",
            reason: "report_json_text(data, 'reason')",
        },
    }
}

/// A send as the tracking endpoints need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendContext {
    pub send_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub email: String,
    /// The campaign's list, when it still exists.
    pub list_id: Option<i64>,
    pub list_name: Option<String>,
}

/// The send `send_id`, its contact and its campaign's list.
pub async fn send_context(store: &Store, send_id: i64) -> Result<Option<SendContext>> {
    let sql = "SELECT s.id, s.contact_id, s.campaign_id, c.email, l.id AS list_id, l.name AS list_name \
               FROM sends s JOIN contacts c ON c.id = s.contact_id \
               JOIN campaigns k ON k.id = s.campaign_id \
               LEFT JOIN lists l ON l.name = k.list_name WHERE s.id = $1";
    dispatch!(store, pool => {
        let Some(r) = sqlx::query(sql).bind(send_id).fetch_optional(pool).await? else {
            return Ok(None);
        };
        Ok(Some(SendContext {
            send_id: r.try_get("id")?,
            contact_id: r.try_get("contact_id")?,
            campaign_id: r.try_get("campaign_id")?,
            email: r.try_get("email")?,
            list_id: r.try_get("list_id")?,
            list_name: r.try_get("list_name")?,
        }))
    })
}

/// A list a contact has (or had) consent for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListConsent {
    pub list_id: i64,
    pub name: String,
    pub subscribed: bool,
}

/// A contact's address and status, and every list they have a consent
/// state for, by name.
pub async fn contact_consents(
    store: &Store,
    contact_id: i64,
) -> Result<Option<(String, String, Vec<ListConsent>)>> {
    dispatch!(store, pool => {
        let Some(c) = sqlx::query("SELECT email, status FROM contacts WHERE id = $1")
            .bind(contact_id)
            .fetch_optional(pool)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT l.id, l.name, cl.subscribed FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
             WHERE cl.contact_id = $1 ORDER BY l.name",
        )
        .bind(contact_id)
        .fetch_all(pool)
        .await?;
        let mut lists = Vec::with_capacity(rows.len());
        for r in rows {
            lists.push(ListConsent {
                list_id: r.try_get("id")?,
                name: r.try_get("name")?,
                subscribed: r.try_get::<i64, _>("subscribed")? != 0,
            });
        }
        Ok(Some((c.try_get("email")?, c.try_get("status")?, lists)))
    })
}

/// A contact's consent state per list, inside a transaction.
pub async fn list_states(tx: &mut Tx, contact_id: i64) -> Result<Vec<ListState>> {
    let rows: Vec<(i64, i64, String)> = dispatch_tx!(tx, conn => {
        sqlx::query_as(
            "SELECT cl.list_id, cl.subscribed, l.name FROM contact_lists cl \
             JOIN lists l ON l.id = cl.list_id WHERE cl.contact_id = $1",
        )
        .bind(contact_id)
        .fetch_all(&mut *conn)
        .await?
    });
    let by_name: std::collections::HashMap<&str, i64> =
        rows.iter().map(|(id, _, n)| (n.as_str(), *id)).collect();
    Ok(rows
        .iter()
        .map(|(list_id, s, name)| ListState {
            list_id: *list_id,
            subscribed: *s != 0,
            mail: !name.starts_with(TRACKING_LIST_PREFIX),
            tracking_of: name
                .strip_prefix(TRACKING_LIST_PREFIX)
                .and_then(|l| by_name.get(l).copied()),
        })
        .collect())
}

/// The prefix of the ledger list that holds a list's consent to track
/// (`tracking:newsletter` beside `newsletter`): a purpose of its own, not
/// a list that mail goes to.
pub const TRACKING_LIST_PREFIX: &str = "tracking:";

/// A contact's consent on one ledger list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListState {
    pub list_id: i64,
    pub subscribed: bool,
    /// A list mail goes to, not a consent to track (`tracking:LIST`).
    pub mail: bool,
    /// For a consent to track (`tracking:LIST`), the mail list `LIST` when
    /// the contact has a consent state for it.
    pub tracking_of: Option<i64>,
}

/// What the event writer needs of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRef {
    pub send_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    /// When the receiving server accepted it (the row's last change while
    /// its state is `accepted`).
    pub accepted_at: Option<Millis>,
}

/// The sends among `ids` that exist.
pub async fn send_refs(tx: &mut Tx, ids: &[i64]) -> Result<Vec<SendRef>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        dispatch_tx!(tx, conn => {
            let mut qb = QueryBuilder::new(
                "SELECT id, contact_id, campaign_id, state, updated_at FROM sends WHERE id IN (",
            );
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(")");
            for r in qb.build().fetch_all(&mut *conn).await? {
                let state: String = r.try_get("state")?;
                out.push(SendRef {
                    send_id: r.try_get("id")?,
                    contact_id: r.try_get("contact_id")?,
                    campaign_id: r.try_get("campaign_id")?,
                    accepted_at: (state == "accepted")
                        .then(|| r.try_get("updated_at"))
                        .transpose()?,
                });
            }
        });
    }
    Ok(out)
}

/// An open or click ready for `events`.
#[derive(Debug, Clone)]
pub struct NewHit {
    pub contact_id: i64,
    pub campaign_id: i64,
    pub send_id: i64,
    /// `open` | `click`
    pub kind: &'static str,
    pub occurred_at: Millis,
    /// JSON object: method, ip, user agent, classification.
    pub data: String,
    /// Counts as engagement on the contact (`open_count`, `last_open_at`,
    /// ...): a person's or a mail provider's image proxy's, not a
    /// prefetcher's or a scanner's.
    pub engaged: bool,
    /// A prefetcher's or a scanner's (`data.class`): the rollups' `machine`.
    pub machine: bool,
    /// A click's link target (`data.url`), for the link rollups.
    pub url: Option<String>,
}

/// Writes a batch of hits and the engagement counters of their contacts.
pub async fn insert_hits(tx: &mut Tx, hits: &[NewHit]) -> Result<()> {
    match tx {
        Tx::Postgres(t) => {
            // Arrays instead of VALUES rows: one statement text whatever the
            // batch size, parsed and planned once per connection (a
            // 1,000-row VALUES list is planned anew each time: the writer
            // managed ~6,600 events/s that way under bench/serve.sh).
            let conn: &mut sqlx::PgConnection = &mut *t;
            let col = |f: fn(&NewHit) -> i64| hits.iter().map(f).collect::<Vec<i64>>();
            sqlx::query(
                "INSERT INTO events (contact_id, campaign_id, send_id, kind, channel, occurred_at, data) \
                 SELECT u.c, u.k, u.s, u.kind, 'email', u.at, u.data \
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::text[]) \
                      WITH ORDINALITY AS u (c, k, s, kind, at, data, n) ORDER BY u.n",
            )
            .bind(col(|h| h.contact_id))
            .bind(col(|h| h.campaign_id))
            .bind(col(|h| h.send_id))
            .bind(hits.iter().map(|h| h.kind).collect::<Vec<&str>>())
            .bind(col(|h| h.occurred_at))
            .bind(hits.iter().map(|h| h.data.as_str()).collect::<Vec<&str>>())
            .execute(&mut *conn)
            .await?;
        }
        Tx::Sqlite(t) => {
            // Chunks of power-of-two sizes (512, 256, ... 1): ten statement
            // texts in all, each prepared once per connection and then
            // taken from sqlx's statement cache, where a batch of any size
            // as one VALUES list would be a new statement to prepare.
            let conn: &mut sqlx::SqliteConnection = &mut *t;
            let mut rest = hits;
            while !rest.is_empty() {
                let size = 512.min(1 << rest.len().ilog2());
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                let mut qb = QueryBuilder::new(
                    "INSERT INTO events (contact_id, campaign_id, send_id, kind, channel, occurred_at, data) ",
                );
                qb.push_values(chunk.iter(), |mut b, h| {
                    b.push_bind(h.contact_id)
                        .push_bind(h.campaign_id)
                        .push_bind(h.send_id)
                        .push_bind(h.kind)
                        .push_bind("email")
                        .push_bind(h.occurred_at)
                        .push_bind(h.data.as_str());
                });
                qb.build().execute(&mut *conn).await?;
            }
        }
    }
    // One update per contact and kind, however many hits it had.
    let mut per: std::collections::BTreeMap<(i64, &str), (i64, Millis)> = Default::default();
    for h in hits.iter().filter(|h| h.engaged) {
        let e = per
            .entry((h.contact_id, h.kind))
            .or_insert((0, h.occurred_at));
        e.0 += 1;
        e.1 = e.1.max(h.occurred_at);
    }
    for ((contact_id, kind), (n, last)) in per {
        let sql = if kind == "open" {
            "UPDATE contacts SET open_count = open_count + $1, \
             last_open_at = CASE WHEN last_open_at IS NULL OR last_open_at < $2 THEN $2 ELSE last_open_at END \
             WHERE id = $3"
        } else {
            "UPDATE contacts SET click_count = click_count + $1, \
             last_click_at = CASE WHEN last_click_at IS NULL OR last_click_at < $2 THEN $2 ELSE last_click_at END \
             WHERE id = $3"
        };
        dispatch_tx!(tx, conn => {
            sqlx::query(sql)
                .bind(n)
                .bind(last)
                .bind(contact_id)
                .execute(&mut *conn)
                .await?;
        });
    }
    Ok(())
}

/// Relabels the human clicks of `send_id` between `from` and `to` as a
/// scanner's (`rule` names the burst that gave it away), and moves them in
/// the rollups from human to machine, so the report keeps agreeing with the
/// rows (`report rebuild` reads the class from the rows). Returns how many
/// clicks it relabelled.
pub async fn flag_click_burst(
    tx: &mut Tx,
    send_id: i64,
    from: Millis,
    to: Millis,
    rule: &str,
) -> Result<u64> {
    // PostgreSQL: the rollup trigger's lock (migration 0024) first, before
    // any row lock, so that the send's clicks read for the rollups include
    // every batch rolled up before and none rolls up in between, and so
    // that a writer holding the lock (its own inserts) never waits on a
    // click this transaction relabels while this one waits on the lock.
    if let Tx::Postgres(t) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock(32210658811801715)")
            .execute(&mut **t)
            .await?;
    }
    let flagged: Vec<(i64, Option<i64>, Millis)> = match tx {
        Tx::Postgres(t) => sqlx::query_as(
            "UPDATE events SET data = (data::jsonb || jsonb_build_object('class', 'scanner', 'rule', $4::text))::text \
             WHERE send_id = $1 AND kind = 'click' AND occurred_at BETWEEN $2 AND $3 \
             AND data::jsonb ->> 'class' = 'human' RETURNING id, campaign_id, occurred_at",
        )
        .bind(send_id)
        .bind(from)
        .bind(to)
        .bind(rule)
        .fetch_all(&mut **t)
        .await?,
        Tx::Sqlite(t) => sqlx::query_as(
            "UPDATE events SET data = json_set(data, '$.class', 'scanner', '$.rule', ?4) \
             WHERE send_id = ?1 AND kind = 'click' AND occurred_at BETWEEN ?2 AND ?3 \
             AND json_extract(data, '$.class') = 'human' RETURNING id, campaign_id, occurred_at",
        )
        .bind(send_id)
        .bind(from)
        .bind(to)
        .bind(rule)
        .fetch_all(&mut **t)
        .await?,
    };
    // Clicks without a campaign are in no rollup.
    if let Some(campaign_id) = flagged.iter().find_map(|f| f.1) {
        let hours: Vec<Millis> = flagged
            .iter()
            .filter(|f| f.1.is_some())
            .map(|f| f.2 / 3_600_000 * 3_600_000)
            .collect();
        reclassify_click_rollups(tx, campaign_id, send_id, &hours).await?;
    }
    Ok(flagged.len() as u64)
}

/// The click rollups of one send after some of its clicks changed class
/// (human to machine): `hours` (one per relabelled click) move from machine
/// 0 to 1 in `report_hourly`; the send's `report_sends` and `report_links`
/// rows are recomputed from its click rows, and `report_uniques` and
/// `report_link_totals` follow each row that appears or disappears.
async fn reclassify_click_rollups(
    tx: &mut Tx,
    campaign_id: i64,
    send_id: i64,
    hours: &[Millis],
) -> Result<()> {
    use std::collections::BTreeMap;
    let EventSql { machine, url, .. } = event_sql(match tx {
        Tx::Sqlite(_) => super::Backend::Sqlite,
        Tx::Postgres(_) => super::Backend::Postgres,
    });
    let mut per_hour: BTreeMap<Millis, i64> = BTreeMap::new();
    for h in hours {
        *per_hour.entry(*h).or_default() += 1;
    }
    // What the send's clicks are now, per class and link.
    let sql = format!(
        "SELECT CAST({machine} AS BIGINT) AS m, {url} AS url, \
         COUNT(*) AS n, MIN(occurred_at) AS first_at FROM events \
         WHERE send_id = $1 AND kind = 'click' GROUP BY 1, 2"
    );
    let now_rows: Vec<(i64, Option<String>, i64, Millis)> = dispatch_tx!(tx, conn => {
        sqlx::query_as(&sql).bind(send_id).fetch_all(&mut *conn).await?
    });
    let mut sends_now: BTreeMap<i64, (i64, Millis)> = BTreeMap::new();
    let mut links_now: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (m, u, n, first) in &now_rows {
        let e = sends_now.entry(*m).or_insert((0, *first));
        e.0 += n;
        e.1 = e.1.min(*first);
        if let Some(u) = u {
            *links_now.entry((u.clone(), *m)).or_default() += n;
        }
    }
    dispatch_tx!(tx, conn => {
        for (hour, k) in &per_hour {
            for (machine, delta) in [(0_i32, -k), (1, *k)] {
                sqlx::query(
                    "INSERT INTO report_hourly AS t (campaign_id, kind, machine, hour_at, events) \
                     VALUES ($1, 'click', $2, $3, $4) \
                     ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = t.events + excluded.events",
                )
                .bind(campaign_id)
                .bind(machine)
                .bind(hour)
                .bind(delta)
                .execute(&mut *conn)
                .await?;
            }
        }
        let before: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT CAST(machine AS BIGINT), events FROM report_sends WHERE send_id = $1 AND kind = 'click' \
             AND machine IN (0, 1)",
        )
        .bind(send_id)
        .fetch_all(&mut *conn)
        .await?;
        let before: BTreeMap<i64, i64> = before.into_iter().collect();
        for m in [0_i64, 1] {
            let unique_delta = match (before.get(&m), sends_now.get(&m)) {
                (Some(_), None) => {
                    sqlx::query("DELETE FROM report_sends WHERE send_id = $1 AND kind = 'click' AND machine = $2")
                        .bind(send_id)
                        .bind(m as i32)
                        .execute(&mut *conn)
                        .await?;
                    -1
                }
                (was, Some((n, first))) => {
                    sqlx::query(
                        "INSERT INTO report_sends AS t (send_id, kind, machine, campaign_id, first_at, events) \
                         VALUES ($1, 'click', $2, $3, $4, $5) ON CONFLICT (send_id, kind, machine) \
                         DO UPDATE SET events = excluded.events, first_at = excluded.first_at",
                    )
                    .bind(send_id)
                    .bind(m as i32)
                    .bind(campaign_id)
                    .bind(first)
                    .bind(n)
                    .execute(&mut *conn)
                    .await?;
                    if was.is_none() { 1 } else { 0 }
                }
                (None, None) => 0,
            };
            if unique_delta != 0 {
                sqlx::query(
                    "INSERT INTO report_uniques AS t (campaign_id, kind, machine, sends) VALUES ($1, 'click', $2, $3) \
                     ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = t.sends + excluded.sends",
                )
                .bind(campaign_id)
                .bind(m as i32)
                .bind(unique_delta)
                .execute(&mut *conn)
                .await?;
            }
        }
        let links_before: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT url, CAST(machine AS BIGINT), events FROM report_links WHERE campaign_id = $1 AND send_id = $2",
        )
        .bind(campaign_id)
        .bind(send_id)
        .fetch_all(&mut *conn)
        .await?;
        let links_before: BTreeMap<(String, i64), i64> = links_before
            .into_iter()
            .map(|(u, m, n)| ((u, m), n))
            .collect();
        let keys: std::collections::BTreeSet<&(String, i64)> =
            links_before.keys().chain(links_now.keys()).collect();
        for key in keys {
            let (was, now) = (links_before.get(key).copied(), links_now.get(key).copied());
            if was == now {
                continue;
            }
            let (url, m) = (&key.0, key.1);
            match now {
                None => {
                    sqlx::query(
                        "DELETE FROM report_links WHERE campaign_id = $1 AND url = $2 AND machine = $3 AND send_id = $4",
                    )
                    .bind(campaign_id)
                    .bind(url)
                    .bind(m as i32)
                    .bind(send_id)
                    .execute(&mut *conn)
                    .await?;
                }
                Some(n) => {
                    sqlx::query(
                        "INSERT INTO report_links AS t (campaign_id, url, machine, send_id, events) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (campaign_id, url, machine, send_id) \
                         DO UPDATE SET events = excluded.events",
                    )
                    .bind(campaign_id)
                    .bind(url)
                    .bind(m as i32)
                    .bind(send_id)
                    .bind(n)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            let sends_delta: i64 = match (was, now) {
                (None, Some(_)) => 1,
                (Some(_), None) => -1,
                _ => 0,
            };
            sqlx::query(
                "INSERT INTO report_link_totals AS t (campaign_id, url, machine, sends, events) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (campaign_id, url, machine) \
                 DO UPDATE SET sends = t.sends + excluded.sends, events = t.events + excluded.events",
            )
            .bind(campaign_id)
            .bind(url)
            .bind(m as i32)
            .bind(sends_delta)
            .bind(now.unwrap_or(0) - was.unwrap_or(0))
            .execute(&mut *conn)
            .await?;
        }
    });
    Ok(())
}

/// Rollups of the batch the serve writer is about to store are its own to
/// write (SQLite): the per-row trigger of migration 0015 stands aside for
/// the rest of this transaction, and [`write_rollups`] adds the batch's
/// figures once, set-based, before the commit. The flag lives in a table
/// (migration 0024) and is cleared in the same transaction, so every other
/// writer of `events` (feedback ingest, tests, a restore) still finds the
/// trigger on; SQLite's single writer means no one else runs in between.
/// On PostgreSQL the rollup trigger is already per statement: nothing here.
pub async fn defer_rollups(tx: &mut Tx) -> Result<()> {
    if let Tx::Sqlite(t) = tx {
        sqlx::query("UPDATE report_batch SET deferred = 1 WHERE id = 1")
            .execute(&mut **t)
            .await?;
    }
    Ok(())
}

/// The rollups of a batch of hits (`rows` per person, `aggregate` without
/// contact and send) after [`defer_rollups`], with the definitions of the
/// per-row trigger `events_report` (migration 0015) applied to the batch
/// as a whole: `report_hourly` per campaign, kind, class and hour;
/// `report_uniques` and `report_link_totals` count a send once, when it had
/// no `report_sends` (`report_links`) row before the batch; then
/// `report_sends` and `report_links`. Opens and clicks have no reason and
/// no domain outcome. `cartero report rebuild` computes the same figures
/// from the raw rows (tests/serve.rs compares them).
pub async fn write_rollups(tx: &mut Tx, rows: &[NewHit], aggregate: &[NewHit]) -> Result<()> {
    use std::collections::BTreeMap;
    let Tx::Sqlite(t) = tx else {
        return Ok(());
    };
    let conn: &mut sqlx::SqliteConnection = &mut *t;
    let m = |h: &NewHit| i64::from(h.machine);
    let mut hourly: BTreeMap<(i64, &str, i64, i64), i64> = BTreeMap::new();
    for h in rows.iter().chain(aggregate) {
        let hour = h.occurred_at / 3_600_000 * 3_600_000;
        *hourly
            .entry((h.campaign_id, h.kind, m(h), hour))
            .or_default() += 1;
    }
    // (send, kind, machine) -> (campaign, first, events)
    let mut sends: BTreeMap<(i64, &str, i64), (i64, Millis, i64)> = BTreeMap::new();
    // (campaign, url, machine, send) -> events
    let mut links: BTreeMap<(i64, &str, i64, i64), i64> = BTreeMap::new();
    for h in rows {
        let e = sends
            .entry((h.send_id, h.kind, m(h)))
            .or_insert((h.campaign_id, h.occurred_at, 0));
        e.1 = e.1.min(h.occurred_at);
        e.2 += 1;
        if h.kind == "click"
            && let Some(url) = &h.url
        {
            *links
                .entry((h.campaign_id, url.as_str(), m(h), h.send_id))
                .or_default() += 1;
        }
    }
    // Unique sends, machine 0 or 1 and 2 (either): one row per send, kind
    // and machine, and one per send and kind for "either".
    let mut uniques: Vec<(i64, i64, &str, i64)> = Vec::with_capacity(sends.len() * 2);
    let mut last: Option<(i64, &str)> = None;
    for ((send, kind, machine), (campaign, _, _)) in &sends {
        uniques.push((*campaign, *send, kind, *machine));
        if last != Some((*send, *kind)) {
            uniques.push((*campaign, *send, kind, 2));
            last = Some((*send, *kind));
        }
    }
    // One statement text each, whatever the batch holds: the groups go in
    // as one JSON array (json_each), so the statement cache keeps them.
    let json = |v: serde_json::Value| v.to_string();
    if !uniques.is_empty() {
        sqlx::query(
            "INSERT INTO report_uniques (campaign_id, kind, machine, sends) \
             SELECT b.value ->> 0, b.value ->> 2, b.value ->> 3, count(*) FROM json_each(?1) b \
             WHERE NOT EXISTS (SELECT 1 FROM report_sends r WHERE r.send_id = b.value ->> 1 \
                 AND r.kind = b.value ->> 2 AND (b.value ->> 3 = 2 OR r.machine = b.value ->> 3)) \
             GROUP BY 1, 2, 3 \
             ON CONFLICT (campaign_id, kind, machine) DO UPDATE SET sends = sends + excluded.sends",
        )
        .bind(json(serde_json::json!(uniques)))
        .execute(&mut *conn)
        .await?;
    }
    if !links.is_empty() {
        let links: Vec<(i64, &str, i64, i64, i64)> = links
            .iter()
            .map(|((c, u, m, s), n)| (*c, *u, *m, *s, *n))
            .collect();
        let links = json(serde_json::json!(links));
        sqlx::query(
            "INSERT INTO report_link_totals (campaign_id, url, machine, sends, events) \
             SELECT b.value ->> 0, b.value ->> 1, b.value ->> 2, \
                    sum(NOT EXISTS (SELECT 1 FROM report_links r WHERE r.campaign_id = b.value ->> 0 \
                        AND r.url = b.value ->> 1 AND r.machine = b.value ->> 2 AND r.send_id = b.value ->> 3)), \
                    sum(b.value ->> 4) \
             FROM json_each(?1) b WHERE true GROUP BY 1, 2, 3 \
             ON CONFLICT (campaign_id, url, machine) DO UPDATE \
                 SET sends = sends + excluded.sends, events = events + excluded.events",
        )
        .bind(&links)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO report_links (campaign_id, url, machine, send_id, events) \
             SELECT b.value ->> 0, b.value ->> 1, b.value ->> 2, b.value ->> 3, b.value ->> 4 \
             FROM json_each(?1) b WHERE true \
             ON CONFLICT (campaign_id, url, machine, send_id) DO UPDATE SET events = events + excluded.events",
        )
        .bind(&links)
        .execute(&mut *conn)
        .await?;
    }
    if !sends.is_empty() {
        let sends: Vec<(i64, &str, i64, i64, Millis, i64)> = sends
            .iter()
            .map(|((s, k, m), (c, first, n))| (*s, *k, *m, *c, *first, *n))
            .collect();
        sqlx::query(
            "INSERT INTO report_sends (send_id, kind, machine, campaign_id, first_at, events) \
             SELECT b.value ->> 0, b.value ->> 1, b.value ->> 2, b.value ->> 3, b.value ->> 4, b.value ->> 5 \
             FROM json_each(?1) b WHERE true \
             ON CONFLICT (send_id, kind, machine) DO UPDATE \
                 SET events = events + excluded.events, first_at = min(first_at, excluded.first_at)",
        )
        .bind(json(serde_json::json!(sends)))
        .execute(&mut *conn)
        .await?;
    }
    if !hourly.is_empty() {
        let hourly: Vec<(i64, &str, i64, i64, i64)> = hourly
            .iter()
            .map(|((c, k, m, h), n)| (*c, *k, *m, *h, *n))
            .collect();
        sqlx::query(
            "INSERT INTO report_hourly (campaign_id, kind, machine, hour_at, events) \
             SELECT b.value ->> 0, b.value ->> 1, b.value ->> 2, b.value ->> 3, b.value ->> 4 \
             FROM json_each(?1) b WHERE true \
             ON CONFLICT (campaign_id, kind, machine, hour_at) DO UPDATE SET events = events + excluded.events",
        )
        .bind(json(serde_json::json!(hourly)))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE report_batch SET deferred = 0 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
