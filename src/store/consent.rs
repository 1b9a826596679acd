//! The consent ledger: append-only, hash-chained, keyed.
//!
//! Every grant and withdrawal is a row whose `hash` covers its own fields and
//! the previous row's hash, so editing or deleting any row breaks every hash
//! after it (`verify` finds the first break). The hash is an HMAC-SHA256
//! under a ledger key that is not in the database (`LedgerKeys`, from
//! `[compliance] ledger_key`), so someone who can write to the database but
//! lacks the key cannot edit a row and recompute the hashes after it; the
//! key's id is stored per entry so a rotated key keeps verifying its
//! entries. Entries written before a key was configured keep their legacy
//! form (plain SHA-256) up to the switch point recorded, signed, in
//! `ledger_switch`; after it every entry must be keyed. Deleting the newest
//! entries leaves a valid shorter chain: signed checkpoints (`Checkpoint`),
//! kept outside the database, catch that and any wholesale rewrite.
//!
//! A keyed entry's hash covers a keyed digest of its personal fields (ip,
//! evidence) rather than the fields, so an erasure can blank them and the
//! chain still verifies (`erase_personal_fields`); an erased legacy entry is
//! vouched for by a seal in the keyed erasure entry that follows it.
//!
//! The database refuses UPDATE (but the erasure's) and DELETE on the table
//! (triggers in the migrations). Appends are
//! serialised: SQLite by its single writer (`BEGIN IMMEDIATE`), PostgreSQL by
//! a transaction-scoped advisory lock, so two cartero nodes cannot fork the
//! chain. `contact_lists.subscribed` is the ledger's current state, written in
//! the same transaction as the entry that changes it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hmac::Mac;
use sha2::{Digest, Sha256};
use sqlx::QueryBuilder;

use super::{Result, StoreError, Tx};
use crate::dispatch_tx;
use crate::domain::ConsentAction;
use crate::domain::ledger_key::{LedgerKey, LedgerKeys, field, hex};
use crate::domain::time::Millis;

/// Arbitrary constant naming the ledger's advisory lock on PostgreSQL.
const LEDGER_LOCK: i64 = 0x63_61_72_74_65_72_6f; // "cartero"

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `method` of the entry an erasure appends (a withdrawal from every list).
pub const ERASURE_METHOD: &str = "erasure";

/// The keys of this process, installed once by the composition root
/// (`cli::Context::store`) from `[compliance]`. A process-wide slot rather
/// than a parameter: the ledger is appended to deep inside import, feedback
/// and the consent stage through `Appender::start`, whose signature those
/// callers share. Code that holds keys of its own calls `start_with`.
static INSTALLED_KEYS: RwLock<Option<Arc<LedgerKeys>>> = RwLock::new(None);

/// Makes `keys` the ledger keys of this process (`None`: unkeyed).
pub fn install_keys(keys: Option<LedgerKeys>) {
    let mut slot = INSTALLED_KEYS.write().unwrap_or_else(|e| e.into_inner());
    *slot = keys.map(Arc::new);
}

/// The keys `install_keys` installed, if any.
pub fn installed_keys() -> Option<Arc<LedgerKeys>> {
    INSTALLED_KEYS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Evidence recorded with a ledger entry (GDPR Art. 7(1): the controller must
/// be able to demonstrate consent).
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub source: String,
    pub method: String,
    /// Personal: blanked by an erasure.
    pub ip: Option<String>,
    pub text_version: Option<String>,
    /// Free-form JSON object: form fields, the bounce that caused a withdrawal, ...
    /// Personal: blanked by an erasure.
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

/// The fields of an entry that its hash covers, as stored.
struct Fields<'a> {
    contact_id: i64,
    list_id: Option<i64>,
    action: &'a str,
    occurred_at: Millis,
    source: &'a str,
    method: &'a str,
    ip: Option<&'a str>,
    text_version: Option<&'a str>,
    evidence: &'a str,
}

impl<'a> Fields<'a> {
    fn of(e: &'a ConsentEntry, evidence: &'a str) -> Self {
        Fields {
            contact_id: e.contact_id,
            list_id: e.list_id,
            action: e.action.as_str(),
            occurred_at: e.occurred_at,
            source: &e.evidence.source,
            method: &e.evidence.method,
            ip: e.evidence.ip.as_deref(),
            text_version: e.evidence.text_version.as_deref(),
            evidence,
        }
    }

    fn stored(s: &'a StoredEntry) -> Self {
        Fields {
            contact_id: s.contact_id,
            list_id: s.list_id,
            action: &s.action,
            occurred_at: s.occurred_at,
            source: &s.source,
            method: &s.method,
            ip: s.ip.as_deref(),
            text_version: s.text_version.as_deref(),
            evidence: &s.evidence,
        }
    }
}

/// One row ready to insert: its link, hash and key.
struct Sealed {
    prev: String,
    hash: String,
    key_id: Option<String>,
    digest: Option<String>,
}

/// Holds the chain head while a transaction appends entries.
pub struct Appender {
    head: String,
    /// `None`: the ledger has no switch point yet and no key is configured;
    /// entries get the legacy form.
    key: Option<LedgerKey>,
}

impl Appender {
    /// Locks the ledger for this transaction and reads the chain head, with
    /// the keys `install_keys` installed.
    pub async fn start(tx: &mut Tx) -> Result<Self> {
        Self::start_with(tx, installed_keys().as_deref()).await
    }

    /// Like `start`, with these keys. With a key, the first call records the
    /// switch point (the legacy entries so far, signed); without one, a
    /// ledger that has a switch point refuses to be appended to.
    pub async fn start_with(tx: &mut Tx, keys: Option<&LedgerKeys>) -> Result<Self> {
        if let Tx::Postgres(t) = tx {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LEDGER_LOCK)
                .execute(&mut **t)
                .await?;
        }
        let (head, switched): (Option<String>, bool) = dispatch_tx!(tx, conn => {
            let head = sqlx::query_scalar("SELECT hash FROM consent_events ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
            let switched: Option<i64> = sqlx::query_scalar("SELECT legacy_count FROM ledger_switch")
                .fetch_optional(&mut *conn)
                .await?;
            (head, switched.is_some())
        });
        let head = head.unwrap_or_else(|| GENESIS.to_string());
        let key = match keys {
            Some(keys) => {
                let key = keys.current().clone();
                if !switched {
                    let count: i64 = dispatch_tx!(tx, conn => {
                        sqlx::query_scalar("SELECT COUNT(*) FROM consent_events")
                            .fetch_one(&mut *conn)
                            .await?
                    });
                    let mac = switch_mac(&key, count, &head);
                    dispatch_tx!(tx, conn => {
                        sqlx::query(
                            "INSERT INTO ledger_switch (id, legacy_count, legacy_head, key_id, mac, created_at) \
                             VALUES (1, $1, $2, $3, $4, $5)",
                        )
                        .bind(count)
                        .bind(&head)
                        .bind(key.id())
                        .bind(&mac)
                        .bind(crate::domain::time::now_millis())
                        .execute(&mut *conn)
                        .await?;
                    });
                }
                Some(key)
            }
            None if switched => {
                return Err(StoreError::Ledger(
                    "the consent ledger is keyed: set [compliance] ledger_key \
                     (CARTERO_COMPLIANCE_LEDGER_KEY) to append to it"
                        .into(),
                ));
            }
            None => None,
        };
        Ok(Self { head, key })
    }

    /// The keyed digest of an entry's personal fields (`None` in legacy form).
    fn digest(&self, ip: Option<&str>, evidence: &str) -> Option<String> {
        self.key.as_ref().map(|k| personal_digest(k, ip, evidence))
    }

    /// Chains one entry after the head.
    fn seal(&mut self, f: &Fields, digest: Option<&str>) -> Sealed {
        let hash = match (&self.key, digest) {
            (Some(k), Some(d)) => keyed_hash(k, &self.head, f, d),
            _ => legacy_hash(&self.head, f),
        };
        let prev = std::mem::replace(&mut self.head, hash.clone());
        Sealed {
            prev,
            hash,
            key_id: self.key.as_ref().map(|k| k.id().to_string()),
            digest: digest.map(str::to_string),
        }
    }

    /// Appends one entry and updates the current state of the list it names.
    pub async fn append(&mut self, tx: &mut Tx, e: &ConsentEntry) -> Result<()> {
        self.append_many(tx, std::slice::from_ref(e)).await
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
                let digest = self.digest(e.evidence.ip.as_deref(), &evidence);
                let sealed = self.seal(&Fields::of(e, &evidence), digest.as_deref());
                rows.push((e, evidence, sealed));
            }
            dispatch_tx!(tx, conn => {
                let mut qb = QueryBuilder::new(EVENTS_INSERT);
                qb.push_values(rows.iter(), |mut b, (e, evidence, s)| {
                    b.push_bind(e.contact_id)
                        .push_bind(e.list_id)
                        .push_bind(e.action.as_str())
                        .push_bind(e.occurred_at)
                        .push_bind(e.evidence.source.as_str())
                        .push_bind(e.evidence.method.as_str())
                        .push_bind(e.evidence.ip.as_deref())
                        .push_bind(e.evidence.text_version.as_deref())
                        .push_bind(evidence.as_str())
                        .push_bind(s.prev.as_str())
                        .push_bind(s.hash.as_str())
                        .push_bind(s.key_id.as_deref())
                        .push_bind(s.digest.as_deref());
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
    /// hashed on its own, chained to the one before it; the digest of the
    /// shared personal fields is computed once.
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
        let digest = self.digest(evidence.ip.as_deref(), &details);
        let key_id = self.key.as_ref().map(|k| k.id().to_string());
        let action = ConsentAction::Grant.as_str();
        let mut prevs = Vec::with_capacity(contact_ids.len());
        let mut hashes = Vec::with_capacity(contact_ids.len());
        for &contact_id in contact_ids {
            let f = Fields {
                contact_id,
                list_id: Some(list_id),
                action,
                occurred_at,
                source: &evidence.source,
                method: &evidence.method,
                ip: evidence.ip.as_deref(),
                text_version: evidence.text_version.as_deref(),
                evidence: &details,
            };
            let hash = match (&self.key, &digest) {
                (Some(k), Some(d)) => keyed_hash(k, &self.head, &f, d),
                _ => legacy_hash(&self.head, &f),
            };
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
                            .push_bind(hashes[at + i].as_str())
                            .push_bind(key_id.as_deref())
                            .push_bind(digest.as_deref());
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
                    "{EVENTS_INSERT}SELECT u.contact_id, $2, $3, $4, $5, $6, $7, $8, $9, u.prev_hash, u.hash, \
                     $12, $13 \
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
                .bind(&key_id)
                .bind(&digest)
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
     source, method, ip, text_version, evidence, prev_hash, hash, key_id, personal_digest) ";
const LIST_STATE_INSERT: &str =
    "INSERT INTO contact_lists (contact_id, list_id, subscribed, changed_at) ";
const LIST_STATE_UPSERT: &str = " ON CONFLICT (contact_id, list_id) \
     DO UPDATE SET subscribed = excluded.subscribed, changed_at = excluded.changed_at";

/// Entries per multi-row INSERT in `append_many`: 13 bound values a row keep
/// a statement under SQLite's 32,766-parameter limit.
const APPEND_CHUNK: usize = 1000;

/// The columns of a stored entry, in `StoredEntry`'s order.
pub const ENTRY_COLUMNS: &str = "id, contact_id, list_id, action, occurred_at, source, method, ip, \
     text_version, evidence, prev_hash, hash, key_id, personal_digest, erased_at";

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
    /// The key that signed it; `None`: the legacy unkeyed form.
    pub key_id: Option<String>,
    pub personal_digest: Option<String>,
    /// When an erasure blanked its personal fields.
    pub erased_at: Option<Millis>,
}

/// Where the chain first fails to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The row's `prev_hash` is not the hash of the row before it: rows
    /// were deleted before it (or it was inserted with a made-up link).
    Link { id: i64 },
    /// The row's fields do not hash to its `hash`: the row was edited (or
    /// forged and appended).
    Content { id: i64 },
    /// The row does not verify and the row after it links to the row
    /// before it: the row was inserted.
    Inserted { id: i64 },
    /// The row names a key that is not configured (current or retired).
    UnknownKey { id: i64, key_id: String },
    /// An unkeyed (legacy) row after the switch point.
    Unkeyed { id: i64 },
    /// The switch point is missing, unsigned or does not match the chain.
    Switch { reason: String },
    /// The row's personal fields were blanked without an erasure of its
    /// contact recorded in the chain (or its seal does not match).
    ErasedWithoutRecord { id: i64 },
    /// A checkpoint kept outside the database disagrees with the chain.
    Checkpoint {
        index: usize,
        problem: CheckpointProblem,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// The chain is shorter than when the checkpoint was taken.
    Truncated { entries: u64, now: u64 },
    /// The entry at the checkpoint's position is no longer the one signed.
    Rewritten { position: u64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Link { id } => write!(
                f,
                "entry {id} does not link to the entry before it: entries were deleted before it, \
                 or it was inserted"
            ),
            Self::Content { id } => write!(f, "entry {id} was altered (its hash does not verify)"),
            Self::Inserted { id } => write!(
                f,
                "entry {id} was inserted (it does not verify, and the entry after it links to the one before it)"
            ),
            Self::UnknownKey { id, key_id } => write!(
                f,
                "entry {id} is signed with key {key_id}, which is not configured \
                 (add it to [compliance] retired_ledger_keys)"
            ),
            Self::Unkeyed { id } => write!(
                f,
                "entry {id} is unkeyed but comes after the switch point: it was inserted or rewritten"
            ),
            Self::Switch { reason } => write!(f, "the switch point: {reason}"),
            Self::ErasedWithoutRecord { id } => write!(
                f,
                "entry {id} had its personal fields removed, but no erasure of its contact is recorded"
            ),
            Self::Checkpoint { index, problem } => match problem {
                CheckpointProblem::Truncated { entries, now } => write!(
                    f,
                    "checkpoint {}: the chain had {entries} entries, it now has {now}: the newest were deleted",
                    index + 1
                ),
                CheckpointProblem::Rewritten { position } => write!(
                    f,
                    "checkpoint {}: entry number {position} is not the one signed: the chain was rewritten",
                    index + 1
                ),
            },
        }
    }
}

/// What a walk of the chain found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub entries: u64,
    pub legacy: u64,
    pub keyed: u64,
    pub erased: u64,
    /// The hash and id of the last entry.
    pub head: String,
    pub head_id: Option<i64>,
    /// Legacy entries sealed by the switch point (`None`: no switch yet).
    pub switch_legacy_count: Option<u64>,
    /// Key ids seen, in order of first use.
    pub key_ids: Vec<String>,
}

/// Recomputes the whole chain with the installed keys; `Ok(n)` is the
/// number of entries verified.
pub async fn verify_chain(store: &super::Store) -> Result<std::result::Result<u64, ChainBreak>> {
    let keys = installed_keys();
    Ok(verify(store, keys.as_deref(), &[])
        .await?
        .map(|v| v.entries))
}

/// Walks the chain in id order (streamed: memory does not grow with it) and
/// names the first break, checking it against `checkpoints` on the way.
pub async fn verify(
    store: &super::Store,
    keys: Option<&LedgerKeys>,
    checkpoints: &[Checkpoint],
) -> Result<std::result::Result<Verified, ChainBreak>> {
    use futures::TryStreamExt;
    let switch = read_switch(store).await?;
    if let Some(sw) = &switch {
        let Some(keys) = keys else {
            return Err(StoreError::Ledger(
                "the consent ledger is keyed: set [compliance] ledger_key to verify it".into(),
            ));
        };
        let Some(key) = keys.get(&sw.key_id) else {
            return Ok(Err(ChainBreak::Switch {
                reason: format!("signed with key {}, which is not configured", sw.key_id),
            }));
        };
        if switch_mac(key, sw.legacy_count, &sw.legacy_head) != sw.mac {
            return Ok(Err(ChainBreak::Switch {
                reason: "its signature does not verify: it was edited".into(),
            }));
        }
    }
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM consent_events ORDER BY id");
    let mut walk = Walk {
        keys,
        switch: switch.as_ref(),
        checkpoints,
        out: Verified {
            head: GENESIS.to_string(),
            switch_legacy_count: switch.as_ref().map(|s| s.legacy_count as u64),
            ..Default::default()
        },
        failed: None,
        pending_erased: Vec::new(),
    };
    let verdict = crate::dispatch!(store, pool => {
        let mut rows = sqlx::query_as::<_, StoredEntry>(&sql).fetch(pool);
        let mut verdict = Ok(());
        while let Some(row) = rows.try_next().await? {
            if let Err(b) = walk.step(row) {
                verdict = Err(b);
                break;
            }
        }
        verdict
    });
    Ok(verdict.and_then(|()| walk.finish()))
}

/// The state of `verify` between rows.
struct Walk<'a> {
    keys: Option<&'a LedgerKeys>,
    switch: Option<&'a Switch>,
    checkpoints: &'a [Checkpoint],
    out: Verified,
    /// A row that did not verify: (id, its prev_hash), held one row to tell
    /// an insertion from an edit.
    failed: Option<(i64, String)>,
    /// Erased rows waiting for their contact's erasure entry: (id, contact,
    /// the seal of a legacy row).
    pending_erased: Vec<(i64, i64, Option<String>)>,
}

impl Walk<'_> {
    fn step(&mut self, row: StoredEntry) -> std::result::Result<(), ChainBreak> {
        if let Some((id, prev)) = self.failed.take() {
            return Err(if row.prev_hash == prev && row.prev_hash != self.out.head {
                ChainBreak::Inserted { id }
            } else {
                ChainBreak::Content { id }
            });
        }
        let position = self.out.entries + 1;
        if row.prev_hash != self.out.head {
            return Err(ChainBreak::Link { id: row.id });
        }
        let legacy_count = self.switch.map(|s| s.legacy_count as u64);
        let ok = match &row.key_id {
            None => {
                if legacy_count.is_some_and(|n| position > n) || self.out.keyed > 0 {
                    return Err(ChainBreak::Unkeyed { id: row.id });
                }
                self.out.legacy += 1;
                if row.erased_at.is_some() {
                    if row.ip.is_some() || row.evidence != "{}" {
                        return Err(ChainBreak::Content { id: row.id });
                    }
                    self.out.erased += 1;
                    self.pending_erased
                        .push((row.id, row.contact_id, Some(legacy_seal(&row))));
                    true
                } else {
                    legacy_hash(&row.prev_hash, &Fields::stored(&row)) == row.hash
                }
            }
            Some(key_id) => {
                let Some(n) = legacy_count else {
                    return Err(ChainBreak::Switch {
                        reason: format!(
                            "entry {} is keyed but no switch point is recorded: it was deleted",
                            row.id
                        ),
                    });
                };
                if position <= n {
                    return Err(ChainBreak::Switch {
                        reason: format!(
                            "it records {n} legacy entries, but entry {} (number {position}) is keyed: \
                             legacy entries were deleted",
                            row.id
                        ),
                    });
                }
                let key = self.keys.and_then(|k| k.get(key_id)).ok_or_else(|| {
                    ChainBreak::UnknownKey {
                        id: row.id,
                        key_id: key_id.clone(),
                    }
                })?;
                if !self.out.key_ids.contains(key_id) {
                    self.out.key_ids.push(key_id.clone());
                }
                self.out.keyed += 1;
                let stored = row.personal_digest.as_deref().unwrap_or("");
                let digest_ok = if row.erased_at.is_some() {
                    if row.ip.is_some() || row.evidence != "{}" {
                        return Err(ChainBreak::Content { id: row.id });
                    }
                    self.out.erased += 1;
                    self.pending_erased.push((row.id, row.contact_id, None));
                    true
                } else {
                    personal_digest(key, row.ip.as_deref(), &row.evidence) == stored
                };
                let ok = digest_ok
                    && keyed_hash(key, &row.prev_hash, &Fields::stored(&row), stored) == row.hash;
                if ok && row.method == ERASURE_METHOD && row.erased_at.is_none() {
                    self.resolve_erasure(&row)?;
                }
                ok
            }
        };
        if !ok {
            self.failed = Some((row.id, row.prev_hash.clone()));
        }
        self.out.entries = position;
        for (index, cp) in self.checkpoints.iter().enumerate() {
            if cp.entries == position && cp.head != row.hash {
                return Err(ChainBreak::Checkpoint {
                    index,
                    problem: CheckpointProblem::Rewritten { position },
                });
            }
        }
        self.out.head = row.hash;
        self.out.head_id = Some(row.id);
        Ok(())
    }

    /// A keyed erasure entry vouches for the erased rows of its contact.
    fn resolve_erasure(&mut self, row: &StoredEntry) -> std::result::Result<(), ChainBreak> {
        let seals: HashMap<String, String> =
            serde_json::from_str::<serde_json::Value>(&row.evidence)
                .ok()
                .and_then(|v| v.get("legacy_seals").cloned())
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
        let mut bad = None;
        self.pending_erased.retain(|(id, contact, seal)| {
            if *contact != row.contact_id {
                return true;
            }
            if let Some(seal) = seal
                && seals.get(&id.to_string()) != Some(seal)
                && bad.is_none()
            {
                bad = Some(*id);
            }
            false
        });
        match bad {
            Some(id) => Err(ChainBreak::ErasedWithoutRecord { id }),
            None => Ok(()),
        }
    }

    fn finish(self) -> std::result::Result<Verified, ChainBreak> {
        if let Some((id, _)) = self.failed {
            return Err(ChainBreak::Content { id });
        }
        if let Some(&(id, _, _)) = self.pending_erased.first() {
            return Err(ChainBreak::ErasedWithoutRecord { id });
        }
        if let Some(n) = self.out.switch_legacy_count
            && self.out.legacy < n
        {
            return Err(ChainBreak::Switch {
                reason: format!(
                    "it records {n} legacy entries, the chain has {}: legacy entries were deleted",
                    self.out.legacy
                ),
            });
        }
        for (index, cp) in self.checkpoints.iter().enumerate() {
            if cp.entries > self.out.entries {
                return Err(ChainBreak::Checkpoint {
                    index,
                    problem: CheckpointProblem::Truncated {
                        entries: cp.entries,
                        now: self.out.entries,
                    },
                });
            }
        }
        Ok(self.out)
    }
}

/// The recorded switch point.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Switch {
    legacy_count: i64,
    legacy_head: String,
    key_id: String,
    mac: String,
}

async fn read_switch(store: &super::Store) -> Result<Option<Switch>> {
    crate::dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, Switch>(
            "SELECT legacy_count, legacy_head, key_id, mac FROM ledger_switch WHERE id = 1",
        )
        .fetch_optional(pool)
        .await?)
    })
}

/// Records the switch point now if there is none (an empty transaction
/// otherwise): `compliance checkpoint` seals the legacy entries before
/// signing, even if nothing was appended since the key was configured.
pub async fn seal_switch(store: &super::Store, keys: &LedgerKeys) -> Result<()> {
    let mut tx = store.begin().await?;
    Appender::start_with(&mut tx, Some(keys)).await?;
    tx.commit().await
}

/// A signed statement of the chain's length and head at an instant, kept by
/// the compliance officer outside the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format: String,
    pub entries: u64,
    pub head: String,
    pub head_id: Option<i64>,
    /// RFC 3339, for people; `at_ms` is what is signed.
    pub at: String,
    pub at_ms: Millis,
    pub key_id: String,
    pub mac: String,
}

pub const CHECKPOINT_FORMAT: &str = "cartero-ledger-checkpoint/1";

impl Checkpoint {
    fn mac_with(&self, key: &LedgerKey) -> String {
        let mut m = key.mac();
        let mut up = |b: &[u8]| m.update(b);
        field(&mut up, CHECKPOINT_FORMAT.as_bytes());
        field(&mut up, &self.entries.to_be_bytes());
        field(&mut up, self.head.as_bytes());
        field(&mut up, &self.head_id.unwrap_or(0).to_be_bytes());
        field(&mut up, &self.at_ms.to_be_bytes());
        field(&mut up, self.key_id.as_bytes());
        hex(&m.finalize().into_bytes())
    }

    /// Checks the format and signature.
    pub fn check(&self, keys: &LedgerKeys) -> std::result::Result<(), String> {
        if self.format != CHECKPOINT_FORMAT {
            return Err(format!(
                "format {:?} is not {CHECKPOINT_FORMAT:?}",
                self.format
            ));
        }
        let key = keys
            .get(&self.key_id)
            .ok_or_else(|| format!("signed with key {}, which is not configured", self.key_id))?;
        let expected = self.mac_with(key);
        // Both are hex of the same length; a timing leak here would reveal
        // a MAC of a document the attacker already holds.
        if expected != self.mac {
            return Err("its signature does not verify: the file was edited".into());
        }
        Ok(())
    }
}

/// Seals the switch point, verifies the chain and signs its head. Refuses
/// to sign a chain that does not verify.
pub async fn checkpoint(
    store: &super::Store,
    keys: &LedgerKeys,
    now: Millis,
) -> Result<std::result::Result<Checkpoint, ChainBreak>> {
    seal_switch(store, keys).await?;
    let v = match verify(store, Some(keys), &[]).await? {
        Ok(v) => v,
        Err(b) => return Ok(Err(b)),
    };
    let mut cp = Checkpoint {
        format: CHECKPOINT_FORMAT.into(),
        entries: v.entries,
        head: v.head,
        head_id: v.head_id,
        at: crate::domain::time::to_rfc3339(now),
        at_ms: now,
        key_id: keys.current().id().to_string(),
        mac: String::new(),
    };
    cp.mac = cp.mac_with(keys.current());
    Ok(Ok(cp))
}

/// Ledger entries of one contact, oldest first (for access requests and review).
pub async fn entries_for_contact(
    store: &super::Store,
    contact_id: i64,
) -> Result<Vec<StoredEntry>> {
    let sql =
        format!("SELECT {ENTRY_COLUMNS} FROM consent_events WHERE contact_id = $1 ORDER BY id");
    crate::dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, StoredEntry>(&sql)
            .bind(contact_id)
            .fetch_all(pool)
            .await?)
    })
}

/// Ledger entries of one contact, oldest first, in the caller's transaction
/// (the consent stage reads them to decide what a reversal restores).
pub async fn entries_for_contact_tx(tx: &mut Tx, contact_id: i64) -> Result<Vec<StoredEntry>> {
    let sql =
        format!("SELECT {ENTRY_COLUMNS} FROM consent_events WHERE contact_id = $1 ORDER BY id");
    Ok(dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, StoredEntry>(&sql)
            .bind(contact_id)
            .fetch_all(&mut *conn)
            .await?
    }))
}

/// Blanks the personal fields (ip, evidence) of every entry of a contact
/// and appends the erasure entry that vouches for them, in `tx`: a
/// withdrawal from every list, method `erasure`, with the reason and a seal
/// of each legacy entry it blanked. Legacy entries are checked before they
/// are blanked, so an erasure never launders an edited row. Returns the
/// number of entries blanked.
pub async fn erase_personal_fields(
    tx: &mut Tx,
    appender: &mut Appender,
    contact_id: i64,
    reason: &str,
    now: Millis,
) -> Result<u64> {
    if appender.key.is_none() {
        return Err(StoreError::Ledger(
            "an erasure needs the ledger key: set [compliance] ledger_key".into(),
        ));
    }
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM consent_events WHERE contact_id = $1 AND erased_at IS NULL ORDER BY id"
    );
    let rows: Vec<StoredEntry> = dispatch_tx!(tx, conn => {
        sqlx::query_as::<_, StoredEntry>(&sql)
            .bind(contact_id)
            .fetch_all(&mut *conn)
            .await?
    });
    let mut seals = serde_json::Map::new();
    for row in &rows {
        if row.key_id.is_none() {
            if legacy_hash(&row.prev_hash, &Fields::stored(row)) != row.hash {
                return Err(StoreError::Ledger(format!(
                    "ledger entry {} of this contact does not verify: run `cartero compliance verify` \
                     before erasing",
                    row.id
                )));
            }
            seals.insert(row.id.to_string(), legacy_seal(row).into());
        }
    }
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE consent_events SET ip = NULL, evidence = '{}', erased_at = $1 \
             WHERE contact_id = $2 AND erased_at IS NULL",
        )
        .bind(now)
        .bind(contact_id)
        .execute(&mut *conn)
        .await?;
    });
    appender
        .append(
            tx,
            &ConsentEntry {
                contact_id,
                list_id: None,
                action: ConsentAction::Withdraw,
                occurred_at: now,
                evidence: Evidence {
                    source: "cartero contacts erase".into(),
                    method: ERASURE_METHOD.into(),
                    ip: None,
                    text_version: None,
                    details: serde_json::json!({
                        "reason": reason,
                        "legacy_seals": seals,
                    }),
                },
            },
        )
        .await?;
    Ok(rows.len() as u64)
}

/// The fields both hash forms cover in the same order: who, which list,
/// what, when, and by what source and method.
fn entry_fields(up: &mut impl FnMut(&[u8]), f: &Fields) {
    field(up, &f.contact_id.to_be_bytes());
    field(
        up,
        f.list_id
            .map(|l| l.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(up, f.action.as_bytes());
    field(up, &f.occurred_at.to_be_bytes());
    field(up, f.source.as_bytes());
    field(up, f.method.as_bytes());
}

/// The plain SHA-256 form of entries written before a key was configured.
fn legacy_hash(prev: &str, f: &Fields) -> String {
    let mut h = Sha256::new();
    let mut up = |b: &[u8]| h.update(b);
    field(&mut up, prev.as_bytes());
    entry_fields(&mut up, f);
    field(&mut up, f.ip.unwrap_or("\0").as_bytes());
    field(&mut up, f.text_version.unwrap_or("\0").as_bytes());
    field(&mut up, f.evidence.as_bytes());
    hex(&h.finalize())
}

/// The keyed form: an HMAC over the key id, the link, the entry's
/// non-personal fields and the digest of its personal ones.
fn keyed_hash(key: &LedgerKey, prev: &str, f: &Fields, personal_digest: &str) -> String {
    let mut m = key.mac();
    let mut up = |b: &[u8]| m.update(b);
    field(&mut up, b"cartero ledger entry v1");
    field(&mut up, key.id().as_bytes());
    field(&mut up, prev.as_bytes());
    entry_fields(&mut up, f);
    field(&mut up, f.text_version.unwrap_or("\0").as_bytes());
    field(&mut up, personal_digest.as_bytes());
    hex(&m.finalize().into_bytes())
}

/// The keyed digest of an entry's personal fields. Keyed, not a plain hash:
/// an IPv4 address hashed without a key is found by trying all 2^32.
fn personal_digest(key: &LedgerKey, ip: Option<&str>, evidence: &str) -> String {
    let mut m = key.mac();
    let mut up = |b: &[u8]| m.update(b);
    field(&mut up, b"cartero ledger personal v1");
    field(&mut up, ip.unwrap_or("\0").as_bytes());
    field(&mut up, evidence.as_bytes());
    hex(&m.finalize().into_bytes())
}

/// What an erasure entry records of a legacy entry it blanked: its place in
/// the chain and its non-personal fields.
fn legacy_seal(s: &StoredEntry) -> String {
    let mut h = Sha256::new();
    let mut up = |b: &[u8]| h.update(b);
    field(&mut up, b"cartero legacy erasure seal v1");
    field(&mut up, &s.id.to_be_bytes());
    field(&mut up, s.prev_hash.as_bytes());
    field(&mut up, s.hash.as_bytes());
    field(&mut up, &s.contact_id.to_be_bytes());
    field(
        &mut up,
        s.list_id
            .map(|l| l.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(&mut up, s.action.as_bytes());
    field(&mut up, &s.occurred_at.to_be_bytes());
    field(&mut up, s.source.as_bytes());
    field(&mut up, s.method.as_bytes());
    field(
        &mut up,
        s.text_version.as_deref().unwrap_or("\0").as_bytes(),
    );
    hex(&h.finalize())
}

fn switch_mac(key: &LedgerKey, legacy_count: i64, legacy_head: &str) -> String {
    let mut m = key.mac();
    let mut up = |b: &[u8]| m.update(b);
    field(&mut up, b"cartero ledger switch v1");
    field(&mut up, key.id().as_bytes());
    field(&mut up, &legacy_count.to_be_bytes());
    field(&mut up, legacy_head.as_bytes());
    hex(&m.finalize().into_bytes())
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
