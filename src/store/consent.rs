//! The consent ledger: append-only, hash-chained.
//!
//! Every grant and withdrawal is a row whose `hash` covers its own fields and
//! the previous row's hash, so editing or deleting any row breaks every hash
//! after it (`verify_chain` finds the first break). The database refuses
//! UPDATE and DELETE on the table (triggers in the migrations). Appends are
//! serialised: SQLite by its single writer (`BEGIN IMMEDIATE`), PostgreSQL by
//! a transaction-scoped advisory lock, so two cartero nodes cannot fork the
//! chain. `contact_lists.subscribed` is the ledger's current state, written in
//! the same transaction as the entry that changes it.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sqlx::QueryBuilder;

use super::{Result, Tx};
use crate::dispatch_tx;
use crate::domain::ConsentAction;
use crate::domain::time::Millis;

/// Arbitrary constant naming the ledger's advisory lock on PostgreSQL.
const LEDGER_LOCK: i64 = 0x63_61_72_74_65_72_6f; // "cartero"

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Evidence recorded with a ledger entry (GDPR Art. 7(1): the controller must
/// be able to demonstrate consent).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub source: String,
    pub method: String,
    pub ip: Option<String>,
    pub text_version: Option<String>,
    /// Free-form JSON object: form fields, the bounce that caused a withdrawal, ...
    pub details: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct ConsentEntry {
    pub contact_id: i64,
    pub list_id: Option<i64>,
    pub action: ConsentAction,
    pub occurred_at: Millis,
    pub evidence: Evidence,
}

/// Holds the chain head while a transaction appends entries.
pub struct Appender {
    head: String,
}

impl Appender {
    /// Locks the ledger for this transaction and reads the chain head.
    pub async fn start(tx: &mut Tx) -> Result<Self> {
        if let Tx::Postgres(t) = tx {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LEDGER_LOCK)
                .execute(&mut **t)
                .await?;
        }
        let head: Option<String> = dispatch_tx!(tx, conn => {
            sqlx::query_scalar("SELECT hash FROM consent_events ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
        });
        Ok(Self {
            head: head.unwrap_or_else(|| GENESIS.to_string()),
        })
    }

    /// Appends one entry and updates the current state of the list it names.
    pub async fn append(&mut self, tx: &mut Tx, e: &ConsentEntry) -> Result<()> {
        let evidence = canonical_json(&e.evidence.details);
        let hash = entry_hash(&self.head, e, &evidence);
        let prev = std::mem::replace(&mut self.head, hash.clone());
        let subscribed = i64::from(e.action.subscribes());
        dispatch_tx!(tx, conn => {
            sqlx::query(
                "INSERT INTO consent_events (contact_id, list_id, action, occurred_at, source, method, ip, \
                 text_version, evidence, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            )
            .bind(e.contact_id)
            .bind(e.list_id)
            .bind(e.action.as_str())
            .bind(e.occurred_at)
            .bind(&e.evidence.source)
            .bind(&e.evidence.method)
            .bind(&e.evidence.ip)
            .bind(&e.evidence.text_version)
            .bind(&evidence)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *conn)
            .await?;
            match e.list_id {
                Some(list_id) => {
                    sqlx::query(
                        "INSERT INTO contact_lists (contact_id, list_id, subscribed, changed_at) \
                         VALUES ($1,$2,$3,$4) ON CONFLICT (contact_id, list_id) \
                         DO UPDATE SET subscribed = excluded.subscribed, changed_at = excluded.changed_at",
                    )
                    .bind(e.contact_id)
                    .bind(list_id)
                    .bind(subscribed)
                    .bind(e.occurred_at)
                    .execute(&mut *conn)
                    .await?;
                }
                // A withdrawal without a list withdraws from every list.
                None => {
                    sqlx::query(
                        "UPDATE contact_lists SET subscribed = $1, changed_at = $2 WHERE contact_id = $3",
                    )
                    .bind(subscribed)
                    .bind(e.occurred_at)
                    .bind(e.contact_id)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        });
        Ok(())
    }

    /// Appends `entries` in order, exactly as calling `append` on each would,
    /// in a few multi-row statements instead of two statements per entry.
    ///
    /// The hashes are chained here, in order, and a multi-row INSERT assigns
    /// ids in the order of its VALUES rows on both backends, so the stored
    /// chain is the one `append` would have written. For the current state,
    /// consecutive entries that name a list are upserted together, the last
    /// entry per (contact, list) winning as it would one by one (PostgreSQL
    /// refuses to upsert one row twice in a statement, hence the de-duplication);
    /// an entry without a list (withdraw from every list) is applied on its
    /// own, between its neighbours.
    pub async fn append_many(&mut self, tx: &mut Tx, entries: &[ConsentEntry]) -> Result<()> {
        for chunk in entries.chunks(APPEND_CHUNK) {
            let mut rows = Vec::with_capacity(chunk.len());
            for e in chunk {
                let evidence = canonical_json(&e.evidence.details);
                let hash = entry_hash(&self.head, e, &evidence);
                let prev = std::mem::replace(&mut self.head, hash.clone());
                rows.push((e, evidence, prev, hash));
            }
            dispatch_tx!(tx, conn => {
                let mut qb = QueryBuilder::new(EVENTS_INSERT);
                qb.push_values(rows.iter(), |mut b, (e, evidence, prev, hash)| {
                    b.push_bind(e.contact_id)
                        .push_bind(e.list_id)
                        .push_bind(e.action.as_str())
                        .push_bind(e.occurred_at)
                        .push_bind(e.evidence.source.as_str())
                        .push_bind(e.evidence.method.as_str())
                        .push_bind(e.evidence.ip.as_deref())
                        .push_bind(e.evidence.text_version.as_deref())
                        .push_bind(evidence.as_str())
                        .push_bind(prev.as_str())
                        .push_bind(hash.as_str());
                });
                qb.build().execute(&mut *conn).await?;

                // The current state, in runs between list-less withdrawals.
                let mut run: Vec<&ConsentEntry> = Vec::new();
                let mut index: HashMap<(i64, i64), usize> = HashMap::new();
                for e in chunk.iter().map(Some).chain([None]) {
                    if let Some(e) = e
                        && let Some(list_id) = e.list_id
                    {
                        match index.get(&(e.contact_id, list_id)) {
                            Some(&i) => run[i] = e,
                            None => {
                                index.insert((e.contact_id, list_id), run.len());
                                run.push(e);
                            }
                        }
                        continue;
                    }
                    if !run.is_empty() {
                        let mut qb = QueryBuilder::new(LIST_STATE_INSERT);
                        qb.push_values(run.iter(), |mut b, e| {
                            b.push_bind(e.contact_id)
                                .push_bind(e.list_id)
                                .push_bind(i64::from(e.action.subscribes()))
                                .push_bind(e.occurred_at);
                        });
                        qb.push(LIST_STATE_UPSERT);
                        qb.build().execute(&mut *conn).await?;
                        run.clear();
                        index.clear();
                    }
                    // A withdrawal without a list withdraws from every list.
                    if let Some(e) = e {
                        sqlx::query(
                            "UPDATE contact_lists SET subscribed = $1, changed_at = $2 WHERE contact_id = $3",
                        )
                        .bind(i64::from(e.action.subscribes()))
                        .bind(e.occurred_at)
                        .bind(e.contact_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
            });
        }
        Ok(())
    }

    /// Appends a grant of `list_id` for each of `contact_ids`, in order, all
    /// with the same instant and evidence: what `append_many` would write for
    /// those entries, without a copy of the evidence per entry (an import
    /// grants a million contacts the same consent). Every entry is still
    /// hashed on its own, chained to the one before it.
    ///
    /// The state of a contact for which `may_have_state` is true is upserted,
    /// as `append` does (the caller holds its row and may overwrite it); the
    /// others are known to have no row for the list yet (contacts inserted in
    /// this transaction) and get a plain INSERT, which spares PostgreSQL and
    /// SQLite the conflict probe of the primary key before every row.
    pub async fn grant_many(
        &mut self,
        tx: &mut Tx,
        contact_ids: &[i64],
        list_id: i64,
        occurred_at: Millis,
        evidence: &Evidence,
        may_have_state: impl Fn(i64) -> bool,
    ) -> Result<()> {
        if contact_ids.is_empty() {
            return Ok(());
        }
        let details = canonical_json(&evidence.details);
        let action = ConsentAction::Grant.as_str();
        let mut prevs = Vec::with_capacity(contact_ids.len());
        let mut hashes = Vec::with_capacity(contact_ids.len());
        for &contact_id in contact_ids {
            let hash = hash_fields(
                &self.head,
                contact_id,
                Some(list_id),
                action,
                occurred_at,
                &evidence.source,
                &evidence.method,
                evidence.ip.as_deref(),
                evidence.text_version.as_deref(),
                &details,
            );
            prevs.push(std::mem::replace(&mut self.head, hash.clone()));
            hashes.push(hash);
        }
        let (upserts, inserts): (Vec<i64>, Vec<i64>) =
            contact_ids.iter().partition(|&&id| may_have_state(id));
        match tx {
            Tx::Sqlite(t) => {
                let conn: &mut sqlx::SqliteConnection = &mut *t;
                let mut at = 0;
                // OR FAIL: no entry can conflict (fresh hashes), so SQLite
                // need not journal the statement to undo it; an error still
                // ends the caller's transaction.
                let events_insert = EVENTS_INSERT.replacen("INSERT", "INSERT OR FAIL", 1);
                for chunk in contact_ids.chunks(APPEND_CHUNK) {
                    let mut qb = QueryBuilder::new(&events_insert);
                    qb.push_values(chunk.iter().enumerate(), |mut b, (i, id)| {
                        b.push_bind(*id)
                            .push_bind(list_id)
                            .push_bind(action)
                            .push_bind(occurred_at)
                            .push_bind(evidence.source.as_str())
                            .push_bind(evidence.method.as_str())
                            .push_bind(evidence.ip.as_deref())
                            .push_bind(evidence.text_version.as_deref())
                            .push_bind(details.as_str())
                            .push_bind(prevs[at + i].as_str())
                            .push_bind(hashes[at + i].as_str());
                    });
                    qb.build().execute(&mut *conn).await?;
                    at += chunk.len();
                }
                let plain_insert = LIST_STATE_INSERT.replacen("INSERT", "INSERT OR FAIL", 1);
                for (ids, upsert) in [(&inserts, false), (&upserts, true)] {
                    for chunk in ids.chunks(APPEND_CHUNK) {
                        let mut qb = QueryBuilder::new(if upsert {
                            LIST_STATE_INSERT
                        } else {
                            plain_insert.as_str()
                        });
                        qb.push_values(chunk.iter(), |mut b, id| {
                            b.push_bind(*id)
                                .push_bind(list_id)
                                .push_bind(1i64)
                                .push_bind(occurred_at);
                        });
                        if upsert {
                            qb.push(LIST_STATE_UPSERT);
                        }
                        qb.build().execute(&mut *conn).await?;
                    }
                }
            }
            // Arrays instead of VALUES rows: one statement text whatever the
            // count, so it is parsed and planned once per connection, not
            // once per batch with eleven thousand parameters. ORDER BY the
            // ordinality: the serial ids follow the chain.
            Tx::Postgres(t) => {
                let conn: &mut sqlx::PgConnection = &mut *t;
                sqlx::query(&format!(
                    "{EVENTS_INSERT}SELECT u.contact_id, $2, $3, $4, $5, $6, $7, $8, $9, u.prev_hash, u.hash \
                     FROM unnest($1::bigint[], $10::text[], $11::text[]) WITH ORDINALITY \
                          AS u (contact_id, prev_hash, hash, n) \
                     ORDER BY u.n"
                ))
                .bind(contact_ids)
                .bind(list_id)
                .bind(action)
                .bind(occurred_at)
                .bind(&evidence.source)
                .bind(&evidence.method)
                .bind(&evidence.ip)
                .bind(&evidence.text_version)
                .bind(&details)
                .bind(&prevs)
                .bind(&hashes)
                .execute(&mut *conn)
                .await?;
                for (ids, upsert) in [(&inserts, ""), (&upserts, LIST_STATE_UPSERT)] {
                    if ids.is_empty() {
                        continue;
                    }
                    sqlx::query(&format!(
                        "{LIST_STATE_INSERT}SELECT u.contact_id, $2, 1, $3 \
                         FROM unnest($1::bigint[]) AS u (contact_id){upsert}"
                    ))
                    .bind(ids)
                    .bind(list_id)
                    .bind(occurred_at)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }
}

/// The multi-row statements `append_many` and `grant_many` build: ledger
/// rows, then each contact's current state per list, last entry wins.
const EVENTS_INSERT: &str = "INSERT INTO consent_events (contact_id, list_id, action, occurred_at, \
     source, method, ip, text_version, evidence, prev_hash, hash) ";
const LIST_STATE_INSERT: &str =
    "INSERT INTO contact_lists (contact_id, list_id, subscribed, changed_at) ";
const LIST_STATE_UPSERT: &str = " ON CONFLICT (contact_id, list_id) \
     DO UPDATE SET subscribed = excluded.subscribed, changed_at = excluded.changed_at";

/// Entries per multi-row INSERT in `append_many`: 11 bound values a row keeps
/// a statement under SQLite's 32,766-parameter limit.
const APPEND_CHUNK: usize = 1000;

/// One row of the ledger as stored.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct StoredEntry {
    pub id: i64,
    pub contact_id: i64,
    pub list_id: Option<i64>,
    pub action: String,
    pub occurred_at: Millis,
    pub source: String,
    pub method: String,
    pub ip: Option<String>,
    pub text_version: Option<String>,
    pub evidence: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Where the chain first fails to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The row's `prev_hash` is not the hash of the row before it (a row was
    /// removed or inserted).
    Link { id: i64 },
    /// The row's fields do not hash to its `hash` (the row was edited).
    Content { id: i64 },
}

/// Recomputes the whole chain; `Ok(n)` is the number of entries verified.
pub async fn verify_chain(store: &super::Store) -> Result<std::result::Result<u64, ChainBreak>> {
    use futures::TryStreamExt;
    let mut head = GENESIS.to_string();
    let mut n = 0u64;
    let sql = "SELECT id, contact_id, list_id, action, occurred_at, source, method, ip, text_version, \
               evidence, prev_hash, hash FROM consent_events ORDER BY id";
    let verdict = crate::dispatch!(store, pool => {
        let mut rows = sqlx::query_as::<_, StoredEntry>(sql).fetch(pool);
        let mut verdict = Ok(());
        while let Some(stored) = rows.try_next().await? {
            if stored.prev_hash != head {
                verdict = Err(ChainBreak::Link { id: stored.id });
                break;
            }
            if stored_hash(&head, &stored) != stored.hash {
                verdict = Err(ChainBreak::Content { id: stored.id });
                break;
            }
            head = stored.hash;
            n += 1;
        }
        verdict
    });
    Ok(verdict.map(|()| n))
}

/// Ledger entries of one contact, oldest first (for access requests and review).
pub async fn entries_for_contact(
    store: &super::Store,
    contact_id: i64,
) -> Result<Vec<StoredEntry>> {
    let sql = "SELECT id, contact_id, list_id, action, occurred_at, source, method, ip, text_version, \
               evidence, prev_hash, hash FROM consent_events WHERE contact_id = $1 ORDER BY id";
    crate::dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, StoredEntry>(sql)
            .bind(contact_id)
            .fetch_all(pool)
            .await?)
    })
}

/// Ledger entries of one contact, oldest first, in the caller's transaction
/// (the consent stage reads them to decide what a reversal restores).
pub async fn entries_for_contact_tx(tx: &mut Tx, contact_id: i64) -> Result<Vec<StoredEntry>> {
    let sql = "SELECT id, contact_id, list_id, action, occurred_at, source, method, ip, text_version, \
               evidence, prev_hash, hash FROM consent_events WHERE contact_id = $1 ORDER BY id";
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, StoredEntry>(sql)
            .bind(contact_id)
            .fetch_all(&mut *conn)
            .await?
    }))
}

fn entry_hash(prev: &str, e: &ConsentEntry, evidence: &str) -> String {
    hash_fields(
        prev,
        e.contact_id,
        e.list_id,
        e.action.as_str(),
        e.occurred_at,
        &e.evidence.source,
        &e.evidence.method,
        e.evidence.ip.as_deref(),
        e.evidence.text_version.as_deref(),
        evidence,
    )
}

fn stored_hash(prev: &str, s: &StoredEntry) -> String {
    hash_fields(
        prev,
        s.contact_id,
        s.list_id,
        &s.action,
        s.occurred_at,
        &s.source,
        &s.method,
        s.ip.as_deref(),
        s.text_version.as_deref(),
        &s.evidence,
    )
}

/// SHA-256 over the fields, each length-prefixed so that no two different
/// entries can produce the same byte string.
#[allow(clippy::too_many_arguments)]
fn hash_fields(
    prev: &str,
    contact_id: i64,
    list_id: Option<i64>,
    action: &str,
    occurred_at: Millis,
    source: &str,
    method: &str,
    ip: Option<&str>,
    text_version: Option<&str>,
    evidence: &str,
) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(prev.as_bytes());
    field(&contact_id.to_be_bytes());
    field(
        list_id
            .map(|l| l.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(action.as_bytes());
    field(&occurred_at.to_be_bytes());
    field(source.as_bytes());
    field(method.as_bytes());
    field(ip.unwrap_or("\0").as_bytes());
    field(text_version.unwrap_or("\0").as_bytes());
    field(evidence.as_bytes());
    // Lower-case hex, as stored; a `format!` per byte was a tenth of the
    // ledger's cost in an import.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in h.finalize() {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// JSON text that round-trips unchanged through both backends (PostgreSQL's
/// JSONB reorders keys; the evidence column is TEXT on both so the hashed
/// bytes are the stored bytes).
fn canonical_json(v: &serde_json::Value) -> String {
    if v.is_null() {
        "{}".into()
    } else {
        v.to_string()
    }
}
