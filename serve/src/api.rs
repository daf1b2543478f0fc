//! The JSON API and the error type every handler returns.
//!
//! Client mistakes (a malformed id, a bad `limit`) are 4xx with a message saying
//! what was wrong; nothing a client sends can produce a 500. Internal failures are
//! logged once and answered with an opaque 500.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pipeline::model::is_nsid;
use serde::{Deserialize, Serialize};

use crate::snapshot::{AppState, Snapshot, UserLists};

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 100;
/// Default page size.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest offset a client may ask for (lists are never longer).
pub const MAX_OFFSET: usize = 10_000;

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The method is not GET/HEAD.
    #[error("method not allowed: this service is read-only (use GET)")]
    MethodNotAllowed,
    /// No run is loaded yet.
    #[error("no run is published yet; run `faverecs score` and `faverecs publish`")]
    NotReady,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// `limit` and `offset`, as text so that a bad value gets our message.
#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    limit: Option<String>,
    offset: Option<String>,
}

/// A validated page window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Items to return.
    pub limit: usize,
    /// Items to skip.
    pub offset: usize,
}

fn parse_bounded(
    name: &str,
    value: Option<&str>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(v) = value else { return Ok(default) };
    v.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("{name} must be a whole number from {min} to {max}"))
        })
}

/// Parses the window, mapping a malformed query string to a 400.
pub fn window(query: Result<Query<PageQuery>, QueryRejection>) -> Result<Window, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    Ok(Window {
        limit: parse_bounded("limit", q.limit.as_deref(), DEFAULT_LIMIT, 1, MAX_LIMIT)?,
        offset: parse_bounded("offset", q.offset.as_deref(), 0, 0, MAX_OFFSET)?,
    })
}

/// Checks the id shape, then finds the user's lists in the loaded run.
pub fn user_lists(state: &AppState, user_id: &str) -> Result<(Arc<Snapshot>, String), ApiError> {
    if !is_nsid(user_id) {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not a Flickr NSID (expected e.g. 38134034@N04)",
            truncate(user_id, 64)
        )));
    }
    let snapshot = state.snapshot().ok_or(ApiError::NotReady)?;
    if !snapshot.users.contains_key(user_id) {
        return Err(ApiError::NotFound(format!(
            "no recommendations for user {user_id} in run {}",
            snapshot.manifest.run_id
        )));
    }
    Ok((snapshot, user_id.to_string()))
}

/// Shortens untrusted text before it is echoed in a message.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[derive(Serialize)]
struct Page<'a, T> {
    user_id: &'a str,
    run_id: &'a str,
    total: usize,
    offset: usize,
    limit: usize,
    items: &'a [T],
}

fn page<'a, T: Serialize + 'a>(
    snapshot: &'a Snapshot,
    user_id: &'a str,
    w: Window,
    list: impl Fn(&'a UserLists) -> &'a [T],
) -> Response {
    let all = snapshot.users.get(user_id).map(list).unwrap_or(&[]);
    let start = w.offset.min(all.len());
    let end = (start + w.limit).min(all.len());
    Json(Page {
        user_id,
        run_id: &snapshot.manifest.run_id,
        total: all.len(),
        offset: w.offset,
        limit: w.limit,
        items: &all[start..end],
    })
    .into_response()
}

/// `GET /api/users/{user_id}/photos`
pub async fn user_photos(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let w = window(query)?;
    let (snapshot, user_id) = user_lists(&state, &user_id)?;
    Ok(page(&snapshot, &user_id, w, |l| l.photos.as_slice()))
}

/// `GET /api/users/{user_id}/photographers`
pub async fn user_photographers(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let w = window(query)?;
    let (snapshot, user_id) = user_lists(&state, &user_id)?;
    Ok(page(&snapshot, &user_id, w, |l| l.photographers.as_slice()))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: a run is loaded.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = state.snapshot().ok_or(ApiError::NotReady)?;
    Ok(Json(
        serde_json::json!({ "status": "ready", "run_id": s.manifest.run_id }),
    ))
}

/// Any unknown path.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such page or endpoint".into())
}

/// Any method other than GET/HEAD on a known path.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
