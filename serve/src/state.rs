//! The service's shared state: storage, the snapshot being served, and the
//! request metrics. A new publish is loaded completely, then swapped in whole.

use std::sync::{Arc, RwLock};

use pipeline::config::OnBadRun;
use pipeline::runs::{Pointer, PointerState, pointer_state};
use pipeline::store::Storage;
use serde::Serialize;

use crate::error::ApiError;
use crate::load::{LoadError, load_snapshot};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Shared state: the storage and the snapshot being served. Cloned for every
/// request (by the router and each handler), so a clone is one reference count.
#[derive(Clone, Debug)]
pub struct AppState {
    shared: Arc<Shared>,
    /// What to do when the published run cannot be loaded at start.
    on_bad_run: OnBadRun,
}

/// What every clone of an [`AppState`] shares.
#[derive(Debug)]
pub struct Shared {
    /// Where runs are read from.
    pub storage: Storage,
    /// The loaded run; `None` until the first load succeeds.
    current: RwLock<Option<Arc<Snapshot>>>,
    /// Request counters for `/metrics`.
    pub metrics: Metrics,
    /// Why the published run is not the one being served, if it is not.
    problem: RwLock<Option<LoadProblem>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// The published run could not be loaded.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LoadProblem {
    /// The run `CURRENT` names (`CURRENT` itself when it is garbage).
    pub run_id: String,
    /// Why it cannot be served.
    pub reason: String,
    /// When the last attempt failed.
    pub at: chrono::DateTime<chrono::Utc>,
}

impl AppState {
    /// State with nothing loaded yet.
    pub fn new(storage: Storage) -> Self {
        Self {
            shared: Arc::new(Shared {
                storage,
                current: RwLock::new(None),
                metrics: Metrics::default(),
                problem: RwLock::new(None),
            }),
            on_bad_run: OnBadRun::default(),
        }
    }

    /// The same state with another `serve.on_bad_run` policy.
    pub fn with_on_bad_run(mut self, on_bad_run: OnBadRun) -> Self {
        self.on_bad_run = on_bad_run;
        self
    }

    /// Why the published run is not being served, if it is not.
    pub fn problem(&self) -> Option<LoadProblem> {
        self.problem
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_problem(&self, problem: Option<LoadProblem>) {
        match self.problem.write() {
            Ok(mut g) => *g = problem,
            Err(p) => *p.into_inner() = problem,
        }
    }

    /// The snapshot to answer from, or the 503 that says why there is none:
    /// nothing published yet, or the published run cannot be loaded (named).
    pub fn serving(&self) -> Result<Arc<Snapshot>, ApiError> {
        if let Some(s) = self.snapshot() {
            return Ok(s);
        }
        Err(match self.problem() {
            Some(p) => ApiError::RunUnavailable {
                run_id: p.run_id,
                reason: p.reason,
            },
            None => ApiError::NotReady,
        })
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn swap(&self, snapshot: Snapshot) {
        let new = Some(Arc::new(snapshot));
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Loads the published run if it differs from the one being served.
    ///
    /// On failure the run being served (if any) keeps serving, the failure is
    /// recorded for `/readyz` and `/api/runs/current`, and it is returned. With
    /// nothing loaded yet and `on_bad_run = previous`, the runs published before
    /// it are tried, newest first, and the first that loads is served.
    pub async fn refresh(&self) -> Result<Option<String>, LoadError> {
        let pointer = match pointer_state(&self.storage).await {
            Ok(PointerState::Published(p)) => p,
            Ok(PointerState::Unpublished) => {
                self.set_problem(None);
                return Ok(None);
            }
            Ok(PointerState::Garbage(reason)) => {
                let reason = format!("CURRENT is unreadable: {reason}");
                return Err(self.failed(None, "CURRENT".into(), reason).await);
            }
            Err(e) => {
                // Storage itself failed: transient, not a verdict on the run.
                return Err(LoadError::Run {
                    run_id: "CURRENT".into(),
                    reason: e.to_string(),
                });
            }
        };
        if self
            .snapshot()
            .is_some_and(|s| s.manifest.run_id == pointer.run_id)
        {
            self.set_problem(None);
            return Ok(None);
        }
        match load_snapshot(&self.storage, &pointer).await {
            Ok(snapshot) => {
                let run_id = snapshot.manifest.run_id.clone();
                self.swap(snapshot);
                self.set_problem(None);
                Ok(Some(run_id))
            }
            Err(e) => {
                let reason = match &e {
                    LoadError::Run { reason, .. } => reason.clone(),
                };
                Err(self
                    .failed(Some(&pointer), pointer.run_id.clone(), reason)
                    .await)
            }
        }
    }

    /// Records that the published run cannot be served and, with nothing
    /// loaded and `on_bad_run = previous`, falls back to an earlier publish.
    async fn failed(&self, pointer: Option<&Pointer>, run_id: String, reason: String) -> LoadError {
        self.set_problem(Some(LoadProblem {
            run_id: run_id.clone(),
            reason: reason.clone(),
            at: chrono::Utc::now(),
        }));
        if self.snapshot().is_none() && self.on_bad_run == OnBadRun::Previous {
            for earlier in pointer.map_or(&[][..], |p| p.previous.as_slice()) {
                let candidate = Pointer {
                    run_id: earlier.run_id.clone(),
                    published_at: earlier.published_at,
                    previous: Vec::new(),
                };
                match load_snapshot(&self.storage, &candidate).await {
                    Ok(snapshot) => {
                        tracing::warn!(
                            published = %run_id,
                            serving = %candidate.run_id,
                            "the published run cannot be loaded; serving the run published before it"
                        );
                        self.swap(snapshot);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(run = %candidate.run_id, error = %e, "earlier run cannot be loaded either")
                    }
                }
            }
        }
        LoadError::Run { run_id, reason }
    }
}
