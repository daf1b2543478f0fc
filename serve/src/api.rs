//! The JSON API. Every handler returns [`ApiError`] for what it refuses.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use pipeline::model::algorithm::Algorithm;
use pipeline::model::is_nsid;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::bad_query;
pub use crate::error::{ApiError, ErrorAnswers, truncate};
use crate::page::{Page, PageQuery, UserList, default_window, list_page, window};
use crate::snapshot::{PhotoInfo, PhotoItem, PhotographerItem, SimilarItem, Snapshot, TagItem};
use crate::state::AppState;
use crate::state::LoadProblem;
use pipeline::serving::List;

/// Checks the id shape, then finds the user's lists in the loaded run.
pub fn user_lists(state: &AppState, user_id: &str) -> Result<(Arc<Snapshot>, String), ApiError> {
    if !is_nsid(user_id) {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not a Flickr NSID (expected e.g. 38134034@N04)",
            truncate(user_id, 64)
        )));
    }
    let snapshot = state.serving()?;
    if !snapshot.has_user(user_id) {
        return Err(ApiError::NotFound(format!(
            "no recommendations for user {user_id} in run {}",
            snapshot.manifest.run_id
        )));
    }
    Ok((snapshot, user_id.to_string()))
}

fn json_bytes(body: axum::body::Bytes) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Validates the request, then answers one page of one of the user's lists: the
/// stored default page when no parameter is given, the window's items joined
/// otherwise. `known` names every algorithm this kind of list can have (another
/// name is a 400; a known one the run did not compute, a 404), `algorithms`
/// those the run has (the first is the default) and `pick` returns the list of
/// the one at an index.
fn user_list(
    state: &AppState,
    user_id: &str,
    query: Result<Query<PageQuery>, QueryRejection>,
    known: &[&str],
    algorithms: fn(&Snapshot) -> Vec<String>,
    pick: fn(&Snapshot, &str, usize) -> Result<Option<List>, ApiError>,
) -> Result<Response, ApiError> {
    let w = window(query)?;
    let (snapshot, user_id) = user_lists(state, user_id)?;
    // The common request: no parameters, answered with the stored page's bytes
    // (a slice of the map) without building the list of algorithm names.
    if w == default_window()
        && let Some(list) = pick(&snapshot, &user_id, 0)?
        && !list.default_page().is_empty()
    {
        return Ok(json_bytes(list.default_page()));
    }
    let names = algorithms(&snapshot);
    let index = match w.algorithm.as_deref() {
        None => 0,
        Some(a) => names.iter().position(|x| x == a).ok_or_else(|| {
            // A name this list can have, which the run did not compute, is a
            // list that does not exist; any other name is a bad request.
            let message = format!(
                "run {} has no algorithm {:?} for this list (it has: {})",
                snapshot.manifest.run_id,
                truncate(a, 32),
                names.join(", ")
            );
            if known.contains(&a) {
                ApiError::NotFound(message)
            } else {
                ApiError::BadRequest(message)
            }
        })?,
    };
    let list = pick(&snapshot, &user_id, index)?;
    let about = UserList {
        user_id: user_id.clone(),
        algorithm: names
            .get(index)
            .map_or("flexplore", String::as_str)
            .to_string(),
    };
    let body = list_page(&about, &snapshot.manifest.run_id, &w, list.as_ref())?;
    Ok(json_bytes(body))
}

/// The route of a user's photo recs (the router's, and the label its requests
/// are counted under).
pub const USER_PHOTOS: &str = "/api/users/{user_id}/photos";
/// The route of a user's photographer recs.
pub const USER_PHOTOGRAPHERS: &str = "/api/users/{user_id}/photographers";

/// `GET /api/users/{user_id}/photos`: one algorithm's photo recs
/// (`algorithm=`, default the run's first).
#[utoipa::path(get, path = "/api/users/{user_id}/photos", tag = "recommendations",
    params(("user_id" = String, Path, pattern = r"^[0-9]{1,20}@N[0-9]{2}$", description = "A tracked user's NSID, e.g. 38134034@N04"), PageQuery,
        ("algorithm" = Option<Algorithm>, Query, description = "The algorithm whose recs to return (default the run's first); 404 when the run did not compute it")),
    responses((status = 200, description = "One page of the user's photo recs, best first", body = Page<UserList, PhotoItem>), ErrorAnswers))]
pub async fn user_photos(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let known = Algorithm::ALL.map(Algorithm::name);
    user_list(
        &state,
        &user_id,
        query,
        &known,
        |s| s.algorithms.clone(),
        |s, user, i| s.photo_list(user, i),
    )
}

const FLEXPLORE: &str = Algorithm::Flexplore.name();

/// The algorithms photographer recs exist for.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum PhotographerAlgorithm {
    /// Neighbor scoring.
    Flexplore,
}

/// `GET /api/users/{user_id}/photographers`: Flexplore's photographer recs
/// (`algorithm=flexplore`, or none).
#[utoipa::path(get, path = "/api/users/{user_id}/photographers", tag = "recommendations",
    params(("user_id" = String, Path, pattern = r"^[0-9]{1,20}@N[0-9]{2}$", description = "A tracked user's NSID, e.g. 38134034@N04"), PageQuery,
        ("algorithm" = Option<PhotographerAlgorithm>, Query, description = "Photographer recs exist for Flexplore only")),
    responses((status = 200, description = "One page of the user's photographer recs, best first", body = Page<UserList, PhotographerItem>), ErrorAnswers))]
pub async fn user_photographers(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    user_list(
        &state,
        &user_id,
        query,
        &[FLEXPLORE],
        |_| vec![FLEXPLORE.to_string()],
        |s, user, _| s.photographer_list(user),
    )
}

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Whether the service answers from the published run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// The published run is served.
    Ready,
    /// The published run cannot be loaded; an earlier one is served.
    Degraded,
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`, or `degraded` when an earlier run is served.
    pub status: Readiness,
    /// The run served.
    pub run_id: String,
    /// When degraded: the published run, which cannot be loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_run_id: Option<String>,
    /// When degraded: why the published run cannot be loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}

/// `GET /readyz`: a run is loaded. `degraded` (still 200) when the published run
/// cannot be loaded and an earlier one is served; 503 naming the run and the
/// reason when nothing can be served.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "A run is served", body = Ready),
        (status = 503, description = "Nothing can be served: no run is published, or the published run cannot be loaded (named, with the reason)", body = crate::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let s = state.serving()?;
    let problem = state.problem();
    Ok(Json(Ready {
        status: if problem.is_some() {
            Readiness::Degraded
        } else {
            Readiness::Ready
        },
        run_id: s.manifest.run_id.clone(),
        published_run_id: problem.as_ref().map(|p| p.run_id.clone()),
        load_error: problem.map(|p| p.reason),
    }))
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
#[derive(Debug, Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// What was pasted or typed: a Flickr photostream or profile URL, an NSID, or
    /// a username (at most 512 characters).
    #[param(required = true, value_type = String, min_length = 1, max_length = 512, pattern = r"\S")]
    pub q: Option<String>,
}

/// Resolves a lookup query to a tracked user's NSID, or a 4xx.
pub fn resolve_lookup(
    state: &AppState,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<(Arc<Snapshot>, String), ApiError> {
    let Query(q) = query.map_err(bad_query)?;
    let q = q.q.unwrap_or_default();
    if q.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "q is required: a Flickr photostream or profile URL, an NSID, or a username".into(),
        ));
    }
    if q.chars().count() > 512 {
        return Err(ApiError::BadRequest(
            "q is too long (at most 512 characters)".into(),
        ));
    }
    let snapshot = state.serving()?;
    let found = snapshot.lookup(&q);
    match found {
        Some(id) => Ok((snapshot, id)),
        None => Err(ApiError::NotFound(format!(
            "no tracked user matches {:?} in run {}",
            truncate(&q, 64),
            snapshot.manifest.run_id
        ))),
    }
}

/// The answer of `/api/lookup`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupAnswer {
    /// The tracked user's NSID.
    pub user_id: String,
    /// Their username, when known.
    pub username: Option<String>,
    /// Their page in this service.
    pub url: String,
}

/// `GET /api/lookup?q=`
#[utoipa::path(get, path = "/api/lookup", tag = "recommendations", params(LookupQuery),
    responses((status = 200, description = "The tracked user the query names", body = LookupAnswer), ErrorAnswers))]
pub async fn lookup(
    State(state): State<AppState>,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<Json<LookupAnswer>, ApiError> {
    let (snapshot, id) = resolve_lookup(&state, query)?;
    Ok(Json(LookupAnswer {
        username: snapshot.username(&id).flatten(),
        url: format!("/users/{id}"),
        user_id: id,
    }))
}

/// The answer of `/api/runs/current`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentRun {
    /// When the served run was published.
    pub published_at: chrono::DateTime<chrono::Utc>,
    /// Seconds since then.
    pub age_seconds: i64,
    /// The served run's manifest.
    pub manifest: pipeline::runs::Manifest,
    /// The published run and why it is not the one served, when it cannot be
    /// loaded.
    pub load_error: Option<LoadProblem>,
}

/// `GET /api/runs/current`: the loaded run's manifest, and `load_error` (the
/// published run and why it is not the one served) when the published run
/// cannot be loaded.
#[utoipa::path(get, path = "/api/runs/current", tag = "runs",
    responses((status = 200, description = "The served run", body = CurrentRun), ErrorAnswers))]
pub async fn current_run(State(state): State<AppState>) -> Result<Json<CurrentRun>, ApiError> {
    let s = state.serving()?;
    Ok(Json(CurrentRun {
        published_at: s.published_at,
        age_seconds: s.age_seconds(),
        manifest: s.manifest.clone(),
        load_error: state.problem(),
    }))
}

/// One run in `GET /api/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunItem {
    /// Run id.
    pub run_id: String,
    /// `running`, `succeeded`, `failed`, `abandoned` (its writer died),
    /// `incomplete` (no manifest; a sharded run adds its shards done, e.g.
    /// `incomplete (shards done: users 3/4, photos none)`), or `unreadable (reason)`.
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
            status: r.status_text(),
            run_id: r.run_id,
            current: r.current,
            manifest: r.manifest,
        })
        .collect())
}

/// `GET /api/runs`
#[utoipa::path(get, path = "/api/runs", tag = "runs",
    responses((status = 200, description = "Every run in storage, newest first", body = Vec<RunItem>), ErrorAnswers))]
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

/// What a tag's list is of.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagList<'a> {
    /// The tag, lower-cased.
    pub tag: &'a str,
}

/// What a photo's similar-photos list is of.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimilarList<'a> {
    /// The source photo.
    pub photo_id: &'a str,
    /// What the run knows of it, if anything.
    pub photo: Option<&'a PhotoInfo>,
}

/// `GET /api/tags/{tag}/photos`: the tag's most favourited photos.
#[utoipa::path(get, path = "/api/tags/{tag}/photos", tag = "photos",
    params(("tag" = String, Path, pattern = r"^[0-9A-Za-z]{1,64}$", description = "A tag: 1 to 64 letters or digits (any script; matched lower-cased)"), PageQuery),
    responses((status = 200, description = "One page of the tag's most favourited photos", body = Page<TagList, TagItem>), ErrorAnswers))]
pub async fn tag_photos(
    State(state): State<AppState>,
    Path(tag): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let w = window(query)?;
    let tag = check_tag(&tag)?;
    let snapshot = state.serving()?;
    let Some(list) = snapshot.tag_list(&tag)? else {
        return Err(ApiError::NotFound(format!(
            "run {} has no photos tagged {tag:?}",
            snapshot.manifest.run_id
        )));
    };
    let about = TagList { tag: &tag };
    let body = list_page(&about, &snapshot.manifest.run_id, &w, Some(&list))?;
    Ok(json_bytes(body))
}

/// `GET /api/photos/{photo_id}/similar`
#[utoipa::path(get, path = "/api/photos/{photo_id}/similar", tag = "photos",
    params(("photo_id" = String, Path, pattern = r"^[0-9]{1,20}$", description = "A Flickr photo id: up to 20 decimal digits"), PageQuery),
    responses((status = 200, description = "One page of the photo's similar photos", body = Page<SimilarList, SimilarItem>), ErrorAnswers))]
pub async fn similar(
    State(state): State<AppState>,
    Path(photo_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let w = window(query)?;
    check_photo_id(&photo_id)?;
    let snapshot = state.serving()?;
    let Some(list) = snapshot.similar_list(&photo_id)? else {
        return Err(ApiError::NotFound(format!(
            "run {} has no similar photos for photo {photo_id}",
            snapshot.manifest.run_id
        )));
    };
    let info = snapshot.photo_info(&photo_id);
    let about = SimilarList {
        photo_id: &photo_id,
        photo: info.as_ref(),
    };
    let body = list_page(&about, &snapshot.manifest.run_id, &w, Some(&list))?;
    Ok(json_bytes(body))
}
