//! The operator's endpoints of `cartero serve` and what every request leaves
//! behind: `/healthz` (the process answers), `/readyz` (the database answers
//! and its schema is the one this binary embeds), `/metrics` (Prometheus
//! text exposition), and one log line and one observation per request.
//!
//! The exposition is written by hand: a few counters, one gauge and one
//! histogram per route need no registry, and the `metrics` crates would add
//! a global recorder, a dozen transitive crates and a second way to count
//! what [`super::Metrics`] already counts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Upper bounds of the latency histogram's buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Requests by route pattern: counts by status and a latency histogram.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: Mutex<HashMap<String, RouteStats>>,
}

#[derive(Debug, Default)]
struct RouteStats {
    by_status: HashMap<u16, u64>,
    /// Observations at or under each bucket's bound (not cumulative here;
    /// the exposition sums them).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_secs: f64,
}

impl HttpMetrics {
    /// Counts one answered request. `route` is the pattern (`/o/{file}`),
    /// never the path: the path holds the token.
    pub fn observe(&self, route: &str, status: u16, secs: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let stats = match routes.get_mut(route) {
            Some(s) => s,
            None => routes.entry(route.to_string()).or_default(),
        };
        *stats.by_status.entry(status).or_insert(0) += 1;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            stats.buckets[i] += 1;
        }
        stats.count += 1;
        stats.sum_secs += secs;
    }

    /// Requests answered on `route` with `status` so far.
    pub fn requests(&self, route: &str, status: u16) -> u64 {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .get(route)
            .and_then(|s| s.by_status.get(&status))
            .copied()
            .unwrap_or(0)
    }

    fn write(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        out.push_str(
            "# HELP cartero_http_requests_total Requests answered, by route pattern and status.\n\
             # TYPE cartero_http_requests_total counter\n",
        );
        for name in &names {
            let mut statuses: Vec<(&u16, &u64)> = routes[*name].by_status.iter().collect();
            statuses.sort();
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "cartero_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    label(name)
                );
            }
        }
        out.push_str(
            "# HELP cartero_http_request_duration_seconds Time from the request's arrival to its answer, by route pattern.\n\
             # TYPE cartero_http_request_duration_seconds histogram\n",
        );
        for name in &names {
            let s = &routes[*name];
            let route = label(name);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "cartero_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "cartero_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 cartero_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 cartero_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                s.count, s.sum_secs, s.count
            );
        }
    }
}

/// A label value as the exposition format wants it escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The route pattern a request matched; `other` for the fallback (a path
/// that matches nothing is the client's text, so it is never a label).
fn route_of(req: &Request) -> Option<MatchedPath> {
    // A clone of the pattern's `Arc<str>`, not a new string per request.
    req.extensions().get::<MatchedPath>().cloned()
}

/// Middleware: times each request, counts it by route and status, and logs
/// one line at info with the method, the route pattern (never the path,
/// which holds the token), the status and the latency. Nothing else of the
/// request (addresses, agents, bodies) is logged.
pub(super) async fn observe(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let matched = route_of(&req);
    let route = matched.as_ref().map_or("other", |m| m.as_str());
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    s.metrics.http.observe(route, status, elapsed.as_secs_f64());
    tracing::info!(
        target: "cartero::http",
        "{method} {route} {status} {:.3}ms",
        elapsed.as_secs_f64() * 1000.0
    );
    res
}

/// GET /healthz: the process is up and answering. No database: a slow or
/// unreachable database must not make an orchestrator restart a healthy
/// process (that is `/readyz`'s to say).
pub async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        "ok\n",
    )
        .into_response()
}

/// GET /readyz: 200 when the database answers and every migration this
/// binary embeds is applied (and none it does not know); 503 with the reason
/// otherwise. A load balancer sends traffic only to ready nodes.
pub(super) async fn readyz(State(s): State<AppState>) -> Response {
    let unavailable = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
            why,
        )
            .into_response()
    };
    match s.app.store.migration_gaps().await {
        Ok((missing, unknown)) if missing.is_empty() && unknown.is_empty() => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            "ready\n",
        )
            .into_response(),
        Ok((missing, unknown)) => {
            let mut why = String::from("not ready: the database schema is not this binary's:");
            if !missing.is_empty() {
                let _ = write!(why, " migrations not applied {missing:?};");
            }
            if !unknown.is_empty() {
                let _ = write!(why, " migrations applied by a newer cartero {unknown:?};");
            }
            why.push('\n');
            unavailable(why)
        }
        Err(e) => {
            tracing::warn!("readyz: the database does not answer: {e}");
            unavailable("not ready: the database does not answer\n".into())
        }
    }
}

/// Every counter of [`super::Metrics`] for `/metrics`: (name, help, value),
/// the one table the exposition is written from.
fn counters(m: &super::Metrics) -> [(&'static str, &'static str, u64); 19] {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    [
        (
            "cartero_events_queued_total",
            "Opens and clicks put on the write queue.",
            get(&m.events_queued),
        ),
        (
            "cartero_events_written_total",
            "Opens and clicks written to the database.",
            get(&m.events_written),
        ),
        (
            "cartero_event_batches_total",
            "Transactions the event writer committed (events written / batches: the batch size).",
            get(&m.event_batches),
        ),
        (
            "cartero_events_waited_total",
            "Opens and clicks that found the write queue full and waited for room.",
            get(&m.events_waited),
        ),
        (
            "cartero_events_dropped_total",
            "Opens and clicks answered but not recorded: the queue stayed full for serve.queue_wait_ms.",
            get(&m.events_dropped),
        ),
        (
            "cartero_events_orphaned_total",
            "Opens and clicks whose send no longer exists.",
            get(&m.events_orphaned),
        ),
        (
            "cartero_events_lost_total",
            "Opens and clicks the database refused after retries.",
            get(&m.events_lost),
        ),
        (
            "cartero_unsubscribes_total",
            "Unsubscribes that withdrew a consent.",
            get(&m.unsubscribes),
        ),
        (
            "cartero_feedback_polls_total",
            "Reads of the [feedback] bounce mailbox by serve.",
            get(&m.feedback_polls),
        ),
        (
            "cartero_signups_pending_total",
            "Sign-ups stored and mailed a confirmation link.",
            get(&m.signups_pending),
        ),
        (
            "cartero_signups_confirmed_total",
            "Sign-ups confirmed: the grant is in the ledger.",
            get(&m.signups_confirmed),
        ),
        (
            "cartero_signups_honeypot_total",
            "Sign-ups with the honeypot filled: answered, nothing stored.",
            get(&m.signups_honeypot),
        ),
        (
            "cartero_signups_refused_total",
            "Sign-ups of erased addresses: answered, nothing stored.",
            get(&m.signups_refused),
        ),
        (
            "cartero_signups_known_total",
            "Sign-ups of addresses already on the list: answered, nothing sent.",
            get(&m.signups_known),
        ),
        (
            "cartero_signups_limited_total",
            "Sign-ups refused by the per-IP limit.",
            get(&m.signups_limited),
        ),
        (
            "cartero_conversions_recorded_total",
            "Conversions recorded by the events API.",
            get(&m.conversions_recorded),
        ),
        (
            "cartero_conversions_duplicate_total",
            "Conversions ignored: their order id was recorded already.",
            get(&m.conversions_duplicate),
        ),
        (
            "cartero_admin_login_failures_total",
            "Admin sign-ins with a key that opens nothing.",
            get(&m.admin_login_failures),
        ),
        (
            "cartero_admin_logins_limited_total",
            "Admin sign-ins refused (429) after too many failures.",
            get(&m.admin_logins_limited),
        ),
    ]
}

/// GET /metrics: Prometheus text exposition, version 0.0.4.
pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    let mut body = String::with_capacity(4096);
    for (name, help, v) in counters(&s.metrics) {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let _ = writeln!(
        body,
        "# HELP cartero_event_queue_depth Opens and clicks waiting to be written.\n\
         # TYPE cartero_event_queue_depth gauge\ncartero_event_queue_depth {}\n\
         # HELP cartero_event_queue_capacity Size of the write queue.\n\
         # TYPE cartero_event_queue_capacity gauge\ncartero_event_queue_capacity {}",
        s.queue.depth(),
        s.queue.capacity(),
    );
    // Read from the database, so every node reports the same figure.
    if s.app.settings.forms.mails() {
        let now = s.app.clock.now();
        let horizon = now - super::signup::MAIL_MAX_AGE;
        match crate::store::signup::given_up(&s.app.store, super::signup::MAIL_ATTEMPTS, horizon)
            .await
        {
            Ok(n) => {
                let _ = writeln!(
                    body,
                    "# HELP cartero_signup_mails_given_up Unconfirmed sign-ups whose confirmation mail \
                     the mailer gave up on (`cartero signup retry` re-queues them).\n\
                     # TYPE cartero_signup_mails_given_up gauge\ncartero_signup_mails_given_up {n}"
                );
            }
            Err(e) => tracing::warn!("metrics: the given-up sign-up mails cannot be counted: {e}"),
        }
    }
    s.metrics.http.write(&mut body);
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_one_line_name_and_help() {
        let m = super::super::Metrics::default();
        m.signups_honeypot.fetch_add(2, Ordering::Relaxed);
        let rows = counters(&m);
        let mut names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), rows.len(), "a name appears twice");
        for (name, help, _) in rows {
            assert!(
                name.starts_with("cartero_") && name.ends_with("_total"),
                "{name}"
            );
            assert!(!help.is_empty() && !help.contains('\n'), "{name}");
        }
        assert!(rows.contains(&(
            "cartero_signups_honeypot_total",
            "Sign-ups with the honeypot filled: answered, nothing stored.",
            2
        )));
    }

    #[test]
    fn the_histogram_is_cumulative_and_routes_are_labels() {
        let h = HttpMetrics::default();
        h.observe("/o/{file}", 200, 0.0003);
        h.observe("/o/{file}", 200, 0.2);
        h.observe("/o/{file}", 404, 30.0);
        h.observe("/c/{token}", 302, 0.001);
        let mut out = String::new();
        h.write(&mut out);
        assert!(
            out.contains("cartero_http_requests_total{route=\"/o/{file}\",status=\"200\"} 2\n")
        );
        assert!(
            out.contains("cartero_http_requests_total{route=\"/o/{file}\",status=\"404\"} 1\n")
        );
        assert!(out.contains(
            "cartero_http_request_duration_seconds_bucket{route=\"/o/{file}\",le=\"0.0005\"} 1\n"
        ));
        assert!(out.contains(
            "cartero_http_request_duration_seconds_bucket{route=\"/o/{file}\",le=\"0.25\"} 2\n"
        ));
        assert!(out.contains(
            "cartero_http_request_duration_seconds_bucket{route=\"/o/{file}\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            out.contains("cartero_http_request_duration_seconds_count{route=\"/c/{token}\"} 1")
        );
        assert_eq!(h.requests("/o/{file}", 200), 2);
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
