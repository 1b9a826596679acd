//! CSRF protection of the forms that change state: a form carries a MAC of
//! the page's token (`Keyring::form_tag`, only someone who was served the
//! page can post it), and a browser's cross-site POST is refused by its
//! `Sec-Fetch-Site` and `Origin` headers. No cookies are set anywhere, so
//! there is no session to ride.

use axum::http::HeaderMap;

use super::{TrackError, header_text};

/// Refuses a POST a browser says came from another site.
pub fn same_origin(headers: &HeaderMap, base_url: &url::Url) -> Result<(), TrackError> {
    if header_text(headers, "sec-fetch-site").is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return Err(TrackError::Forbidden(
            "the form was posted from another site",
        ));
    }
    if let Some(origin) = header_text(headers, "origin")
        && origin != base_url.origin().ascii_serialization()
    {
        return Err(TrackError::Forbidden(
            "the form was posted from another site",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_posts_are_refused() {
        let base = url::Url::parse("https://n.example/").unwrap();
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, &base).is_ok());
        h.insert("origin", "https://n.example".parse().unwrap());
        assert!(same_origin(&h, &base).is_ok());
        h.insert("origin", "https://evil.example".parse().unwrap());
        assert!(same_origin(&h, &base).is_err());
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(same_origin(&h, &base).is_err());
    }
}
