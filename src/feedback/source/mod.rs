//! Mailbox sources: read the bounce mailbox (a Maildir, an mbox file or an
//! IMAP folder) as raw messages, and record what became of each one.
//!
//! A source yields [`RawMessage`]s; the caller parses and classifies them,
//! then calls [`Mailbox::ack`] with [`Outcome::Processed`] or
//! [`Outcome::KeptAside`]. Acknowledged messages are not yielded again by a
//! later read: Maildir and IMAP move them into folders (or flag them seen),
//! an mbox, which cannot be changed safely in place, remembers their content
//! hashes in a state file beside it. A message read but never acknowledged
//! (a crash between read and ack) comes back on the next run, so delivery is
//! at least once; the database's dedupe (Message-ID and content hash) makes
//! it exactly once. Nothing here parses mail or touches the database, and no
//! message is ever deleted.

mod imap;
mod maildir;
mod mbox;

use std::fmt;
use std::path::{Path, PathBuf};

pub use imap::ImapSource;
pub use maildir::MaildirSource;
pub use mbox::{MboxReader, MboxSource};

use crate::config::{Config, FeedbackConfig, MailboxKind};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Maildir (it needs cur/ and new/) nor an mbox file")]
    NotAMailbox { path: PathBuf },
    #[error("IMAP {server}: {message}")]
    Imap { server: String, message: String },
    #[error("{id}: not a message of this mailbox")]
    UnknownId { id: SourceId },
}

impl SourceError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a raw message came from, precise enough to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceId {
    /// A file of a Maildir, relative to the Maildir (`new/NAME`, `cur/NAME:2,S`).
    Maildir(PathBuf),
    /// The `index`-th message (from 0) of an mbox, with the SHA-256 of its
    /// bytes in hex (what the state file records).
    Mbox { index: usize, sha256: String },
    /// A message of the selected IMAP folder (RFC 3501 §2.3.1.1: a UID is
    /// only meaningful together with the folder's UIDVALIDITY).
    Imap { uid_validity: u32, uid: u32 },
    /// A single message file.
    File(PathBuf),
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Maildir(p) | Self::File(p) => write!(f, "{}", p.display()),
            Self::Mbox { index, sha256 } => write!(f, "mbox message {} ({sha256})", index + 1),
            Self::Imap { uid_validity, uid } => {
                write!(f, "IMAP UID {uid} (validity {uid_validity})")
            }
        }
    }
}

/// One message as it sits in the mailbox, byte for byte (mbox `>From `
/// quoting undone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub id: SourceId,
    pub bytes: Vec<u8>,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (classified and recorded): move it out of the way or flag it.
    Processed,
    /// Could not be handled (unparseable, say): keep it for a human, with why.
    KeptAside { reason: String },
}

/// A bounce mailbox of any kind.
pub enum Mailbox {
    Maildir(MaildirSource),
    Mbox(MboxSource),
    Imap(Box<ImapSource>),
    /// Plain message files (one given file, or every file under a folder
    /// that is not a Maildir): read once; acknowledging changes nothing.
    Files(std::vec::IntoIter<PathBuf>),
}

impl Mailbox {
    /// Opens the mailbox `[feedback]` of cartero.toml names (for IMAP this
    /// connects and logs in).
    pub async fn open(config: &Config) -> Result<Self, SourceError> {
        let fb: &FeedbackConfig = &config.feedback;
        Ok(match fb.source {
            MailboxKind::Maildir => Self::Maildir(
                MaildirSource::open(
                    &config.resolve(&fb.path),
                    &fb.maildir_processed_folder,
                    &fb.kept_aside_folder,
                )?
                .with_max_bytes(fb.max_message_bytes),
            ),
            MailboxKind::Mbox => Self::Mbox(MboxSource::open(&config.resolve(&fb.path))?),
            MailboxKind::Imap => {
                let ca = fb.imap_ca_file.as_ref().map(|p| config.resolve(p));
                Self::Imap(Box::new(ImapSource::connect(fb, ca.as_deref()).await?))
            }
        })
    }

    /// Opens a path given on the command line: a Maildir (a directory with
    /// cur/ and new/), an mbox file (starting with `From `), any other file
    /// as a single message, or any other directory as the files under it
    /// (recursively, sorted, hidden ones skipped). Moves and flags use the
    /// default folders; a caller that only reads (`feedback parse`) never
    /// acknowledges.
    pub fn open_path(path: &Path) -> Result<Self, SourceError> {
        if path.is_dir() && !(path.join("cur").is_dir() && path.join("new").is_dir()) {
            let mut files = Vec::new();
            collect_files(path, &mut files)?;
            files.sort();
            return Ok(Self::Files(files.into_iter()));
        }
        if path.is_dir() {
            let defaults = FeedbackConfig::default();
            return Ok(Self::Maildir(MaildirSource::open(
                path,
                &defaults.maildir_processed_folder,
                &defaults.kept_aside_folder,
            )?));
        }
        let mut head = [0u8; 5];
        let n = {
            use std::io::Read as _;
            let mut f = std::fs::File::open(path).map_err(|e| SourceError::io(path, e))?;
            f.read(&mut head).map_err(|e| SourceError::io(path, e))?
        };
        if &head[..n] == b"From " {
            Ok(Self::Mbox(MboxSource::open(path)?))
        } else {
            Ok(Self::Files(vec![path.to_path_buf()].into_iter()))
        }
    }

    /// The next message not yet acknowledged, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<RawMessage>, SourceError> {
        match self {
            Self::Maildir(m) => m.next_message(),
            Self::Mbox(m) => m.next_message(),
            Self::Imap(m) => m.next_message().await,
            Self::Files(files) => match files.next() {
                Some(p) => {
                    let bytes = std::fs::read(&p).map_err(|e| SourceError::io(&p, e))?;
                    Ok(Some(RawMessage {
                        id: SourceId::File(p),
                        bytes,
                    }))
                }
                None => Ok(None),
            },
        }
    }

    /// Records the outcome so the message is not read again.
    pub async fn ack(&mut self, id: &SourceId, outcome: &Outcome) -> Result<(), SourceError> {
        match self {
            Self::Maildir(m) => m.ack(id, outcome),
            Self::Mbox(m) => m.ack(id, outcome),
            Self::Imap(m) => m.ack(id, outcome).await,
            Self::Files(_) => Ok(()),
        }
    }

    /// Ends the session (IMAP LOGOUT); the other kinds have nothing to do.
    pub async fn close(self) -> Result<(), SourceError> {
        match self {
            Self::Imap(m) => m.close().await,
            _ => Ok(()),
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    for entry in std::fs::read_dir(dir).map_err(|e| SourceError::io(dir, e))? {
        let entry = entry.map_err(|e| SourceError::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| SourceError::io(&path, e))?;
        if kind.is_dir() {
            collect_files(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    async fn ids(mailbox: &mut Mailbox) -> Vec<SourceId> {
        let mut out = Vec::new();
        while let Some(m) = mailbox.next().await.unwrap() {
            out.push(m.id);
        }
        out
    }

    #[tokio::test]
    async fn open_path_tells_the_kinds_apart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["md/cur", "md/new", "md/tmp", "plain/sub"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        fs::write(root.join("md/new/1.x"), "S: 1\n").unwrap();
        fs::write(root.join("plain/b.eml"), "S: b\n").unwrap();
        fs::write(root.join("plain/sub/a.eml"), "S: a\n").unwrap();
        fs::write(root.join("plain/.hidden"), "x").unwrap();
        fs::write(root.join("box.mbox"), "From a x\nS: 1\n\nFrom b y\nS: 2\n").unwrap();
        fs::write(root.join("one.eml"), "S: 1\n").unwrap();

        let mut md = Mailbox::open_path(&root.join("md")).unwrap();
        assert!(matches!(md, Mailbox::Maildir(_)));
        assert_eq!(
            ids(&mut md).await,
            vec![SourceId::Maildir("new/1.x".into())]
        );

        let mut plain = Mailbox::open_path(&root.join("plain")).unwrap();
        assert_eq!(
            ids(&mut plain).await,
            vec![
                SourceId::File(root.join("plain/b.eml")),
                SourceId::File(root.join("plain/sub/a.eml")),
            ]
        );

        let mut mbox = Mailbox::open_path(&root.join("box.mbox")).unwrap();
        assert_eq!(ids(&mut mbox).await.len(), 2);

        let mut one = Mailbox::open_path(&root.join("one.eml")).unwrap();
        assert_eq!(
            ids(&mut one).await,
            vec![SourceId::File(root.join("one.eml"))]
        );

        assert!(matches!(
            Mailbox::open_path(&root.join("missing")),
            Err(SourceError::Io { .. })
        ));
    }
}
