//! mbox source: messages concatenated in one file, each after a `From `
//! separator line (RFC 4155, the "default" mbox format).
//!
//! A separator is a line starting with `From ` at the start of the file or
//! after an empty line; the empty line before it belongs to the format, not
//! to the message. Body lines that writers quoted as `>From `, `>>From `,
//! ... lose one `>` (the mboxrd convention; for mboxo it is the usual best
//! guess). Bytes before the first separator, if any, are a message too: a
//! reader of bounce mail never drops input.
//!
//! An mbox cannot be changed in place safely while a mail system may append
//! to it, so it is never written to. Acknowledged messages are remembered by
//! the SHA-256 of their bytes in a state file beside it
//! (`<mbox>.cartero-state`, one line per message: `processed HEX` or
//! `kept-aside HEX REASON`), and skipped on later reads. Two byte-identical
//! messages are therefore one; the database dedupe would treat them so too.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{Outcome, RawMessage, SourceError, SourceId};

/// Splits an mbox stream into messages, undoing `>From ` quoting.
pub struct MboxReader<R> {
    input: R,
    /// The separator line that starts the next message was already read.
    at_separator: bool,
    started: bool,
    done: bool,
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            at_separator: false,
            started: false,
            done: false,
        }
    }

    /// The next message's bytes, `None` at the end of the input.
    pub fn next_message(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let mut message = Vec::new();
            let mut line = Vec::new();
            let mut previous_blank = true;
            let mut first = !self.started;
            self.started = true;
            self.at_separator = false;
            loop {
                line.clear();
                if self.input.read_until(b'\n', &mut line)? == 0 {
                    self.done = true;
                    break;
                }
                if line.starts_with(b"From ") && (previous_blank || first) {
                    if first {
                        // The file's first separator opens the first message.
                        first = false;
                        previous_blank = false;
                        continue;
                    }
                    self.at_separator = true;
                    break;
                }
                first = false;
                previous_blank = is_blank(&line);
                message.extend_from_slice(unquote(&line));
            }
            // The empty line that ends an mbox message is the format's.
            strip_final_blank_line(&mut message);
            if !message.is_empty() {
                return Ok(Some(message));
            }
            // An empty message (two separators in a row): nothing to yield.
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// `>From ` → `From `, `>>From ` → `>From `: one level of quoting less.
fn unquote(line: &[u8]) -> &[u8] {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    if quotes > 0 && line[quotes..].starts_with(b"From ") {
        &line[1..]
    } else {
        line
    }
}

fn strip_final_blank_line(message: &mut Vec<u8>) {
    if message.ends_with(b"\r\n\r\n") {
        message.truncate(message.len() - 2);
    } else if message.ends_with(b"\n\n") {
        message.truncate(message.len() - 1);
    } else if message == b"\n" || message == b"\r\n" {
        message.clear();
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct MboxSource {
    path: PathBuf,
    state_path: PathBuf,
    reader: MboxReader<BufReader<fs::File>>,
    done: HashSet<String>,
    index: usize,
}

impl MboxSource {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let file = fs::File::open(path).map_err(|e| SourceError::io(path, e))?;
        let mut state_name = path.file_name().unwrap_or_default().to_os_string();
        state_name.push(".cartero-state");
        let state_path = path.with_file_name(state_name);
        let done = match fs::read_to_string(&state_path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(SourceError::io(&state_path, e)),
        };
        Ok(Self {
            path: path.to_path_buf(),
            state_path,
            reader: MboxReader::new(BufReader::new(file)),
            done,
            index: 0,
        })
    }

    /// The state file recording acknowledged messages.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    pub fn next_message(&mut self) -> Result<Option<RawMessage>, SourceError> {
        loop {
            let Some(bytes) = self
                .reader
                .next_message()
                .map_err(|e| SourceError::io(&self.path, e))?
            else {
                return Ok(None);
            };
            let index = self.index;
            self.index += 1;
            let sha256 = sha256_hex(&bytes);
            if self.done.contains(&sha256) {
                continue;
            }
            return Ok(Some(RawMessage {
                id: SourceId::Mbox { index, sha256 },
                bytes,
            }));
        }
    }

    pub fn ack(&mut self, id: &SourceId, outcome: &Outcome) -> Result<(), SourceError> {
        let SourceId::Mbox { sha256, .. } = id else {
            return Err(SourceError::UnknownId { id: id.clone() });
        };
        let line = match outcome {
            Outcome::Processed => format!("processed {sha256}\n"),
            Outcome::KeptAside { reason } => {
                // One line per record: a reason cannot break the file.
                let reason: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                format!("kept-aside {sha256} {reason}\n")
            }
        };
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.state_path)
            .map_err(|e| SourceError::io(&self.state_path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|e| SourceError::io(&self.state_path, e))?;
        self.done.insert(sha256.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(input: &[u8]) -> Vec<Vec<u8>> {
        let mut r = MboxReader::new(input);
        std::iter::from_fn(|| r.next_message().unwrap()).collect()
    }

    #[test]
    fn splits_on_from_lines_and_unquotes() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\n\
Subject: one\n\
\n\
>From the start\n\
>>From kept once\n\
From inside a paragraph is not a separator\n\
\n\
From c@d Mon Jan  1 00:00:01 2024\n\
Subject: two\n\
\n\
body\n\
\n";
        let got = split(mbox);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            String::from_utf8_lossy(&got[0]),
            "Subject: one\n\nFrom the start\n>From kept once\n\
From inside a paragraph is not a separator\n"
        );
        assert_eq!(String::from_utf8_lossy(&got[1]), "Subject: two\n\nbody\n");
    }

    #[test]
    fn crlf_mbox() {
        let got = split(b"From a@b x\r\nSubject: one\r\n\r\nbody\r\n\r\nFrom c@d y\r\nSubject: two\r\n\r\nb2\r\n");
        assert_eq!(got[0], b"Subject: one\r\n\r\nbody\r\n");
        assert_eq!(got[1], b"Subject: two\r\n\r\nb2\r\n");
    }

    #[test]
    fn text_before_the_first_separator_is_a_message() {
        let got = split(b"Subject: stray\n\nhello\n");
        assert_eq!(got, vec![b"Subject: stray\n\nhello\n".to_vec()]);
    }

    #[test]
    fn empty_messages_are_skipped() {
        assert!(split(b"").is_empty());
        let got = split(b"From a x\n\nFrom b y\nS: 1\n");
        assert_eq!(got, vec![b"S: 1\n".to_vec()]);
    }

    #[test]
    fn acknowledged_messages_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bounces.mbox");
        fs::write(
            &path,
            "From a x\nSubject: 1\n\nb\n\nFrom a y\nSubject: 2\n\nb\n\nFrom a z\nSubject: 3\n\nb\n",
        )
        .unwrap();
        let mut m = MboxSource::open(&path).unwrap();
        let first = m.next_message().unwrap().unwrap();
        let second = m.next_message().unwrap().unwrap();
        m.ack(&first.id, &Outcome::Processed).unwrap();
        m.ack(
            &second.id,
            &Outcome::KeptAside {
                reason: "bad\nline".into(),
            },
        )
        .unwrap();
        let state = fs::read_to_string(m.state_path()).unwrap();
        assert_eq!(state.lines().count(), 2);
        assert!(state.ends_with(" bad line\n"), "{state}");
        let mut again = MboxSource::open(&path).unwrap();
        let left = again.next_message().unwrap().unwrap();
        assert_eq!(left.bytes, b"Subject: 3\n\nb\n");
        assert_eq!(
            left.id,
            SourceId::Mbox {
                index: 2,
                sha256: sha256_hex(b"Subject: 3\n\nb\n")
            }
        );
        assert!(again.next_message().unwrap().is_none());
        // The mbox itself is never changed.
        assert!(fs::read_to_string(&path).unwrap().contains("Subject: 1"));
    }

    /// Writes messages as an mboxrd writer would.
    fn write_mbox(messages: &[Vec<String>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.extend_from_slice(b"From sender@example.org Mon Jan  1 00:00:00 2024\n");
            for line in m {
                let quotes = line.bytes().take_while(|&b| b == b'>').count();
                if line[quotes..].starts_with("From ") {
                    out.push(b'>');
                }
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
            out.push(b'\n');
        }
        out
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = split(&bytes);
        }

        #[test]
        fn round_trips_what_a_writer_quoted(
            messages in proptest::collection::vec(
                proptest::collection::vec("(>{0,2}From )?[a-zA-Z :>]{0,12}", 1..6)
                    .prop_filter("a message ends with a non-empty line",
                        |m| m.last().is_some_and(|l| !l.is_empty())),
                1..5,
            )
        ) {
            let got = split(&write_mbox(&messages));
            let want: Vec<Vec<u8>> = messages
                .iter()
                .map(|m| m.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect())
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
