//! MX checks with hickory-resolver (RFC 5321 §5.1, RFC 7505 null MX).
