//! The OpenAPI 3.1 document of the JSON API, generated from the handlers'
//! `#[utoipa::path]` annotations and the answer types' derived schemas, and
//! served at `/api/openapi.json`.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::api;

/// The document's source: every JSON endpoint.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "faverecs",
        description = "Read-only JSON API over the published run of faverecs: photo recs, photographer recs, similar photos, tag lists and the runs. Every answer of a list endpoint is a pure function of the served run; its weak ETag is the run id.",
        license(name = "MIT", identifier = "MIT")
    ),
    paths(
        api::user_photos,
        api::user_photographers,
        api::similar,
        api::tag_photos,
        api::lookup,
        api::runs,
        api::current_run,
        api::healthz,
        api::readyz,
    ),
    components(schemas(pipeline::model::algorithm::Algorithm, api::PhotographerAlgorithm)),
    tags(
        (name = "recommendations", description = "A tracked user's lists"),
        (name = "photos", description = "Lists about a photo or a tag"),
        (name = "runs", description = "The runs in storage and the one served"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    // Serialising a document built from static annotations cannot fail; if it
    // somehow did, an empty object is still valid JSON.
    Bytes::from(
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".into()),
    )
});

/// `GET /api/openapi.json`
pub async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.clone(),
    )
        .into_response()
}
