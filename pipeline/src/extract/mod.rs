//! Extract: favourites and contacts from the Flickr API into the raw tables.
//!
//! Phase 1 pulls the favourites and contacts of every tracked user; phase 2 pulls
//! the favourites of their neighbours (the owners of the tracked users' favourites),
//! each user at most once per run. Both phases are "a list of users in, rows out",
//! so they can be sharded by a stable hash of the NSID.
//!
//! Resumability: each finished user is written as one object,
//! `extract/pending/<phase>/<nsid>.json`, in one atomic put. A run killed at any
//! point leaves only whole users behind; the same command resumes, skipping users
//! whose object exists. At the end, every pending user is folded into the raw tables
//! (each rewritten in one atomic put) and the pending objects are deleted. Folding is
//! idempotent, so a kill during it is also safe: the next run folds again.
//!
//! Freshness and deletions: a user pulled within `extract.refresh_after_hours` is
//! skipped and keeps their stored rows. Otherwise the pull is incremental
//! (`min_fave_date` = newest favourite held; the answer is added to the stored set)
//! unless the last full pull is older than `extract.full_refresh_after_days`, in
//! which case the whole list is pulled and replaces the stored set, which is how
//! deleted favourites disappear. A tracked user's contacts are pulled with each full
//! pull and kept in between.

pub mod client;
pub mod error;
pub mod fold;
pub mod progress;
pub mod pull;
pub mod sim;
pub mod state;
pub mod users;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use object_store::path::Path;

use crate::config::Settings;
use crate::model::arrow::str_at;
use crate::model::columns::FavoritesColumns;
use crate::model::{Table, is_nsid};
use crate::runs::RunStatus;
use crate::store::Storage;

use client::FlickrClient;
pub use error::ExtractError;
pub use fold::fold;
pub use progress::{LogProgress, PhaseProgress, Progress};
use pull::{Ctx, run_phase};
pub use state::{
    ExtractManifest, ExtractOptions, MANIFEST_DIR, Outcome, PENDING_DIR, Phase, UserCounts,
    UserPull, UserState, read_pending, read_state, shard_of, tracked_users,
};

/// Runs the extract stage and writes its manifest.
pub async fn run_extract(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
) -> Result<ExtractManifest, ExtractError> {
    run_extract_with(storage, settings, client, options, &LogProgress).await
}

/// [`run_extract`], reporting each phase's progress to `progress`.
pub async fn run_extract_with(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
    progress: &dyn Progress,
) -> Result<ExtractManifest, ExtractError> {
    let started = Utc::now();
    let run_id = crate::runs::new_run_id(started);
    let mut manifest = ExtractManifest {
        run_id: run_id.clone(),
        status: RunStatus::Running,
        started_at: started,
        finished_at: started,
        shard: options.shard.map(|(i, n)| format!("{i}/{n}")),
        calls: 0,
        retries: BTreeMap::new(),
        tracked: UserCounts::default(),
        neighbors: UserCounts::default(),
        rows_written: BTreeMap::new(),
        failures: Vec::new(),
        error: None,
    };
    let result = extract_into(storage, settings, client, options, &mut manifest, progress).await;
    manifest.finished_at = Utc::now();
    manifest.calls = client.stats.calls();
    manifest.retries = client.stats.retries();
    manifest.status = if result.is_ok() {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    if let Err(e) = &result {
        manifest.error = Some(e.to_string());
    }
    storage
        .put_json(
            &Path::from(format!("{MANIFEST_DIR}/{run_id}.json")),
            &manifest,
        )
        .await?;
    result.map(|()| manifest)
}

async fn extract_into(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
    manifest: &mut ExtractManifest,
    progress: &dyn Progress,
) -> Result<(), ExtractError> {
    let in_shard = |u: &String| options.shard.is_none_or(|(i, n)| shard_of(u, n) == i);
    let tracked = tracked_users(storage).await?;
    if tracked.is_empty() {
        return Err(ExtractError::NoTrackedUsers);
    }
    let state = read_state(storage).await?;
    let pending = read_pending(storage).await?;
    let done: BTreeSet<(Phase, String)> = pending
        .iter()
        .map(|p| (p.phase, p.user_id.clone()))
        .collect();
    let ctx = Ctx {
        storage,
        client,
        settings,
        state: &state,
        done: &done,
        now: options.now,
    };
    let mut failures = Vec::new();
    let runs = |p: Phase| options.phase.is_none_or(|only| only == p);
    if runs(Phase::Tracked) {
        let mine: Vec<String> = tracked.iter().filter(|u| in_shard(u)).cloned().collect();
        run_phase(
            &ctx,
            Phase::Tracked,
            mine,
            &mut manifest.tracked,
            &mut failures,
            progress,
        )
        .await?;
    }

    // Neighbours: owners of the tracked users' favourites, stored or just pulled.
    let tracked_set: BTreeSet<&String> = tracked.iter().collect();
    let mut neighbors = BTreeSet::new();
    let stored = storage
        .read_raw(Table::Favorites)
        .await?
        .unwrap_or_default();
    for b in &stored {
        let c = FavoritesColumns::new(b)?;
        for i in 0..b.num_rows() {
            if let (Some(u), Some(o)) = (str_at(c.user_id, i), str_at(c.owner_id, i))
                && tracked_set.contains(&u.to_string())
            {
                neighbors.insert(o.to_string());
            }
        }
    }
    for p in read_pending(storage).await? {
        if p.phase == Phase::Tracked {
            neighbors.extend(p.favorites.into_iter().map(|f| f.owner_id));
        }
    }
    let neighbors: Vec<String> = neighbors
        .into_iter()
        .filter(|n| is_nsid(n) && !tracked_set.contains(n) && in_shard(n))
        .collect();
    if runs(Phase::Neighbor) {
        run_phase(
            &ctx,
            Phase::Neighbor,
            neighbors,
            &mut manifest.neighbors,
            &mut failures,
            progress,
        )
        .await?;
    }
    manifest.failures = failures.clone();

    let attempted: usize = [&manifest.tracked, &manifest.neighbors]
        .iter()
        .map(|c| c.fetched + c.not_found + c.deleted + c.failed)
        .sum();
    let failed = manifest.tracked.failed + manifest.neighbors.failed;
    if attempted > 0 {
        let percent = 100.0 * failed as f64 / attempted as f64;
        if percent >= f64::from(settings.extract.max_failed_percent) {
            return Err(ExtractError::TooManyFailures {
                failed,
                attempted,
                percent,
                limit: settings.extract.max_failed_percent,
                examples: failures
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    if options.shard.is_some() || options.phase.is_some() {
        tracing::info!(
            "phase/shard done; fold with `faverecs extract --fold-only` once every shard has finished"
        );
        return Ok(());
    }
    manifest.rows_written = fold(storage, settings, options.now).await?;
    Ok(())
}
