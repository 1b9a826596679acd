//! Opens and clicks: a bounded in-memory queue in front of one writer that
//! stores them in batches, one transaction per batch. A handler queues its
//! hit and answers; when the queue is full it waits for room up to
//! `serve.queue_wait_ms`, so a flood is slowed to the pace the writer
//! stores at instead of losing events (a click flood on SQLite lost about
//! 2% of them to a queue that never waited). Only a hit that still finds no
//! room is counted as dropped (`events_dropped`); the response is the same.
//! The writer drains the queue when the server shuts down: it stops once
//! every sender is gone and the queue is empty.
//!
//! Hits are stored raw (method, IP as configured, user agent, purpose
//! header) and classified here, where the send's delivery time is at hand
//! (`machine`); nothing is dropped for being a machine's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Metrics;
use super::machine::{self, Class, ClickBursts, Signals, Verdict};
use crate::app::App;
use crate::config::IpStorage;
use crate::domain::time::Millis;
use crate::store::track::{self, NewHit};
use crate::store::{Store, StoreError, Tx};

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
    /// How long a hit waits for room in a full queue.
    wait: Duration,
}

impl EventQueue {
    /// Queues a hit; a full queue is waited on up to `wait`, then the hit
    /// is counted as dropped.
    pub async fn push(&self, hit: Hit) {
        let hit = match self.tx.try_send(hit) {
            Ok(()) => {
                self.metrics.events_queued.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Full(hit)) => hit,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.metrics.events_waited.fetch_add(1, Ordering::Relaxed);
        match self.tx.send_timeout(hit, self.wait).await {
            Ok(()) => self.metrics.events_queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.metrics.events_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Size of the queue.
    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Hits waiting to be written.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The writer tasks; [`Writer::finish`] waits until they have drained the
/// queue.
pub struct Writer {
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Writer {
    pub async fn finish(self) {
        for h in self.handles {
            if let Err(e) = h.await {
                tracing::error!("an event writer stopped abnormally: {e}");
            }
        }
    }
}

/// Writers that take batches off the queue at once: SQLite has one write
/// lock, so one; PostgreSQL commits concurrent transactions in parallel, so
/// while one batch waits for its commit the next is already being inserted.
pub fn writers_for(backend: crate::store::Backend) -> usize {
    match backend {
        crate::store::Backend::Sqlite => 1,
        crate::store::Backend::Postgres => 3,
    }
}

pub fn start(app: App, metrics: Arc<Metrics>) -> (EventQueue, Writer) {
    let (tx, rx) = mpsc::channel(app.settings.queue_capacity);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let bursts = Arc::new(Mutex::new(ClickBursts::default()));
    let handles = (0..writers_for(app.store.backend()))
        .map(|_| {
            tokio::spawn(run(
                app.clone(),
                rx.clone(),
                metrics.clone(),
                bursts.clone(),
            ))
        })
        .collect();
    let wait = app.settings.queue_wait;
    (EventQueue { tx, metrics, wait }, Writer { handles })
}

async fn run(
    app: App,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Hit>>>,
    metrics: Arc<Metrics>,
    bursts: Arc<Mutex<ClickBursts>>,
) {
    let batch = app.settings.batch_size;
    let mut buf = Vec::with_capacity(batch);
    loop {
        // One writer waits on the queue at a time; the others are writing.
        let got = rx.lock().await.recv_many(&mut buf, batch).await;
        if got == 0 {
            break; // every sender is gone and the queue is empty
        }
        let mut attempt = 0;
        loop {
            match write(
                &app.store,
                app.settings.ip_storage,
                &app.settings.forms,
                &buf,
                &bursts,
            )
            .await
            {
                Ok((written, orphans)) => {
                    metrics.events_written.fetch_add(written, Ordering::Relaxed);
                    metrics.event_batches.fetch_add(1, Ordering::Relaxed);
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

/// A batch ready to write: its rows, and the click bursts found in it
/// (send, first, last) whose earlier clicks may already be stored.
struct Rows {
    rows: Vec<NewHit>,
    bursts: Vec<(i64, Millis, Millis)>,
    /// Per row: the request asked not to be tracked (DNT, GPC).
    private: Vec<bool>,
}

/// Looks up the sends of a batch (one read) and classifies every hit.
async fn classify(
    tx: &mut Tx,
    ip_storage: IpStorage,
    hits: &[Hit],
    bursts: &Mutex<ClickBursts>,
) -> Result<Rows, StoreError> {
    let mut ids: Vec<i64> = hits.iter().map(|h| h.send_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let refs: HashMap<i64, track::SendRef> = track::send_refs(tx, &ids)
        .await?
        .into_iter()
        .map(|r| (r.send_id, r))
        .collect();
    let mut found: Vec<(i64, Millis, Millis)> = Vec::new();
    let mut verdicts = Vec::with_capacity(hits.len());
    {
        let mut b = bursts.lock().unwrap_or_else(|e| e.into_inner());
        for h in hits {
            let Some(r) = refs.get(&h.send_id) else {
                verdicts.push(None);
                continue;
            };
            let mut verdict = machine::classify(&Signals {
                click: h.kind == HitKind::Click,
                head: h.head,
                ip: h.ip,
                user_agent: h.user_agent.as_deref(),
                purpose: h.purpose.as_deref(),
                since_delivery_ms: r.accepted_at.map(|a| h.at - a),
            });
            if let Some((link, _)) = &h.link
                && let Some(from) = b.record(h.send_id, *link, h.at)
            {
                if verdict.class == Class::Human {
                    verdict = Verdict {
                        class: Class::Scanner,
                        rule: Some(machine::LINKS_AT_ONCE_RULE),
                    };
                }
                match found.iter_mut().find(|f| f.0 == h.send_id) {
                    Some(f) => {
                        f.1 = f.1.min(from);
                        f.2 = f.2.max(h.at);
                    }
                    None => found.push((h.send_id, from, h.at)),
                }
            }
            verdicts.push(Some((r, verdict)));
        }
        for (send, from, to) in &found {
            b.found(*send, *from, *to);
        }
        if let Some(latest) = hits.iter().map(|h| h.at).max() {
            b.forget_before(latest - 60_000);
        }
    }
    let mut rows = Vec::with_capacity(hits.len());
    let mut private = Vec::with_capacity(hits.len());
    for (h, v) in hits.iter().zip(verdicts) {
        let Some((r, mut verdict)) = v else { continue };
        // A click of this batch before the burst was seen is part of it.
        if h.kind == HitKind::Click
            && verdict.class == Class::Human
            && found
                .iter()
                .any(|(s, from, to)| *s == h.send_id && (*from..=*to).contains(&h.at))
        {
            verdict = Verdict {
                class: Class::Scanner,
                rule: Some(machine::LINKS_AT_ONCE_RULE),
            };
        }
        let data = hit_data(h, h.ip.and_then(|ip| stored_ip(ip, ip_storage)), verdict);
        rows.push(NewHit {
            contact_id: r.contact_id,
            campaign_id: r.campaign_id,
            send_id: r.send_id,
            kind: match h.kind {
                HitKind::Open => "open",
                HitKind::Click => "click",
            },
            occurred_at: h.at,
            data,
            engaged: verdict.class.engaged(),
            machine: matches!(verdict.class, Class::Prefetch | Class::Scanner),
            url: h.link.as_ref().map(|(_, url)| url.clone()),
        });
        private.push(h.do_not_track);
    }
    Ok(Rows {
        rows,
        bursts: found,
        private,
    })
}

/// Classifies and writes one batch in one transaction: (written, hits whose
/// send is gone). Hits the list's tracking choice keeps impersonal are
/// written as aggregate rows.
async fn write(
    store: &Store,
    ip_storage: IpStorage,
    forms: &super::signup::Forms,
    hits: &[Hit],
    bursts: &Mutex<ClickBursts>,
) -> Result<(u64, u64), StoreError> {
    let mut tx = store.begin().await?;
    let mut batch = classify(&mut tx, ip_storage, hits, bursts).await?;
    let aggregate = super::tracking::split(&mut tx, forms, &mut batch.rows, &batch.private).await?;
    // The batch's report rollups are written once, below, not per row.
    track::defer_rollups(&mut tx).await?;
    track::insert_hits(&mut tx, &batch.rows).await?;
    crate::store::tracking::insert_aggregate(&mut tx, &aggregate).await?;
    track::write_rollups(&mut tx, &batch.rows, &aggregate).await?;
    // After the batch's own rollups: relabelling a click moves it in the
    // rollups, which must hold it already (on SQLite the batch's rows are
    // rolled up just above, not by a trigger).
    for (send, from, to) in &batch.bursts {
        track::flag_click_burst(&mut tx, *send, *from, *to, machine::LINKS_AT_ONCE_RULE).await?;
    }
    tx.commit().await?;
    // The batch is stored: a failure here must not make the caller write
    // it again, so it is only logged (the clicks stay, classified human).
    if let Err(e) = reflag_after_commit(store, hits, &batch.bursts, bursts).await {
        tracing::warn!("flagging a click burst again failed: {e}");
    }
    let written = (batch.rows.len() + aggregate.len()) as u64;
    Ok((written, hits.len() as u64 - written))
}

/// With several writers (PostgreSQL), a click of a burst can sit in this
/// batch's transaction while another writer finds the burst and flags what
/// is committed, missing it. Every burst is remembered before its finder
/// flags, so once this batch has committed, the bursts of its sends that
/// another writer found are flagged again: whichever order the two commits
/// take, one of the two flaggings sees the click. Usually there is none.
async fn reflag_after_commit(
    store: &Store,
    hits: &[Hit],
    own: &[(i64, Millis, Millis)],
    bursts: &Mutex<ClickBursts>,
) -> Result<(), StoreError> {
    let mut sends: Vec<i64> = hits
        .iter()
        .filter(|h| h.kind == HitKind::Click && !own.iter().any(|b| b.0 == h.send_id))
        .map(|h| h.send_id)
        .collect();
    if sends.is_empty() {
        return Ok(());
    }
    sends.sort_unstable();
    sends.dedup();
    let known = bursts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .found_for(&sends);
    if known.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    for (send, from, to) in known {
        track::flag_click_burst(&mut tx, send, from, to, machine::LINKS_AT_ONCE_RULE).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The JSON object stored in `events.data` for a hit: method, stored IP,
/// user agent, purpose header, class, rule and ruleset, and for a click the
/// link's index and URL. Written straight into one string, keys in the
/// order `serde_json` gives an object (sorted), where building a
/// `serde_json::Value` first cost a map and an allocation per key and value
/// for every hit the writer stores.
fn hit_data(h: &Hit, ip: Option<String>, verdict: Verdict) -> String {
    fn text(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            // Writing a &str into a Vec cannot fail.
            Some(v) => serde_json::to_writer(&mut *out, v).unwrap_or_default(),
            None => out.extend_from_slice(b"null"),
        }
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"class\":");
    text(&mut out, Some(verdict.class.as_str()));
    out.extend_from_slice(b",\"ip\":");
    text(&mut out, ip.as_deref());
    if let Some((idx, _)) = &h.link {
        out.extend_from_slice(format!(",\"link\":{idx}").as_bytes());
    }
    out.extend_from_slice(b",\"method\":");
    text(&mut out, Some(if h.head { "HEAD" } else { "GET" }));
    out.extend_from_slice(b",\"purpose\":");
    text(&mut out, h.purpose.as_deref());
    out.extend_from_slice(b",\"rule\":");
    text(&mut out, verdict.rule);
    out.extend_from_slice(b",\"ruleset\":");
    text(&mut out, Some(machine::RULESET));
    if let Some((_, url)) = &h.link {
        out.extend_from_slice(b",\"url\":");
        text(&mut out, Some(url));
    }
    out.extend_from_slice(b",\"user_agent\":");
    text(&mut out, h.user_agent.as_deref());
    out.push(b'}');
    // serde_json writes UTF-8, and so do the literals above.
    String::from_utf8(out).unwrap_or_default()
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

    /// `hit_data` writes what a `serde_json::Value` of the same fields
    /// printed before it: same keys, same order, same escapes.
    #[test]
    fn hit_data_is_the_json_object_it_replaced() {
        let hit = |link: Option<(u16, String)>, ua: Option<&str>, purpose: Option<&str>| Hit {
            kind: if link.is_some() {
                HitKind::Click
            } else {
                HitKind::Open
            },
            send_id: 1,
            link,
            at: 0,
            head: purpose.is_some(),
            ip: None,
            user_agent: ua.map(String::from),
            purpose: purpose.map(String::from),
            do_not_track: false,
        };
        let cases = [
            (
                hit(None, Some("Mozilla/5.0 \"x\" \\ \u{1}\n ñ €"), None),
                None,
            ),
            (
                hit(
                    Some((7, "https://shop.example/a?b=1&c=\"</script>".into())),
                    None,
                    Some("prefetch"),
                ),
                Some("198.51.100.0".to_string()),
            ),
        ];
        for (h, ip) in cases {
            for verdict in [
                Verdict {
                    class: Class::Human,
                    rule: None,
                },
                Verdict {
                    class: Class::Scanner,
                    rule: Some(machine::LINKS_AT_ONCE_RULE),
                },
            ] {
                let mut want = serde_json::json!({
                    "method": if h.head { "HEAD" } else { "GET" },
                    "ip": ip,
                    "user_agent": h.user_agent,
                    "purpose": h.purpose,
                    "class": verdict.class.as_str(),
                    "rule": verdict.rule,
                    "ruleset": machine::RULESET,
                });
                if let Some((idx, url)) = &h.link {
                    want["link"] = (*idx).into();
                    want["url"] = url.as_str().into();
                }
                assert_eq!(hit_data(&h, ip.clone(), verdict), want.to_string());
            }
        }
    }

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
