//! What view in browser and the public archive read: a send's campaign
//! file and contact, and the campaigns that have been sent. SQL only.

use crate::dispatch;
use crate::domain::time::Millis;

use super::Result;
use super::Store;

/// The campaign file and contact behind one send.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SendView {
    pub contact_id: i64,
    pub slug: String,
    pub file_path: String,
    pub file_hash: String,
}

pub async fn send_view(store: &Store, send_id: i64) -> Result<Option<SendView>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, SendView>(
            "SELECT s.contact_id, c.slug, c.file_path, c.file_hash FROM sends s \
             JOIN campaigns c ON c.id = s.campaign_id WHERE s.id = $1",
        )
        .bind(send_id)
        .fetch_optional(pool)
        .await?)
    })
}

/// A campaign that has been sent (or started), newest first.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SentCampaign {
    pub slug: String,
    pub file_path: String,
    pub sent_at: Millis,
}

/// At most `limit` campaigns that have sends, newest first.
pub async fn sent_campaigns(store: &Store, limit: i64) -> Result<Vec<SentCampaign>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, SentCampaign>(
            "SELECT c.slug, c.file_path, COALESCE(c.started_at, c.created_at) AS sent_at FROM campaigns c \
             WHERE EXISTS (SELECT 1 FROM sends s WHERE s.campaign_id = c.id) \
             ORDER BY sent_at DESC, c.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await?)
    })
}

pub async fn sent_campaign(store: &Store, slug: &str) -> Result<Option<SentCampaign>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, SentCampaign>(
            "SELECT c.slug, c.file_path, COALESCE(c.started_at, c.created_at) AS sent_at FROM campaigns c \
             WHERE c.slug = $1 AND EXISTS (SELECT 1 FROM sends s WHERE s.campaign_id = c.id)",
        )
        .bind(slug)
        .fetch_optional(pool)
        .await?)
    })
}

/// The attributes of one recipient of campaign `slug` (any one), for the
/// archive's stand-in: the caller keeps the keys and blanks the values.
pub async fn recipient_attributes(store: &Store, slug: &str) -> Result<Option<String>> {
    let sql = match store.backend() {
        super::Backend::Sqlite => {
            "SELECT ct.attributes FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
             JOIN contacts ct ON ct.id = s.contact_id WHERE c.slug = $1 ORDER BY s.id LIMIT 1"
        }
        super::Backend::Postgres => {
            "SELECT ct.attributes::text FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
             JOIN contacts ct ON ct.id = s.contact_id WHERE c.slug = $1 ORDER BY s.id LIMIT 1"
        }
    };
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar(sql).bind(slug).fetch_optional(pool).await?)
    })
}
