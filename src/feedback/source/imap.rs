//! IMAP source (RFC 3501 with MOVE, RFC 6851): one folder of a mail server,
//! over TLS from the first byte, STARTTLS, or plain text on loopback only.
//!
//! Bodies are fetched with `BODY.PEEK[]<0.N>`, which is the RFC 822
//! message like `RFC822` but without setting `\Seen` as a side effect, so
//! only an acknowledgement changes the mailbox, and at most N octets of it
//! (N: one more than `feedback.max_message_bytes`; the ingest keeps a
//! longer one aside unread). A processed message is moved
//! to `imap_processed_folder` (created if missing) or, with no folder
//! configured, flagged `\Seen`; a message kept aside is moved to
//! `kept_aside_folder`. Without the MOVE extension a move is COPY, then
//! `\Deleted`, expunged when the session closes.
//!
//! The client is async-imap (tokio): the maintained async IMAP client of the
//! Rust mail ecosystem (Delta Chat uses it); TLS is rustls through
//! tokio-rustls, the same TLS stack lettre uses for SMTP, trusting the
//! Mozilla roots plus an optional private CA file.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::Session;
use async_imap::error::Error as ImapError;
use async_imap::types::{Fetch, Name};
use futures::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Outcome, RawMessage, SourceError, SourceId};
use crate::config::{FeedbackConfig, ImapSecurity};

/// Messages fetched per round trip.
const FETCH_BATCH: usize = 50;
/// Connecting and the TLS handshake together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection under the IMAP session: plain TCP or TLS over it.
#[derive(Debug)]
enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub struct ImapSource {
    session: Session<Connection>,
    server: String,
    uid_validity: u32,
    /// UIDs found by the search, not fetched yet.
    pending: VecDeque<u32>,
    fetched: VecDeque<RawMessage>,
    processed_folder: String,
    kept_aside_folder: String,
    folders_made: Vec<String>,
    has_move: bool,
    /// Copies were flagged \Deleted (no MOVE): expunge on close.
    needs_expunge: bool,
    /// `feedback.max_message_bytes`: only this much (plus one byte, so a
    /// cut message is seen to be cut) of each message is fetched.
    max_bytes: u64,
}

impl ImapSource {
    /// Connects, logs in, selects the folder and lists its messages.
    pub async fn connect(
        cfg: &FeedbackConfig,
        ca_file: Option<&Path>,
    ) -> Result<Self, SourceError> {
        let server = format!("{}:{}", cfg.imap_host, cfg.imap_port);
        let fail = |message: String| SourceError::Imap {
            server: server.clone(),
            message,
        };
        if cfg.imap_security == ImapSecurity::Plain && !is_loopback(&cfg.imap_host) {
            return Err(fail(
                "refusing to send the password in plain text beyond loopback; \
                 set feedback.imap_security to \"tls\" or \"starttls\""
                    .into(),
            ));
        }
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect(cfg, ca_file))
            .await
            .map_err(|_| fail(format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(fail)?;
        let (client, connection_greeted) = connection;
        let mut client = client;
        if !connection_greeted {
            read_greeting(&mut client).await.map_err(fail)?;
        }
        let mut session = client
            .login(&cfg.imap_user, &cfg.imap_password)
            .await
            .map_err(|(e, _)| fail(format!("login as {:?} failed: {e}", cfg.imap_user)))?;
        let caps = session
            .capabilities()
            .await
            .map_err(|e| fail(format!("CAPABILITY: {e}")))?;
        let has_move = caps.has_str("MOVE");
        let mailbox = session
            .select(&cfg.imap_mailbox)
            .await
            .map_err(|e| fail(format!("SELECT {:?}: {e}", cfg.imap_mailbox)))?;
        let uid_validity = mailbox.uid_validity.unwrap_or(0);
        // With a processed folder, whatever is left is unprocessed; flagging
        // \Seen instead means unseen messages are the unprocessed ones.
        let query = if cfg.imap_processed_folder.is_empty() {
            "UNSEEN UNDELETED"
        } else {
            "UNDELETED"
        };
        let mut uids: Vec<u32> = session
            .uid_search(query)
            .await
            .map_err(|e| fail(format!("UID SEARCH {query}: {e}")))?
            .into_iter()
            .collect();
        uids.sort_unstable();
        let kept = if cfg.kept_aside_folder.is_empty() {
            "KeptAside".to_string()
        } else {
            cfg.kept_aside_folder.clone()
        };
        Ok(Self {
            session,
            server,
            uid_validity,
            pending: uids.into(),
            fetched: VecDeque::new(),
            processed_folder: cfg.imap_processed_folder.clone(),
            kept_aside_folder: kept,
            folders_made: Vec::new(),
            has_move,
            needs_expunge: false,
            max_bytes: cfg.max_message_bytes,
        })
    }

    fn fail(&self, message: String) -> SourceError {
        SourceError::Imap {
            server: self.server.clone(),
            message,
        }
    }

    pub async fn next_message(&mut self) -> Result<Option<RawMessage>, SourceError> {
        while self.fetched.is_empty() && !self.pending.is_empty() {
            let batch: Vec<u32> = self
                .pending
                .drain(..self.pending.len().min(FETCH_BATCH))
                .collect();
            let set = batch
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            // RFC 3501 §6.4.5: a partial fetch `<0.N>` returns at most N
            // octets, so a huge message never comes over the wire whole.
            let items = format!("(UID BODY.PEEK[]<0.{}>)", self.max_bytes.saturating_add(1));
            let fetched: Result<Vec<Fetch>, ImapError> = async {
                self.session
                    .uid_fetch(&set, &items)
                    .await?
                    .try_collect()
                    .await
            }
            .await;
            let fetches = fetched.map_err(|e| self.fail(format!("UID FETCH: {e}")))?;
            let mut got: Vec<RawMessage> = fetches
                .iter()
                .filter_map(|f| {
                    // A message expunged meanwhile has no body: skip it.
                    Some(RawMessage {
                        id: SourceId::Imap {
                            uid_validity: self.uid_validity,
                            uid: f.uid?,
                        },
                        bytes: f.body()?.to_vec(),
                    })
                })
                .collect();
            got.sort_by_key(|m| match m.id {
                SourceId::Imap { uid, .. } => uid,
                _ => 0,
            });
            self.fetched.extend(got);
        }
        Ok(self.fetched.pop_front())
    }

    pub async fn ack(&mut self, id: &SourceId, outcome: &Outcome) -> Result<(), SourceError> {
        let uid = match id {
            SourceId::Imap { uid_validity, uid } if *uid_validity == self.uid_validity => *uid,
            _ => return Err(SourceError::UnknownId { id: id.clone() }),
        };
        match outcome {
            Outcome::Processed if self.processed_folder.is_empty() => {
                self.store(uid, "+FLAGS.SILENT (\\Seen)").await
            }
            Outcome::Processed => {
                let folder = self.processed_folder.clone();
                self.move_to(uid, &folder, true).await
            }
            Outcome::KeptAside { reason } => {
                tracing::warn!(uid, reason = %reason, "feedback message kept aside");
                let folder = self.kept_aside_folder.clone();
                self.move_to(uid, &folder, false).await
            }
        }
    }

    async fn store(&mut self, uid: u32, query: &str) -> Result<(), SourceError> {
        let stored: Result<Vec<Fetch>, ImapError> = async {
            self.session
                .uid_store(uid.to_string(), query)
                .await?
                .try_collect()
                .await
        }
        .await;
        stored.map_err(|e| self.fail(format!("UID STORE {uid}: {e}")))?;
        Ok(())
    }

    async fn move_to(&mut self, uid: u32, folder: &str, seen: bool) -> Result<(), SourceError> {
        self.ensure_folder(folder).await?;
        if seen {
            // The moved copy shows as read in the processed folder.
            self.store(uid, "+FLAGS.SILENT (\\Seen)").await?;
        }
        if self.has_move {
            return self
                .session
                .uid_mv(uid.to_string(), folder)
                .await
                .map_err(|e| self.fail(format!("UID MOVE {uid} {folder:?}: {e}")));
        }
        self.session
            .uid_copy(uid.to_string(), folder)
            .await
            .map_err(|e| self.fail(format!("UID COPY {uid} {folder:?}: {e}")))?;
        self.store(uid, "+FLAGS.SILENT (\\Deleted)").await?;
        self.needs_expunge = true;
        Ok(())
    }

    /// Creates a folder unless LIST shows it exists.
    async fn ensure_folder(&mut self, folder: &str) -> Result<(), SourceError> {
        if self.folders_made.iter().any(|f| f == folder) {
            return Ok(());
        }
        let pattern = quote(folder);
        let listed: Result<Vec<Name>, ImapError> = async {
            self.session
                .list(Some(""), Some(&pattern))
                .await?
                .try_collect()
                .await
        }
        .await;
        let names = listed.map_err(|e| self.fail(format!("LIST {folder:?}: {e}")))?;
        if names.is_empty() {
            self.session
                .create(folder)
                .await
                .map_err(|e| self.fail(format!("CREATE {folder:?}: {e}")))?;
        }
        self.folders_made.push(folder.to_string());
        Ok(())
    }

    pub async fn close(mut self) -> Result<(), SourceError> {
        if self.needs_expunge {
            // CLOSE expunges \Deleted messages silently (RFC 3501 §6.4.2).
            self.session
                .close()
                .await
                .map_err(|e| self.fail(format!("CLOSE: {e}")))?;
        }
        self.session
            .logout()
            .await
            .map_err(|e| self.fail(format!("LOGOUT: {e}")))
    }
}

/// An IMAP quoted string (RFC 3501 §4.3) for LIST patterns.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

type Client = async_imap::Client<Connection>;

/// Connects as configured. Returns the client and whether the greeting was
/// already read (it was, before STARTTLS).
async fn connect(cfg: &FeedbackConfig, ca_file: Option<&Path>) -> Result<(Client, bool), String> {
    let tcp = TcpStream::connect((cfg.imap_host.as_str(), cfg.imap_port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match cfg.imap_security {
        ImapSecurity::Plain => Ok((async_imap::Client::new(Connection::Plain(tcp)), false)),
        ImapSecurity::Tls => {
            let tls = crate::tls::handshake(tcp, &cfg.imap_host, ca_file).await?;
            Ok((
                async_imap::Client::new(Connection::Tls(Box::new(tls))),
                false,
            ))
        }
        ImapSecurity::Starttls => {
            let mut client = async_imap::Client::new(Connection::Plain(tcp));
            read_greeting(&mut client).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| format!("STARTTLS: {e}"))?;
            let Connection::Plain(tcp) = client.into_inner() else {
                return Err("STARTTLS on a connection that is already TLS".into());
            };
            let tls = crate::tls::handshake(tcp, &cfg.imap_host, ca_file).await?;
            // RFC 3501 §6.2.1: no new greeting after the handshake.
            Ok((
                async_imap::Client::new(Connection::Tls(Box::new(tls))),
                true,
            ))
        }
    }
}

async fn read_greeting(client: &mut Client) -> Result<(), String> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the server closed the connection before its greeting".into()),
        Err(e) => Err(format!("greeting: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("imap.example.org"));
        assert!(!is_loopback("192.0.2.1"));
    }

    #[test]
    fn quoted_strings() {
        assert_eq!(quote("Processed"), "\"Processed\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[tokio::test]
    async fn plain_text_beyond_loopback_is_refused_before_connecting() {
        let cfg = FeedbackConfig {
            imap_host: "imap.example.org".into(),
            imap_port: 143,
            imap_security: ImapSecurity::Plain,
            ..FeedbackConfig::default()
        };
        let err = ImapSource::connect(&cfg, None).await.err().unwrap();
        assert!(err.to_string().contains("plain text"), "{err}");
    }
}
