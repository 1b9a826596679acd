//! What `cartero serve` reads and writes: the send a token names and its
//! campaign's list, a contact's lists with their consent, and opens and
//! clicks written in batches. Nothing here decides anything; `track` does.

use sqlx::{QueryBuilder, Row};

use super::{Result, Store, Tx};
use crate::domain::time::Millis;
use crate::{dispatch, dispatch_tx};

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

/// Flags as a scanner's the clicks of `send_id` between `from` and `to`
/// (milliseconds, inclusive) still classified human: a burst over several
/// links found after some of them were written. Their `data` gets the class
/// and the rule; nothing else changes.
pub async fn flag_click_burst(
    tx: &mut Tx,
    send_id: i64,
    from: Millis,
    to: Millis,
    rule: &str,
) -> Result<u64> {
    let n = match tx {
        Tx::Postgres(t) => sqlx::query(
            "UPDATE events SET data = (data::jsonb || jsonb_build_object('class', 'scanner', 'rule', $4::text))::text \
             WHERE send_id = $1 AND kind = 'click' AND occurred_at BETWEEN $2 AND $3 \
             AND data::jsonb ->> 'class' = 'human'",
        )
        .bind(send_id)
        .bind(from)
        .bind(to)
        .bind(rule)
        .execute(&mut **t)
        .await?
        .rows_affected(),
        Tx::Sqlite(t) => sqlx::query(
            "UPDATE events SET data = json_set(data, '$.class', 'scanner', '$.rule', ?4) \
             WHERE send_id = ?1 AND kind = 'click' AND occurred_at BETWEEN ?2 AND ?3 \
             AND json_extract(data, '$.class') = 'human'",
        )
        .bind(send_id)
        .bind(from)
        .bind(to)
        .bind(rule)
        .execute(&mut **t)
        .await?
        .rows_affected(),
    };
    Ok(n)
}
