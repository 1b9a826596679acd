//! Rendering: Tera templates, personalisation, headers, MIME, DKIM.
