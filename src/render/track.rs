//! Tracking in an HTML body, where the send is known: each absolute http(s)
//! link becomes `BASE/c/TOKEN?u=URL`, the token carrying the link's index
//! and a MAC over the exact URL (so the redirect goes only there), and an
//! open pixel `BASE/o/TOKEN.gif` goes before `</body>`. Links to cartero's
//! own pages (under the base URL: unsubscribe, preferences) stay as they are.
//!
//! Links are found by `links::map_hrefs`, the scanner UTM parameters use:
//! the rest of the body reaches the reader byte for byte. Pure: no I/O.

use crate::domain::token::{Keyring, Purpose, Subject};

/// What the rewriting needs of one message.
pub struct Tracking<'a> {
    pub keys: &'a Keyring,
    /// Without a trailing slash.
    pub base_url: &'a str,
    pub send_id: i64,
    pub opens: bool,
    pub clicks: bool,
}

pub fn apply(html: &str, t: &Tracking<'_>) -> String {
    let mut out = if t.clicks {
        rewrite_links(html, t)
    } else {
        html.to_string()
    };
    if t.opens {
        let token = t.keys.sign(Purpose::Open, Subject::Send(t.send_id));
        let img = format!(
            "<img src=\"{}/o/{token}.gif\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">",
            t.base_url
        );
        match rfind_ci(&out, "</body") {
            Some(i) => out.insert_str(i, &img),
            None => out.push_str(&img),
        }
    }
    out
}

fn rewrite_links(html: &str, t: &Tracking<'_>) -> String {
    let mut index: u16 = 0;
    super::links::map_hrefs(html, &mut |url| {
        let web = matches!(super::links::scheme(url).as_deref(), Some("http" | "https"));
        let ours =
            url.starts_with(t.base_url) && url[t.base_url.len()..].starts_with(['/', '?', '#']);
        if !web || ours || index == u16::MAX {
            return None;
        }
        let token = t.keys.sign_click(t.send_id, index, url);
        index += 1;
        Some(format!(
            "{}/c/{token}?u={}",
            t.base_url,
            form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
        ))
    })
}

fn rfind_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .rposition(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_become_signed_redirects_and_the_pixel_goes_before_body_end() {
        let keys = Keyring::new(0, b"a secret of some length");
        let t = Tracking {
            keys: &keys,
            base_url: "https://t.example",
            send_id: 42,
            opens: true,
            clicks: true,
        };
        let html = "<html><body><a href=\"https://shop.example/a?x=1&amp;y=2\">a</a> \
                    <A data-x=1 HREF='http://b.example/'>b</A> <a href=\"mailto:x@y.example\">m</a> \
                    <a href=\"https://t.example/u/abc\">unsubscribe</a> <abbr>z</abbr></BODY></html>";
        let out = apply(html, &t);
        let links: Vec<&str> = out
            .match_indices("https://t.example/c/")
            .map(|(i, _)| &out[i..])
            .collect();
        assert_eq!(links.len(), 2, "{out}");
        // The first link signs the URL the browser would follow.
        let first = links[0].split(['"', '\'']).next().unwrap();
        let (path, q) = first.split_once('?').unwrap();
        let token = path.rsplit('/').next().unwrap();
        let u: String = form_urlencoded::parse(q.as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        assert_eq!(u, "https://shop.example/a?x=1&y=2");
        assert_eq!(keys.verify_click(token, &u, 0), Ok((42, 0)));
        let second = links[1].split(['"', '\'']).next().unwrap();
        let (path, q) = second.split_once('?').unwrap();
        let u: String = form_urlencoded::parse(q.as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        assert_eq!(u, "http://b.example/");
        assert_eq!(
            keys.verify_click(path.rsplit('/').next().unwrap(), &u, 0),
            Ok((42, 1))
        );
        assert!(out.contains("href=\"mailto:x@y.example\""));
        assert!(out.contains("href=\"https://t.example/u/abc\""));
        assert!(out.contains("<abbr>z</abbr>"));
        let pixel = out.find("/o/").unwrap();
        assert!(pixel < out.find("</BODY>").unwrap(), "{out}");
    }

    #[test]
    fn nothing_changes_when_tracking_is_off() {
        let keys = Keyring::new(0, b"a secret of some length");
        let t = Tracking {
            keys: &keys,
            base_url: "https://t.example",
            send_id: 1,
            opens: false,
            clicks: false,
        };
        let html = "<a href=\"https://x.example\">x</a>";
        assert_eq!(apply(html, &t), html);
    }
}
