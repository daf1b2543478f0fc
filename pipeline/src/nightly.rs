//! `faverecs nightly`: the whole night on one machine, for cron. Under the run
//! lock ([`crate::lock`]): extract (which folds) → score → publish → gc. With
//! `ExtractOptions::only_new` it is the fast path after `faverecs users add`:
//! only newly tracked users and their most influential neighbours are pulled.
//!
//! Each stage's failure is a [`NightlyError`] naming the stage, so the command's
//! exit code and summary say which one failed and what to do. A failed score
//! records a failed run and publishes nothing; the published run stays current.

use std::time::Duration;

use chrono::Utc;

use crate::config::Settings;
use crate::extract::client::FlickrClient;
use crate::extract::{ExtractManifest, ExtractOptions, Progress, run_extract_with};
use crate::gc::{GcPlan, GcReport, run_gc};
use crate::lock::{LockError, RunLock};
use crate::runs::{Manifest, Pointer, new_run_id, publish};
use crate::score::{ScoreOptions, run_score};
use crate::store::Storage;

/// A stage of the night.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Taking the run lock.
    Lock,
    /// Pulling from Flickr and folding into the raw tables.
    Extract,
    /// Scoring into a new run.
    Score,
    /// Making the run current.
    Publish,
    /// Retention.
    Gc,
}

impl Stage {
    /// Its name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Lock => "lock",
            Stage::Extract => "extract",
            Stage::Score => "score",
            Stage::Publish => "publish",
            Stage::Gc => "gc",
        }
    }

    /// The process exit code when this stage fails (documented in the README):
    /// 75 (EX_TEMPFAIL) when another run holds the lock, so a cron wrapper can
    /// tell "try later" from a failure.
    pub fn exit_code(self) -> u8 {
        match self {
            Stage::Lock => 75,
            Stage::Extract => 10,
            Stage::Score => 11,
            Stage::Publish => 12,
            Stage::Gc => 13,
        }
    }

    /// What the operator does next.
    pub fn advice(self) -> &'static str {
        match self {
            Stage::Lock => "another run is in progress; this night's run was skipped",
            Stage::Extract => {
                "nothing was scored or published; finished users are kept, so the next `faverecs nightly` resumes"
            }
            Stage::Score => {
                "the run is recorded as failed and was not published; the published run is unchanged"
            }
            Stage::Publish => {
                "the scored run was not published; the published run is unchanged. Fix the cause and run `faverecs publish`"
            }
            Stage::Gc => {
                "the new run is published; only retention failed. Run `faverecs gc` once the cause is fixed"
            }
        }
    }
}

/// A stage failed.
#[derive(Debug, thiserror::Error)]
#[error("nightly stopped at {}: {source}", stage.name())]
pub struct NightlyError {
    /// The stage.
    pub stage: Stage,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

fn at<E: std::error::Error + Send + Sync + 'static>(
    stage: Stage,
) -> impl FnOnce(E) -> NightlyError {
    move |e| NightlyError {
        stage,
        source: Box::new(e),
    }
}

/// What a night did.
#[derive(Debug)]
pub struct NightlyReport {
    /// The extract run.
    pub extract: ExtractManifest,
    /// The score run.
    pub run: Manifest,
    /// The publish.
    pub published: Pointer,
    /// Retention's plan and what it removed.
    pub gc: (GcPlan, GcReport),
}

/// Runs the night under the run lock; the lock is released whatever happens
/// (a killed process leaves it to run out its lease).
pub async fn run_nightly(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    extract: ExtractOptions,
    score: ScoreOptions,
    progress: &dyn Progress,
) -> Result<NightlyReport, NightlyError> {
    let lease = Duration::from_secs(settings.lock.lease_secs);
    let lock = RunLock::acquire(storage, "nightly", lease)
        .await
        .map_err(at(Stage::Lock))?;
    let result = stages(storage, settings, client, extract, score, progress, &lock).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock; its lease will run out");
    }
    result
}

async fn stages(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    extract: ExtractOptions,
    score: ScoreOptions,
    progress: &dyn Progress,
    lock: &RunLock,
) -> Result<NightlyReport, NightlyError> {
    let lost = |stage| move |e: LockError| at(stage)(e);
    let extract = run_extract_with(storage, settings, client, extract, progress)
        .await
        .map_err(at(Stage::Extract))?;
    lock.check().map_err(lost(Stage::Score))?;
    let run_id = new_run_id(Utc::now());
    lock.set_run(&run_id).await.map_err(lost(Stage::Score))?;
    let run = run_score(
        storage,
        settings,
        ScoreOptions {
            run_id: Some(run_id),
            ..score
        },
    )
    .await
    .map_err(at(Stage::Score))?;
    lock.check().map_err(lost(Stage::Publish))?;
    let published = publish(storage, Some(&run.run_id))
        .await
        .map_err(at(Stage::Publish))?;
    let gc = run_gc(storage, settings, false)
        .await
        .map_err(at(Stage::Gc))?;
    Ok(NightlyReport {
        extract,
        run,
        published,
        gc,
    })
}
