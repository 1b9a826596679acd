//! Maildir source: messages in `new/` and `cur/`, one file each.
//!
//! Layout and names follow the Maildir convention (cr.yp.to/proto/maildir):
//! a file name is `UNIQUE` in new/ and `UNIQUE:2,FLAGS` in cur/, flags being
//! sorted ASCII letters (`S` seen). Sub-folders are Maildir++ style, a
//! `.NAME` Maildir inside the root, which is how Dovecot shows them over
//! IMAP. A processed message moves to the processed folder (with `S`) or, if
//! none is configured, gets `S` in place; a message kept aside moves to the
//! kept-aside folder and its reason goes to `reasons/UNIQUE.txt` there.
//! Every change is a rename(2) within one file system, so a crash never
//! leaves half a message.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::{Outcome, RawMessage, SourceError, SourceId};

pub struct MaildirSource {
    root: PathBuf,
    /// Empty: flag in place.
    processed_folder: String,
    kept_aside_folder: String,
    /// Files still to read (relative to the root), listed on the first read.
    pending: Option<std::vec::IntoIter<PathBuf>>,
    /// Bytes read of a message at most, plus one (so the reader can tell
    /// it was cut): `feedback.max_message_bytes`.
    max_bytes: Option<u64>,
}

impl MaildirSource {
    pub fn open(
        root: &Path,
        processed_folder: &str,
        kept_aside_folder: &str,
    ) -> Result<Self, SourceError> {
        if !root.join("cur").is_dir() || !root.join("new").is_dir() {
            return Err(SourceError::NotAMailbox {
                path: root.to_path_buf(),
            });
        }
        let kept = if kept_aside_folder.is_empty() {
            "KeptAside"
        } else {
            kept_aside_folder
        };
        Ok(Self {
            root: root.to_path_buf(),
            processed_folder: processed_folder.trim_start_matches('.').to_string(),
            kept_aside_folder: kept.trim_start_matches('.').to_string(),
            pending: None,
            max_bytes: None,
        })
    }

    /// Reads at most `max + 1` bytes of each message: a larger one is
    /// never held in memory whole (the ingest keeps it aside unread).
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    pub fn next_message(&mut self) -> Result<Option<RawMessage>, SourceError> {
        if self.pending.is_none() {
            self.pending = Some(self.list()?.into_iter());
        }
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        for rel in pending.by_ref() {
            let path = self.root.join(&rel);
            match read_at_most(&path, self.max_bytes) {
                Ok(bytes) => {
                    return Ok(Some(RawMessage {
                        id: SourceId::Maildir(rel),
                        bytes,
                    }));
                }
                // Another reader (a mail client, a second cartero) moved it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SourceError::io(&path, e)),
            }
        }
        Ok(None)
    }

    /// Unread messages of new/ then cur/, sorted by name (delivery time
    /// leads the usual unique names). In flag mode, seen ones are done.
    fn list(&self) -> Result<Vec<PathBuf>, SourceError> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.root.join(sub);
            let mut names = Vec::new();
            for entry in fs::read_dir(&dir).map_err(|e| SourceError::io(&dir, e))? {
                let entry = entry.map_err(|e| SourceError::io(&dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                if self.processed_folder.is_empty() && flags(&name).contains('S') {
                    continue;
                }
                names.push(name);
            }
            names.sort();
            out.extend(names.into_iter().map(|n| Path::new(sub).join(n)));
        }
        Ok(out)
    }

    pub fn ack(&mut self, id: &SourceId, outcome: &Outcome) -> Result<(), SourceError> {
        let SourceId::Maildir(rel) = id else {
            return Err(SourceError::UnknownId { id: id.clone() });
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| SourceError::UnknownId { id: id.clone() })?;
        let from = self.root.join(rel);
        let unique = unique(&name);
        match outcome {
            Outcome::Processed => {
                let seen = with_flag(&flags(&name), 'S');
                let dir = if self.processed_folder.is_empty() {
                    self.root.clone()
                } else {
                    self.folder(&self.processed_folder)?
                };
                let to = dir.join("cur").join(format!("{unique}:2,{seen}"));
                fs::rename(&from, &to).map_err(|e| SourceError::io(&from, e))
            }
            Outcome::KeptAside { reason } => {
                let dir = self.folder(&self.kept_aside_folder)?;
                let reasons = dir.join("reasons");
                self.create_dir(&reasons)?;
                // The reason first: a crash between the two leaves a reason
                // without a message, never a message without its reason.
                let note = reasons.join(format!("{unique}.txt"));
                let text = format!("{reason}\nfrom: {}\n", rel.display());
                fs::write(&note, text).map_err(|e| SourceError::io(&note, e))?;
                let to = dir.join("cur").join(format!("{unique}:2,{}", flags(&name)));
                fs::rename(&from, &to).map_err(|e| SourceError::io(&from, e))
            }
        }
    }

    /// The Maildir++ sub-folder `.NAME`, created (cur, new, tmp and the
    /// `maildirfolder` marker) if missing.
    fn folder(&self, name: &str) -> Result<PathBuf, SourceError> {
        let dir = self.root.join(format!(".{name}"));
        for sub in ["cur", "new", "tmp"] {
            self.create_dir(&dir.join(sub))?;
        }
        let marker = dir.join("maildirfolder");
        if !marker.exists() {
            fs::write(&marker, b"").map_err(|e| SourceError::io(&marker, e))?;
            self.give_to_owner(&marker);
        }
        Ok(dir)
    }

    fn create_dir(&self, dir: &Path) -> Result<(), SourceError> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(dir).map_err(|e| SourceError::io(dir, e))?;
        // create_dir_all may have made the parent too.
        if let Some(parent) = dir.parent().filter(|p| *p != self.root) {
            self.give_to_owner(parent);
        }
        self.give_to_owner(dir);
        Ok(())
    }

    /// New folders belong to the Maildir's owner, so the mail server
    /// (Dovecot as the virtual user) can still read them when cartero runs
    /// as root. As another user chown fails, and the folder is ours anyway.
    fn give_to_owner(&self, path: &Path) {
        if let Ok(meta) = fs::metadata(&self.root) {
            let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
        }
    }
}

/// The unique part of a Maildir file name (before `:2,`).
/// The file's bytes, cut after `max + 1` when a limit is given.
fn read_at_most(path: &Path, max: Option<u64>) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let Some(max) = max else {
        return fs::read(path);
    };
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn unique(name: &str) -> &str {
    name.split_once(':').map_or(name, |(u, _)| u)
}

/// The flags of a cur/ name (`UNIQUE:2,FRS` → `FRS`); none for new/ names.
fn flags(name: &str) -> String {
    name.split_once(":2,")
        .map(|(_, f)| f.to_string())
        .unwrap_or_default()
}

/// Adds a flag, keeping the letters sorted as the convention asks.
fn with_flag(flags: &str, flag: char) -> String {
    let mut letters: Vec<char> = flags.chars().collect();
    if !letters.contains(&flag) {
        letters.push(flag);
    }
    letters.sort_unstable();
    letters.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        dir
    }

    fn drain(m: &mut MaildirSource) -> Vec<RawMessage> {
        std::iter::from_fn(|| m.next_message().unwrap()).collect()
    }

    #[test]
    fn names_and_flags() {
        assert_eq!(unique("123.M1P2.host:2,RS"), "123.M1P2.host");
        assert_eq!(unique("123.M1P2.host"), "123.M1P2.host");
        assert_eq!(flags("123.host:2,RS"), "RS");
        assert_eq!(flags("123.host"), "");
        assert_eq!(with_flag("RT", 'S'), "RST");
        assert_eq!(with_flag("S", 'S'), "S");
        assert_eq!(with_flag("", 'S'), "S");
    }

    #[test]
    fn not_a_maildir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            MaildirSource::open(dir.path(), "Processed", "KeptAside"),
            Err(SourceError::NotAMailbox { .. })
        ));
    }

    #[test]
    fn reads_new_and_cur_and_moves_processed_away() {
        let dir = maildir();
        fs::write(dir.path().join("new/1.a"), b"one").unwrap();
        fs::write(dir.path().join("cur/2.b:2,R"), b"two").unwrap();
        fs::write(dir.path().join("tmp/3.c"), b"in delivery").unwrap();
        let mut m = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        let got = drain(&mut m);
        let bodies: Vec<&[u8]> = got.iter().map(|r| r.bytes.as_slice()).collect();
        assert_eq!(bodies, vec![&b"one"[..], &b"two"[..]]);
        for r in &got {
            m.ack(&r.id, &Outcome::Processed).unwrap();
        }
        assert!(dir.path().join(".Processed/cur/1.a:2,S").is_file());
        assert!(dir.path().join(".Processed/cur/2.b:2,RS").is_file());
        assert!(dir.path().join(".Processed/maildirfolder").is_file());
        let mut again = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        assert!(drain(&mut again).is_empty(), "nothing new on a second read");
    }

    #[test]
    fn flag_mode_marks_seen_in_place_and_skips_seen() {
        let dir = maildir();
        fs::write(dir.path().join("new/1.a"), b"one").unwrap();
        fs::write(dir.path().join("cur/0.z:2,S"), b"read earlier").unwrap();
        let mut m = MaildirSource::open(dir.path(), "", "KeptAside").unwrap();
        let got = drain(&mut m);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, b"one");
        m.ack(&got[0].id, &Outcome::Processed).unwrap();
        assert!(dir.path().join("cur/1.a:2,S").is_file());
        assert!(!dir.path().join("new/1.a").exists());
        let mut again = MaildirSource::open(dir.path(), "", "KeptAside").unwrap();
        assert!(drain(&mut again).is_empty());
    }

    #[test]
    fn kept_aside_keeps_message_and_reason() {
        let dir = maildir();
        fs::write(dir.path().join("new/9.x"), b"garbage").unwrap();
        let mut m = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        let r = m.next_message().unwrap().unwrap();
        m.ack(
            &r.id,
            &Outcome::KeptAside {
                reason: "no headers".into(),
            },
        )
        .unwrap();
        assert_eq!(
            fs::read(dir.path().join(".KeptAside/cur/9.x:2,")).unwrap(),
            b"garbage"
        );
        let note = fs::read_to_string(dir.path().join(".KeptAside/reasons/9.x.txt")).unwrap();
        assert!(note.starts_with("no headers\n"), "{note}");
        let mut again = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        assert!(drain(&mut again).is_empty());
    }

    #[test]
    fn unacknowledged_messages_come_back() {
        let dir = maildir();
        fs::write(dir.path().join("new/1.a"), b"one").unwrap();
        let mut m = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        assert!(m.next_message().unwrap().is_some());
        let mut again = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        assert_eq!(drain(&mut again).len(), 1);
    }

    #[test]
    fn a_limit_reads_one_byte_more_than_it_allows() {
        let dir = maildir();
        fs::write(dir.path().join("new/1.big"), vec![b'x'; 100]).unwrap();
        fs::write(dir.path().join("new/2.small"), b"small").unwrap();
        let mut m = MaildirSource::open(dir.path(), "", "KeptAside")
            .unwrap()
            .with_max_bytes(10);
        let got = drain(&mut m);
        assert_eq!(got[0].bytes.len(), 11, "cut, and seen to be cut");
        assert_eq!(got[1].bytes, b"small");
    }

    #[test]
    fn a_file_that_vanished_is_skipped() {
        let dir = maildir();
        fs::write(dir.path().join("new/1.a"), b"one").unwrap();
        fs::write(dir.path().join("new/2.b"), b"two").unwrap();
        let mut m = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        let first = m.next_message().unwrap().unwrap();
        assert_eq!(first.bytes, b"one");
        fs::remove_file(dir.path().join("new/2.b")).unwrap();
        assert!(m.next_message().unwrap().is_none());
    }

    #[test]
    fn foreign_id_is_an_error() {
        let dir = maildir();
        let mut m = MaildirSource::open(dir.path(), "Processed", "KeptAside").unwrap();
        let id = SourceId::Imap {
            uid_validity: 1,
            uid: 1,
        };
        assert!(matches!(
            m.ack(&id, &Outcome::Processed),
            Err(SourceError::UnknownId { .. })
        ));
    }
}
