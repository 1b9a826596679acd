//! Group commit of send results.
//!
//! Workers hand each result to one recorder task, which writes whatever all
//! workers have queued, in one statement (`sends::record_many`) on a
//! connection it keeps for the whole send. A worker does not wait for a
//! result to be written before it delivers the next messages, only before
//! the one `IN_FLIGHT` later (send/mod.rs): while k+3 is on the wire, k to
//! k+2 are being recorded. That bounds the in-flight window (accepted by the
//! server, not yet recorded) at four messages per worker, and keeps the
//! database write off the path of every SMTP round trip. Results queue up
//! while a write runs, so groups grow with the load by themselves; holding
//! results back to make bigger groups was measured slower (the workers
//! waited for it).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::domain::time::Millis;
use crate::store::sends::{self, Outcome};
use crate::store::{Store, StoreError};

/// Results written in one statement at most.
const GROUP: usize = 256;

type Ack = Result<(), Arc<StoreError>>;

struct Item {
    send_id: i64,
    outcome: Outcome,
    at: Millis,
    done: oneshot::Sender<Ack>,
}

/// A handle workers submit results through; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Item>,
}

/// A submitted result; `written` resolves once it is in the database.
pub struct Pending(oneshot::Receiver<Ack>);

impl Pending {
    pub async fn written(self) -> Ack {
        // The recorder only drops an item's sender after answering it, or
        // when it is gone itself, which the queue would have reported.
        self.0.await.unwrap_or_else(|_| {
            Err(Arc::new(StoreError::Corrupt(
                "the result recorder stopped".into(),
            )))
        })
    }
}

impl Recorder {
    /// Starts the recorder task. It ends when every handle is dropped and the
    /// queue is drained.
    pub fn start(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(GROUP * 4);
        (Self { queue }, tokio::spawn(run(store, rx)))
    }

    pub async fn submit(&self, send_id: i64, outcome: Outcome, at: Millis) -> Pending {
        let (done, rx) = oneshot::channel();
        // A closed queue drops `done`, and `written` reports the failure.
        let _ = self
            .queue
            .send(Item {
                send_id,
                outcome,
                at,
                done,
            })
            .await;
        Pending(rx)
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Item>) {
    let mut group: Vec<Item> = Vec::with_capacity(GROUP);
    let mut conn = None;
    while rx.recv_many(&mut group, GROUP).await > 0 {
        let rows: Vec<(i64, &Outcome, Millis)> = group
            .iter()
            .map(|i| (i.send_id, &i.outcome, i.at))
            .collect();
        let result = record(&store, &mut conn, &rows).await.map_err(Arc::new);
        drop(rows);
        for item in group.drain(..) {
            let _ = item.done.send(result.clone());
        }
    }
}

/// Writes a group on the recorder's own connection, taken on first use and
/// given up after an error (the next group takes a fresh one).
async fn record(
    store: &Store,
    conn: &mut Option<sends::RecordConn>,
    rows: &[(i64, &Outcome, Millis)],
) -> Result<(), StoreError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(sends::RecordConn::acquire(store).await?),
    };
    let result = sends::record_many(c, rows).await;
    if result.is_err() {
        *conn = None;
    }
    result
}
