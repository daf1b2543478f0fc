//! Loading a published run into a [`Snapshot`]: its manifest, a check of its
//! tables (the same as `publish` makes: every file listed, its footer, its
//! columns and its row count, and the size of its serving layout), its metrics,
//! and its serving layout (`pipeline::serving`), memory-mapped: the file the
//! run stored, or for a run written before layouts were stored, one built from
//! its tables into a private temporary file. Nothing is swapped in until all of
//! it succeeded.

use pipeline::model::Table;
use pipeline::model::metrics::read_metrics;
use pipeline::model::run_table_dir;
use pipeline::runs::{Pointer, RunStatus, read_manifest, verify};
use pipeline::serving::section;
use pipeline::store::Storage;

use crate::snapshot::Snapshot;

/// Why a run could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the run failed.
    #[error("run {run_id}: {reason}")]
    Run {
        /// The run.
        run_id: String,
        /// What went wrong.
        reason: String,
    },
}

/// Loads a succeeded run completely.
pub async fn load_snapshot(storage: &Storage, pointer: &Pointer) -> Result<Snapshot, LoadError> {
    let run_id = pointer.run_id.as_str();
    let fail = |reason: String| LoadError::Run {
        run_id: run_id.to_string(),
        reason,
    };
    let manifest = read_manifest(storage, run_id)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if manifest.status != RunStatus::Succeeded {
        return Err(fail(format!(
            "status is {}, not succeeded",
            manifest.status
        )));
    }
    verify(storage, &manifest)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let metric_rows = storage
        .read_table_dir(&run_table_dir(run_id, Table::Metrics), Table::Metrics)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let metrics = read_metrics(&metric_rows).map_err(|e| fail(e.to_string()))?;
    let layout = pipeline::serving::open(storage, &manifest)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let algorithms: Vec<String> = layout
        .get(section::META, b"algorithms")
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| fail("the serving layout has no algorithm list".into()))?;
    let photo_sections = algorithms.iter().map(|a| section::photos(a)).collect();
    Ok(Snapshot {
        etag: axum::http::HeaderValue::from_str(&format!("W/\"{run_id}\"")).ok(),
        manifest,
        published_at: pointer.published_at,
        algorithms,
        metrics,
        layout,
        photo_sections,
    })
}
