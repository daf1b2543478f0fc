//! faverecs serve: a thin, read-only HTTP service over the published run.
//!
//! # Layout
//!
//! - [`snapshot`] — the published run as the service holds it: its manifest,
//!   metrics and memory-mapped serving layout (`pipeline::serving`), read in
//!   place per request.
//! - [`load`] — checks a run and opens its layout into a snapshot.
//! - [`state`] — storage, the snapshot being served (swapped in whole when a
//!   new run is published) and the request metrics.
//! - [`error`] — the [`error::ApiError`] every handler returns.
//! - [`page`] — the page window and the JSON shape of a page of any list.
//! - [`api`] — the JSON endpoints; [`openapi`], their OpenAPI 3.1 document.
//! - [`pages`] — server-rendered HTML; [`chart`], the runs page's metrics chart.
//! - [`metrics`] — request counters and latency histograms.
//! - [`http`] — the middleware: cache validators (ETag from the run id),
//!   request counting, the URI limit, the security headers, and `/metrics`.
//! - [`fast`] — the default pages, answered before routing.
//! - [`app`] builds the service: [`fast`], then the router; [`run`] serves it
//!   on a listener until a shutdown future resolves, so tests bind port 0 and
//!   stop it themselves.
//!
//! `serve` reads only the table contract (`pipeline::model`), storage and runs; it
//! never depends on scoring internals.

pub mod api;
pub mod chart;
pub mod error;
pub mod fast;
pub mod http;
pub mod load;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod pages;
pub mod snapshot;
pub mod state;

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::get;
use axum::{Router, ServiceExt as _};
use futures::future::Either;
use tokio::net::TcpListener;
use tower::Service;
use tower::util::MapResponseLayer;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;

pub use http::CSP;
pub use state::AppState;

/// The service: [`fast::answer`] for the default pages, the router for
/// everything else.
#[derive(Clone)]
pub struct App {
    state: AppState,
    router: Router,
}

impl Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, <Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match fast::answer(&self.state, &req) {
            Some(resp) => Either::Left(ready(Ok(resp))),
            None => Either::Right(self.router.call(req)),
        }
    }
}

/// Builds the service.
pub fn app(state: AppState) -> App {
    App {
        router: router(state.clone()),
        state,
    }
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/users/{user_id}", get(pages::user_page))
        .route("/users/{user_id}/compare", get(pages::compare_page))
        .route("/static/style.css", get(pages::style))
        .route("/static/app.js", get(pages::script))
        .route("/runs", get(pages::runs_page))
        .route("/photos/{photo_id}", get(pages::photo_page))
        .route("/api/photos/{photo_id}/similar", get(api::similar))
        .route("/api/tags/{tag}/photos", get(api::tag_photos))
        .route("/tags/{tag}", get(pages::tag_page))
        .route("/lookup", get(pages::lookup))
        .route("/api/lookup", get(api::lookup))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/current", get(api::current_run))
        .route("/api/openapi.json", get(openapi::document))
        .route("/metrics", get(http::metrics))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route(api::USER_PHOTOS, get(api::user_photos))
        .route(api::USER_PHOTOGRAPHERS, get(api::user_photographers))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), http::track))
        .with_state(state)
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn(http::limit_uri))
        .layer(DefaultBodyLimit::max(16 * 1024))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(MapResponseLayer::new(http::secure))
}

/// Serves `state` on `listener` until `shutdown` resolves, checking for a newly
/// published run every `poll` interval. The first load happens before the first
/// request is accepted; if no run is published yet the service still starts and
/// `/readyz` answers 503 until one is.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    poll: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match state.refresh().await {
        Ok(Some(run_id)) => tracing::info!(%run_id, "serving run"),
        Ok(None) => tracing::warn!("no run is published yet; /readyz stays 503 until one is"),
        Err(e) => tracing::error!(error = %e, "the published run could not be loaded"),
    }
    let watcher = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.tick().await;
            loop {
                tick.tick().await;
                match state.refresh().await {
                    Ok(Some(run_id)) => tracing::info!(%run_id, "switched to newly published run"),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "new run not loaded; still serving the previous one")
                    }
                }
            }
        })
    };
    let result = axum::serve(listener, app(state).into_make_service())
        .with_graceful_shutdown(shutdown)
        .await;
    watcher.abort();
    result
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
