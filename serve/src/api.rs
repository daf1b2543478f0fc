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
    /// A dependency (storage) is unavailable; logged where it happened.
    #[error("{0}")]
    Unavailable(String),
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
            ApiError::NotReady | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
    algorithm: Option<String>,
}

/// A validated page window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Items to return.
    pub limit: usize,
    /// Items to skip.
    pub offset: usize,
    /// The algorithm asked for, if any.
    pub algorithm: Option<String>,
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

impl Window {
    /// The window's part of a list (empty past its end).
    pub fn slice<'a, T>(&self, all: &'a [T]) -> &'a [T] {
        let start = self.offset.min(all.len());
        &all[start..(start + self.limit).min(all.len())]
    }
}

/// Parses the window, mapping a malformed query string to a 400.
pub fn window(query: Result<Query<PageQuery>, QueryRejection>) -> Result<Window, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    Ok(Window {
        limit: parse_bounded("limit", q.limit.as_deref(), DEFAULT_LIMIT, 1, MAX_LIMIT)?,
        offset: parse_bounded("offset", q.offset.as_deref(), 0, 0, MAX_OFFSET)?,
        algorithm: q.algorithm,
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
    algorithm: &'a str,
    run_id: &'a str,
    total: usize,
    offset: usize,
    limit: usize,
    items: &'a [T],
}

/// The JSON body of one page of a list.
pub fn page_json<T: Serialize>(
    run_id: &str,
    user_id: &str,
    algorithm: &str,
    w: &Window,
    all: &[T],
) -> Vec<u8> {
    serde_json::to_vec(&Page {
        user_id,
        algorithm,
        run_id,
        total: all.len(),
        offset: w.offset,
        limit: w.limit,
        items: w.slice(all),
    })
    .unwrap_or_default()
}

/// The window most requests ask for: no parameters.
pub fn default_window() -> Window {
    Window {
        limit: DEFAULT_LIMIT,
        offset: 0,
        algorithm: None,
    }
}

fn json_bytes(body: axum::body::Bytes) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Validates the request, then answers one page of one of the user's lists: the
/// pre-serialised default page when no parameter is given, a fresh one otherwise.
/// `algorithms` names the algorithms the list exists for (the first is the
/// default) and `pick` returns the list of the one at an index, with the cached
/// default page.
fn user_list<T: Serialize>(
    state: &AppState,
    user_id: &str,
    query: Result<Query<PageQuery>, QueryRejection>,
    algorithms: fn(&Snapshot) -> Vec<String>,
    pick: fn(&UserLists, usize) -> (&[T], &axum::body::Bytes),
) -> Result<Response, ApiError> {
    let w = window(query)?;
    let (snapshot, user_id) = user_lists(state, user_id)?;
    let lists = snapshot
        .users
        .get(&user_id)
        .ok_or_else(|| ApiError::NotFound(format!("no recommendations for user {user_id}")))?;
    // The common request: no parameters, answered from the cached page without
    // building the list of algorithm names.
    if w == default_window() {
        return Ok(json_bytes(pick(lists, 0).1.clone()));
    }
    let names = algorithms(&snapshot);
    let index = match w.algorithm.as_deref() {
        None => 0,
        Some(a) => names.iter().position(|x| x == a).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "run {} has no algorithm {:?} for this list (it has: {})",
                snapshot.manifest.run_id,
                truncate(a, 32),
                names.join(", ")
            ))
        })?,
    };
    let all = pick(lists, index).0;
    let name = names.get(index).map_or("flexplore", String::as_str);
    Ok(json_bytes(
        page_json(&snapshot.manifest.run_id, &user_id, name, &w, all).into(),
    ))
}

/// `GET /api/users/{user_id}/photos`: one algorithm's photo recs
/// (`algorithm=`, default the run's first).
pub async fn user_photos(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    user_list(
        &state,
        &user_id,
        query,
        |s| s.algorithms.clone(),
        |l, i| {
            (
                l.photos.get(i).map_or(&[][..], Vec::as_slice),
                &l.default_photos,
            )
        },
    )
}

/// `GET /api/users/{user_id}/photographers`: Flexplore's photographer recs
/// (`algorithm=flexplore`, or none).
pub async fn user_photographers(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    user_list(
        &state,
        &user_id,
        query,
        |_| vec!["flexplore".to_string()],
        |l, _| (l.photographers.as_slice(), &l.default_photographers),
    )
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

/// `?q=` of the lookup endpoints.
#[derive(Debug, Deserialize, Default)]
pub struct LookupQuery {
    /// What was pasted or typed.
    pub q: Option<String>,
}

/// Resolves a lookup query to a tracked user's NSID, or a 4xx.
pub fn resolve_lookup(
    state: &AppState,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<(Arc<Snapshot>, String), ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    let q = q.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "q is required: a Flickr photostream or profile URL, an NSID, or a username".into(),
        ));
    }
    if q.len() > 512 {
        return Err(ApiError::BadRequest(
            "q is too long (at most 512 characters)".into(),
        ));
    }
    let snapshot = state.snapshot().ok_or(ApiError::NotReady)?;
    let found = snapshot.lookup(&q).map(str::to_string);
    match found {
        Some(id) => Ok((snapshot, id)),
        None => Err(ApiError::NotFound(format!(
            "no tracked user matches {:?} in run {}",
            truncate(&q, 64),
            snapshot.manifest.run_id
        ))),
    }
}

/// `GET /api/lookup?q=`
pub async fn lookup(
    State(state): State<AppState>,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (snapshot, id) = resolve_lookup(&state, query)?;
    let username = snapshot.tracked.get(&id).cloned().flatten();
    Ok(Json(
        serde_json::json!({ "user_id": id, "username": username, "url": format!("/users/{id}") }),
    ))
}

/// `GET /api/runs/current`: the loaded run's manifest.
pub async fn current_run(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = state.snapshot().ok_or(ApiError::NotReady)?;
    Ok(Json(serde_json::json!({
        "published_at": s.published_at,
        "age_seconds": s.age_seconds(),
        "manifest": s.manifest,
    })))
}

/// One run in `GET /api/runs`.
#[derive(Debug, Serialize)]
pub struct RunItem {
    /// Run id.
    pub run_id: String,
    /// `running`, `succeeded`, `failed`, or `incomplete` (no manifest).
    pub status: String,
    /// Whether it is the published run.
    pub current: bool,
    /// Its manifest, when it has one.
    pub manifest: Option<pipeline::runs::Manifest>,
}

/// Every run, newest first, read from storage.
pub async fn run_items(state: &AppState) -> Result<Vec<RunItem>, ApiError> {
    let runs = pipeline::runs::list_runs(&state.storage)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "listing runs failed");
            ApiError::Unavailable("the run list cannot be read from storage right now".into())
        })?;
    Ok(runs
        .into_iter()
        .rev()
        .map(|r| RunItem {
            status: r
                .manifest
                .as_ref()
                .map_or("incomplete".to_string(), |m| m.status.to_string()),
            run_id: r.run_id,
            current: r.current,
            manifest: r.manifest,
        })
        .collect())
}

/// `GET /api/runs`
pub async fn runs(State(state): State<AppState>) -> Result<Json<Vec<RunItem>>, ApiError> {
    Ok(Json(run_items(&state).await?))
}

/// Checks a photo id's shape.
pub fn check_photo_id(photo_id: &str) -> Result<(), ApiError> {
    if pipeline::model::is_photo_id(photo_id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is not a Flickr photo id (expected up to 20 decimal digits)",
            truncate(photo_id, 64)
        )))
    }
}

/// Checks a tag from a URL: 1 to 64 letters or digits (Flickr's clean tags).
pub fn check_tag(tag: &str) -> Result<String, ApiError> {
    let t = tag.to_lowercase();
    if (1..=64).contains(&t.chars().count()) && t.chars().all(char::is_alphanumeric) {
        Ok(t)
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is not a tag (expected 1 to 64 letters or digits)",
            truncate(tag, 64)
        )))
    }
}

/// `GET /api/tags/{tag}/photos`: the tag's most favourited photos.
pub async fn tag_photos(
    State(state): State<AppState>,
    Path(tag): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let w = window(query)?;
    let tag = check_tag(&tag)?;
    let snapshot = state.snapshot().ok_or(ApiError::NotReady)?;
    let Some(all) = snapshot.tags.get(&tag) else {
        return Err(ApiError::NotFound(format!(
            "run {} has no photos tagged {tag:?}",
            snapshot.manifest.run_id
        )));
    };
    Ok(Json(serde_json::json!({
        "tag": tag,
        "run_id": snapshot.manifest.run_id,
        "total": all.len(),
        "offset": w.offset,
        "limit": w.limit,
        "items": w.slice(all),
    }))
    .into_response())
}

/// `GET /api/photos/{photo_id}/similar`
pub async fn similar(
    State(state): State<AppState>,
    Path(photo_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let w = window(query)?;
    check_photo_id(&photo_id)?;
    let snapshot = state.snapshot().ok_or(ApiError::NotReady)?;
    let Some(all) = snapshot.similar.get(&photo_id) else {
        return Err(ApiError::NotFound(format!(
            "run {} has no similar photos for photo {photo_id}",
            snapshot.manifest.run_id
        )));
    };
    Ok(Json(serde_json::json!({
        "photo_id": photo_id,
        "run_id": snapshot.manifest.run_id,
        "photo": snapshot.photos.get(&photo_id),
        "total": all.len(),
        "offset": w.offset,
        "limit": w.limit,
        "items": w.slice(all),
    }))
    .into_response())
}
