//! The error every handler returns.
//!
//! Client mistakes (a malformed id, a bad `limit`) are 4xx with a message saying
//! what was wrong; nothing a client sends can produce a 500. Internal failures are
//! logged once, here, and answered with an opaque 500.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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
    /// The published run cannot be loaded, and nothing else is being served.
    #[error(
        "the published run {run_id} cannot be loaded: {reason}; publish a good run with `faverecs publish --run <id>` (see `faverecs runs`)"
    )]
    RunUnavailable {
        /// The run.
        run_id: String,
        /// Why.
        reason: String,
    },
    /// A dependency (storage) is unavailable; logged where it happened.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure: logged once, answered with an opaque 500.
    #[error("internal error")]
    Internal(String),
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, and what to do about it.
    pub error: String,
}

/// The error answers any JSON endpoint may give, as the OpenAPI document lists
/// them: the client's mistakes, and a run that cannot be served. 414 and 408
/// come from the URI limit and the request timeout, before any handler.
#[derive(utoipa::IntoResponses)]
pub enum ErrorAnswers {
    /// The request is malformed: a bad id, tag or query parameter.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The user, photo, tag or algorithm is not in the served run.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The request took longer than the service's timeout (no body).
    #[response(status = 408)]
    Timeout,
    /// The URI is longer than the service accepts.
    #[response(status = 414)]
    UriTooLong(ErrorBody),
    /// No run can be served yet, or storage cannot be read.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady | ApiError::RunUnavailable { .. } | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// A query string that does not parse is the client's mistake.
pub fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::BadRequest(format!("bad query string: {}", rejection.body_text()))
}

/// Shortens untrusted text before it is echoed in a message.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
