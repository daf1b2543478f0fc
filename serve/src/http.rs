//! Cross-cutting HTTP behaviour: cache validators and request metrics.
//!
//! Everything but the health, metrics and run-list endpoints is a pure function of
//! the loaded run, so its validator is the run id: a weak `ETag` of `W/"<run_id>"`,
//! `Cache-Control: public, max-age=60`, and `304 Not Modified` when the client
//! already holds it. A new publish changes every ETag at once.
//!
//! Metrics are counted per matched route (never per raw path, so hostile URLs
//! cannot blow up the label set) and exposed at `/metrics` in Prometheus text
//! format with the loaded run's id and age.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::snapshot::AppState;

/// Latency histogram bucket bounds, in seconds.
pub const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// One route's counters. Atomics only, so concurrent requests never wait on each
/// other to be counted.
#[derive(Debug)]
struct RouteStats {
    /// Requests by status code, indexed by `status - 100`.
    by_status: Vec<AtomicU64>,
    /// Cumulative counts per bucket bound (Prometheus `le`).
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for RouteStats {
    fn default() -> Self {
        Self {
            by_status: (100..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// Request counters and latency histograms by route.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Written once per route (the first request), read by every other request.
    routes: RwLock<BTreeMap<String, Arc<RouteStats>>>,
}

impl Metrics {
    fn route(&self, route: &str) -> Option<Arc<RouteStats>> {
        if let Some(r) = self.routes.read().ok()?.get(route) {
            return Some(r.clone());
        }
        let mut w = self.routes.write().ok()?;
        Some(w.entry(route.to_string()).or_default().clone())
    }

    fn record(&self, route: &str, status: u16, seconds: f64) {
        let Some(r) = self.route(route) else { return };
        if let Some(c) = r.by_status.get(usize::from(status.saturating_sub(100))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                r.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        r.sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
        r.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, run: Option<(&str, i64)>) -> String {
        let routes: Vec<(String, Arc<RouteStats>)> = self
            .routes
            .read()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP faverecs_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE faverecs_http_requests_total counter\n");
        for (route, r) in &routes {
            for (i, n) in r.by_status.iter().enumerate() {
                let n = load(n);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "faverecs_http_requests_total{{route=\"{route}\",status=\"{}\"}} {n}",
                        i + 100
                    );
                }
            }
        }
        out.push_str("# HELP faverecs_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE faverecs_http_request_duration_seconds histogram\n");
        for (route, r) in &routes {
            for (bound, n) in BUCKETS.iter().zip(&r.buckets) {
                let _ = writeln!(
                    out,
                    "faverecs_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    load(n)
                );
            }
            let count = load(&r.count);
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                load(&r.sum_nanos) as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP faverecs_run_info The run being served.\n# TYPE faverecs_run_info gauge\n",
        );
        out.push_str("# HELP faverecs_run_age_seconds Seconds since the served run was published.\n# TYPE faverecs_run_age_seconds gauge\n");
        match run {
            Some((id, age)) => {
                let _ = writeln!(out, "faverecs_run_info{{run_id=\"{id}\"}} 1");
                let _ = writeln!(out, "faverecs_run_age_seconds {age}");
            }
            None => out.push_str("faverecs_run_age_seconds NaN\n"),
        }
        out
    }
}

fn volatile(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/runs") || path.starts_with("/api/runs")
}

/// The per-request work every route shares, in one middleware (each layer costs a
/// boxed future per request): count the request under its matched route, and set
/// the cache validators — ETag / If-None-Match / Cache-Control.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // MatchedPath is an Arc: cloning it does not copy the route text.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let resp = if volatile(req.uri().path()) {
        let mut resp = next.run(req).await;
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    } else {
        cached(&state, req, next).await
    };
    state.metrics.record(
        route.as_ref().map_or("unmatched", |m| m.as_str()),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// A response that depends only on the run: weak ETag of the run id, 304 when the
/// client holds it.
async fn cached(state: &AppState, req: Request, next: Next) -> Response {
    let Some(value) = state.snapshot().and_then(|s| s.etag.clone()) else {
        return next.run(req).await;
    };
    let etag = value.to_str().unwrap_or_default();
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = next.run(req).await;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    if matches {
        resp = StatusCode::NOT_MODIFIED.into_response();
    }
    resp.headers_mut().insert(header::ETAG, value);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshot();
    let body = state.metrics.render(
        snapshot
            .as_ref()
            .map(|s| (s.manifest.run_id.as_str(), s.age_seconds())),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Longest request URI accepted; longer ones get 414 before any routing.
pub const MAX_URI_BYTES: usize = 2048;

/// Refuses over-long URIs.
pub async fn limit_uri(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if len > MAX_URI_BYTES {
        return (
            StatusCode::URI_TOO_LONG,
            axum::Json(serde_json::json!({ "error": format!("the URI is longer than {MAX_URI_BYTES} bytes") })),
        )
            .into_response();
    }
    next.run(req).await
}
