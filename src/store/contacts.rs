//! Contacts repository: batched upserts for import, lookups, lists and tags.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row};

use super::consent::{Appender, ConsentEntry, Evidence};
use super::status::{self, StatusChange};
use super::{Result, Store, Tx};
use crate::domain::time::Millis;
use crate::domain::{ConsentAction, ContactStatus, EmailAddress};
use crate::{dispatch, dispatch_tx};

/// A contact as read from an import row, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub email: EmailAddress,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub tags: Vec<String>,
    /// The source marks the row unsubscribed, bounced, complained ...: the
    /// contact is stored suppressed and never granted consent.
    pub suppression: Option<SourceSuppression>,
    /// What the source says about consent to the import's list.
    pub consent: RowConsent,
}

impl NewContact {
    /// A contact with no status or consent information from its source.
    pub fn plain(email: EmailAddress) -> Self {
        Self {
            email,
            first_name: None,
            last_name: None,
            locale: None,
            timezone: None,
            attributes: serde_json::Map::new(),
            tags: Vec::new(),
            suppression: None,
            consent: RowConsent::Asserted,
        }
    }
}

/// The key contacts are matched by (docs/ADDRESSES.md): the normalised
/// address with its ASCII letters lower-cased. The SQL side folds the same
/// way (`lower(email)` on SQLite, `lower(email COLLATE "C")` on PostgreSQL,
/// both ASCII-only), and an index on that expression serves the lookup.
pub fn email_key(email: &str) -> String {
    email.to_ascii_lowercase()
}

/// Where a withdrawal applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WithdrawScope {
    /// The import's list (every list when the import names none).
    List,
    /// Every list.
    All,
}

/// A suppression read from the source file.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSuppression {
    pub status: ContactStatus,
    /// A ledger withdrawal, when the source says the person withdrew.
    pub withdraw: Option<WithdrawScope>,
    /// The status change's rule, e.g. `mailchimp:unsubscribed`.
    pub rule: String,
    pub reason: String,
    /// When it happened at the source, if the file says.
    pub at: Option<Millis>,
}

/// A row's consent, from its source.
#[derive(Debug, Clone, PartialEq)]
pub enum RowConsent {
    /// The source's own evidence: when consent was given or confirmed, the
    /// IP, and the source's fields (merged into the ledger entry's details).
    Evidence {
        at: Option<Millis>,
        ip: Option<String>,
        details: serde_json::Map<String, serde_json::Value>,
    },
    /// The file carries none: the importer's word.
    Asserted,
    /// The source says there is no consent: the contact is imported without a grant.
    Refused,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Contacts newly subscribed to the import's list (a ledger grant each).
    pub consent_granted: u64,
    /// ... of which with the source's evidence (times, IPs).
    pub granted_with_evidence: u64,
    /// ... of which on the importer's word alone.
    pub granted_asserted: u64,
    /// Contacts who had withdrawn from the list, or from every list: an
    /// import never re-subscribes them.
    pub kept_withdrawn: u64,
    /// Contacts cartero holds as unsubscribed, bounced, complained, erased
    /// ... whose row says active: left suppressed, never granted.
    pub kept_suppressed: u64,
    /// Rows the source marks suppressed, by the status they were stored with.
    pub suppressed_unsubscribed: u64,
    pub suppressed_bounced: u64,
    pub suppressed_complained: u64,
    /// Withdrawals written to the ledger because the source says so.
    pub withdrawals: u64,
    /// Rows whose source says there is no consent (no grant).
    pub no_consent: u64,
    /// Suppressed contacts put back to active by `--override-suppression`.
    pub reinstated: u64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, o: Self) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.consent_granted += o.consent_granted;
        self.granted_with_evidence += o.granted_with_evidence;
        self.granted_asserted += o.granted_asserted;
        self.kept_withdrawn += o.kept_withdrawn;
        self.kept_suppressed += o.kept_suppressed;
        self.suppressed_unsubscribed += o.suppressed_unsubscribed;
        self.suppressed_bounced += o.suppressed_bounced;
        self.suppressed_complained += o.suppressed_complained;
        self.withdrawals += o.withdrawals;
        self.no_consent += o.no_consent;
        self.reinstated += o.reinstated;
    }
}

/// How an import writes status and consent.
#[derive(Debug, Clone)]
pub struct ImportConsent {
    /// The list the import subscribes contacts to, if any.
    pub list_id: Option<i64>,
    /// The evidence of a grant the file carries nothing for: `details` says
    /// "asserted by the importer".
    pub asserted: Evidence,
    /// The base of a grant with the source's evidence: the row's fields are
    /// merged into `details`, its time and IP taken for the entry's.
    pub sourced: Evidence,
    /// The evidence of a withdrawal the source records.
    pub withdrawal: Evidence,
    /// `--override-suppression REASON`: contacts held suppressed (not
    /// erased) whose row is active are reinstated, logged with this reason.
    pub override_reason: Option<String>,
    /// Actor of the status changes.
    pub actor: String,
}

struct Existing {
    id: i64,
    status: ContactStatus,
    first_name: Option<String>,
    last_name: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
    attributes: serde_json::Map<String, serde_json::Value>,
}

/// Returns the id of a list, creating it if needed.
pub async fn ensure_list(tx: &mut Tx, name: &str, now: Millis) -> Result<i64> {
    dispatch_tx!(tx, conn => {
        sqlx::query("INSERT INTO lists (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM lists WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await?;
        Ok(id)
    })
}

/// The batch lookup of stored contacts by key, as each backend runs it.
///
/// SQLite: `INDEXED BY` makes the address-key index the only plan. After a
/// small import, `ANALYZE` statistics (which `PRAGMA optimize` writes) made
/// SQLite's planner scan the whole table per batch instead (482 s instead of
/// 40 s for a million rows into a database of a few hundred contacts);
/// with INDEXED BY a statement that cannot use the index fails instead of
/// silently scanning. PostgreSQL takes one array, so the statement text is
/// planned once, and an `= ANY` on an indexed expression is an index scan.
pub fn lookup_sql(backend: super::Backend, params: usize) -> String {
    let attrs_json = match backend {
        super::Backend::Postgres => "attributes",
        super::Backend::Sqlite => "json(attributes)",
    };
    let stored_cols = super::json_rows_sql(
        backend,
        &format!("id, email, status, first_name, last_name, locale, timezone, {attrs_json}"),
    );
    match backend {
        super::Backend::Sqlite => {
            let marks: Vec<String> = (1..=params).map(|i| format!("${i}")).collect();
            format!(
                "SELECT {stored_cols} FROM contacts INDEXED BY contacts_email_fold \
                 WHERE lower(email) IN ({})",
                marks.join(", ")
            )
        }
        super::Backend::Postgres => {
            format!("SELECT {stored_cols} FROM contacts WHERE lower(email COLLATE \"C\") = ANY($1)")
        }
    }
}

/// The plan of the batch lookup for `keys` (for the test that the address
/// index is used whatever the statistics say).
pub async fn explain_batch_lookup(store: &Store, keys: &[String]) -> Result<Vec<String>> {
    let sql = lookup_sql(store.backend(), keys.len());
    match store {
        Store::Sqlite(p) => {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut q = sqlx::query(&explain);
            for k in keys {
                q = q.bind(k);
            }
            let rows = q.fetch_all(p).await?;
            rows.iter()
                .map(|r| r.try_get::<String, _>("detail").map_err(Into::into))
                .collect()
        }
        Store::Postgres(p) => {
            let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
                .bind(keys)
                .fetch_all(p)
                .await?;
            Ok(rows)
        }
    }
}

/// Upserts a batch of contacts (distinct address keys) inside `tx`.
///
/// Known fields are overwritten only by non-empty values and attributes are
/// merged key by key, so re-importing the same file changes nothing and a
/// partial file never blanks data it does not carry.
///
/// Status and consent: a row its source marks suppressed is stored with that
/// status (and a withdrawal where the source says so), never granted. A
/// contact stored suppressed (unsubscribed, bounced, complained, erased,
/// ...) stays so whatever its row says, unless `override_reason` is given
/// (never for erased or merged contacts). A contact who withdrew from the
/// list, or ever from every list, is not granted again.
pub async fn upsert_batch(
    tx: &mut Tx,
    batch: &[NewContact],
    consent: &ImportConsent,
    appender: &mut Option<Appender>,
    now: Millis,
) -> Result<UpsertCounts> {
    let mut counts = UpsertCounts::default();
    if batch.is_empty() {
        return Ok(counts);
    }
    let backend = tx.backend();
    let json_cast = if backend == super::Backend::Postgres {
        "::jsonb"
    } else {
        ""
    };
    let keys: Vec<String> = batch.iter().map(|c| email_key(c.email.as_str())).collect();

    // 1. What is stored already: one JSON value for the whole batch.
    let mut existing: HashMap<String, Existing> = HashMap::with_capacity(batch.len());
    let sql = lookup_sql(backend, keys.len());
    let rows: String = match tx {
        Tx::Sqlite(t) => {
            let mut q = sqlx::query_scalar(&sql);
            for k in &keys {
                q = q.bind(k.as_str());
            }
            q.fetch_one(&mut **t).await?
        }
        Tx::Postgres(t) => {
            sqlx::query_scalar(&sql)
                .bind(&keys)
                .fetch_one(&mut **t)
                .await?
        }
    };
    type StoredRow = (
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        serde_json::Value,
    );
    // Exact form first among case variants stored before keys existed, then
    // the oldest; a contact merged into another is never the match.
    let mut exact: HashSet<String> = HashSet::new();
    let given: HashSet<&str> = batch.iter().map(|c| c.email.as_str()).collect();
    for (id, email, status, first_name, last_name, locale, timezone, attrs) in
        super::parse_json_rows::<StoredRow>(&rows)?
    {
        let status: ContactStatus = status.parse().map_err(super::StoreError::Corrupt)?;
        if status == ContactStatus::Merged {
            continue;
        }
        let key = email_key(&email);
        let is_exact = given.contains(email.as_str());
        if let Some(old) = existing.get(&key) {
            let old_exact = exact.contains(&key);
            if old_exact || (!is_exact && old.id < id) {
                continue;
            }
        }
        if is_exact {
            exact.insert(key.clone());
        }
        let attributes = match attrs {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        existing.insert(
            key,
            Existing {
                id,
                status,
                first_name,
                last_name,
                locale,
                timezone,
                attributes,
            },
        );
    }

    // 2. Insert the new ones, suppressed when their source says so.
    let new: Vec<&NewContact> = batch
        .iter()
        .zip(&keys)
        .filter(|(_, k)| !existing.contains_key(*k))
        .map(|(c, _)| c)
        .collect();
    let status_of = |c: &NewContact| {
        c.suppression
            .as_ref()
            .map(|s| s.status)
            .unwrap_or(ContactStatus::Active)
    };
    let mut ids: HashMap<String, i64> = existing.iter().map(|(k, x)| (k.clone(), x.id)).collect();
    if !new.is_empty() {
        match tx {
            Tx::Sqlite(t) => {
                // OR FAIL, not the default ABORT: a multi-row statement that
                // may abort makes SQLite copy every page it touches into a
                // statement journal first (a thousand random pages of the
                // address index a batch). No row can conflict (the batch
                // holds distinct addresses, none stored, and the write lock
                // is ours); if one did, the error still ends the import and
                // its transaction is rolled back.
                let mut qb = QueryBuilder::new(
                    "INSERT OR FAIL INTO contacts (email, email_ascii, domain, first_name, last_name, locale, \
                     timezone, attributes, status, created_at, updated_at) ",
                );
                qb.push_values(new.iter(), |mut b, c| {
                    b.push_bind(c.email.as_str())
                        .push_bind(c.email.ascii())
                        .push_bind(c.email.domain())
                        .push_bind(c.first_name.as_deref())
                        .push_bind(c.last_name.as_deref())
                        .push_bind(c.locale.as_deref())
                        .push_bind(c.timezone.as_deref())
                        .push_bind(serde_json::Value::Object(c.attributes.clone()).to_string())
                        .push_bind(status_of(c).as_str())
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.push(" RETURNING id, email");
                for row in qb.build().fetch_all(&mut **t).await? {
                    let email: String = row.try_get("email")?;
                    ids.insert(email_key(&email), row.try_get("id")?);
                }
            }
            Tx::Postgres(t) => {
                let emails: Vec<&str> = new.iter().map(|c| c.email.as_str()).collect();
                let ascii: Vec<Option<&str>> = new.iter().map(|c| c.email.ascii()).collect();
                let domains: Vec<&str> = new.iter().map(|c| c.email.domain()).collect();
                let field = |f: fn(&NewContact) -> &Option<String>| -> Vec<Option<&str>> {
                    new.iter().map(|c| f(c).as_deref()).collect()
                };
                let attributes: Vec<String> = new
                    .iter()
                    .map(|c| serde_json::to_string(&c.attributes))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
                let statuses: Vec<&str> = new.iter().map(|c| status_of(c).as_str()).collect();
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "INSERT INTO contacts (email, email_ascii, domain, first_name, last_name, locale, timezone, \
                     attributes, status, created_at, updated_at) \
                     SELECT u.email, u.email_ascii, u.domain, u.first_name, u.last_name, u.locale, u.timezone, \
                            u.attributes::jsonb, u.status, $9, $9 \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                                 $7::text[], $8::text[], $10::text[]) \
                          AS u (email, email_ascii, domain, first_name, last_name, locale, timezone, attributes, status) \
                     RETURNING id, email",
                )
                .bind(emails)
                .bind(ascii)
                .bind(domains)
                .bind(field(|c| &c.first_name))
                .bind(field(|c| &c.last_name))
                .bind(field(|c| &c.locale))
                .bind(field(|c| &c.timezone))
                .bind(attributes)
                .bind(now)
                .bind(statuses)
                .fetch_all(&mut **t)
                .await?;
                for (id, email) in rows {
                    ids.insert(email_key(&email), id);
                }
            }
        }
        counts.inserted = new.len() as u64;
        // The status history of contacts stored suppressed: the source's
        // status, its reason and time, cause `import`.
        let suppressed: Vec<(i64, &SourceSuppression)> = new
            .iter()
            .filter_map(|c| {
                let s = c.suppression.as_ref()?;
                Some((*ids.get(&email_key(c.email.as_str()))?, s))
            })
            .collect();
        // Nine bound values a row: 3,000 rows stay under SQLite's limit.
        for chunk in suppressed.chunks(3_000) {
            dispatch_tx!(tx, conn => {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO status_changes (contact_id, from_status, to_status, cause, rule, \
                     event_id, actor, reason, occurred_at) ",
                );
                qb.push_values(chunk.iter(), |mut b, (id, s)| {
                    b.push_bind(*id)
                        .push_bind(ContactStatus::Active.as_str())
                        .push_bind(s.status.as_str())
                        .push_bind("import")
                        .push_bind(s.rule.as_str())
                        .push_bind(None::<i64>)
                        .push_bind(consent.actor.as_str())
                        .push_bind(s.reason.as_str())
                        .push_bind(s.at.unwrap_or(now));
                });
                qb.build().execute(&mut *conn).await?;
            });
        }
    }
    for c in batch {
        match c.suppression.as_ref().map(|s| s.status) {
            Some(ContactStatus::Unsubscribed) => counts.suppressed_unsubscribed += 1,
            Some(ContactStatus::Bounced) => counts.suppressed_bounced += 1,
            Some(ContactStatus::Complained) => counts.suppressed_complained += 1,
            _ => {}
        }
    }

    // 3. Update the changed ones, many rows a statement.
    struct Change {
        id: i64,
        first_name: Option<String>,
        last_name: Option<String>,
        locale: Option<String>,
        timezone: Option<String>,
        attributes: String,
    }
    let mut changes: Vec<Change> = Vec::new();
    let mut unchanged: HashSet<i64> = HashSet::new();
    for (c, key) in batch.iter().zip(&keys) {
        let Some(old) = existing.get(key) else {
            continue;
        };
        let pick = |new: &Option<String>, old: &Option<String>| match new {
            Some(v) if !v.is_empty() => Some(v.clone()),
            _ => old.clone(),
        };
        let first_name = pick(&c.first_name, &old.first_name);
        let last_name = pick(&c.last_name, &old.last_name);
        let locale = pick(&c.locale, &old.locale);
        let timezone = pick(&c.timezone, &old.timezone);
        // Merging key by key changes nothing when every imported value is
        // already stored: checked before copying the stored map, which is
        // the common case of a re-import.
        let same_attributes = c
            .attributes
            .iter()
            .all(|(k, v)| old.attributes.get(k) == Some(v));
        if first_name == old.first_name
            && last_name == old.last_name
            && locale == old.locale
            && timezone == old.timezone
            && same_attributes
        {
            unchanged.insert(old.id);
            continue;
        }
        let mut attributes = old.attributes.clone();
        for (k, v) in &c.attributes {
            attributes.insert(k.clone(), v.clone());
        }
        changes.push(Change {
            id: old.id,
            first_name,
            last_name,
            locale,
            timezone,
            attributes: serde_json::Value::Object(attributes).to_string(),
        });
    }
    counts.updated += changes.len() as u64;
    // Six bound values a row: 4,000 rows stay under SQLite's 32,766 limit.
    for chunk in changes.chunks(4_000) {
        dispatch_tx!(tx, conn => {
            let mut qb = QueryBuilder::new(
                "WITH v (id, first_name, last_name, locale, timezone, attributes) AS (",
            );
            qb.push_values(chunk.iter(), |mut b, c| {
                b.push_bind(c.id)
                    .push_bind(c.first_name.as_deref())
                    .push_bind(c.last_name.as_deref())
                    .push_bind(c.locale.as_deref())
                    .push_bind(c.timezone.as_deref())
                    .push_bind(c.attributes.as_str())
                    .push_unseparated(json_cast);
            });
            qb.push(
                ") UPDATE contacts SET first_name = v.first_name, last_name = v.last_name, \
                 locale = v.locale, timezone = v.timezone, attributes = v.attributes, updated_at = ",
            );
            qb.push_bind(now);
            qb.push(" FROM v WHERE contacts.id = v.id");
            qb.build().execute(&mut *conn).await?;
        });
    }

    // 3b. Status of stored contacts. Suppressing is always allowed; making
    // a suppressed contact active again only with an explicit, logged reason.
    let mut status_now: HashMap<i64, ContactStatus> =
        existing.values().map(|e| (e.id, e.status)).collect();
    for (c, key) in batch.iter().zip(&keys) {
        let Some(old) = existing.get(key) else {
            continue;
        };
        let change = match (&c.suppression, old.status) {
            (Some(s), ContactStatus::Active) => Some(StatusChange {
                contact_id: old.id,
                from: ContactStatus::Active,
                to: s.status,
                cause: "import".into(),
                rule: Some(s.rule.clone()),
                event_id: None,
                actor: consent.actor.clone(),
                reason: Some(s.reason.clone()),
                occurred_at: s.at.unwrap_or(now),
            }),
            (None, ContactStatus::Active) | (Some(_), _) => None,
            (None, ContactStatus::Erased | ContactStatus::Merged) => {
                counts.kept_suppressed += 1;
                None
            }
            (None, from) => match &consent.override_reason {
                Some(reason) => Some(StatusChange {
                    contact_id: old.id,
                    from,
                    to: ContactStatus::Active,
                    cause: "operator".into(),
                    rule: Some("import-override".into()),
                    event_id: None,
                    actor: consent.actor.clone(),
                    reason: Some(reason.clone()),
                    occurred_at: now,
                }),
                None => {
                    counts.kept_suppressed += 1;
                    None
                }
            },
        };
        if let Some(change) = change
            && status::change(tx, &change).await?.is_some()
        {
            if change.to == ContactStatus::Active {
                counts.reinstated += 1;
            }
            status_now.insert(old.id, change.to);
            if unchanged.remove(&old.id) {
                counts.updated += 1;
            }
        }
    }

    // 4. Tags. New contacts' tags are simply inserted; for stored contacts
    // the insert reports which rows it added, since gaining a tag turns an
    // otherwise unchanged contact into an updated one.
    let mut fresh_tags: Vec<(i64, &str)> = Vec::new();
    let mut stored_tags: Vec<(i64, &str)> = Vec::new();
    for (c, key) in batch.iter().zip(&keys) {
        let Some(&id) = ids.get(key) else {
            continue;
        };
        let into = if existing.contains_key(key) {
            &mut stored_tags
        } else {
            &mut fresh_tags
        };
        into.extend(c.tags.iter().map(|t| (id, t.as_str())));
    }
    insert_tags(tx, &fresh_tags, false).await?;
    for id in insert_tags(tx, &stored_tags, true).await? {
        if unchanged.remove(&id) {
            counts.updated += 1;
        }
    }
    counts.unchanged = unchanged.len() as u64;

    // 5. The ledger: withdrawals the source records, then grants.
    let stored_ids: Vec<i64> = existing.values().map(|e| e.id).collect();
    // Current state of the import's list, and who ever withdrew from every
    // list, for the stored contacts (new ones have neither).
    let mut state: HashMap<i64, i64> = HashMap::new();
    let mut withdrew_all: HashSet<i64> = HashSet::new();
    if !stored_ids.is_empty() {
        if let Some(list_id) = consent.list_id {
            // `list_id + 0`: both planners otherwise take the (list_id,
            // subscribed) index and walk every member of the list for each
            // batch (quadratic; PostgreSQL's re-import of 1M rows took
            // 136 s); the primary key finds the batch.
            let state_cols = super::json_rows_sql(backend, "contact_id, subscribed");
            let rows: String = match tx {
                Tx::Sqlite(t) => {
                    let mut qb = QueryBuilder::new(format!(
                        "SELECT {state_cols} FROM contact_lists WHERE contact_id IN ("
                    ));
                    let mut sep = qb.separated(", ");
                    for id in &stored_ids {
                        sep.push_bind(*id);
                    }
                    qb.push(") AND list_id + 0 = ");
                    qb.push_bind(list_id);
                    qb.build_query_scalar().fetch_one(&mut **t).await?
                }
                Tx::Postgres(t) => {
                    sqlx::query_scalar(&format!(
                        "SELECT {state_cols} FROM contact_lists \
                         WHERE contact_id = ANY($1) AND list_id + 0 = $2"
                    ))
                    .bind(&stored_ids)
                    .bind(list_id)
                    .fetch_one(&mut **t)
                    .await?
                }
            };
            state.extend(super::parse_json_rows::<(i64, i64)>(&rows)?);
        }
        // A withdrawal from every list is never undone by an import to a
        // new list (the contact has no row for it to be "withdrawn" in).
        let rows: String = match tx {
            Tx::Sqlite(t) => {
                let mut qb = QueryBuilder::new(
                    "SELECT json_group_array(DISTINCT contact_id) FROM consent_events WHERE contact_id IN (",
                );
                let mut sep = qb.separated(", ");
                for id in &stored_ids {
                    sep.push_bind(*id);
                }
                qb.push(") AND list_id IS NULL AND action = 'withdraw'");
                qb.build_query_scalar().fetch_one(&mut **t).await?
            }
            Tx::Postgres(t) => sqlx::query_scalar(
                "SELECT COALESCE(json_agg(DISTINCT contact_id), '[]')::text FROM consent_events \
                     WHERE contact_id = ANY($1) AND list_id IS NULL AND action = 'withdraw'",
            )
            .bind(&stored_ids)
            .fetch_one(&mut **t)
            .await?,
        };
        withdrew_all.extend(super::parse_json_rows::<i64>(&rows)?);
    }

    let mut entries: Vec<ConsentEntry> = Vec::new();
    let mut asserted: Vec<i64> = Vec::new();
    for (c, key) in batch.iter().zip(&keys) {
        let Some(&id) = ids.get(key) else {
            continue;
        };
        if let Some(s) = &c.suppression {
            let list_id = match (s.withdraw, consent.list_id) {
                (None, _) => continue,
                (Some(WithdrawScope::List), Some(l)) => Some(l),
                _ => None,
            };
            // Once recorded, not again: a re-import writes nothing.
            let done = match list_id {
                Some(_) => state.get(&id) == Some(&0) || withdrew_all.contains(&id),
                None => withdrew_all.contains(&id),
            };
            if !done {
                let mut evidence = consent.withdrawal.clone();
                if let serde_json::Value::Object(d) = &mut evidence.details {
                    d.insert("reason".into(), s.reason.clone().into());
                    d.insert("rule".into(), s.rule.clone().into());
                }
                entries.push(ConsentEntry {
                    contact_id: id,
                    list_id,
                    action: ConsentAction::Withdraw,
                    occurred_at: s.at.unwrap_or(now),
                    evidence,
                });
                counts.withdrawals += 1;
            }
            continue;
        }
        let Some(list_id) = consent.list_id else {
            continue;
        };
        if status_now
            .get(&id)
            .is_some_and(|s| *s != ContactStatus::Active)
        {
            // Counted as kept suppressed above.
            continue;
        }
        if withdrew_all.contains(&id) {
            counts.kept_withdrawn += 1;
            continue;
        }
        match state.get(&id) {
            Some(1) => continue,
            Some(_) => {
                counts.kept_withdrawn += 1;
                continue;
            }
            None => {}
        }
        match &c.consent {
            RowConsent::Refused => counts.no_consent += 1,
            RowConsent::Asserted => asserted.push(id),
            RowConsent::Evidence { at, ip, details } => {
                let mut evidence = consent.sourced.clone();
                if let serde_json::Value::Object(d) = &mut evidence.details {
                    for (k, v) in details {
                        d.insert(k.clone(), v.clone());
                    }
                }
                if ip.is_some() {
                    evidence.ip = ip.clone();
                }
                entries.push(ConsentEntry {
                    contact_id: id,
                    list_id: Some(list_id),
                    action: ConsentAction::Grant,
                    occurred_at: at.unwrap_or(now),
                    evidence,
                });
                counts.granted_with_evidence += 1;
            }
        }
    }
    if entries.is_empty() && asserted.is_empty() {
        return Ok(counts);
    }
    if appender.is_none() {
        *appender = Some(Appender::start(tx).await?);
    }
    let appender = appender.as_mut().expect("set just above");
    appender.append_many(tx, &entries).await?;
    if let Some(list_id) = consent.list_id {
        // Only contacts inserted by this transaction are known to have no
        // row for the list: no other transaction can see them yet.
        let stored: HashSet<i64> = stored_ids.iter().copied().collect();
        appender
            .grant_many(tx, &asserted, list_id, now, &consent.asserted, |id| {
                stored.contains(&id)
            })
            .await?;
    }
    counts.granted_asserted = asserted.len() as u64;
    counts.consent_granted = counts.granted_asserted + counts.granted_with_evidence;
    Ok(counts)
}

/// Inserts (contact, tag) rows. With `stored`, the contacts were stored
/// before this transaction and the rows may exist already: those are skipped
/// and the contacts of the rows actually added are returned. Without, the
/// contacts were inserted by this transaction with distinct tags each, no row
/// can conflict, and a plain INSERT spares a probe of the primary key a row.
async fn insert_tags(tx: &mut Tx, rows: &[(i64, &str)], stored: bool) -> Result<Vec<i64>> {
    let mut added = Vec::new();
    if rows.is_empty() {
        return Ok(added);
    }
    let on_conflict = if stored {
        " ON CONFLICT DO NOTHING RETURNING contact_id"
    } else {
        ""
    };
    match tx {
        Tx::Sqlite(t) => {
            // OR FAIL where no row can conflict: no statement journal (see
            // the contacts insert above).
            let verb = if stored { "INSERT" } else { "INSERT OR FAIL" };
            // Two bound values a row: 10,000 rows stay under SQLite's 32,766 limit.
            for chunk in rows.chunks(10_000) {
                let mut qb =
                    QueryBuilder::new(format!("{verb} INTO contact_tags (contact_id, tag) "));
                qb.push_values(chunk.iter(), |mut b, (id, t)| {
                    b.push_bind(*id).push_bind(*t);
                });
                qb.push(on_conflict);
                added.extend(qb.build_query_scalar::<i64>().fetch_all(&mut **t).await?);
            }
        }
        // Arrays: one statement text for any number of rows.
        Tx::Postgres(t) => {
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            let tags: Vec<&str> = rows.iter().map(|(_, tag)| *tag).collect();
            added = sqlx::query_scalar(&format!(
                "INSERT INTO contact_tags (contact_id, tag) \
                 SELECT * FROM unnest($1::bigint[], $2::text[]){on_conflict}"
            ))
            .bind(ids)
            .bind(tags)
            .fetch_all(&mut **t)
            .await?;
        }
    }
    Ok(added)
}

/// A contact as the renderer and the segment sampler see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Contact {
    pub id: i64,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub attributes: serde_json::Value,
    pub status: String,
    pub tags: Vec<String>,
}

const CONTACT_COLUMNS_SQLITE: &str =
    "id, email, first_name, last_name, locale, timezone, attributes, status";
const CONTACT_COLUMNS_PG: &str =
    "id, email, first_name, last_name, locale, timezone, attributes::text AS attributes, status";

fn columns(store: &Store) -> &'static str {
    match store.backend() {
        super::Backend::Sqlite => CONTACT_COLUMNS_SQLITE,
        super::Backend::Postgres => CONTACT_COLUMNS_PG,
    }
}

fn contact_from_row<R: Row>(row: &R) -> std::result::Result<Contact, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
{
    let attrs: String = row.try_get("attributes")?;
    Ok(Contact {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        locale: row.try_get("locale")?,
        timezone: row.try_get("timezone")?,
        attributes: serde_json::from_str(&attrs).unwrap_or_else(|_| serde_json::json!({})),
        status: row.try_get("status")?,
        tags: Vec::new(),
    })
}

/// Looks a contact up by address, with its tags. Addresses match as an
/// import matches them (docs/ADDRESSES.md): case-insensitively in ASCII
/// letters, the exact form first, never a contact merged into another.
pub async fn find_by_email(store: &Store, email: &EmailAddress) -> Result<Option<Contact>> {
    let lower = match store.backend() {
        super::Backend::Sqlite => "lower(email)",
        super::Backend::Postgres => "lower(email COLLATE \"C\")",
    };
    let sql = format!(
        "SELECT {} FROM contacts WHERE {lower} = $1 ORDER BY id",
        columns(store)
    );
    let found: Vec<Contact> = dispatch!(store, pool => {
        let rows = sqlx::query(&sql)
            .bind(email_key(email.as_str()))
            .fetch_all(pool)
            .await?;
        rows.iter().map(contact_from_row).collect::<std::result::Result<_, _>>()?
    });
    let found = found
        .iter()
        .find(|c| c.email == email.as_str())
        .or_else(|| {
            found
                .iter()
                .find(|c| c.status != ContactStatus::Merged.as_str())
        })
        .or_else(|| found.first())
        .cloned();
    let Some(mut c) = found else { return Ok(None) };
    c.tags = tags_of(store, c.id).await?;
    Ok(Some(c))
}

pub async fn find_by_id(store: &Store, id: i64) -> Result<Option<Contact>> {
    let sql = format!("SELECT {} FROM contacts WHERE id = $1", columns(store));
    let found = dispatch!(store, pool => {
        match sqlx::query(&sql).bind(id).fetch_optional(pool).await? {
            Some(row) => Some(contact_from_row(&row)?),
            None => None,
        }
    });
    let Some(mut c) = found else { return Ok(None) };
    c.tags = tags_of(store, c.id).await?;
    Ok(Some(c))
}

/// Contacts by id, with tags, in one round trip each (for render batches).
pub async fn find_many(store: &Store, ids: &[i64]) -> Result<HashMap<i64, Contact>> {
    let mut out = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    let cols = columns(store);
    dispatch!(store, pool => {
        let mut qb = QueryBuilder::new(format!("SELECT {cols} FROM contacts WHERE id IN ("));
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(")");
        for row in qb.build().fetch_all(pool).await? {
            let c = contact_from_row(&row)?;
            out.insert(c.id, c);
        }
        let mut qb = QueryBuilder::new("SELECT contact_id, tag FROM contact_tags WHERE contact_id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        qb.push(") ORDER BY tag");
        for row in qb.build().fetch_all(pool).await? {
            let id: i64 = row.try_get("contact_id")?;
            if let Some(c) = out.get_mut(&id) {
                c.tags.push(row.try_get("tag")?);
            }
        }
    });
    Ok(out)
}

pub async fn tags_of(store: &Store, id: i64) -> Result<Vec<String>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar("SELECT tag FROM contact_tags WHERE contact_id = $1 ORDER BY tag")
            .bind(id)
            .fetch_all(pool)
            .await?)
    })
}

pub async fn count(store: &Store) -> Result<i64> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM contacts").fetch_one(pool).await?)
    })
}

/// The names of lists by id, in the order given (ids that name no list are
/// left out).
pub async fn list_names(store: &Store, ids: &[i64]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let name: Option<String> = dispatch!(store, pool => {
            sqlx::query_scalar("SELECT name FROM lists WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        out.extend(name);
    }
    Ok(out)
}

/// The attribute names any contact (not erased) has.
pub async fn attribute_keys(store: &Store) -> Result<std::collections::BTreeSet<String>> {
    let keys: Vec<String> = dispatch!(store, pool => {
        sqlx::query_scalar(match store.backend() {
            super::Backend::Sqlite => {
                "SELECT DISTINCT j.key FROM contacts c, json_each(c.attributes) j \
                 WHERE c.status <> 'erased' AND json_valid(c.attributes)"
            }
            super::Backend::Postgres => {
                "SELECT DISTINCT k FROM contacts c, jsonb_object_keys(c.attributes) k \
                 WHERE c.status <> 'erased' AND jsonb_typeof(c.attributes) = 'object'"
            }
        })
        .fetch_all(pool)
        .await?
    });
    Ok(keys.into_iter().collect())
}

/// Every list's name by id (lists are few: one per newsletter or purpose).
pub async fn list_names_by_id(store: &Store) -> Result<std::collections::HashMap<i64, String>> {
    let rows: Vec<(i64, String)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT id, name FROM lists")
            .fetch_all(pool)
            .await?
    });
    Ok(rows.into_iter().collect())
}

/// The lists a contact has been on, by name, and whether it is subscribed
/// to each now.
pub async fn lists_of(store: &Store, contact_id: i64) -> Result<Vec<(String, bool)>> {
    let rows: Vec<(String, i64)> = dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT l.name, cl.subscribed FROM contact_lists cl JOIN lists l ON l.id = cl.list_id \
             WHERE cl.contact_id = $1 ORDER BY l.name",
        )
        .bind(contact_id)
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(|(n, s)| (n, s == 1)).collect())
}

/// Contacts whose addresses differ only in the case of ASCII letters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DuplicateGroup {
    /// The shared key (the address lower-cased).
    pub key: String,
    /// Oldest first: the first is the one the others merge into.
    pub contacts: Vec<DuplicateMember>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DuplicateMember {
    pub id: i64,
    pub email: String,
    pub status: String,
}

/// Every group of case-variant contacts (not counting ones merged already).
pub async fn case_duplicates(store: &Store) -> Result<Vec<DuplicateGroup>> {
    let lower = match store.backend() {
        super::Backend::Sqlite => "lower(email)",
        super::Backend::Postgres => "lower(email COLLATE \"C\")",
    };
    let sql = format!(
        "SELECT id, email, status FROM contacts WHERE status <> 'merged' AND {lower} IN \
         (SELECT {lower} FROM contacts WHERE status <> 'merged' GROUP BY {lower} HAVING COUNT(*) > 1) \
         ORDER BY {lower}, id"
    );
    let rows: Vec<(i64, String, String)> = dispatch!(store, pool => {
        sqlx::query_as(&sql).fetch_all(pool).await?
    });
    let mut groups: Vec<DuplicateGroup> = Vec::new();
    for (id, email, status) in rows {
        let key = email_key(&email);
        let member = DuplicateMember { id, email, status };
        match groups.last_mut() {
            Some(g) if g.key == key => g.contacts.push(member),
            _ => groups.push(DuplicateGroup {
                key,
                contacts: vec![member],
            }),
        }
    }
    Ok(groups)
}

/// Merges every contact of `group` after the first into the first, in one
/// transaction, and returns how many were merged.
///
/// The ledger is append-only, so both histories stay as written: the merged
/// contact's entries keep its id, and the survivor gets new entries (method
/// `merge`, pointing at the entry they carry over) wherever the merged
/// contact's state of a list is newer than the survivor's, and a withdrawal
/// from every list if the merged contact ever withdrew from every list. A
/// suppression of either wins; tags, names and attributes the survivor
/// lacks are copied. The merged contact gets status `merged` and a
/// `contact_merges` row.
pub async fn merge_group(
    store: &Store,
    group: &DuplicateGroup,
    actor: &str,
    reason: &str,
    now: Millis,
) -> Result<u64> {
    let Some((keep, others)) = group.contacts.split_first() else {
        return Ok(0);
    };
    let mut tx = store.begin().await?;
    let mut appender = Appender::start(&mut tx).await?;
    let mut merged = 0;
    for dup in others {
        let (Some(dup_status), Some(keep_status)) = (
            status::current(&mut tx, dup.id).await?,
            status::current(&mut tx, keep.id).await?,
        ) else {
            continue;
        };
        if dup_status == ContactStatus::Merged {
            continue;
        }
        type ListRow = (i64, i64, i64);
        let lists_of =
            "SELECT list_id, subscribed, changed_at FROM contact_lists WHERE contact_id = $1";
        let last_entry = "SELECT id FROM consent_events WHERE contact_id = $1 AND list_id = $2 \
                          ORDER BY id DESC LIMIT 1";
        let withdrew_all = "SELECT id, occurred_at FROM consent_events WHERE contact_id = $1 \
                            AND list_id IS NULL AND action = 'withdraw' ORDER BY id DESC LIMIT 1";
        type Histories = (
            Vec<ListRow>,
            Vec<ListRow>,
            Option<(i64, i64)>,
            Option<(i64, i64)>,
        );
        let (dup_lists, keep_lists, dup_all, keep_all): Histories = dispatch_tx!(&mut tx, conn => {
            (
                sqlx::query_as(lists_of).bind(dup.id).fetch_all(&mut *conn).await?,
                sqlx::query_as(lists_of).bind(keep.id).fetch_all(&mut *conn).await?,
                sqlx::query_as(withdrew_all).bind(dup.id).fetch_optional(&mut *conn).await?,
                sqlx::query_as(withdrew_all).bind(keep.id).fetch_optional(&mut *conn).await?,
            )
        });
        let keep_state: HashMap<i64, (i64, i64)> = keep_lists
            .into_iter()
            .map(|(l, s, t)| (l, (s, t)))
            .collect();
        let mut entries = Vec::new();
        let evidence = |entry: Option<i64>| Evidence {
            source: format!("merge of contact {} ({})", dup.id, dup.email),
            method: "merge".into(),
            ip: None,
            text_version: None,
            details: serde_json::json!({
                "merged_from": dup.id,
                "carried_entry": entry,
                "reason": reason,
            }),
        };
        for (list_id, subscribed, changed_at) in dup_lists {
            let newer = match keep_state.get(&list_id) {
                None => true,
                Some(&(s, t)) => s != subscribed && t < changed_at,
            };
            if !newer {
                continue;
            }
            let entry: Option<i64> = dispatch_tx!(&mut tx, conn => {
                sqlx::query_scalar(last_entry)
                    .bind(dup.id)
                    .bind(list_id)
                    .fetch_optional(&mut *conn)
                    .await?
            });
            entries.push(ConsentEntry {
                contact_id: keep.id,
                list_id: Some(list_id),
                action: if subscribed == 1 {
                    ConsentAction::Grant
                } else {
                    ConsentAction::Withdraw
                },
                occurred_at: changed_at,
                evidence: evidence(entry),
            });
        }
        if let Some((entry, at)) = dup_all
            && keep_all.is_none()
        {
            // Last: a withdrawal from every list covers what was carried over.
            entries.push(ConsentEntry {
                contact_id: keep.id,
                list_id: None,
                action: ConsentAction::Withdraw,
                occurred_at: at,
                evidence: evidence(Some(entry)),
            });
        }
        appender.append_many(&mut tx, &entries).await?;

        if keep_status == ContactStatus::Active
            && !matches!(dup_status, ContactStatus::Active | ContactStatus::Merged)
        {
            status::change(
                &mut tx,
                &StatusChange {
                    contact_id: keep.id,
                    from: ContactStatus::Active,
                    to: dup_status,
                    cause: "operator".into(),
                    rule: Some("merge".into()),
                    event_id: None,
                    actor: actor.to_string(),
                    reason: Some(format!(
                        "merged contact {} ({}) was {dup_status}: {reason}",
                        dup.id, dup.email
                    )),
                    occurred_at: now,
                },
            )
            .await?;
        }
        // Tags, and fields the survivor lacks.
        type Fields = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        let attrs = if tx.backend() == super::Backend::Postgres {
            "attributes::text"
        } else {
            "attributes"
        };
        let fields_sql = format!(
            "SELECT first_name, last_name, locale, timezone, {attrs} FROM contacts WHERE id = $1"
        );
        let cast = if tx.backend() == super::Backend::Postgres {
            "::jsonb"
        } else {
            ""
        };
        let update_sql = format!(
            "UPDATE contacts SET first_name = $1, last_name = $2, locale = $3, timezone = $4, \
             attributes = $5{cast}, updated_at = $6 WHERE id = $7"
        );
        dispatch_tx!(&mut tx, conn => {
            sqlx::query(
                "INSERT INTO contact_tags (contact_id, tag) SELECT $1, tag FROM contact_tags \
                 WHERE contact_id = $2 ON CONFLICT DO NOTHING",
            )
            .bind(keep.id)
            .bind(dup.id)
            .execute(&mut *conn)
            .await?;
            let k: Fields = sqlx::query_as(&fields_sql).bind(keep.id).fetch_one(&mut *conn).await?;
            let d: Fields = sqlx::query_as(&fields_sql).bind(dup.id).fetch_one(&mut *conn).await?;
            let mut attributes: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&k.4).unwrap_or_default();
            let theirs: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&d.4).unwrap_or_default();
            for (key, v) in theirs {
                attributes.entry(key).or_insert(v);
            }
            sqlx::query(&update_sql)
                .bind(k.0.or(d.0))
                .bind(k.1.or(d.1))
                .bind(k.2.or(d.2))
                .bind(k.3.or(d.3))
                .bind(serde_json::Value::Object(attributes).to_string())
                .bind(now)
                .bind(keep.id)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO contact_merges (merged_id, into_id, merged_at, actor, reason) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(dup.id)
            .bind(keep.id)
            .bind(now)
            .bind(actor)
            .bind(reason)
            .execute(&mut *conn)
            .await?;
        });
        status::change(
            &mut tx,
            &StatusChange {
                contact_id: dup.id,
                from: dup_status,
                to: ContactStatus::Merged,
                cause: "operator".into(),
                rule: Some("merge".into()),
                event_id: None,
                actor: actor.to_string(),
                reason: Some(format!(
                    "merged into contact {} ({}): {reason}",
                    keep.id, keep.email
                )),
                occurred_at: now,
            },
        )
        .await?;
        merged += 1;
    }
    tx.commit().await?;
    Ok(merged)
}
