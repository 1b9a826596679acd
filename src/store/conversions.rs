//! The events API's keys and the conversions it records, with the click
//! each conversion is credited to.

use super::{Result, Store, StoreError};
use crate::dispatch;
use crate::domain::time::Millis;

/// What an API key opens (migration 0018): one role per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyRole {
    /// `POST /api/events` and the postback URL (a shop's server).
    Conversions,
    /// The read-only admin pages under `/admin` (a compliance officer, an
    /// analyst); never anything that writes.
    AdminRead,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Conversions => "conversions",
            KeyRole::AdminRead => "admin-read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "conversions" => Some(KeyRole::Conversions),
            "admin-read" => Some(KeyRole::AdminRead),
            _ => None,
        }
    }
}

/// A stored API key (never its secret).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    /// `conversions` or `admin-read` (a CHECK constraint keeps it one of
    /// them; [`ApiKey::role`] types it).
    pub role: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
}

impl ApiKey {
    /// The key's role; a value the CHECK constraint would refuse is corrupt.
    pub fn role(&self) -> Result<KeyRole> {
        KeyRole::parse(&self.role).ok_or_else(|| {
            StoreError::Corrupt(format!("API key {} has role {:?}", self.id, self.role))
        })
    }
}

const KEY_COLUMNS: &str =
    "id, name, prefix, role, secret_hash, created_at, revoked_at, last_used_at";

pub async fn create_key(
    store: &Store,
    name: &str,
    prefix: &str,
    secret_hash: &str,
    role: KeyRole,
    now: Millis,
) -> Result<i64> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO api_keys (name, prefix, secret_hash, role, created_at) VALUES ($1,$2,$3,$4,$5) RETURNING id",
        )
        .bind(name)
        .bind(prefix)
        .bind(secret_hash)
        .bind(role.as_str())
        .bind(now)
        .fetch_one(pool)
        .await?)
    })
}

pub async fn keys(store: &Store) -> Result<Vec<ApiKey>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id");
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, ApiKey>(&sql).fetch_all(pool).await?)
    })
}

pub async fn key_by_prefix(store: &Store, prefix: &str) -> Result<Option<ApiKey>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1");
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, ApiKey>(&sql).bind(prefix).fetch_optional(pool).await?)
    })
}

pub async fn key_by_id(store: &Store, id: i64) -> Result<Option<ApiKey>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, ApiKey>(&sql).bind(id).fetch_optional(pool).await?)
    })
}

/// Revokes the key with this id or name; `None` when there is none, the
/// key as it was otherwise (revoking twice keeps the first time).
pub async fn revoke_key(store: &Store, id_or_name: &str, now: Millis) -> Result<Option<ApiKey>> {
    let found = match id_or_name.parse::<i64>() {
        Ok(id) => key_by_id(store, id).await?,
        Err(_) => None,
    };
    let found = match found {
        Some(k) => Some(k),
        None => {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE name = $1");
            dispatch!(store, pool => {
                sqlx::query_as::<_, ApiKey>(&sql).bind(id_or_name).fetch_optional(pool).await?
            })
        }
    };
    let Some(k) = found else { return Ok(None) };
    dispatch!(store, pool => {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(k.id)
            .execute(pool)
            .await?;
    });
    Ok(Some(k))
}

pub async fn touch_key(store: &Store, id: i64, now: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The contact named by id or address (`contacts::find_by_email`'s match).
pub async fn contact_id(
    store: &Store,
    id: Option<i64>,
    email: Option<&crate::domain::EmailAddress>,
) -> Result<Option<i64>> {
    if let Some(id) = id {
        let n: i64 = dispatch!(store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM contacts WHERE id = $1").bind(id).fetch_one(pool).await?
        });
        return Ok((n > 0).then_some(id));
    }
    match email {
        Some(e) => Ok(super::contacts::find_by_email(store, e)
            .await?
            .map(|c| c.id)),
        None => Ok(None),
    }
}

/// The click a conversion is credited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub campaign_id: i64,
    pub click_event_id: i64,
    pub link: Option<String>,
}

/// The contact's last click before `at` that falls inside its campaign's
/// attribution window (`campaigns.attribution_days`, default
/// `default_days`). Clicks a scanner made are not credited.
pub async fn last_click(
    store: &Store,
    contact_id: i64,
    at: Millis,
    default_days: u32,
) -> Result<Option<Attribution>> {
    const DAY: i64 = 86_400_000;
    let rows: Vec<(i64, i64, String)> = dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT e.id, e.campaign_id, e.data FROM events e JOIN campaigns c ON c.id = e.campaign_id \
             WHERE e.contact_id = $1 AND e.kind = 'click' AND e.occurred_at <= $2 \
               AND e.occurred_at >= $2 - COALESCE(c.attribution_days, $3) * $4 \
             ORDER BY e.occurred_at DESC, e.id DESC LIMIT 50",
        )
        .bind(contact_id)
        .bind(at)
        .bind(i64::from(default_days))
        .bind(DAY)
        .fetch_all(pool)
        .await?
    });
    for (id, campaign_id, data) in rows {
        let data: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
        if data.get("class").and_then(|c| c.as_str()) == Some("scanner") {
            continue;
        }
        return Ok(Some(Attribution {
            campaign_id,
            click_event_id: id,
            link: data.get("url").and_then(|u| u.as_str()).map(str::to_string),
        }));
    }
    Ok(None)
}

/// A conversion to record.
#[derive(Debug, Clone)]
pub struct NewConversion<'a> {
    pub order_id: &'a str,
    pub kind: &'a str,
    pub contact_id: Option<i64>,
    pub value_minor: i64,
    pub currency: &'a str,
    pub occurred_at: Millis,
    pub received_at: Millis,
    pub api_key_id: i64,
    pub via: &'a str,
    pub attribution: Option<Attribution>,
}

/// Records a conversion; `None` when its order id was recorded before (the
/// unique constraint decides, so two nodes racing agree).
pub async fn insert(store: &Store, c: &NewConversion<'_>) -> Result<Option<i64>> {
    let a = c.attribution.as_ref();
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO conversions (order_id, kind, contact_id, value_minor, currency, occurred_at, received_at, \
             api_key_id, via, campaign_id, click_event_id, link) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) \
             ON CONFLICT (order_id) DO NOTHING RETURNING id",
        )
        .bind(c.order_id)
        .bind(c.kind)
        .bind(c.contact_id)
        .bind(c.value_minor)
        .bind(c.currency)
        .bind(c.occurred_at)
        .bind(c.received_at)
        .bind(c.api_key_id)
        .bind(c.via)
        .bind(a.map(|a| a.campaign_id))
        .bind(a.map(|a| a.click_event_id))
        .bind(a.and_then(|a| a.link.as_deref()))
        .fetch_optional(pool)
        .await
        .map_err(StoreError::from)?)
    })
}
