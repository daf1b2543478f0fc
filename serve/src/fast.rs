//! The request most clients make, answered before routing.
//!
//! `GET /api/users/{user_id}/photos` and `…/photographers` with no query string
//! ask for the stored default page: a slice of the served run's map. [`answer`]
//! gives it with exactly the status, body and headers the router would (a test
//! compares the two), without the router's per-request work: no path or query
//! extraction, no boxed middleware futures, no timer. It is counted under the
//! route's own label in `/metrics`.
//!
//! Anything else goes to the router, which stays the one place every rule is
//! written: another method, a query, a conditional request (`If-None-Match`),
//! a request that may be compressed (`Accept-Encoding`), a malformed or unknown
//! user, a list without a stored page, damage, or a published run that cannot
//! be loaded (whose answers carry the fallback header). There is no timeout
//! here because nothing here waits: the answer is built synchronously.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use pipeline::model::is_nsid;

use crate::api::{USER_PHOTOGRAPHERS, USER_PHOTOS};
use crate::http::{CACHEABLE, secure};
use crate::state::AppState;

/// The default page `req` asks for, or `None` when the router must answer it.
pub fn answer(state: &AppState, req: &Request) -> Option<Response> {
    if req.method() != Method::GET || req.uri().query().is_some() {
        return None;
    }
    let headers = req.headers();
    if headers.contains_key(header::IF_NONE_MATCH) || headers.contains_key(header::ACCEPT_ENCODING)
    {
        return None;
    }
    let (user, list) = req
        .uri()
        .path()
        .strip_prefix("/api/users/")?
        .split_once('/')?;
    let started = Instant::now();
    if !is_nsid(user) || state.problem().is_some() {
        return None;
    }
    let snapshot = state.snapshot()?;
    let etag = snapshot.etag.clone()?;
    if !snapshot.has_user(user) {
        return None;
    }
    let (route, list) = match list {
        "photos" => (USER_PHOTOS, snapshot.photo_list(user, 0).ok()??),
        "photographers" => (USER_PHOTOGRAPHERS, snapshot.photographer_list(user).ok()??),
        _ => return None,
    };
    let page = list.default_page();
    if page.is_empty() {
        return None;
    }
    let length = HeaderValue::from(page.len());
    let mut resp = Response::new(Body::from(page));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, CACHEABLE);
    // What the router's compression layer adds to a JSON answer it was not
    // asked to compress.
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let mut resp = secure(resp);
    // Last, where the router's answer has it.
    resp.headers_mut().insert(header::CONTENT_LENGTH, length);
    state
        .metrics
        .record(route, 200, started.elapsed().as_secs_f64());
    Some(resp)
}
