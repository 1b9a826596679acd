//! One read of the bounce mailbox of `[feedback]`: every message is
//! classified, matched and applied (`ingest`), then acknowledged (moved or
//! flagged) so the next read skips it. `cartero feedback run` calls this
//! once; `cartero serve` calls it every `feedback.interval_secs`.

use crate::config::{Config, MailboxKind};
use crate::domain::time::now_millis;
use crate::feedback::ingest::{Change, Handled, IngestError, Ingestor, Summary};
use crate::feedback::source::{Mailbox, Outcome, SourceError};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("opening the {kind} bounce mailbox of [feedback]: {source}")]
    Open {
        kind: &'static str,
        #[source]
        source: SourceError,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// What one read did: the totals and every status change.
#[derive(Debug, Clone, Default)]
pub struct PollReport {
    pub summary: Summary,
    pub changes: Vec<Change>,
}

/// The mailbox kind as operators write it.
pub fn kind_name(cfg: &Config) -> &'static str {
    match cfg.feedback.source {
        MailboxKind::Maildir => "maildir",
        MailboxKind::Mbox => "mbox",
        MailboxKind::Imap => "imap",
    }
}

/// Reads the mailbox once to its end. `dry_run` writes nothing and leaves
/// the mailbox as it is. `on_message` is called after each message with the
/// changes it caused (the CLI prints them as they come). `stop` is asked
/// before each message: when it says so, the read ends there (the message
/// being handled is finished and acknowledged first; the rest stay for the
/// next read).
pub async fn poll_once(
    store: &Store,
    cfg: &Config,
    dry_run: bool,
    mut on_message: impl FnMut(&[Change]),
    stop: impl Fn() -> bool,
) -> Result<PollReport, PollError> {
    let kind = kind_name(cfg);
    let mut mailbox = Mailbox::open(cfg)
        .await
        .map_err(|source| PollError::Open { kind, source })?;
    let mut ingestor = Ingestor::new(store.clone(), cfg, dry_run)?;
    let mut changes = Vec::new();
    while !stop() {
        let Some(msg) = mailbox.next().await? else {
            break;
        };
        let name = format!("{kind}:{}", msg.id);
        let report = ingestor.ingest(&msg.bytes, &name, now_millis()).await?;
        if let Handled::KeptAside { reason } = &report.handled {
            tracing::info!("{name}: kept aside: {reason}");
        }
        on_message(&report.changes);
        changes.extend(report.changes);
        if !dry_run {
            let outcome = match report.handled {
                Handled::Processed | Handled::Duplicate => Outcome::Processed,
                Handled::KeptAside { reason } => Outcome::KeptAside { reason },
            };
            mailbox.ack(&msg.id, &outcome).await?;
        }
    }
    mailbox.close().await?;
    let summary = ingestor.finish().await?;
    Ok(PollReport { summary, changes })
}
