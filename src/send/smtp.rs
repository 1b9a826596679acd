//! One SMTP connection per worker, owned by the worker.
//!
//! The TCP stream is opened here with TCP_NODELAY and handed to lettre:
//! lettre 0.11.23 never sets it, and writes the body and the final `.` in two
//! writes, so Nagle holds the second until the server's delayed ACK, 40 ms
//! later, on every message (about 90 messages/s; with NODELAY about 7,000/s
//! over 4 connections on loopback; see docs/PERFORMANCE.md). A connection per
//! worker also avoids the pool's NOOP before every reuse.

use std::time::Duration;

use lettre::address::Envelope as LettreEnvelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

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
}

#[derive(Debug, thiserror::Error)]
#[error("SMTP server {host}:{port}: {reason}")]
pub struct ConnectError {
    pub host: String,
    pub port: u16,
    pub reason: String,
}

pub struct SmtpClient {
    cfg: SmtpConfig,
    hello: ClientId,
    conn: Option<AsyncSmtpConnection>,
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
        }
    }

    fn err(&self, reason: impl ToString) -> ConnectError {
        ConnectError {
            host: self.cfg.host.clone(),
            port: self.cfg.port,
            reason: reason.to_string(),
        }
    }

    pub async fn connect(&mut self) -> Result<(), ConnectError> {
        let timeout = Duration::from_secs(self.cfg.timeout_secs.max(1));
        let host = self.cfg.host.clone();
        let mut conn = if self.cfg.tls == TlsMode::Tls {
            // Implicit TLS (RFC 8314): lettre opens the stream itself here.
            let tls = TlsParameters::new(host.clone()).map_err(|e| self.err(e))?;
            AsyncSmtpConnection::connect_tokio1(
                (host.as_str(), self.cfg.port),
                Some(timeout),
                &self.hello,
                Some(tls),
                None,
            )
            .await
            .map_err(|e| self.err(e))?
        } else {
            let tcp =
                tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), self.cfg.port)))
                    .await
                    .map_err(|_| self.err("connection timed out"))?
                    .map_err(|e| self.err(e))?;
            tcp.set_nodelay(true).map_err(|e| self.err(e))?;
            let mut conn = tokio::time::timeout(
                timeout,
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
            )
            .await
            .map_err(|_| self.err("no greeting from the server"))?
            .map_err(|e| self.err(e))?;
            let want_tls = match self.cfg.tls {
                TlsMode::Starttls => true,
                TlsMode::Opportunistic => conn.can_starttls(),
                TlsMode::None | TlsMode::Tls => false,
            };
            if want_tls {
                let tls = TlsParameters::new(host.clone()).map_err(|e| self.err(e))?;
                conn.starttls(tls, &self.hello)
                    .await
                    .map_err(|e| self.err(format!("STARTTLS failed: {e}")))?;
            }
            conn
        };
        if let (Some(user), Some(pass)) = (&self.cfg.username, &self.cfg.password) {
            let creds = Credentials::new(user.clone(), pass.clone());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .await
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
        let timeout = Duration::from_secs(self.cfg.timeout_secs.max(1) * 4);
        let result = tokio::time::timeout(timeout, conn.send(&env, bytes)).await;
        match result {
            Err(_) => {
                // The server may or may not have the message: this is the
                // in-flight case. Drop the connection; the caller defers.
                self.conn = None;
                Attempt::Connection {
                    reason: "timed out waiting for the server's reply".into(),
                }
            }
            Ok(Ok(resp)) => Attempt::Accepted {
                code: Some(u16::from(resp.code())),
                reply: format!(
                    "{} {}",
                    resp.code(),
                    resp.message().collect::<Vec<_>>().join(" ")
                ),
            },
            Ok(Err(e)) => {
                // lettre aborts the connection on any error; reconnect next time.
                self.conn = None;
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
        }
    }

    pub async fn quit(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = c.quit().await;
        }
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
