//! Cross-cutting HTTP behaviour: cache validators and request metrics.
//!
//! Everything but the health, metrics and run-list endpoints is a pure function of
//! the loaded run, so its validator is the run id: a weak `ETag` of `W/"<run_id>"`,
//! `Cache-Control: public, max-age=60`, and `304 Not Modified` when the client
//! already holds it. A new publish changes every ETag at once.
//!
//! Requests are counted in [`crate::metrics`] and exposed at `/metrics` with the
//! loaded run's id and age.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Content-Security-Policy of every response: nothing but our own stylesheet and
/// script and Flickr's image CDN may load; no inline script or style runs.
pub const CSP: &str = "default-src 'none'; img-src https://live.staticflickr.com; style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `Cache-Control` of an answer that depends only on the run.
pub const CACHEABLE: HeaderValue = HeaderValue::from_static("public, max-age=60");

/// Sets the headers every response carries, whatever answered it: the
/// Content-Security-Policy ([`CSP`]), `nosniff`, no referrer, and no
/// framing. One response map rather than a layer per header.
pub fn secure(mut resp: Response) -> Response {
    const POLICY: HeaderValue = HeaderValue::from_static(CSP);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, POLICY);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

fn volatile(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/runs" | "/api/openapi.json"
    ) || path.starts_with("/api/runs")
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
    mark_fallback(&state, resp)
}

/// Every answer given from a run other than the published one (which cannot be
/// loaded) says so: `Faverecs-Fallback: serving <run>; published <run> cannot be
/// loaded` (the reason is on `/readyz` and `/api/runs/current`).
fn mark_fallback(state: &AppState, mut resp: Response) -> Response {
    // The served run is looked up only when there is a problem to report.
    if let Some(problem) = state.problem()
        && let Some(served) = state.snapshot()
    {
        let text = format!(
            "serving {}; published {} cannot be loaded",
            served.manifest.run_id, problem.run_id
        );
        if let Ok(value) = HeaderValue::from_str(&text) {
            resp.headers_mut().insert(FALLBACK, value);
        }
    }
    resp
}

/// The header that marks an answer from a fallback run.
pub const FALLBACK: header::HeaderName = header::HeaderName::from_static("faverecs-fallback");

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
    resp.headers_mut().insert(header::CACHE_CONTROL, CACHEABLE);
    resp
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = state.snapshot();
    let mut body = state.metrics.render(
        snapshot
            .as_ref()
            .map(|s| (s.manifest.run_id.as_str(), s.age_seconds())),
    );
    body.push_str("# HELP faverecs_run_load_error 1 when the published run cannot be loaded (an earlier run or nothing is served).\n# TYPE faverecs_run_load_error gauge\n");
    body.push_str(if state.problem().is_some() {
        "faverecs_run_load_error 1\n"
    } else {
        "faverecs_run_load_error 0\n"
    });
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
            axum::Json(crate::error::ErrorBody {
                error: format!("the URI is longer than {MAX_URI_BYTES} bytes"),
            }),
        )
            .into_response();
    }
    next.run(req).await
}
