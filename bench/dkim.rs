//! DKIM signing speed: lettre's `dkim` feature against cartero's
//! `render::DkimSigner` (mail-auth with ring), RSA-2048 and Ed25519, on the
//! same ~10 KB multipart message, one thread.
//!
//! Both paths end with the bytes that go on the wire: lettre signs its
//! `Message` in place and formats it; cartero formats the message once
//! (as `render::build_message` does) and mail-auth puts its header in front.
//! Both sign the same header list with relaxed/relaxed canonicalisation.
//! Figures are signatures per second of this thread's CPU time (read from
//! /proc/thread-self/schedstat, so other load on the machine does not count),
//! beside the wall-clock rate.
//!
//! Run through bench/dkim.sh, which makes the keys with openssl and checks
//! one signature from each signer with dkimpy. By hand:
//!   cargo run --release --example dkim_bench -- RSA_PKCS8.pem RSA_PKCS1.pem \
//!       ED25519_PKCS8.pem ED25519_SEED.b64 N OUT_DIR

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cartero::config::DkimAlgorithm;
use cartero::render::DkimSigner;
use cartero::render::dkim::SIGNED_HEADERS;
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey, dkim_sign,
};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{MultiPart, SinglePart};

const DOMAIN: &str = "shop.example";
const SELECTOR: &str = "bench";

/// This thread's CPU time (first field of schedstat: nanoseconds on a CPU).
fn thread_cpu() -> Result<Duration, Box<dyn Error>> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: u64 = s
        .split_whitespace()
        .next()
        .ok_or("empty /proc/thread-self/schedstat")?
        .parse()?;
    Ok(Duration::from_nanos(ns))
}

/// A message shaped like cartero's: the RFC 8058 headers and a
/// multipart/alternative body of about 10 KB.
fn message() -> Result<Message, Box<dyn Error>> {
    let raw = |name: &str, value: &str| -> Result<HeaderValue, Box<dyn Error>> {
        Ok(HeaderValue::new(
            HeaderName::new_from_ascii(name.to_string()).map_err(|_| "header name")?,
            value.to_string(),
        ))
    };
    let mut text = String::from("Hello Ana García!\n\nHere is your personal selection.\n");
    let mut html =
        String::from("<!doctype html><html><body><h1>Hello Ana Garc&iacute;a!</h1><table>\n");
    for i in 0..24 {
        text.push_str(&format!(
            "- Item {i} picked for Ana (ES-{}): https://shop.example/p/{i}?for=ana%40example.com\n",
            84 + i
        ));
        html.push_str(&format!(
            "<tr><td>Item {i} picked for Ana</td><td>ES-{}</td><td><a href=\"https://shop.example/p/{i}?for=ana%40example.com\">See it</a></td></tr>\n",
            84 + i
        ));
    }
    while text.len() < 3_500 {
        text.push_str("Prices include VAT. Offer valid while stocks last.\n");
    }
    while html.len() < 6_000 {
        html.push_str("<p style=\"font-size: small\">Prices include VAT. Offer valid while stocks last.</p>\n");
    }
    html.push_str("</table></body></html>\n");
    let unsub = "https://news.shop.example/u/AbCdEf0123456789";
    let msg = Message::builder()
        .from("Cartero Shop <news@shop.example>".parse()?)
        .reply_to("Customer care <care@shop.example>".parse()?)
        .to("Ana García <ana@example.com>".parse()?)
        .subject("Ana, your personal selection")
        .message_id(Some("<cartero.1.1.1700000000000@shop.example>".into()))
        .date_now()
        .raw_header(raw(
            "List-Unsubscribe",
            &format!(
                "<{unsub}>, <mailto:unsubscribe+AbCdEf@bounces.shop.example?subject=unsubscribe>"
            ),
        )?)
        .raw_header(raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")?)
        .raw_header(raw("List-Id", "bench <bench.bounces.shop.example>")?)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )?;
    Ok(msg)
}

fn lettre_config(key: DkimSigningKey) -> Result<DkimConfig, Box<dyn Error>> {
    let headers = SIGNED_HEADERS
        .iter()
        .map(|h| HeaderName::new_from_ascii(h.to_string()).map_err(|_| "header name"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DkimConfig::new(
        SELECTOR.into(),
        DOMAIN.into(),
        key,
        headers,
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ))
}

struct Rate {
    cpu_per_sec: f64,
    wall_per_sec: f64,
}

/// Runs `sign` n times; returns the last output and the rates.
fn measure(
    n: u32,
    mut sign: impl FnMut() -> Result<Vec<u8>, Box<dyn Error>>,
) -> Result<(Vec<u8>, Rate), Box<dyn Error>> {
    let mut out = sign()?; // warm-up
    let (cpu0, wall0) = (thread_cpu()?, Instant::now());
    for _ in 0..n {
        out = sign()?;
    }
    let cpu = (thread_cpu()? - cpu0).as_secs_f64();
    let wall = wall0.elapsed().as_secs_f64();
    Ok((
        out,
        Rate {
            cpu_per_sec: f64::from(n) / cpu,
            wall_per_sec: f64::from(n) / wall,
        },
    ))
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rsa8, rsa1, ed8, ed_seed, n, out] = args.as_slice() else {
        return Err("usage: dkim_bench RSA_PKCS8.pem RSA_PKCS1.pem ED25519_PKCS8.pem ED25519_SEED.b64 N OUT_DIR".into());
    };
    let n: u32 = n.parse()?;
    let out = PathBuf::from(out);
    let msg = message()?;
    let size = msg.formatted().len();
    println!("message: {size} bytes unsigned; {n} signatures per signer, one thread");

    let cartero_rsa = DkimSigner::from_pem(
        &std::fs::read(rsa8)?,
        DkimAlgorithm::Rsa,
        DOMAIN,
        SELECTOR,
        rsa8,
    )?;
    let cartero_ed = DkimSigner::from_pem(
        &std::fs::read(ed8)?,
        DkimAlgorithm::Ed25519,
        DOMAIN,
        SELECTOR,
        ed8,
    )?;
    let lettre_rsa = lettre_config(DkimSigningKey::new(
        &std::fs::read_to_string(rsa1)?,
        DkimSigningAlgorithm::Rsa,
    )?)?;
    let lettre_ed = lettre_config(DkimSigningKey::new(
        std::fs::read_to_string(ed_seed)?.trim(),
        DkimSigningAlgorithm::Ed25519,
    )?)?;

    let mut rows = Vec::new();
    for (alg, cartero, lettre_cfg, n) in [
        ("rsa-2048", &cartero_rsa, &lettre_rsa, n),
        // Ed25519 is ~20x cheaper: more iterations for a stable figure.
        ("ed25519", &cartero_ed, &lettre_ed, n.saturating_mul(10)),
    ] {
        let (signed, mail_auth) = measure(n, || Ok(cartero.sign(&msg.formatted())?))?;
        std::fs::write(out.join(format!("mail-auth-{alg}.eml")), signed)?;
        let (signed, lettre) = measure(n, || {
            let mut m = msg.clone();
            dkim_sign(&mut m, lettre_cfg);
            Ok(m.formatted())
        })?;
        std::fs::write(out.join(format!("lettre-{alg}.eml")), signed)?;
        rows.push((alg, mail_auth, lettre));
    }
    println!(
        "{:<10} {:>22} {:>22} {:>18}",
        "algorithm", "mail-auth sig/s/core", "lettre sig/s/core", "mail-auth/lettre"
    );
    for (alg, m, l) in rows {
        println!(
            "{alg:<10} {:>14.0} ({:>5.0} wall) {:>14.0} ({:>5.0} wall) {:>17.2}x",
            m.cpu_per_sec,
            m.wall_per_sec,
            l.cpu_per_sec,
            l.wall_per_sec,
            m.cpu_per_sec / l.cpu_per_sec
        );
    }
    Ok(())
}
