//! One SMTP connection per worker, owned by the worker.
//!
//! The TCP stream is opened here with TCP_NODELAY and handed to lettre:
//! lettre 0.11.23 never sets it, and writes the body and the final `.` in two
//! writes, so Nagle holds the second until the server's delayed ACK, 40 ms
//! later, on every message (about 90 messages/s; with NODELAY about 7,000/s
//! over 4 connections on loopback; see docs/PERFORMANCE.md). A connection per
//! worker also avoids the pool's NOOP before every reuse.
//!
//! lettre sends MAIL, RCPT, DATA and the body as four round trips. When the
//! server offers PIPELINING (RFC 2920) the transaction here sends the three
//! commands in one write and reads their three replies, then the body: two
//! round trips, built from lettre's own commands, codec and reply parser.
//! lettre keeps only the EHLO keywords it uses, so the connection asks EHLO
//! once more to learn whether PIPELINING is offered.

use std::time::Duration;

use lettre::address::Envelope as LettreEnvelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{SmtpConfig, TlsMode};
use crate::render::Envelope;

/// What one delivery attempt came to, as the state machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Accepted {
        code: Option<u16>,
        reply: String,
    },
    /// 4xx: try again later.
    Transient {
        code: Option<u16>,
        reply: String,
    },
    /// 5xx: the server refused this message for good.
    Permanent {
        code: Option<u16>,
        reply: String,
    },
    /// The connection failed before the server judged the message: not the
    /// recipient's fault, so it is retried without counting against them.
    Connection {
        reason: String,
    },
    /// The server was reached and then did not answer a command within its
    /// timeout (`smtp.timeout_secs`, `smtp.data_timeout_secs`): a deferral,
    /// so that a server that hangs on a recipient holds a worker for a
    /// bounded time. The reply starts with [`TIMED_OUT`].
    TimedOut {
        reason: String,
    },
}

/// What the reply of a send row starts with when the server did not answer
/// in time (the summary counts these apart).
pub const TIMED_OUT: &str = "timed out: ";

/// How long to wait for each reply of a transaction.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// Each command (MAIL, RCPT, DATA, RSET).
    command: Duration,
    /// The reply after the message content.
    data: Duration,
}

/// One step of a transaction under its timeout: `Err` when the server did
/// not answer in time.
async fn within<T>(
    limit: Duration,
    what: &str,
    key: &str,
    step: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<Result<T, lettre::transport::smtp::Error>, Attempt> {
    tokio::time::timeout(limit, step)
        .await
        .map_err(|_| Attempt::TimedOut {
            reason: format!(
                "{TIMED_OUT}no reply to {what} within {} s (smtp.{key})",
                limit.as_secs()
            ),
        })
}

#[derive(Debug, thiserror::Error)]
#[error("SMTP server {host}:{port}: {reason}")]
pub struct ConnectError {
    pub host: String,
    pub port: u16,
    pub reason: String,
    /// The server could not be reached or did not greet (refused, timed
    /// out, reset, 4xx greeting): an outage that may end, worth retrying.
    /// False for what waiting does not fix: TLS, EHLO or AUTH refused.
    pub unreachable: bool,
}

/// A TLS stream cartero opened (with TCP_NODELAY), handed to lettre as its
/// transport.
struct ImplicitTls(TlsStream<TcpStream>);

impl std::fmt::Debug for ImplicitTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImplicitTls")
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

pub struct SmtpClient {
    cfg: SmtpConfig,
    hello: ClientId,
    conn: Option<AsyncSmtpConnection>,
    /// The connected server offers PIPELINING and the config allows it.
    pipelining: bool,
}

impl SmtpClient {
    pub fn new(cfg: &SmtpConfig) -> Self {
        let hello = match &cfg.helo_name {
            Some(h) => ClientId::Domain(h.clone()),
            None => ClientId::default(),
        };
        Self {
            cfg: cfg.clone(),
            hello,
            conn: None,
            pipelining: false,
        }
    }

    fn err(&self, reason: impl ToString) -> ConnectError {
        ConnectError {
            host: self.cfg.host.clone(),
            port: self.cfg.port,
            reason: reason.to_string(),
            unreachable: false,
        }
    }

    /// An error that waiting may fix: no connection, or no greeting.
    fn unreachable(&self, reason: impl ToString) -> ConnectError {
        ConnectError {
            unreachable: true,
            ..self.err(reason)
        }
    }

    /// lettre's TLS settings for STARTTLS: the Mozilla roots and `ca_file`.
    fn tls_parameters(&self, host: &str) -> Result<TlsParameters, ConnectError> {
        let mut builder = TlsParameters::builder(host.to_string());
        if let Some(path) = &self.cfg.ca_file {
            for cert in crate::tls::pem_certificates(path).map_err(|e| self.err(e))? {
                let cert = Certificate::from_der(cert.to_vec()).map_err(|e| self.err(e))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        builder.build_rustls().map_err(|e| self.err(e))
    }

    pub async fn connect(&mut self) -> Result<(), ConnectError> {
        let timeout = Duration::from_secs(self.cfg.timeout_secs.max(1));
        let host = self.cfg.host.clone();
        // The socket is always ours, implicit TLS included: lettre's own
        // connect never sets TCP_NODELAY, and every message would then wait
        // for a delayed ACK (40 ms) before the server's reply.
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), self.cfg.port)))
            .await
            .map_err(|_| self.unreachable("connection timed out"))?
            .map_err(|e| self.unreachable(e))?;
        tcp.set_nodelay(true).map_err(|e| self.unreachable(e))?;
        let peer = tcp.peer_addr().map_err(|e| self.unreachable(e))?;
        let transport: Box<dyn AsyncTokioStream> = if self.cfg.tls == TlsMode::Tls {
            // Implicit TLS (RFC 8314): the handshake before the greeting.
            let tls = tokio::time::timeout(
                timeout,
                crate::tls::handshake(tcp, &host, self.cfg.ca_file.as_deref()),
            )
            .await
            .map_err(|_| self.unreachable("TLS handshake timed out"))?
            .map_err(|e| self.err(e))?;
            Box::new(ImplicitTls(tls))
        } else {
            Box::new(tcp)
        };
        let mut conn = tokio::time::timeout(
            timeout,
            AsyncSmtpConnection::connect_with_transport(transport, &self.hello),
        )
        .await
        .map_err(|_| self.unreachable("no greeting from the server"))?
        .map_err(|e| {
            // 421 or a dropped connection: the server is busy or going
            // away (RFC 5321 §3.8); a 5xx greeting will not change.
            if e.is_permanent() {
                self.err(e)
            } else {
                self.unreachable(e)
            }
        })?;
        let want_tls = match self.cfg.tls {
            TlsMode::Starttls => true,
            TlsMode::Opportunistic => conn.can_starttls(),
            TlsMode::None | TlsMode::Tls => false,
        };
        if want_tls {
            let tls = self.tls_parameters(&host)?;
            tokio::time::timeout(timeout, conn.starttls(tls, &self.hello))
                .await
                .map_err(|_| self.unreachable("no reply to STARTTLS in time (smtp.timeout_secs)"))?
                .map_err(|e| self.err(format!("STARTTLS failed: {e}")))?;
        }
        // Before AUTH: a second EHLO resets the session (RFC 5321 4.1.4),
        // which must not undo an authentication.
        self.pipelining = self.cfg.pipelining
            && match tokio::time::timeout(timeout, conn.command(Ehlo::new(self.hello.clone())))
                .await
            {
                Ok(Ok(reply)) => offers_pipelining(&reply),
                Ok(Err(e)) => return Err(self.err(format!("EHLO failed: {e}"))),
                Err(_) => {
                    return Err(self.unreachable("no reply to EHLO in time (smtp.timeout_secs)"));
                }
            };
        if let (Some(user), Some(pass)) = (&self.cfg.username, &self.cfg.password) {
            // Never the password in clear beyond loopback, whatever `tls`
            // says (auth.rs): a stripped STARTTLS must not reveal it.
            let encrypted = self.cfg.tls == TlsMode::Tls || want_tls;
            if !super::auth::may_authenticate(encrypted, peer.ip()) {
                let _ = conn.quit().await;
                return Err(self.err(format!(
                    "refusing to send the SMTP password without TLS to {}: the server offered no \
                     STARTTLS; use tls = \"tls\" or \"starttls\" (only a loopback relay may \
                     authenticate in clear)",
                    peer.ip()
                )));
            }
            let creds = Credentials::new(user.clone(), pass.to_string());
            tokio::time::timeout(
                timeout,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await
            .map_err(|_| self.unreachable("no reply to AUTH in time (smtp.timeout_secs)"))?
            .map_err(|e| self.err(format!("authentication failed: {e}")))?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    pub async fn deliver(&mut self, envelope: &Envelope, bytes: &[u8]) -> Attempt {
        let env = match lettre_envelope(envelope) {
            Ok(e) => e,
            Err(reason) => {
                return Attempt::Permanent {
                    code: None,
                    reply: reason,
                };
            }
        };
        if self.conn.as_ref().is_none_or(|c| c.has_broken()) {
            self.conn = None;
            if let Err(e) = self.connect().await {
                return Attempt::Connection {
                    reason: e.to_string(),
                };
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Attempt::Connection {
                reason: "not connected".into(),
            };
        };
        let limits = Timeouts {
            command: Duration::from_secs(self.cfg.timeout_secs.max(1)),
            data: Duration::from_secs(self.cfg.data_timeout_secs.max(1)),
        };
        let transaction = if self.pipelining {
            pipelined(conn, envelope, &env, bytes, limits).await
        } else {
            one_by_one(conn, envelope, &env, bytes, limits).await
        };
        match transaction {
            Transaction::Done(attempt) => attempt,
            Transaction::Broken(attempt) => {
                // A server that did not answer in time may or may not have
                // the message (the in-flight case): the connection is
                // dropped, never reused out of step.
                self.conn = None;
                attempt
            }
        }
    }

    pub async fn quit(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = c.quit().await;
        }
    }
}

/// True when an EHLO reply lists the PIPELINING keyword.
fn offers_pipelining(reply: &Response) -> bool {
    // The first line is the server's greeting name; keywords follow.
    reply.message().skip(1).any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
    })
}

/// How a pipelined transaction ended, and whether the connection can carry
/// the next one.
enum Transaction {
    Done(Attempt),
    Broken(Attempt),
}

fn attempt_of(e: &lettre::transport::smtp::Error) -> Attempt {
    let code = e.status().map(u16::from);
    let reply = e.to_string();
    if e.is_permanent() {
        Attempt::Permanent { code, reply }
    } else if e.is_transient() {
        Attempt::Transient { code, reply }
    } else {
        Attempt::Connection { reason: reply }
    }
}

/// The MAIL parameters lettre's own `send` would use, or why the message
/// cannot go to this server at all.
fn mail_params(
    conn: &AsyncSmtpConnection,
    envelope: &Envelope,
    bytes: &[u8],
) -> Result<Vec<MailParameter>, Attempt> {
    let mut params = Vec::new();
    if !envelope.from.is_ascii() || !envelope.to.is_ascii() {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(Attempt::Permanent {
                code: None,
                reply: "the address needs SMTPUTF8, which the server does not offer".into(),
            });
        }
        params.push(MailParameter::SmtpUtfEight);
    }
    if !bytes.is_ascii() {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(Attempt::Permanent {
                code: None,
                reply:
                    "the message has 8-bit content, which the server does not accept (no 8BITMIME)"
                        .into(),
            });
        }
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(params)
}

/// Ends a transaction the server refused part of: RSET (within the command
/// timeout) keeps the connection for the next message.
async fn reset(conn: &mut AsyncSmtpConnection, attempt: Attempt, limit: Duration) -> Transaction {
    match within(limit, "RSET", "timeout_secs", conn.command(Rset)).await {
        Ok(Ok(_)) => Transaction::Done(attempt),
        Ok(Err(_)) | Err(_) => Transaction::Broken(attempt),
    }
}

/// One message, one command at a time (no PIPELINING), each reply under its
/// timeout. A refused command leaves the connection usable after RSET.
async fn one_by_one(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    env: &LettreEnvelope,
    bytes: &[u8],
    limits: Timeouts,
) -> Transaction {
    let params = match mail_params(conn, envelope, bytes) {
        Ok(p) => p,
        Err(attempt) => return Transaction::Done(attempt),
    };
    let mut commands = vec![(
        "MAIL FROM",
        Mail::new(env.from().cloned(), params).to_string(),
    )];
    for to in env.to() {
        commands.push(("RCPT TO", Rcpt::new(to.clone(), Vec::new()).to_string()));
    }
    commands.push(("DATA", Data.to_string()));
    for (what, command) in commands {
        match within(limits.command, what, "timeout_secs", conn.command(command)).await {
            Err(timed_out) => return Transaction::Broken(timed_out),
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.status().is_some() => {
                return reset(conn, attempt_of(&e), limits.command).await;
            }
            Ok(Err(e)) => return Transaction::Broken(attempt_of(&e)),
        }
    }
    match within(
        limits.data,
        "the message content",
        "data_timeout_secs",
        send_data(conn, bytes),
    )
    .await
    {
        Err(timed_out) => Transaction::Broken(timed_out),
        Ok(Ok(reply)) => Transaction::Done(accepted(&reply)),
        Ok(Err(e)) if e.status().is_some() => Transaction::Done(attempt_of(&e)),
        Ok(Err(e)) => Transaction::Broken(attempt_of(&e)),
    }
}

/// One message as an RFC 2920 pipelined transaction: MAIL, RCPT and DATA in
/// one write, their three replies, then the body and its reply, each reply
/// under its timeout. A refused command leaves the connection usable after
/// RSET; anything that is not a server reply (a dropped connection, garbage,
/// silence past the timeout) breaks it.
async fn pipelined(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    env: &LettreEnvelope,
    bytes: &[u8],
    limits: Timeouts,
) -> Transaction {
    let params = match mail_params(conn, envelope, bytes) {
        Ok(p) => p,
        Err(attempt) => return Transaction::Done(attempt),
    };
    let mut commands = Mail::new(env.from().cloned(), params).to_string();
    for to in env.to() {
        commands.push_str(&Rcpt::new(to.clone(), Vec::new()).to_string());
    }
    commands.push_str(&Data.to_string());

    // Every command gets a reply, refused or not; read them all before
    // judging, so the stream stays in step.
    let mut replies = Vec::with_capacity(2 + env.to().len());
    match within(
        limits.command,
        "MAIL FROM",
        "timeout_secs",
        conn.command(commands),
    )
    .await
    {
        Ok(reply) => replies.push(reply),
        Err(timed_out) => return Transaction::Broken(timed_out),
    }
    for i in 0..env.to().len() + 1 {
        if replies
            .last()
            .is_some_and(|r| r.as_ref().is_err_and(|e| e.status().is_none()))
        {
            break;
        }
        let what = if i < env.to().len() {
            "RCPT TO"
        } else {
            "DATA"
        };
        match within(limits.command, what, "timeout_secs", conn.read_response()).await {
            Ok(reply) => replies.push(reply),
            Err(timed_out) => return Transaction::Broken(timed_out),
        }
    }
    let data_accepted =
        replies.len() == env.to().len() + 2 && replies.last().is_some_and(|r| r.is_ok());
    let refused = replies.iter().find_map(|r| r.as_ref().err());
    match refused {
        None if data_accepted => match within(
            limits.data,
            "the message content",
            "data_timeout_secs",
            send_data(conn, bytes),
        )
        .await
        {
            Err(timed_out) => Transaction::Broken(timed_out),
            Ok(Ok(reply)) => Transaction::Done(accepted(&reply)),
            Ok(Err(e)) if e.status().is_some() => Transaction::Done(attempt_of(&e)),
            Ok(Err(e)) => Transaction::Broken(attempt_of(&e)),
        },
        Some(e) if e.status().is_none() => Transaction::Broken(attempt_of(e)),
        refused => {
            let attempt = match refused {
                Some(e) => attempt_of(e),
                None => Attempt::Connection {
                    reason: "the server did not answer every pipelined command".into(),
                },
            };
            // A server that took DATA despite a refused recipient waits
            // for a body: an empty one ends that transaction.
            if data_accepted
                && !matches!(
                    within(
                        limits.data,
                        "an empty message",
                        "data_timeout_secs",
                        conn.message(b"")
                    )
                    .await,
                    Ok(Ok(_))
                )
            {
                return Transaction::Broken(attempt);
            }
            reset(conn, attempt, limits.command).await
        }
    }
}

/// The message content and its end (RFC 5321 §4.1.1.4) in one write, then
/// the server's reply. lettre's `message` copies the content byte by byte
/// into a dot-stuffed buffer and writes the final `.` separately: about 5%
/// of a send's CPU, and two TCP segments a message with TCP_NODELAY.
async fn send_data(
    conn: &mut AsyncSmtpConnection,
    bytes: &[u8],
) -> Result<Response, lettre::transport::smtp::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => conn.command(DataBody(text)).await,
        // Not reached with messages cartero builds (always UTF-8).
        Err(_) => conn.message(bytes).await,
    }
}

/// Message content as sent after DATA: a `.` that starts a line is doubled
/// (RFC 5321 §4.5.2) and the content ends with CRLF `.` CRLF, as lettre ends
/// it.
struct DataBody<'a>(&'a str);

impl std::fmt::Display for DataBody<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if text.starts_with('.') {
            f.write_str(".")?;
        }
        let mut start = 0;
        for at in memchr::memmem::find_iter(text.as_bytes(), b"\r\n.") {
            // Up to and including the CRLF; the line's own dot follows.
            f.write_str(&text[start..at + 2])?;
            f.write_str(".")?;
            start = at + 2;
        }
        f.write_str(&text[start..])?;
        f.write_str("\r\n.\r\n")
    }
}

fn accepted(reply: &Response) -> Attempt {
    Attempt::Accepted {
        code: Some(u16::from(reply.code())),
        reply: format!(
            "{} {}",
            reply.code(),
            reply.message().collect::<Vec<_>>().join(" ")
        ),
    }
}

fn lettre_envelope(e: &Envelope) -> Result<LettreEnvelope, String> {
    let from = e
        .from
        .parse()
        .map_err(|err| format!("return path {:?} rejected: {err}", e.from))?;
    let to =
        e.to.parse()
            .map_err(|err| format!("recipient {:?} rejected by the SMTP client: {err}", e.to))?;
    LettreEnvelope::new(Some(from), vec![to]).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5321 §4.5.2 read literally, one byte at a time: the reference
    /// the fast version must agree with.
    fn stuffed_by_hand(text: &str) -> String {
        let mut out = String::new();
        let mut line_start = true;
        let mut prev = '\0';
        for ch in text.chars() {
            if line_start && ch == '.' {
                out.push('.');
            }
            out.push(ch);
            line_start = prev == '\r' && ch == '\n';
            prev = ch;
        }
        out.push_str("\r\n.\r\n");
        out
    }

    #[test]
    fn dots_that_start_a_line_are_doubled() {
        let text = ".first\r\nmiddle.\r\n.\r\n..two\r\nbare\n.lf";
        assert_eq!(
            DataBody(text).to_string(),
            "..first\r\nmiddle.\r\n..\r\n...two\r\nbare\n.lf\r\n.\r\n"
        );
        assert_eq!(DataBody("").to_string(), "\r\n.\r\n");
    }

    proptest! {
        #[test]
        fn agrees_with_the_rule_read_literally(text in "[a.\r\né]{0,60}") {
            prop_assert_eq!(DataBody(&text).to_string(), stuffed_by_hand(&text));
        }
    }
}
