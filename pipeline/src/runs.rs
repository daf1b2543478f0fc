//! Runs and publishing: the manifest, the `CURRENT` pointer, listing and rollback.
//!
//! A run is a folder `runs/<run_id>/` holding its output tables and a
//! `manifest.json`. The manifest is written with status `running` when the run
//! starts and rewritten as `succeeded` (or `failed`) once every table is in place.
//!
//! Publishing writes one small object, `CURRENT`, naming the run. A single put is
//! atomic on every object store, so a reader sees either the old run or the new
//! one, never half of one; and a run is only publishable once its manifest says
//! `succeeded` and every file it lists exists. Publishing an older run is the
//! rollback.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::model::{CURRENT, RUNS_DIR, is_run_id, manifest_path};
use crate::store::{Storage, StoreError};

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Started; tables may be partly written.
    Running,
    /// Every table is written; the run can be published.
    Succeeded,
    /// The run stopped with an error; see `error`.
    Failed,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        })
    }
}

/// How long one stage took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// Stage name (`load`, `prepare`, `flexplore`, `write`).
    pub stage: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// `runs/<run_id>/manifest.json`: what a run did, for operators and for `publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The run's id, also its folder name.
    pub run_id: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// The faverecs version that wrote it.
    pub faverecs_version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended, if it has.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether every favoriter was scored rather than the tracked users.
    pub all_users: bool,
    /// Row counts read, by input.
    pub rows_in: BTreeMap<String, u64>,
    /// Row counts written, by output table.
    pub rows_out: BTreeMap<String, u64>,
    /// Stage timings, in order.
    pub stages: Vec<StageTiming>,
    /// Files written, by table, relative to the run folder.
    pub tables: BTreeMap<String, Vec<String>>,
    /// The settings used. They hold no secrets by construction.
    pub config: Settings,
    /// The error, when `status` is `failed`.
    pub error: Option<String>,
}

/// The `CURRENT` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    /// The published run.
    pub run_id: String,
    /// When it was published.
    pub published_at: DateTime<Utc>,
}

/// One line of `faverecs runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// Its manifest; `None` when the folder has none (an interrupted start).
    pub manifest: Option<Manifest>,
    /// Whether `CURRENT` points at it.
    pub current: bool,
}

/// Why a publish or a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No such run.
    #[error("run {run_id} does not exist (see `faverecs runs` for the list)")]
    UnknownRun {
        /// The id asked for.
        run_id: String,
    },
    /// The id has characters a run id never has.
    #[error("{run_id:?} is not a run id (expected e.g. 20261123T013705Z-ab12cd)")]
    BadRunId {
        /// The id given.
        run_id: String,
    },
    /// The run is not finished or failed.
    #[error("run {run_id} is {status}, not succeeded; only a succeeded run can be published")]
    NotPublishable {
        /// The run.
        run_id: String,
        /// Its status.
        status: RunStatus,
    },
    /// A file the manifest lists is gone.
    #[error("run {run_id} is incomplete: {file} is missing; re-run `faverecs score`")]
    MissingFile {
        /// The run.
        run_id: String,
        /// The missing file.
        file: String,
    },
    /// Nothing to publish.
    #[error("there is no succeeded run to publish; run `faverecs score` first")]
    NothingToPublish,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new run id: UTC time to the second plus six hex digits, so ids sort by start
/// time and two runs started in the same second do not collide.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let nanos = now.timestamp_subsec_nanos() as u64;
    let mix = (nanos ^ (u64::from(std::process::id()) << 20)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%SZ"),
        (mix >> 40) & 0xff_ffff
    )
}

/// Reads a run's manifest.
pub async fn read_manifest(storage: &Storage, run_id: &str) -> Result<Manifest, RunError> {
    if !is_run_id(run_id) {
        return Err(RunError::BadRunId {
            run_id: run_id.to_string(),
        });
    }
    match storage.get_json(&manifest_path(run_id)).await {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound { .. }) => Err(RunError::UnknownRun {
            run_id: run_id.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Writes a run's manifest.
pub async fn write_manifest(storage: &Storage, manifest: &Manifest) -> Result<(), StoreError> {
    storage
        .put_json(&manifest_path(&manifest.run_id), manifest)
        .await
}

/// The published run, if any.
pub async fn current(storage: &Storage) -> Result<Option<Pointer>, StoreError> {
    match storage.get_json::<Pointer>(&Path::from(CURRENT)).await {
        Ok(p) => Ok(Some(p)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every run, oldest first.
pub async fn list_runs(storage: &Storage) -> Result<Vec<RunSummary>, RunError> {
    let current = current(storage).await?.map(|p| p.run_id);
    let mut ids = storage.list_dirs(&Path::from(RUNS_DIR)).await?;
    ids.retain(|id| is_run_id(id));
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for run_id in ids {
        let manifest = match read_manifest(storage, &run_id).await {
            Ok(m) => Some(m),
            Err(RunError::UnknownRun { .. }) => None,
            Err(e) => return Err(e),
        };
        out.push(RunSummary {
            current: current.as_deref() == Some(run_id.as_str()),
            run_id,
            manifest,
        });
    }
    Ok(out)
}

/// Makes a run current. With `None`, the newest succeeded run is published.
pub async fn publish(storage: &Storage, run_id: Option<&str>) -> Result<Pointer, RunError> {
    let manifest = match run_id {
        Some(id) => read_manifest(storage, id).await?,
        None => list_runs(storage)
            .await?
            .into_iter()
            .rev()
            .find_map(|r| r.manifest.filter(|m| m.status == RunStatus::Succeeded))
            .ok_or(RunError::NothingToPublish)?,
    };
    if manifest.status != RunStatus::Succeeded {
        return Err(RunError::NotPublishable {
            run_id: manifest.run_id,
            status: manifest.status,
        });
    }
    for files in manifest.tables.values() {
        for file in files {
            let path = Path::from(format!("{RUNS_DIR}/{}/{file}", manifest.run_id));
            match storage.size(&path).await {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => {
                    return Err(RunError::MissingFile {
                        run_id: manifest.run_id.clone(),
                        file: file.clone(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let pointer = Pointer {
        run_id: manifest.run_id,
        published_at: Utc::now(),
    };
    storage.put_json(&Path::from(CURRENT), &pointer).await?;
    Ok(pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_are_valid() {
        let a = new_run_id("2026-11-23T01:37:05Z".parse().expect("time"));
        let b = new_run_id("2026-11-23T01:37:06Z".parse().expect("time"));
        assert!(a < b);
        assert!(a.starts_with("20261123T013705Z-"));
        assert!(is_run_id(&a));
    }
}
