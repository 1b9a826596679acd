//! Contacts repository: batched upserts for import, lookups, lists and tags.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row};

use super::consent::{Appender, Evidence};
use super::{Result, Store, Tx};
use crate::domain::EmailAddress;
use crate::domain::time::Millis;
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
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Contacts newly subscribed to the import's list (a ledger grant each).
    pub consent_granted: u64,
    /// Contacts who had withdrawn from the list: an import never re-subscribes them.
    pub kept_withdrawn: u64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, o: Self) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.consent_granted += o.consent_granted;
        self.kept_withdrawn += o.kept_withdrawn;
    }
}

/// The consent an import records for its list.
#[derive(Debug, Clone)]
pub struct ImportConsent {
    pub list_id: i64,
    pub evidence: Evidence,
}

struct Existing {
    id: i64,
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

/// Upserts a batch of contacts (distinct addresses) inside `tx`.
///
/// Known fields are overwritten only by non-empty values and attributes are
/// merged key by key, so re-importing the same file changes nothing and a
/// partial file never blanks data it does not carry.
pub async fn upsert_batch(
    tx: &mut Tx,
    batch: &[NewContact],
    consent: Option<&ImportConsent>,
    appender: &mut Option<Appender>,
    now: Millis,
) -> Result<UpsertCounts> {
    let mut counts = UpsertCounts::default();
    if batch.is_empty() {
        return Ok(counts);
    }
    let backend = tx.backend();
    let pg = backend == super::Backend::Postgres;
    let json_cast = if pg { "::jsonb" } else { "" };

    // 1. What is stored already: one JSON value for the whole batch.
    let mut existing: HashMap<String, Existing> = HashMap::with_capacity(batch.len());
    let attrs_json = if pg { "attributes" } else { "json(attributes)" };
    let stored_cols = super::json_rows_sql(
        backend,
        &format!("id, email, first_name, last_name, locale, timezone, {attrs_json}"),
    );
    let rows: String = match tx {
        Tx::Sqlite(t) => {
            let mut qb = QueryBuilder::new(format!(
                "SELECT {stored_cols} FROM contacts WHERE email IN ("
            ));
            let mut sep = qb.separated(", ");
            for c in batch {
                sep.push_bind(c.email.as_str());
            }
            qb.push(")");
            qb.build_query_scalar().fetch_one(&mut **t).await?
        }
        // One array instead of a parameter per address: one statement text,
        // planned once, not a thousand-parameter IN list per batch.
        Tx::Postgres(t) => {
            let emails: Vec<&str> = batch.iter().map(|c| c.email.as_str()).collect();
            sqlx::query_scalar(&format!(
                "SELECT {stored_cols} FROM contacts WHERE email = ANY($1)"
            ))
            .bind(emails)
            .fetch_one(&mut **t)
            .await?
        }
    };
    type StoredRow = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        serde_json::Value,
    );
    for (id, email, first_name, last_name, locale, timezone, attrs) in
        super::parse_json_rows::<StoredRow>(&rows)?
    {
        let attributes = match attrs {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        existing.insert(
            email,
            Existing {
                id,
                first_name,
                last_name,
                locale,
                timezone,
                attributes,
            },
        );
    }

    // 2. Insert the new ones.
    let new: Vec<&NewContact> = batch
        .iter()
        .filter(|c| !existing.contains_key(c.email.as_str()))
        .collect();
    let mut ids: HashMap<String, i64> = existing.iter().map(|(e, x)| (e.clone(), x.id)).collect();
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
                        .push_bind("active")
                        .push_bind(now)
                        .push_bind(now);
                });
                qb.push(" RETURNING id, email");
                for row in qb.build().fetch_all(&mut **t).await? {
                    ids.insert(row.try_get("email")?, row.try_get("id")?);
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
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "INSERT INTO contacts (email, email_ascii, domain, first_name, last_name, locale, timezone, \
                     attributes, status, created_at, updated_at) \
                     SELECT u.email, u.email_ascii, u.domain, u.first_name, u.last_name, u.locale, u.timezone, \
                            u.attributes::jsonb, 'active', $9, $9 \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                                 $7::text[], $8::text[]) \
                          AS u (email, email_ascii, domain, first_name, last_name, locale, timezone, attributes) \
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
                .fetch_all(&mut **t)
                .await?;
                for (id, email) in rows {
                    ids.insert(email, id);
                }
            }
        }
        counts.inserted = new.len() as u64;
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
    for c in batch {
        let Some(old) = existing.get(c.email.as_str()) else {
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
            counts.unchanged += 1;
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
    let changed: Vec<i64> = changes.iter().map(|c| c.id).collect();

    // 4. Tags. New contacts' tags are simply inserted; for stored contacts
    // the insert reports which rows it added, since gaining a tag turns an
    // otherwise unchanged contact into an updated one.
    let mut fresh_tags: Vec<(i64, &str)> = Vec::new();
    let mut stored_tags: Vec<(i64, &str)> = Vec::new();
    for c in batch {
        let Some(&id) = ids.get(c.email.as_str()) else {
            continue;
        };
        let into = if existing.contains_key(c.email.as_str()) {
            &mut stored_tags
        } else {
            &mut fresh_tags
        };
        into.extend(c.tags.iter().map(|t| (id, t.as_str())));
    }
    insert_tags(tx, &fresh_tags, false).await?;
    let gained: HashSet<i64> = insert_tags(tx, &stored_tags, true)
        .await?
        .into_iter()
        .collect();
    if !gained.is_empty() {
        // Contacts counted unchanged above whose only change is a new tag.
        let changed_fields: HashSet<i64> = changed.iter().copied().collect();
        let moved = gained
            .iter()
            .filter(|id| !changed_fields.contains(id))
            .count() as u64;
        counts.unchanged -= moved;
        counts.updated += moved;
    }

    // 5. Consent for the import's list, for contacts with no entry for it yet.
    if let Some(consent) = consent {
        // Contacts inserted by this batch have no list rows yet.
        let mut state: HashMap<i64, i64> = HashMap::new();
        if !existing.is_empty() {
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
                    for e in existing.values() {
                        sep.push_bind(e.id);
                    }
                    qb.push(") AND list_id + 0 = ");
                    qb.push_bind(consent.list_id);
                    qb.build_query_scalar().fetch_one(&mut **t).await?
                }
                Tx::Postgres(t) => {
                    let ids: Vec<i64> = existing.values().map(|e| e.id).collect();
                    sqlx::query_scalar(&format!(
                        "SELECT {state_cols} FROM contact_lists \
                         WHERE contact_id = ANY($1) AND list_id + 0 = $2"
                    ))
                    .bind(ids)
                    .bind(consent.list_id)
                    .fetch_one(&mut **t)
                    .await?
                }
            };
            state.extend(super::parse_json_rows::<(i64, i64)>(&rows)?);
        }
        // Only contacts inserted by this transaction are known to have no
        // row for the list: no other transaction can see them yet.
        let stored_ids: HashSet<i64> = existing.values().map(|e| e.id).collect();
        if appender.is_none() {
            *appender = Some(Appender::start(tx).await?);
        }
        let appender = appender.as_mut().expect("set just above");
        let mut grants = Vec::new();
        for c in batch {
            let Some(&id) = ids.get(c.email.as_str()) else {
                continue;
            };
            match state.get(&id) {
                Some(1) => {}
                Some(_) => counts.kept_withdrawn += 1,
                None => grants.push(id),
            }
        }
        // In batch order, as one-by-one appends would chain them.
        appender
            .grant_many(tx, &grants, consent.list_id, now, &consent.evidence, |id| {
                stored_ids.contains(&id)
            })
            .await?;
        counts.consent_granted += grants.len() as u64;
    }
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

/// Looks a contact up by normalised address, with its tags.
pub async fn find_by_email(store: &Store, email: &EmailAddress) -> Result<Option<Contact>> {
    let sql = format!("SELECT {} FROM contacts WHERE email = $1", columns(store));
    let found = dispatch!(store, pool => {
        match sqlx::query(&sql).bind(email.as_str()).fetch_optional(pool).await? {
            Some(row) => Some(contact_from_row(&row)?),
            None => None,
        }
    });
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
