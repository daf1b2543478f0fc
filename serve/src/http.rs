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
use std::sync::Mutex;
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

#[derive(Debug, Default, Clone)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    /// Cumulative counts per bucket bound (Prometheus `le`).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Request counters and latency histograms by route.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let r = routes.entry(route.to_string()).or_default();
        *r.by_status.entry(status).or_insert(0) += 1;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                r.buckets[i] += 1;
            }
        }
        r.sum += seconds;
        r.count += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, run: Option<(&str, i64)>) -> String {
        let routes = self.routes.lock().map(|r| r.clone()).unwrap_or_default();
        let mut out = String::new();
        out.push_str("# HELP faverecs_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE faverecs_http_requests_total counter\n");
        for (route, r) in &routes {
            for (status, n) in &r.by_status {
                let _ = writeln!(
                    out,
                    "faverecs_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP faverecs_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE faverecs_http_request_duration_seconds histogram\n");
        for (route, r) in &routes {
            for (bound, n) in BUCKETS.iter().zip(r.buckets) {
                let _ = writeln!(
                    out,
                    "faverecs_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                r.count
            );
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                r.sum
            );
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                r.count
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

/// Counts every request under its matched route.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.metrics.record(
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

fn volatile(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/runs") || path.starts_with("/api/runs")
}

/// ETag / If-None-Match / Cache-Control.
pub async fn caching(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if volatile(req.uri().path()) {
        let mut resp = next.run(req).await;
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    }
    let Some(snapshot) = state.snapshot() else {
        return next.run(req).await;
    };
    let etag = format!("W/\"{}\"", snapshot.manifest.run_id);
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = next.run(req).await;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let Ok(value) = HeaderValue::from_str(&etag) else {
        return resp;
    };
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
    if req.uri().to_string().len() > MAX_URI_BYTES {
        return (
            StatusCode::URI_TOO_LONG,
            axum::Json(serde_json::json!({ "error": format!("the URI is longer than {MAX_URI_BYTES} bytes") })),
        )
            .into_response();
    }
    next.run(req).await
}
