//! The outbox transport: each message as an .eml file, for machines with no
//! SMTP server configured (and for inspecting exactly what would be sent).
//!
//! Files are written to a temporary name and renamed, so a reader never sees
//! half a message, and a resend after a crash overwrites the same file
//! (`<send id>.eml`) instead of adding a copy. Each file starts with a
//! `Return-Path` line holding the envelope sender (the VERP address MAIL
//! FROM would carry), as a receiving server records it (RFC 5321 §4.4): the
//! outbox shows exactly what SMTP would have carried. Messages sent by SMTP
//! never carry one; the receiver adds it.

use std::io::Write;
use std::path::Path;

use super::{Attempt, Composed, SendError};

pub fn write(dir: &Path, campaign: &str, send_id: i64, m: &Composed) -> Result<Attempt, SendError> {
    let folder = dir.join(campaign);
    let path = folder.join(format!("{send_id}.eml"));
    let tmp = folder.join(format!(".{send_id}.eml.tmp"));
    let err = |source| SendError::Outbox {
        path: path.display().to_string(),
        source,
    };
    // The message holds personal data: owner-only (private_files).
    let mut f = crate::private_files::create(&tmp).map_err(err)?;
    f.write_all(format!("Return-Path: <{}>\r\n", m.envelope.from).as_bytes())
        .map_err(err)?;
    f.write_all(&m.bytes).map_err(err)?;
    f.sync_data().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(Attempt::Accepted {
        code: None,
        reply: format!("written to {}", path.display()),
    })
}
