//! Sign-ups waiting for their double opt-in confirmation, the shared rate
//! counters of the public forms, and the contact a confirmation creates.
//! The consent itself is written by the consent stage (`consent::Stage`),
//! never here.

use super::{Backend, Result, Store, Tx};
use crate::domain::time::Millis;
use crate::domain::{ContactStatus, EmailAddress};
use crate::{dispatch, dispatch_tx};

/// Counts one request in `bucket`'s fixed window starting at `window_start`
/// and returns the window's count so far (this one included). Shared by
/// every node through the database; windows older than `forget_before` are
/// deleted on the way.
pub async fn hit(
    store: &Store,
    bucket: &str,
    window_start: Millis,
    forget_before: Millis,
) -> Result<i64> {
    dispatch!(store, pool => {
        sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
            .bind(forget_before)
            .execute(pool)
            .await?;
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
             RETURNING hits",
        )
        .bind(bucket)
        .bind(window_start)
        .fetch_one(pool)
        .await?)
    })
}

/// The count of `bucket`'s window starting at `window_start`, without
/// counting anything (0 when the window has no row).
pub async fn hits(store: &Store, bucket: &str, window_start: Millis) -> Result<i64> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(MAX(hits), 0) FROM rate_limits WHERE bucket = $1 AND window_start = $2",
        )
        .bind(bucket)
        .bind(window_start)
        .fetch_one(pool)
        .await?)
    })
}

/// [`hit`] for the buckets whose names start with `scope`: only that
/// scope's windows older than `forget_before` are deleted on the way, so a
/// limit with shorter windows never resets another's counts.
pub async fn hit_scoped(
    store: &Store,
    scope: &str,
    bucket: &str,
    window_start: Millis,
    forget_before: Millis,
) -> Result<i64> {
    // A scope is a fixed name of ours, without LIKE's wildcards.
    debug_assert!(bucket.starts_with(scope) && !scope.contains(['%', '_']));
    let pattern = format!("{scope}%");
    dispatch!(store, pool => {
        sqlx::query("DELETE FROM rate_limits WHERE bucket LIKE $1 AND window_start < $2")
            .bind(&pattern)
            .bind(forget_before)
            .execute(pool)
            .await?;
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
             RETURNING hits",
        )
        .bind(bucket)
        .bind(window_start)
        .fetch_one(pool)
        .await?)
    })
}

/// A new pending sign-up.
#[derive(Debug, Clone)]
pub struct NewSignup<'a> {
    pub token_hash: &'a str,
    pub list_id: i64,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub text_version: Option<&'a str>,
    pub tracking: bool,
    pub at: Millis,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

pub async fn insert(store: &Store, s: &NewSignup<'_>) -> Result<i64> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO signups (token_hash, list_id, email, name, text_version, tracking, state, \
             signed_up_at, signup_ip, signup_ua) VALUES ($1,$2,$3,$4,$5,$6,'pending',$7,$8,$9) RETURNING id",
        )
        .bind(s.token_hash)
        .bind(s.list_id)
        .bind(s.email)
        .bind(s.name)
        .bind(s.text_version)
        .bind(i64::from(s.tracking))
        .bind(s.at)
        .bind(s.ip)
        .bind(s.user_agent)
        .fetch_one(pool)
        .await?)
    })
}

pub async fn mark_mailed(store: &Store, id: i64, at: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE signups SET mailed_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A pending sign-up whose confirmation mail is not sent yet, claimed for
/// one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Unmailed {
    pub id: i64,
    pub list_name: String,
    pub email: String,
    pub name: Option<String>,
    pub mail_attempts: i64,
}

/// Pending sign-ups whose mail is due at `now`: not sent, fewer than
/// `max_attempts` tries, signed up (or re-queued by `signup retry`) at or
/// after `oldest`. Oldest first.
pub async fn due_unmailed(
    store: &Store,
    now: Millis,
    oldest: Millis,
    max_attempts: i64,
    limit: i64,
) -> Result<Vec<i64>> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT id FROM signups WHERE state = 'pending' AND mailed_at IS NULL \
             AND (mail_due_at IS NULL OR mail_due_at <= $1) AND mail_attempts < $2 \
             AND COALESCE(mail_requeued_at, signed_up_at) >= $3 ORDER BY id LIMIT $4",
        )
        .bind(now)
        .bind(max_attempts)
        .bind(oldest)
        .bind(limit)
        .fetch_all(pool)
        .await?)
    })
}

/// Claims sign-up `id` for one attempt if it is still due at `now`: counts
/// the attempt, moves `mail_due_at` to `retry_at` (the lease: no other node
/// takes it before then) and replaces the token's hash with `token_hash`,
/// the token of the link this attempt mails. `None`: another node has it.
pub async fn claim_unmailed(
    store: &Store,
    id: i64,
    now: Millis,
    retry_at: Millis,
    token_hash: &str,
) -> Result<Option<Unmailed>> {
    let claimed = dispatch!(store, pool => {
        sqlx::query(
            "UPDATE signups SET mail_attempts = mail_attempts + 1, mail_due_at = $1, token_hash = $2 \
             WHERE id = $3 AND state = 'pending' AND mailed_at IS NULL \
             AND (mail_due_at IS NULL OR mail_due_at <= $4)",
        )
        .bind(retry_at)
        .bind(token_hash)
        .bind(id)
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected()
    });
    if claimed != 1 {
        return Ok(None);
    }
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, Unmailed>(
            "SELECT s.id, l.name AS list_name, s.email, s.name, s.mail_attempts \
             FROM signups s JOIN lists l ON l.id = s.list_id WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?)
    })
}

/// The next attempt for sign-up `id` not before `at` (after a failure).
pub async fn retry_mail_at(store: &Store, id: i64, at: Millis) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE signups SET mail_due_at = $1 WHERE id = $2 AND mailed_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// No more attempts for sign-up `id` (the server refused the address for good).
pub async fn give_up_mail(store: &Store, id: i64, max_attempts: i64) -> Result<()> {
    dispatch!(store, pool => {
        sqlx::query("UPDATE signups SET mail_attempts = $1 WHERE id = $2")
            .bind(max_attempts)
            .bind(id)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A stored sign-up.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Signup {
    pub id: i64,
    pub list_id: i64,
    pub list_name: String,
    pub email: String,
    pub name: Option<String>,
    pub text_version: Option<String>,
    pub tracking: i64,
    pub state: String,
    pub signed_up_at: Millis,
    pub signup_ip: Option<String>,
    pub signup_ua: Option<String>,
    pub confirmed_at: Option<Millis>,
}

const SIGNUP_COLUMNS: &str = "s.id, s.list_id, l.name AS list_name, s.email, s.name, s.text_version, \
     s.tracking, s.state, s.signed_up_at, s.signup_ip, s.signup_ua, s.confirmed_at";

pub async fn by_token(store: &Store, token_hash: &str) -> Result<Option<Signup>> {
    let sql = format!(
        "SELECT {SIGNUP_COLUMNS} FROM signups s JOIN lists l ON l.id = s.list_id WHERE s.token_hash = $1"
    );
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, Signup>(&sql).bind(token_hash).fetch_optional(pool).await?)
    })
}

/// [`by_token`] inside the confirming transaction.
pub async fn by_token_tx(tx: &mut Tx, token_hash: &str) -> Result<Option<Signup>> {
    let lock = match tx.backend() {
        Backend::Postgres => " FOR UPDATE OF s",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "SELECT {SIGNUP_COLUMNS} FROM signups s JOIN lists l ON l.id = s.list_id WHERE s.token_hash = $1{lock}"
    );
    dispatch_tx!(tx, conn => {
        Ok(sqlx::query_as::<_, Signup>(&sql).bind(token_hash).fetch_optional(&mut *conn).await?)
    })
}

/// Records the confirmation on the sign-up row.
pub async fn mark_confirmed(
    tx: &mut Tx,
    id: i64,
    contact_id: i64,
    at: Millis,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<()> {
    dispatch_tx!(tx, conn => {
        sqlx::query(
            "UPDATE signups SET state = 'confirmed', confirmed_at = $1, confirm_ip = $2, confirm_ua = $3, \
             contact_id = $4 WHERE id = $5",
        )
        .bind(at)
        .bind(ip)
        .bind(user_agent)
        .bind(contact_id)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// Whether the address is subscribed to the list now.
pub async fn is_subscribed(store: &Store, email: &EmailAddress, list_id: i64) -> Result<bool> {
    let lower = match store.backend() {
        Backend::Sqlite => "lower(c.email)",
        Backend::Postgres => "lower(c.email COLLATE \"C\")",
    };
    let sql = format!(
        "SELECT COUNT(*) FROM contacts c JOIN contact_lists cl ON cl.contact_id = c.id \
         WHERE {lower} = $1 AND cl.list_id = $2 AND cl.subscribed = 1"
    );
    let n: i64 = dispatch!(store, pool => {
        sqlx::query_scalar(&sql)
            .bind(super::contacts::email_key(email.as_str()))
            .bind(list_id)
            .fetch_one(pool)
            .await?
    });
    Ok(n > 0)
}

/// The contact with this address (matched as an import matches, docs/ADDRESSES.md),
/// created without any list when there is none. Returns its id and status.
pub async fn contact_for(
    tx: &mut Tx,
    email: &EmailAddress,
    name: Option<&str>,
    now: Millis,
) -> Result<(i64, ContactStatus)> {
    let lower = match tx.backend() {
        Backend::Sqlite => "lower(email)",
        Backend::Postgres => "lower(email COLLATE \"C\")",
    };
    let find = format!(
        "SELECT id, status FROM contacts WHERE {lower} = $1 \
         ORDER BY CASE WHEN email = $2 THEN 0 WHEN status = 'merged' THEN 2 ELSE 1 END, id LIMIT 1"
    );
    let key = super::contacts::email_key(email.as_str());
    let found: Option<(i64, String)> = dispatch_tx!(tx, conn => {
        sqlx::query_as(&find)
            .bind(&key)
            .bind(email.as_str())
            .fetch_optional(&mut *conn)
            .await?
    });
    if let Some((id, status)) = found {
        let status = status.parse::<ContactStatus>().map_err(|_| {
            super::StoreError::Corrupt(format!("contact {id} has status {status:?}"))
        })?;
        return Ok((id, status));
    }
    let id: i64 = dispatch_tx!(tx, conn => {
        sqlx::query_scalar(
            "INSERT INTO contacts (email, email_ascii, domain, first_name, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        )
        .bind(email.as_str())
        .bind(email.ascii())
        .bind(email.domain())
        .bind(name)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?
    });
    Ok((id, ContactStatus::Active))
}

/// The condition of a pending sign-up whose confirmation mail the mailer
/// gave up on: never sent, and its attempts ran out (`$1`) or its time did
/// (signed up, or re-queued, before `$2`).
const GIVEN_UP: &str = "s.state = 'pending' AND s.mailed_at IS NULL \
     AND (s.mail_attempts >= $1 OR COALESCE(s.mail_requeued_at, s.signed_up_at) < $2)";

/// The pending sign-ups of one list, by where their confirmation mail is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct PendingByList {
    pub list: String,
    /// Not mailed yet, and the mailer will still try.
    pub queued: i64,
    /// Mailed; the person has not confirmed.
    pub mailed: i64,
    /// Not mailed, and the mailer gave up (`signup retry` re-queues them).
    pub given_up: i64,
    /// The oldest pending sign-up of the list.
    pub oldest: Millis,
}

/// [`PendingByList`] for every list with a pending sign-up, by list name.
/// `max_attempts` and `oldest` as the mailer uses them.
pub async fn pending_by_list(
    store: &Store,
    max_attempts: i64,
    oldest: Millis,
) -> Result<Vec<PendingByList>> {
    let sql = format!(
        "SELECT l.name AS list, \
           SUM(CASE WHEN s.mailed_at IS NULL AND NOT ({GIVEN_UP}) THEN 1 ELSE 0 END) AS queued, \
           SUM(CASE WHEN s.mailed_at IS NOT NULL THEN 1 ELSE 0 END) AS mailed, \
           SUM(CASE WHEN {GIVEN_UP} THEN 1 ELSE 0 END) AS given_up, \
           MIN(s.signed_up_at) AS oldest \
         FROM signups s JOIN lists l ON l.id = s.list_id WHERE s.state = 'pending' \
         GROUP BY l.name ORDER BY l.name"
    );
    dispatch!(store, pool => {
        Ok(sqlx::query_as::<_, PendingByList>(&sql)
            .bind(max_attempts)
            .bind(oldest)
            .fetch_all(pool)
            .await?)
    })
}

/// How many confirmation mails the mailer gave up on (for `/metrics`).
pub async fn given_up(store: &Store, max_attempts: i64, oldest: Millis) -> Result<i64> {
    let sql = format!("SELECT COUNT(*) FROM signups s WHERE {GIVEN_UP}");
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(&sql)
            .bind(max_attempts)
            .bind(oldest)
            .fetch_one(pool)
            .await?)
    })
}

/// Re-queues the confirmation mails the mailer gave up on (of one list, by
/// name, or all): attempts back to 0, due now, `mail_requeued_at = now`.
/// Returns how many.
pub async fn requeue_given_up(
    store: &Store,
    list: Option<&str>,
    max_attempts: i64,
    oldest: Millis,
    now: Millis,
) -> Result<u64> {
    let sql = format!(
        "UPDATE signups SET mail_attempts = 0, mail_due_at = NULL, mail_requeued_at = $3 \
         WHERE id IN (SELECT s.id FROM signups s JOIN lists l ON l.id = s.list_id \
                      WHERE {GIVEN_UP} AND COALESCE($4, l.name) = l.name)"
    );
    dispatch!(store, pool => {
        Ok(sqlx::query(&sql)
            .bind(max_attempts)
            .bind(oldest)
            .bind(now)
            .bind(list)
            .execute(pool)
            .await?
            .rows_affected())
    })
}

/// Pending (never confirmed) sign-ups made before `before`.
pub async fn count_pending_before(store: &Store, before: Millis) -> Result<i64> {
    dispatch!(store, pool => {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM signups WHERE state = 'pending' AND signed_up_at < $1",
        )
        .bind(before)
        .fetch_one(pool)
        .await?)
    })
}

/// What a purge of stale pending sign-ups did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PendingPurge {
    /// Sign-ups made before this instant were purged.
    pub cutoff: Millis,
    pub signups: u64,
    /// The purge's row in `compliance_actions` (0: nothing was recorded).
    #[serde(skip)]
    pub action_id: i64,
    /// The purged rows' ids (their confirmation mails in the outbox are
    /// named by them).
    #[serde(skip)]
    pub ids: Vec<i64>,
}

/// Deletes the pending (never confirmed) sign-ups made before `cutoff`,
/// and with them the address, name, IP and user agent they hold, and
/// records the purge in `compliance_actions` (kind `purge`, reason
/// `pending-signups`) in the same transaction; with `record_empty` false a
/// purge that found nothing is not recorded (`cartero serve` runs it every
/// hour on every node).
pub async fn purge_pending(
    store: &Store,
    cutoff: Millis,
    actor: &str,
    now: Millis,
    record_empty: bool,
) -> Result<PendingPurge> {
    let mut tx = store.begin().await?;
    let ids: Vec<i64> = dispatch_tx!(&mut tx, conn => {
        sqlx::query_scalar(
            "DELETE FROM signups WHERE state = 'pending' AND signed_up_at < $1 RETURNING id",
        )
        .bind(cutoff)
        .fetch_all(&mut *conn)
        .await?
    });
    let mut out = PendingPurge {
        cutoff,
        signups: ids.len() as u64,
        action_id: 0,
        ids,
    };
    if out.signups > 0 || record_empty {
        let details =
            serde_json::to_string(&out).map_err(|e| super::StoreError::Corrupt(e.to_string()))?;
        out.action_id = dispatch_tx!(&mut tx, conn => {
            sqlx::query_scalar(
                "INSERT INTO compliance_actions (kind, actor, reason, details, occurred_at) \
                 VALUES ('purge', $1, 'pending-signups', $2, $3) RETURNING id",
            )
            .bind(actor)
            .bind(&details)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?
        });
    }
    tx.commit().await?;
    Ok(out)
}
