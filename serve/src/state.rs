//! The service's shared state: storage, the snapshot being served, and the
//! request metrics. A new publish is loaded completely, then swapped in whole.

use std::sync::{Arc, RwLock};

use pipeline::runs::current;
use pipeline::store::Storage;

use crate::load::{LoadError, load_snapshot};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// Shared state: the storage and the snapshot being served.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Where runs are read from.
    pub storage: Storage,
    /// The loaded run; `None` until the first load succeeds.
    current: Arc<RwLock<Option<Arc<Snapshot>>>>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// State with nothing loaded yet.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            current: Arc::new(RwLock::new(None)),
            metrics: Arc::new(Metrics::default()),
        }
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

    /// Loads the published run if it differs from the one being served. On any
    /// failure the current snapshot keeps serving and the error is returned.
    pub async fn refresh(&self) -> Result<Option<String>, LoadError> {
        let pointer = current(&self.storage).await.map_err(|e| LoadError::Run {
            run_id: "CURRENT".into(),
            reason: e.to_string(),
        })?;
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        if self
            .snapshot()
            .is_some_and(|s| s.manifest.run_id == pointer.run_id)
        {
            return Ok(None);
        }
        let snapshot = load_snapshot(&self.storage, &pointer).await?;
        let run_id = snapshot.manifest.run_id.clone();
        self.swap(snapshot);
        Ok(Some(run_id))
    }
}
