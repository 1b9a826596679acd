//! Instants are stored as milliseconds since the Unix epoch: they compare and
//! sort the same on SQLite and PostgreSQL, with no driver-specific date types.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_millis() as Millis
}

/// RFC 3339 rendering for reports and exports.
pub fn to_rfc3339(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| ms.to_string()),
        Err(_) => ms.to_string(),
    }
}
