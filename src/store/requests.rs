//! `contact_requests`: what a contact changed or asked for in the
//! preference centre beyond consent (frequency, corrections of their own
//! data, requests to be forgotten), and the contact fields those change.
//! SQL only; the consent stage (`consent::requests`) decides what to write.

use crate::dispatch;
use crate::dispatch_tx;
use crate::domain::time::Millis;

use super::{Backend, Result, Store, StoreError, Tx};

/// `contact_requests.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Frequency,
    Correction,
    Erasure,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Frequency => "frequency",
            Self::Correction => "correction",
            Self::Erasure => "erasure",
        }
    }
}

/// One row to write.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub contact_id: i64,
    pub kind: RequestKind,
    /// `open` for an erasure request (an officer acts on it), else `done`.
    pub open: bool,
    pub old_value: Option<serde_json::Value>,
    pub new_value: Option<serde_json::Value>,
    pub evidence: serde_json::Value,
    pub at: Millis,
}

pub async fn insert(tx: &mut Tx, r: &NewRequest) -> Result<i64> {
    let old = r.old_value.as_ref().map(|v| v.to_string());
    let new = r.new_value.as_ref().map(|v| v.to_string());
    let status = if r.open { "open" } else { "done" };
    dispatch_tx!(tx, conn => {
        Ok(sqlx::query_scalar(
            "INSERT INTO contact_requests (contact_id, kind, status, old_value, new_value, evidence, occurred_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING id",
        )
        .bind(r.contact_id)
        .bind(r.kind.as_str())
        .bind(status)
        .bind(old)
        .bind(new)
        .bind(r.evidence.to_string())
        .bind(r.at)
        .fetch_one(&mut *conn)
        .await?)
    })
}

/// The contact's editable fields, read inside the transaction that changes
/// them: (first_name, last_name, attributes).
pub async fn contact_fields(
    tx: &mut Tx,
    contact_id: i64,
) -> Result<Option<(Option<String>, Option<String>, serde_json::Value)>> {
    let row: Option<(Option<String>, Option<String>, String)> = match tx {
        Tx::Sqlite(t) => {
            sqlx::query_as("SELECT first_name, last_name, attributes FROM contacts WHERE id = $1")
                .bind(contact_id)
                .fetch_optional(&mut **t)
                .await?
        }
        Tx::Postgres(t) => sqlx::query_as(
            "SELECT first_name, last_name, attributes::text FROM contacts WHERE id = $1 FOR UPDATE",
        )
        .bind(contact_id)
        .fetch_optional(&mut **t)
        .await?,
    };
    row.map(|(f, l, a)| {
        let attrs = serde_json::from_str(&a).map_err(|e| {
            StoreError::Corrupt(format!("contacts.attributes of {contact_id}: {e}"))
        })?;
        Ok((f, l, attrs))
    })
    .transpose()
}

pub async fn set_contact_fields(
    tx: &mut Tx,
    contact_id: i64,
    first_name: Option<&str>,
    last_name: Option<&str>,
    attributes: &serde_json::Value,
    at: Millis,
) -> Result<()> {
    let attrs = attributes.to_string();
    let backend = match tx {
        Tx::Sqlite(_) => Backend::Sqlite,
        Tx::Postgres(_) => Backend::Postgres,
    };
    let sql = match backend {
        Backend::Sqlite => {
            "UPDATE contacts SET first_name = $1, last_name = $2, attributes = $3, updated_at = $4 WHERE id = $5"
        }
        Backend::Postgres => {
            "UPDATE contacts SET first_name = $1, last_name = $2, attributes = $3::jsonb, updated_at = $4 WHERE id = $5"
        }
    };
    dispatch_tx!(tx, conn => {
        sqlx::query(sql)
            .bind(first_name)
            .bind(last_name)
            .bind(&attrs)
            .bind(at)
            .bind(contact_id)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Open requests of `kind` for `contact_id` (an erasure asked twice is one).
pub async fn open_count(store: &Store, contact_id: i64, kind: RequestKind) -> Result<i64> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM contact_requests WHERE contact_id = $1 AND kind = $2 AND status = 'open'",
        )
        .bind(contact_id)
        .bind(kind.as_str())
        .fetch_one(pool)
        .await?)
    })
}
