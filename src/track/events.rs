//! Opens and clicks: a bounded in-memory queue in front of one writer that
//! stores them in batches, one transaction per batch. A handler only
//! `try_send`s: a full queue is counted (`events_dropped`), never a slower or
//! failed response. The writer drains the queue when the server shuts down:
//! it stops once every sender is gone and the queue is empty.
//!
//! Hits are stored raw (method, IP as configured, user agent, purpose
//! header) and classified here, where the send's delivery time is at hand
//! (`machine`); nothing is dropped for being a machine's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Metrics;
use super::machine::{self, Signals};
use crate::app::App;
use crate::config::IpStorage;
use crate::domain::time::Millis;
use crate::store::track::{self, NewHit};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    Open,
    Click,
}

/// One request to the pixel or the redirect, as received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub kind: HitKind,
    pub send_id: i64,
    /// A click's link index and target.
    pub link: Option<(u16, String)>,
    pub at: Millis,
    pub head: bool,
    /// The client's full address: classification needs it; what is stored
    /// follows `serve.ip_storage`.
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub purpose: Option<String>,
    /// `DNT: 1` or `Sec-GPC: 1`: stored as aggregate (`tracking`).
    pub do_not_track: bool,
}

/// The sending side, cloned into every handler.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::Sender<Hit>,
    metrics: Arc<Metrics>,
}

impl EventQueue {
    /// Queues a hit without waiting; a full queue counts a drop.
    pub fn push(&self, hit: Hit) {
        match self.tx.try_send(hit) {
            Ok(()) => {
                self.metrics.events_queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hits waiting to be written.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The writer task; [`Writer::finish`] waits until it has drained the queue.
pub struct Writer {
    handle: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub async fn finish(self) {
        if let Err(e) = self.handle.await {
            tracing::error!("the event writer stopped abnormally: {e}");
        }
    }
}

pub fn start(app: App, metrics: Arc<Metrics>) -> (EventQueue, Writer) {
    let (tx, rx) = mpsc::channel(app.settings.queue_capacity);
    let handle = tokio::spawn(run(app, rx, metrics.clone()));
    (EventQueue { tx, metrics }, Writer { handle })
}

async fn run(app: App, mut rx: mpsc::Receiver<Hit>, metrics: Arc<Metrics>) {
    let batch = app.settings.batch_size;
    let mut buf = Vec::with_capacity(batch);
    loop {
        if rx.recv_many(&mut buf, batch).await == 0 {
            break; // every sender is gone and the queue is empty
        }
        let mut attempt = 0;
        loop {
            match write(
                &app.store,
                app.settings.ip_storage,
                &app.settings.forms,
                &buf,
            )
            .await
            {
                Ok((written, orphans)) => {
                    metrics.events_written.fetch_add(written, Ordering::Relaxed);
                    metrics
                        .events_orphaned
                        .fetch_add(orphans, Ordering::Relaxed);
                    break;
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!("writing {} events failed (try {attempt}): {e}", buf.len());
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!("{} events lost: {e}", buf.len());
                    metrics
                        .events_lost
                        .fetch_add(buf.len() as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
        buf.clear();
    }
}

/// Writes one batch: (written, hits whose send no longer exists).
async fn write(
    store: &Store,
    ip_storage: IpStorage,
    forms: &super::signup::Forms,
    hits: &[Hit],
) -> Result<(u64, u64), StoreError> {
    let mut ids: Vec<i64> = hits.iter().map(|h| h.send_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tx = store.begin().await?;
    let refs: HashMap<i64, track::SendRef> = track::send_refs(&mut tx, &ids)
        .await?
        .into_iter()
        .map(|r| (r.send_id, r))
        .collect();
    let mut rows = Vec::with_capacity(hits.len());
    let mut private = Vec::with_capacity(hits.len());
    for h in hits {
        let Some(r) = refs.get(&h.send_id) else {
            continue;
        };
        let verdict = machine::classify(&Signals {
            click: h.kind == HitKind::Click,
            head: h.head,
            ip: h.ip,
            user_agent: h.user_agent.as_deref(),
            purpose: h.purpose.as_deref(),
            since_delivery_ms: r.accepted_at.map(|a| h.at - a),
        });
        let mut data = serde_json::json!({
            "method": if h.head { "HEAD" } else { "GET" },
            "ip": h.ip.and_then(|ip| stored_ip(ip, ip_storage)),
            "user_agent": h.user_agent,
            "purpose": h.purpose,
            "class": verdict.class.as_str(),
            "rule": verdict.rule,
            "ruleset": machine::RULESET,
        });
        if let Some((idx, url)) = &h.link {
            data["link"] = (*idx).into();
            data["url"] = url.as_str().into();
        }
        rows.push(NewHit {
            contact_id: r.contact_id,
            campaign_id: r.campaign_id,
            send_id: r.send_id,
            kind: match h.kind {
                HitKind::Open => "open",
                HitKind::Click => "click",
            },
            occurred_at: h.at,
            data: data.to_string(),
            engaged: verdict.class.engaged(),
        });
        private.push(h.do_not_track);
    }
    let aggregate = super::tracking::split(&mut tx, forms, &mut rows, &private).await?;
    track::insert_hits(&mut tx, &rows).await?;
    crate::store::tracking::insert_aggregate(&mut tx, &aggregate).await?;
    tx.commit().await?;
    let written = (rows.len() + aggregate.len()) as u64;
    Ok((written, hits.len() as u64 - written))
}

/// The address as `serve.ip_storage` says to keep it: whole, truncated to
/// its network (IPv4 /24, IPv6 /48), or not at all.
pub fn stored_ip(ip: IpAddr, mode: IpStorage) -> Option<String> {
    match mode {
        IpStorage::Full => Some(ip.to_string()),
        IpStorage::None => None,
        IpStorage::Truncated => {
            let prefix = if ip.is_ipv4() { 24 } else { 48 };
            ipnet::IpNet::new(ip, prefix)
                .ok()
                .map(|n| n.network().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_storage_keeps_what_it_says() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:1234:5678::9".parse().unwrap();
        assert_eq!(
            stored_ip(v4, IpStorage::Full).as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(
            stored_ip(v4, IpStorage::Truncated).as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            stored_ip(v6, IpStorage::Truncated).as_deref(),
            Some("2001:db8:1234::")
        );
        assert_eq!(stored_ip(v4, IpStorage::None), None);
    }
}
