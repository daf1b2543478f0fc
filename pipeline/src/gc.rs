//! Retention: `faverecs gc`, which `nightly` runs after each publish.
//!
//! Runs are kept or removed by these rules, the first that applies deciding:
//!
//! 1. the published run is kept;
//! 2. a run published, or replaced as the published run, within the last two
//!    `serve.poll_interval_secs` is kept (a serve replica may still hold it);
//! 3. an abandoned run (left `running`, or without a manifest, by a writer whose
//!    lock lease ran out; see [`crate::lock`]) is removed;
//! 4. a live `running` run is kept;
//! 5. the newest `retention.keep_runs` succeeded runs are kept;
//! 6. a run younger than `retention.keep_days` is kept;
//! 7. the rest (older succeeded, failed, unreadable) is removed.
//!
//! When `CURRENT` is garbage, the published run is unknown: every succeeded run
//! is kept, and only abandoned, failed and unreadable runs past the rules go.
//!
//! A run is removed manifest first, so a `gc` killed half-way leaves a folder
//! with no manifest, which the next `gc` recognises as abandoned and finishes.
//!
//! Also removed:
//! - temporary files on a local directory (`<object>#<n>`, written by
//!   object_store before its rename, and `<object>.lock` files of conditional
//!   writes) older than `retention.stray_grace_secs`; S3 has no such files
//!   (its puts are atomic; the bucket's lifecycle rule aborts stale multipart
//!   uploads);
//! - extract manifests (`extract/manifests/<id>.json`) past the same keep
//!   rules as runs (newest `keep_runs`, younger than `keep_days`);
//! - files of the bucketed raw tables that no reader uses, older than
//!   `retention.stray_grace_secs`: a generation that was replaced or never
//!   committed (its writer was killed), or a migrated table's single file.
//!
//! Never removed: the raw tables' current files, `CURRENT`, the run lock, and extract's pending
//! pulls (`extract/pending/`), which are input not yet folded; the next fold
//! consumes them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use object_store::path::Path;

use crate::config::Settings;
use crate::extract::state::MANIFEST_DIR;
use crate::model::{RUNS_DIR, Table, manifest_path};
use crate::runs::{PointerState, RunError, RunStatus, list_runs, pointer_state, run_started_at};
use crate::store::{Storage, StoreError};

/// Why a run is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// It is the published run.
    Published,
    /// It was published or replaced within two serve poll intervals.
    RecentlyServed,
    /// It is still being written.
    Running,
    /// One of the newest `keep_runs` succeeded runs.
    Newest,
    /// Younger than `keep_days`.
    Young,
    /// Succeeded, and `CURRENT` is unreadable, so it may be the published one.
    MaybePublished,
}

/// Why a run is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remove {
    /// Its writer died.
    Abandoned,
    /// Past retention.
    Expired,
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Keep::Published => "published",
            Keep::RecentlyServed => "published or replaced within two serve polls",
            Keep::Running => "still running",
            Keep::Newest => "one of the newest succeeded runs (retention.keep_runs)",
            Keep::Young => "younger than retention.keep_days",
            Keep::MaybePublished => "succeeded, and CURRENT is unreadable",
        })
    }
}

impl std::fmt::Display for Remove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Remove::Abandoned => "abandoned (its writer died)",
            Remove::Expired => "past retention",
        })
    }
}

/// What a `gc` keeps and removes.
#[derive(Debug, Clone, Default)]
pub struct GcPlan {
    /// Runs kept, oldest first, with the reason.
    pub keep: Vec<(String, Keep)>,
    /// Runs removed, oldest first, with the reason and status shown by `runs`.
    pub remove: Vec<(String, Remove, String)>,
    /// Extract manifests removed.
    pub extract_manifests: Vec<Path>,
    /// Temporary files removed (paths under the storage root).
    pub stray: Vec<std::path::PathBuf>,
    /// Objects of the bucketed raw tables that no reader uses: the files of a
    /// replaced or uncommitted generation, or a migrated table's single file.
    pub raw_stale: Vec<Path>,
    /// Pending extract pulls left for the next fold.
    pub pending: usize,
}

/// What a `gc` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Runs removed.
    pub runs: usize,
    /// Objects deleted (run files, extract manifests, temporary files).
    pub objects: usize,
}

/// Why a `gc` failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Listing runs failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides what goes, by the rules in the module docs, at `now`.
pub async fn plan(
    storage: &Storage,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<GcPlan, GcError> {
    let retention = &settings.retention;
    let recent = Duration::seconds(2 * settings.serve.poll_interval_secs as i64);
    let young = Duration::days(retention.keep_days as i64);
    let (published, garbage, recently) = match pointer_state(storage).await? {
        PointerState::Published(p) => {
            // A run stopped being served when the next was published.
            let mut recently = Vec::new();
            let mut replaced_at = p.published_at;
            for prev in &p.previous {
                if now - prev.published_at < recent || now - replaced_at < recent {
                    recently.push(prev.run_id.clone());
                }
                replaced_at = prev.published_at;
            }
            (Some(p.run_id), false, recently)
        }
        PointerState::Unpublished => (None, false, Vec::new()),
        PointerState::Garbage(reason) => {
            tracing::warn!(%reason, "CURRENT is unreadable: gc keeps every succeeded run");
            (None, true, Vec::new())
        }
    };
    let runs = list_runs(storage).await?;
    let mut newest_left = retention.keep_runs;
    let mut decided: BTreeMap<String, Result<Keep, Remove>> = BTreeMap::new();
    for r in runs.iter().rev() {
        let succeeded = r
            .manifest
            .as_ref()
            .is_some_and(|m| m.status == RunStatus::Succeeded);
        let started = r
            .manifest
            .as_ref()
            .map(|m| m.started_at)
            .or_else(|| run_started_at(&r.run_id))
            .unwrap_or(now);
        let running = r
            .manifest
            .as_ref()
            .is_some_and(|m| m.status == RunStatus::Running);
        let verdict = if published.as_deref() == Some(r.run_id.as_str()) {
            Ok(Keep::Published)
        } else if recently.contains(&r.run_id) {
            Ok(Keep::RecentlyServed)
        } else if r.abandoned {
            Err(Remove::Abandoned)
        } else if running || (r.manifest.is_none() && r.unreadable.is_none()) {
            Ok(Keep::Running)
        } else if succeeded && garbage {
            Ok(Keep::MaybePublished)
        } else if succeeded && newest_left > 0 {
            newest_left -= 1;
            Ok(Keep::Newest)
        } else if now - started < young {
            Ok(Keep::Young)
        } else {
            Err(Remove::Expired)
        };
        decided.insert(r.run_id.clone(), verdict);
    }
    let mut plan = GcPlan::default();
    for r in &runs {
        match decided.get(&r.run_id) {
            Some(Ok(keep)) => plan.keep.push((r.run_id.clone(), *keep)),
            Some(Err(why)) => plan.remove.push((r.run_id.clone(), *why, r.status_text())),
            None => {}
        }
    }
    plan.extract_manifests = old_extract_manifests(storage, settings, now).await?;
    plan.stray = storage.debris(
        "",
        std::time::Duration::from_secs(retention.stray_grace_secs),
    );
    for table in [Table::Favorites, Table::Contacts, Table::Dismissals] {
        plan.raw_stale.extend(
            storage
                .stale_raw_objects(
                    table,
                    std::time::Duration::from_secs(retention.stray_grace_secs),
                    now,
                )
                .await?,
        );
    }
    plan.pending = storage
        .list_files(&Path::from(crate::extract::state::PENDING_DIR))
        .await?
        .len();
    Ok(plan)
}

/// Extract manifests past retention: all but the newest `keep_runs`, and only
/// those older than `keep_days`.
async fn old_extract_manifests(
    storage: &Storage,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<Path>, GcError> {
    let mut files = storage.list_files(&Path::from(MANIFEST_DIR)).await?;
    files.sort();
    let young = Duration::days(settings.retention.keep_days as i64);
    let keep_from = files.len().saturating_sub(settings.retention.keep_runs);
    Ok(files
        .into_iter()
        .take(keep_from)
        .filter(|p| {
            p.filename()
                .and_then(run_started_at)
                .is_some_and(|t| now - t >= young)
        })
        .collect())
}

/// Carries out a plan: each removed run manifest first, then its files; then
/// the extract manifests and the temporary files.
pub async fn apply(storage: &Storage, plan: &GcPlan) -> Result<GcReport, GcError> {
    let mut report = GcReport::default();
    for (run_id, why, _) in &plan.remove {
        let manifest = manifest_path(run_id);
        match storage.delete(&manifest).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut files = storage
            .list_files(&Path::from(format!("{RUNS_DIR}/{run_id}")))
            .await?;
        files.sort();
        for f in &files {
            match storage.delete(f).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => report.objects += 1,
                Err(e) => return Err(e.into()),
            }
        }
        // A removed run's temporary files go with it, whatever their age: its
        // writer is dead or long finished.
        let folder = format!("{RUNS_DIR}/{run_id}");
        for f in storage.debris(&folder, std::time::Duration::ZERO) {
            if storage.remove_debris(&f)? {
                report.objects += 1;
            }
        }
        storage.remove_empty_dirs(&folder);
        tracing::info!(%run_id, reason = %why, files = files.len() + 1, "removed run");
        report.runs += 1;
        report.objects += 1;
    }
    for p in &plan.extract_manifests {
        match storage.delete(p).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => report.objects += 1,
            Err(e) => return Err(e.into()),
        }
    }
    for p in &plan.raw_stale {
        match storage.delete(p).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => {
                tracing::info!(%p, "removed an unused raw table file");
                report.objects += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for f in &plan.stray {
        if storage.remove_debris(f)? {
            tracing::info!(file = %f.display(), "removed a temporary file");
            report.objects += 1;
        }
    }
    Ok(report)
}

/// Plans and, unless `dry_run`, applies.
pub async fn run_gc(
    storage: &Storage,
    settings: &Settings,
    dry_run: bool,
) -> Result<(GcPlan, GcReport), GcError> {
    let plan = plan(storage, settings, Utc::now()).await?;
    let report = if dry_run {
        GcReport::default()
    } else {
        apply(storage, &plan).await?
    };
    Ok((plan, report))
}
