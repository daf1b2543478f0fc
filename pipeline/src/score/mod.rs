//! Score: raw tables in, a new run out.
//!
//! Stages, each timed in the manifest:
//!
//! 1. `load` — read the raw tables (one task per table), or only the
//!    targets' neighbourhood when that is all the run needs ([`load`]), and
//!    the published run's `first_recommended` from storage;
//! 2. `prepare` — dictionary-encode the ids into an integer graph ([`prepare`]);
//! 3. `recommend` — the Rayon kernels of every configured algorithm
//!    ([`algorithms`]: Flexplore with its `explore` sample, `itemknn`, `popular`);
//! 4. `similar_photos` — item-to-item rows ([`similar`]);
//! 5. `evaluate` — when enabled, the offline evaluation ([`evaluate`]);
//! 6. `write` — the output tables (plus the run's copy of `photos` for the
//!    recommended photos and of `tracked_users`), built straight into Arrow from the
//!    kernel's integer results (they are already in final row order, so a Polars
//!    frame in between would only add a copy) and encoded part by part on the Rayon
//!    pool ([`parts`]), then uploaded ([`upload`]);
//! 7. `serving_layout` — the run's lists as `serve` answers them, built from the
//!    tables just written and stored in the run (`crate::serving`); then the
//!    manifest.
//!
//! Files: [`error`] (why a run failed), [`params`] (settings → kernel
//! parameters), [`load`], [`prepare`], [`compute`] (the pool and the CPU stages),
//! the kernels [`flexplore`], [`algorithms`], [`similar`] and [`tags`],
//! [`evaluate`], [`output`] (Arrow rows), [`parts`] and [`upload`]; [`sharded`]
//! runs the same work split over processes. This file
//! only runs them in order and keeps the manifest.

pub mod algorithms;
pub mod assign;
pub mod compute;
pub mod error;
pub mod evaluate;
pub mod flexplore;
pub mod ids;
pub mod load;
pub mod output;
pub mod params;
pub mod parts;
pub mod prepare;
pub mod sharded;
pub mod similar;
pub mod tags;
pub mod upload;

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;

use crate::config::Settings;
use crate::model::{Table, run_table_dir};
use crate::runs::{Manifest, RunStatus, StageTiming, new_run_id, write_manifest};

pub use algorithms::{Algorithm, AlgorithmParams, Recommendations};
pub use error::ScoreError;
pub use flexplore::{Params, UserRecs};
pub use params::{ScoreOptions, similar_params};
pub use prepare::{Graph, Inputs, PrepareStats};

use std::sync::Arc;

use crate::model::col;
use crate::model::columns::TagPhotosColumns;
use crate::store::{IdSet, Select, Storage};

/// Logs a stage's time, with the peak and current RSS, and returns it for a
/// manifest or a shard record.
pub(super) fn stage_done(stage: &str, seconds: f64) -> StageTiming {
    tracing::info!(
        stage,
        seconds,
        peak_rss_mib = crate::runs::peak_rss_mib(),
        rss_mib = crate::runs::rss_mib(),
        "stage done"
    );
    StageTiming {
        stage: stage.to_string(),
        seconds,
    }
}

/// Logs a stage's time and adds it to the manifest.
fn record(manifest: &mut Manifest, stage: &str, seconds: f64) {
    manifest.stages.push(stage_done(stage, seconds));
}

/// Scores, writes a new run and returns its manifest. The run is not published.
pub async fn run_score(
    storage: &Storage,
    settings: &Settings,
    options: ScoreOptions,
) -> Result<Manifest, ScoreError> {
    let started = Utc::now();
    let mut manifest = Manifest {
        run_id: options
            .run_id
            .clone()
            .unwrap_or_else(|| new_run_id(started)),
        status: RunStatus::Running,
        faverecs_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started,
        finished_at: None,
        all_users: options.all_users,
        rows_in: BTreeMap::new(),
        rows_out: BTreeMap::new(),
        stages: Vec::new(),
        tables: BTreeMap::new(),
        config: settings.clone(),
        error: None,
        shards: Vec::new(),
        notes: Vec::new(),
        serving: None,
    };
    write_manifest(storage, &manifest).await?;
    tracing::info!(run_id = %manifest.run_id, storage = storage.url(), "score run started");
    let result = score_into(storage, settings, options, &mut manifest).await;
    manifest.finished_at = Some(Utc::now());
    match &result {
        Ok(()) => manifest.status = RunStatus::Succeeded,
        Err(e) => {
            manifest.status = RunStatus::Failed;
            manifest.error = Some(e.to_string());
        }
    }
    write_manifest(storage, &manifest).await?;
    result.map(|()| manifest)
}

/// Frees the raw rows that, once the graph is built, only the evaluation
/// reads: the favourites, contacts and dismissals.
fn free_unscored(inputs: &mut Inputs) {
    for batches in [
        &mut inputs.favorites,
        &mut inputs.contacts,
        &mut inputs.dismissals,
    ] {
        *batches = Vec::new();
    }
}

async fn score_into(
    storage: &Storage,
    settings: &Settings,
    options: ScoreOptions,
    manifest: &mut Manifest,
) -> Result<(), ScoreError> {
    // A run that may read only its targets' neighbourhood counts every
    // photo's favourites for its tag lists first, from a scan of the
    // favourites' ids: before anything else is held, so that the scan's
    // counts and the neighbourhood's graph are never in memory together.
    let scan_tags = settings.score.tag_photos_per_tag > 0
        && load::neighbourhood_suffices(settings, options.all_users, load::Scored::All);
    let mut scanned_tags = None;
    if scan_tags {
        let clock = Instant::now();
        let (batch, rows) =
            tags::scanned_tag_photos(storage, settings.score.tag_photos_per_tag).await?;
        manifest.rows_in.insert("favorites_scanned".into(), rows);
        scanned_tags = Some(batch);
        record(manifest, "tag_photos", clock.elapsed().as_secs_f64());
    }
    let clock = Instant::now();
    let load::Loaded {
        inputs, note: read, ..
    } = load::load_run_inputs(storage, settings, options.all_users, load::Scored::All).await?;
    let narrowed = read.is_some();
    // Without a neighbourhood the run read every table: its graph gives the
    // same lists.
    let scanned_tags = scanned_tags.filter(|_| narrowed);
    manifest.notes.extend(read);
    for (name, batches) in [
        (Table::Favorites, &inputs.favorites),
        (Table::Photos, &inputs.photos),
        (Table::Contacts, &inputs.contacts),
        (Table::TrackedUsers, &inputs.tracked_users),
        (Table::Dismissals, &inputs.dismissals),
    ] {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        manifest
            .rows_in
            .insert(name.name().to_string(), rows as u64);
    }
    record(manifest, "load", clock.elapsed().as_secs_f64());

    let params = AlgorithmParams::from_settings(settings);
    let threads = settings.score.threads;
    let settings_ = settings.clone();
    let task_failed = |e: tokio::task::JoinError| ScoreError::Task {
        what: "scoring",
        reason: e.to_string(),
    };
    // CPU-bound: keep it off the async workers.
    let (encoded, mut inputs) = tokio::task::spawn_blocking(move || {
        let encoded = compute::encode(&inputs, threads)?;
        Ok::<_, ScoreError>((encoded, inputs))
    })
    .await
    .map_err(task_failed)??;
    // Past `encode`, only the evaluation reads the favourites, contacts and
    // dismissals: without it they are freed before the graph is built, and
    // here, on the task that read them (mimalloc returns a page to the OS
    // once the thread that allocated it has collected the frees made into
    // it; see `sharded`).
    if !settings.evaluate.enabled {
        free_unscored(&mut inputs);
        tracing::debug!(
            peak_rss_mib = crate::runs::peak_rss_mib(),
            rss_mib = crate::runs::rss_mib(),
            "raw rows freed"
        );
    }
    let all_users = options.all_users;
    let (mut inputs, mut computed, pool) = tokio::task::spawn_blocking(move || {
        let (computed, pool) =
            compute::compute_all(encoded, &inputs, options, &params, &settings_)?;
        Ok::<_, ScoreError>((inputs, computed, pool))
    })
    .await
    .map_err(task_failed)??;
    for (stage, seconds) in std::mem::take(&mut computed.timings) {
        record(manifest, stage, seconds);
    }
    // The output tables need the graph, `photos` and `tracked_users` only:
    // free the rest (if the evaluation kept it) before they are built.
    free_unscored(&mut inputs);
    if narrowed {
        // A neighbourhood read holds `photos` rows only as owner claims; the
        // run's `photos` table is the rows of the photos it shows.
        let clock = Instant::now();
        let listed = scanned_tags
            .as_ref()
            .map(|t| TagPhotosColumns::new(t).map(|c| c.photo_id.clone()))
            .transpose()?;
        let shown = IdSet::new(
            output::shown_photo_ids(&computed.graph, &computed.recs, computed.similar.as_ref())
                .chain(listed.iter().flat_map(|ids| ids.iter().flatten())),
        );
        inputs.photos = storage
            .read_raw_where(Table::Photos, &Select::new(col::PHOTO_ID, Arc::new(shown)))
            .await?
            .unwrap_or_default();
        record(manifest, "load_shown_photos", clock.elapsed().as_secs_f64());
    }
    let clock = Instant::now();
    let (computed, previous) = load_previous(storage, computed, all_users).await?;
    record(manifest, "load_previous", clock.elapsed().as_secs_f64());
    let settings_ = settings.clone();
    let (run_id, started) = (manifest.run_id.clone(), manifest.started_at);
    let (stats, parts, encode_seconds) = tokio::task::spawn_blocking(move || {
        let clock = Instant::now();
        let parts = pool.install(|| {
            parts::encode_tables(
                &inputs,
                &computed,
                scanned_tags,
                &settings_,
                &previous,
                &run_id,
                started,
            )
        })?;
        let compute::Computed { stats, graph, .. } = computed;
        if !graph.has_owners() {
            tracing::warn!("{}", prepare::NO_OWNERS);
        }
        let stats = (stats, graph.has_owners());
        Ok::<_, ScoreError>((stats, parts, clock.elapsed()))
    })
    .await
    .map_err(|e| ScoreError::Task {
        what: "encoding the run's tables",
        reason: e.to_string(),
    })??;
    let (stats, owners) = stats;
    if !owners {
        manifest.notes.push(prepare::NO_OWNERS.to_string());
    }
    manifest
        .rows_in
        .insert("favorites_deduplicated".into(), stats.favorites);
    manifest.rows_in.insert(
        "favorites_without_owner".into(),
        stats.favorites_without_owner,
    );
    manifest.rows_in.insert("users".into(), stats.users);
    manifest.rows_in.insert("targets".into(), stats.targets);
    if stats.favorites_without_owner > 0 {
        tracing::warn!(
            count = stats.favorites_without_owner,
            "favourites without a known owner: they count in F(u) but find no neighbor"
        );
    }
    tracing::debug!(
        ms = encode_seconds.as_millis() as u64,
        parts = parts.len(),
        "output tables built and encoded"
    );
    let clock = Instant::now();
    upload::upload_parts(storage, manifest, parts).await?;
    record(
        manifest,
        "write",
        (encode_seconds + clock.elapsed()).as_secs_f64(),
    );
    let clock = Instant::now();
    manifest.serving = Some(crate::serving::store_layout(storage, manifest).await?);
    record(manifest, "serving_layout", clock.elapsed().as_secs_f64());
    Ok(())
}

/// The published run's `first_recommended` rows of `computed`'s targets,
/// indexed by its graph's codes (every row when `all_users`: then every
/// favoriter is a target, and a row filter would only cost time).
async fn load_previous(
    storage: &Storage,
    computed: compute::Computed,
    all_users: bool,
) -> Result<(compute::Computed, load::PreviousFirst), ScoreError> {
    let targets = (!all_users).then(|| {
        let graph = &computed.graph;
        let ids = graph.targets.iter().map(|&u| &graph.user_ids[u as usize]);
        Arc::new(IdSet::new(ids))
    });
    let rows = load::previous_first_recommended(storage, targets).await?;
    tokio::task::spawn_blocking(move || {
        let previous = load::PreviousFirst::new(rows, &computed.graph)?;
        Ok((computed, previous))
    })
    .await
    .map_err(|e| ScoreError::Task {
        what: "indexing the published run's first recommendations",
        reason: e.to_string(),
    })?
}

/// Scores a new run with the offline evaluation on, whatever
/// `evaluate.enabled` says (`faverecs evaluate`), and reads its `metrics` table
/// back. The run is not published.
pub async fn run_evaluation(
    storage: &Storage,
    settings: &Settings,
    options: ScoreOptions,
) -> Result<(Manifest, Vec<arrow_array::RecordBatch>), ScoreError> {
    let mut settings = settings.clone();
    settings.evaluate.enabled = true;
    let manifest = run_score(storage, &settings, options).await?;
    let dir = run_table_dir(&manifest.run_id, Table::Metrics);
    let metrics = storage.read_table_dir(&dir, Table::Metrics).await?;
    Ok((manifest, metrics))
}

#[cfg(test)]
mod tests;
