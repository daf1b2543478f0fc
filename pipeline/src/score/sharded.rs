//! A score run split over processes (AWS Batch array children), with the same
//! tables as one process would write.
//!
//! Three commands, all naming the same run id:
//!
//! 1. `faverecs score --run-id RUN --step users --shard i/N`, for every i:
//!    the per-user tables (`photo_recs`, `photographer_recs`,
//!    `first_recommended`) of the targets assigned to shard i: those whose
//!    NSID falls in it ([`crate::shard::shard_of`]), or those a plan by
//!    neighbourhood gives it ([`super::assign`]; its record names the
//!    assignment). `popular` still ranks the neighbourhood of
//!    every target ([`Graph::community`]), so a user's lists are the ones an
//!    unsharded run gives them;
//! 2. `faverecs score --run-id RUN --step photos --shard i/M`, for every i,
//!    once every users shard has succeeded: the `similar_photos` rows of the
//!    photos the targets favourited or were recommended (read back from the
//!    run's `photo_recs`) whose id falls in shard i; shard 0 also writes
//!    `tag_photos`;
//! 3. `faverecs score --finish --run-id RUN`: checks that every shard of both steps
//!    succeeded (else it fails naming the first missing shard), writes the
//!    run's `photos` (the photos its tables show), `tracked_users` and
//!    `metrics` (evaluating when `evaluate.enabled`), removes any file a
//!    killed attempt left that no shard lists, and writes the manifest as
//!    `succeeded`, with every shard's timings, rows and peak memory.
//!
//! A shard writes its files as `part-<step>-<i>of<N>-<n>.parquet`, then
//! removes any older file of its own it did not rewrite, then its record
//! (`runs/RUN/shards/<step>-<i>-of-<N>.json`). A rerun of shard i therefore
//! replaces its own files and nothing else, and a shard killed before its
//! record counts as not run. Times in the tables (`first_recommended_at`) are
//! the run's start, from its id, the same in every shard.
//!
//! A users shard reads only its targets' neighbourhood when that suffices
//! ([`super::load::neighbourhood_suffices`]: no `itemknn`); otherwise a
//! shard reads every raw table. With similar photos on, every photos shard
//! reads every raw table. With them off, photos shard 0 makes the tag lists
//! (when on) from a scan of the favourites' two id columns and of `photos`
//! ([`tags::scanned_tag_photos`]), bucket by bucket, holding a count per
//! photo rather than the favourites, and the other photos shards read
//! nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::model::columns::PhotosColumns;
use crate::model::metrics::metrics_batch;
use crate::model::{Table, col, is_run_id, run_table_dir};
use crate::runs::{
    Manifest, RunError, RunStatus, ShardRecord, ShardStep, StageTiming, complete_step,
    peak_rss_mib, run_started_at, shard_record_path, write_manifest,
};
use crate::shard::shard_of;
use crate::store::{IdSet, Select, Storage};

use super::algorithms::{self, AlgorithmParams};
use super::assign::Share;
use super::compute::pool;
use super::error::ScoreError;
use super::load::{
    Loaded, PreviousFirst, Scored, load_inputs, load_run_inputs, previous_first_recommended,
};
use super::output::Names;
use super::params::{ScoreOptions, similar_params};
use super::parts::{Part, encode_batches, encode_jobs, similar_jobs, user_jobs};
use super::prepare::{self, Graph, Inputs};
use super::upload::store_parts;
use super::{evaluate, similar, tags};

/// The run's start time, from its id; a sharded run's id must be a run id.
fn started_at(run_id: &str) -> Result<DateTime<Utc>, ScoreError> {
    match run_started_at(run_id) {
        Some(t) if is_run_id(run_id) => Ok(t),
        _ => Err(ScoreError::Shard(format!(
            "{run_id:?} is not a run id (e.g. 20261130T020000Z-000001); every shard and --finish must be given the same one"
        ))),
    }
}

fn timing(stage: &str, clock: Instant) -> StageTiming {
    super::stage_done(stage, clock.elapsed().as_secs_f64())
}

fn task_error(what: &'static str) -> impl Fn(tokio::task::JoinError) -> ScoreError {
    move |e| ScoreError::Task {
        what,
        reason: e.to_string(),
    }
}

/// Runs shard `shard` of `shards` of `step` for run `run_id`, and returns its
/// record (also stored).
pub async fn run_shard(
    storage: &Storage,
    settings: &Settings,
    run_id: &str,
    step: ShardStep,
    (shard, shards): (u32, u32),
    all_users: bool,
) -> Result<ShardRecord, ScoreError> {
    let run_started = started_at(run_id)?;
    if shards == 0 || shard >= shards {
        return Err(ScoreError::Shard(format!(
            "shard {shard}/{shards}: expected 0 ≤ i < N"
        )));
    }
    let started = Utc::now();
    tracing::info!(
        run_id,
        step = step.name(),
        shard,
        shards,
        "score shard started"
    );
    // The photos step needs every user's recommendations, and has nothing to
    // read when it writes no rows: with similar photos off, only shard 0
    // writes rows (`tag_photos`), and none does when tag lists are off too.
    // Shard 0 then makes the tag lists from a scan of the favourites' ids
    // (`tags::scanned_tag_photos`) and reads nothing else.
    let tags_only = !settings.similar.enabled && settings.score.tag_photos_per_tag > 0;
    let photos_idle = match (
        settings.similar.enabled,
        settings.score.tag_photos_per_tag,
        shard,
    ) {
        (true, ..) | (false, 1.., 0) => None,
        (false, 0, _) => Some(
            "similar photos and tag lists are off: the photos step read nothing and wrote no rows",
        ),
        (false, 1.., 1..) => Some(
            "similar photos are off and photos shard 0 writes the tag lists: this shard read nothing and wrote no rows",
        ),
    };
    let recommended = match step {
        ShardStep::Users => None,
        ShardStep::Photos => {
            complete_step(storage, run_id, ShardStep::Users).await?;
            if photos_idle.is_some() || tags_only {
                None
            } else {
                Some(recommended_photo_ids(storage, run_id).await?)
            }
        }
    };
    let mut stages = Vec::new();
    let scanned_tags = if step == ShardStep::Photos && tags_only && shard == 0 {
        let clock = Instant::now();
        let scanned = tags::scanned_tag_photos(storage, settings.score.tag_photos_per_tag).await?;
        stages.push(timing("tag_photos", clock));
        Some(scanned)
    } else {
        None
    };
    let clock = Instant::now();
    let Loaded {
        inputs,
        note: read,
        planned,
    } = match step {
        ShardStep::Users => {
            load_run_inputs(storage, settings, all_users, Scored::Shard(shard, shards)).await?
        }
        ShardStep::Photos if photos_idle.is_some() => Loaded {
            note: photos_idle.map(str::to_string),
            ..Loaded::default()
        },
        ShardStep::Photos if scanned_tags.is_some() => Loaded {
            note: Some(
                "similar photos are off: this shard made the tag lists from a scan of the favourites' ids and built no graph".to_string(),
            ),
            ..Loaded::default()
        },
        ShardStep::Photos => Loaded {
            inputs: load_inputs(storage).await?,
            ..Loaded::default()
        },
    };
    // Which targets a users shard scores; every users shard of the run must
    // name the same assignment (`complete_step`).
    let share = planned.unwrap_or(Share::Nsid { shard, shards });
    let assignment = (step == ShardStep::Users).then(|| share.name());
    stages.push(timing("load", clock));
    let mut rows_in = input_rows(&inputs);
    let scanned_tags = scanned_tags.map(|(batch, rows)| {
        rows_in.insert("favorites_scanned".into(), rows);
        batch
    });

    let threads = settings.score.threads;
    let pool = pool(threads)?;
    let clock = Instant::now();
    let (graph, inputs, pool) = match step {
        ShardStep::Photos if photos_idle.is_some() || scanned_tags.is_some() => {
            (Graph::default(), inputs, pool)
        }
        ShardStep::Photos => tokio::task::spawn_blocking(move || {
            let (graph, _) = pool.install(|| prepare::prepare(&inputs, all_users))?;
            Ok::<_, ScoreError>((graph, inputs, pool))
        })
        .await
        .map_err(task_error("preparing a shard"))??,
        // A users shard's lists need the graph only, so its raw rows are
        // freed as soon as their ids are encoded, before the graph is built,
        // and here rather than on the pool: mimalloc returns a page to the OS
        // once the thread that allocated it has collected the frees made into
        // it. A neighbourhood read decodes in this task (under `faverecs
        // score`, on the main thread, which waits while the pool works), so
        // rows freed on the pool stayed resident through `recommend` and
        // `encode`.
        ShardStep::Users => {
            let (encoded, inputs, pool) = tokio::task::spawn_blocking(move || {
                let encoded = pool.install(|| prepare::encode(&inputs))?;
                Ok::<_, ScoreError>((encoded, inputs, pool))
            })
            .await
            .map_err(task_error("preparing a shard"))??;
            drop(inputs);
            tracing::debug!(
                peak_rss_mib = peak_rss_mib(),
                rss_mib = crate::runs::rss_mib(),
                "raw rows freed"
            );
            tokio::task::spawn_blocking(move || {
                let (graph, _) = pool.install(|| prepare::build(encoded, all_users))?;
                Ok::<_, ScoreError>((graph, Inputs::default(), pool))
            })
            .await
            .map_err(task_error("preparing a shard"))??
        }
    };
    stages.push(timing("prepare", clock));
    // A users shard's targets are its share of them, and the published run's
    // first recommendations are read for those only.
    let (graph, previous) = match step {
        ShardStep::Users => {
            let clock = Instant::now();
            let mut graph = graph;
            graph
                .targets
                .retain(|&u| share.scores(&graph.user_ids[u as usize]));
            let ids = graph.targets.iter().map(|&u| &graph.user_ids[u as usize]);
            let ids = Arc::new(IdSet::new(ids));
            let rows = previous_first_recommended(storage, Some(ids)).await?;
            let (graph, previous) = tokio::task::spawn_blocking(move || {
                let previous = PreviousFirst::new(rows, &graph)?;
                Ok::<_, ScoreError>((graph, previous))
            })
            .await
            .map_err(task_error(
                "indexing the published run's first recommendations",
            ))??;
            stages.push(timing("load_previous", clock));
            (graph, previous)
        }
        ShardStep::Photos => (graph, PreviousFirst::default()),
    };

    let settings_ = settings.clone();
    let run = run_id.to_string();
    let prefix = step_prefix(step, shard, shards);
    let (parts, targets, cpu_stages, notes) = tokio::task::spawn_blocking(move || {
        let mut stages = Vec::new();
        let mut notes: Vec<String> = read.into_iter().collect();
        let clock = Instant::now();
        let (parts, targets) = match step {
            ShardStep::Users => {
                let params = AlgorithmParams::from_settings(&settings_);
                if !graph.has_owners() {
                    tracing::warn!("{}", prepare::NO_OWNERS);
                    notes.push(prepare::NO_OWNERS.to_string());
                }
                let recs = pool.install(|| algorithms::recommend(&graph, &params));
                stages.push(timing("recommend", clock));
                let clock = Instant::now();
                let names = Names::new(&graph);
                let jobs = user_jobs(&graph, &names, &recs, &previous, &run, run_started);
                let parts = pool.install(|| encode_jobs(&run, &prefix, &jobs))?;
                stages.push(timing("encode", clock));
                (parts, graph.targets.len())
            }
            ShardStep::Photos => {
                let index = |id: &str| graph.photo_ids.position(id).map(|p| p as u32);
                let ids = recommended.unwrap_or_default();
                let mut sources = similar::sources(&graph, ids.iter().filter_map(|id| index(id)));
                sources.retain(|&p| shard_of(&graph.photo_ids[p as usize], shards) == shard);
                let count = sources.len();
                let rows = settings_.similar.enabled.then(|| {
                    let rows = pool.install(|| {
                        similar::similar_photos(&graph, &sources, similar_params(&settings_))
                    });
                    (sources, rows)
                });
                stages.push(timing("similar_photos", clock));
                let clock = Instant::now();
                let jobs = similar_jobs(&graph, rows.as_ref(), &settings_);
                let mut parts = pool.install(|| encode_jobs(&run, &prefix, &jobs))?;
                if shard == 0 {
                    let tag_photos = match scanned_tags {
                        Some(scanned) => scanned,
                        None => tags::tag_photos_batch(
                            &graph,
                            &inputs.photos,
                            settings_.score.tag_photos_per_tag,
                        )?,
                    };
                    parts.extend(encode_batches(
                        &run,
                        Table::TagPhotos,
                        &prefix,
                        &[tag_photos],
                    )?);
                }
                stages.push(timing("encode", clock));
                (parts, count)
            }
        };
        Ok::<_, ScoreError>((parts, targets, stages, notes))
    })
    .await
    .map_err(task_error("scoring a shard"))??;
    stages.extend(cpu_stages);
    rows_in.insert("targets".into(), targets as u64);

    let clock = Instant::now();
    let tables: &[Table] = match step {
        ShardStep::Users => &[
            Table::PhotoRecs,
            Table::FirstRecommended,
            Table::PhotographerRecs,
        ],
        ShardStep::Photos => &[Table::SimilarPhotos, Table::TagPhotos],
    };
    let (listed, rows_out) = store_parts(storage, run_id, parts).await?;
    let own = format!("part-{}", step_prefix(step, shard, shards));
    remove_unlisted(
        storage,
        run_id,
        tables,
        |file| file.starts_with(&own),
        &listed,
    )
    .await?;
    stages.push(timing("write", clock));
    let record = ShardRecord {
        step,
        shard,
        shards,
        started_at: started,
        finished_at: Utc::now(),
        all_users,
        rows_in,
        rows_out,
        stages,
        tables: listed,
        peak_rss_mib: peak_rss_mib(),
        notes,
        assignment,
    };
    storage
        .put_json(&shard_record_path(run_id, step, shard, shards), &record)
        .await?;
    tracing::info!(
        run_id,
        step = step.name(),
        shard,
        shards,
        "score shard succeeded"
    );
    Ok(record)
}

/// What a shard's files start with after `part-`: `<step>-<i>of<N>-`.
fn step_prefix(step: ShardStep, shard: u32, shards: u32) -> String {
    format!("{}-{shard:04}of{shards:04}-", step.name())
}

/// Row counts of the raw tables read.
fn input_rows(inputs: &Inputs) -> BTreeMap<String, u64> {
    [
        (Table::Favorites, &inputs.favorites),
        (Table::Photos, &inputs.photos),
        (Table::Contacts, &inputs.contacts),
        (Table::TrackedUsers, &inputs.tracked_users),
        (Table::Dismissals, &inputs.dismissals),
    ]
    .into_iter()
    .map(|(t, b)| {
        (
            t.name().to_string(),
            b.iter().map(|b| b.num_rows() as u64).sum(),
        )
    })
    .collect()
}

/// Adds the non-null ids to `set`, allocating only for ids not yet in it.
fn add_ids<'a>(set: &mut HashSet<String>, ids: impl Iterator<Item = Option<&'a str>>) {
    for id in ids.flatten() {
        if !set.contains(id) {
            set.insert(id.to_string());
        }
    }
}

/// Adds to `ids` every value of the string `columns` of the run's `table`,
/// read a file at a time and only those columns: the tables read here are
/// the run's largest (`photo_recs` held 1.3 GB read whole, for the 8M
/// community scored for every favoriter).
async fn add_column_ids(
    storage: &Storage,
    run_id: &str,
    table: Table,
    columns: &[&str],
    ids: &mut HashSet<String>,
) -> Result<(), ScoreError> {
    use arrow_array::cast::AsArray;
    for file in storage.table_files(&run_table_dir(run_id, table)).await? {
        for b in storage.read_parquet_columns(&file, table, columns).await? {
            for c in b.columns() {
                let values = c.as_string_opt::<i32>().ok_or_else(|| {
                    ScoreError::Shard(format!("{file}: an id column is not a string column"))
                })?;
                add_ids(ids, values.iter());
            }
        }
    }
    Ok(())
}

/// The photo ids the run's `photo_recs` recommend, ascending and distinct.
async fn recommended_photo_ids(storage: &Storage, run_id: &str) -> Result<Vec<String>, ScoreError> {
    let mut ids = HashSet::new();
    add_column_ids(
        storage,
        run_id,
        Table::PhotoRecs,
        &[col::PHOTO_ID],
        &mut ids,
    )
    .await?;
    let mut ids: Vec<String> = ids.into_iter().collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Removes the files of `tables` in the run that `keep` selects (by file name)
/// and `listed` does not list: what a killed attempt left.
async fn remove_unlisted(
    storage: &Storage,
    run_id: &str,
    tables: &[Table],
    keep: impl Fn(&str) -> bool,
    listed: &BTreeMap<String, Vec<String>>,
) -> Result<(), ScoreError> {
    for &table in tables {
        let mine: HashSet<&str> = listed
            .get(table.name())
            .map(|files| files.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for path in storage.list_files(&run_table_dir(run_id, table)).await? {
            let Some(file) = path.filename() else {
                continue;
            };
            let relative = format!("{}/{file}", table.name());
            if keep(file) && !mine.contains(relative.as_str()) {
                tracing::info!(%path, "removing a file an earlier attempt left");
                storage.delete(&path).await?;
            }
        }
    }
    Ok(())
}

/// Finishes a sharded run (see the module docs) and returns its manifest.
pub async fn finish(
    storage: &Storage,
    settings: &Settings,
    run_id: &str,
) -> Result<Manifest, ScoreError> {
    let run_started = started_at(run_id)?;
    let clock = Instant::now();
    let mut records = Vec::new();
    for step in ShardStep::ALL {
        records.extend(complete_step(storage, run_id, step).await?);
    }
    let all_users = records.iter().any(|r| r.all_users);
    if records.iter().any(|r| r.all_users != all_users) {
        return Err(ScoreError::Shard(
            "some shards scored every favoriter (--all-users) and some only the tracked users; rerun them alike".into(),
        ));
    }
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rows_out: BTreeMap<String, u64> = BTreeMap::new();
    for table in Table::RUN {
        tables.insert(table.name().to_string(), Vec::new());
        rows_out.insert(table.name().to_string(), 0);
    }
    for r in &records {
        for (t, files) in &r.tables {
            tables
                .entry(t.clone())
                .or_default()
                .extend(files.iter().cloned());
        }
        for (t, n) in &r.rows_out {
            *rows_out.entry(t.clone()).or_default() += n;
        }
    }

    // The photos the run's tables show, as `recommended_photos` picks them.
    let mut shown: HashSet<String> = recommended_photo_ids(storage, run_id)
        .await?
        .into_iter()
        .collect();
    add_column_ids(
        storage,
        run_id,
        Table::SimilarPhotos,
        &[col::PHOTO_ID, "similar_photo_id"],
        &mut shown,
    )
    .await?;
    add_column_ids(
        storage,
        run_id,
        Table::TagPhotos,
        &[col::PHOTO_ID],
        &mut shown,
    )
    .await?;
    let inputs = if settings.evaluate.enabled {
        load_inputs(storage).await?
    } else {
        // Only the rows of the photos shown.
        let shown = Select::new(col::PHOTO_ID, Arc::new(IdSet::new(shown.iter())));
        Inputs {
            photos: storage
                .read_raw_where(Table::Photos, &shown)
                .await?
                .unwrap_or_default(),
            tracked_users: storage
                .read_raw(Table::TrackedUsers)
                .await?
                .unwrap_or_default(),
            ..Inputs::default()
        }
    };
    let mut stages = vec![timing("load", clock)];

    let clock = Instant::now();
    let settings_ = settings.clone();
    let run = run_id.to_string();
    let parts = tokio::task::spawn_blocking(move || {
        let mut photos = Vec::new();
        for batch in &inputs.photos {
            let ids = PhotosColumns::new(batch)?.photo_id;
            let mask: arrow_array::BooleanArray = ids
                .iter()
                .map(|p| Some(p.is_some_and(|p| shown.contains(p))))
                .collect();
            photos.push(arrow_select::filter::filter_record_batch(batch, &mask)?);
        }
        let metrics = if settings_.evaluate.enabled {
            let pool = pool(settings_.score.threads)?;
            let options = ScoreOptions {
                all_users,
                run_id: None,
            };
            let params = AlgorithmParams::from_settings(&settings_);
            metrics_batch(&evaluate::evaluate(
                &inputs,
                options,
                &params,
                &settings_.evaluate,
                &pool,
            )?)?
        } else {
            metrics_batch(&[])?
        };
        let mut parts: Vec<Part> = Vec::new();
        for (table, batches) in [
            (Table::Photos, photos),
            (Table::TrackedUsers, inputs.tracked_users.clone()),
            (Table::Metrics, vec![metrics]),
        ] {
            parts.extend(encode_batches(&run, table, "", &batches)?);
        }
        Ok::<_, ScoreError>(parts)
    })
    .await
    .map_err(task_error("finishing a sharded run"))??;
    stages.push(timing("finish", clock));

    let clock = Instant::now();
    let (listed, rows) = store_parts(storage, run_id, parts).await?;
    for (t, files) in listed {
        tables.entry(t).or_default().extend(files);
    }
    for (t, n) in rows {
        *rows_out.entry(t).or_default() += n;
    }
    // A file no shard lists was left by a killed attempt: readers that list a
    // table's folder must not see it.
    remove_unlisted(storage, run_id, &Table::RUN, |_| true, &tables).await?;
    stages.push(timing("write", clock));
    for step in ShardStep::ALL {
        let slowest = records
            .iter()
            .filter(|r| r.step == step)
            .map(|r| (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0)
            .fold(0.0, f64::max);
        stages.push(StageTiming {
            stage: format!("{} (slowest shard)", step.name()),
            seconds: slowest,
        });
    }
    let mut rows_in = records
        .first()
        .map(|r| r.rows_in.clone())
        .unwrap_or_default();
    rows_in.remove("targets");
    rows_in.insert(
        "targets".into(),
        records
            .iter()
            .filter(|r| r.step == ShardStep::Users)
            .map(|r| r.rows_in.get("targets").copied().unwrap_or(0))
            .sum(),
    );
    for t in tables.values_mut() {
        t.sort();
    }
    let mut notes: Vec<String> = records.iter().flat_map(|r| r.notes.clone()).collect();
    notes.sort();
    notes.dedup();
    let mut manifest = Manifest {
        run_id: run_id.to_string(),
        status: RunStatus::Succeeded,
        faverecs_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: run_started,
        finished_at: Some(Utc::now()),
        all_users,
        rows_in,
        rows_out,
        stages,
        tables,
        config: settings.clone(),
        error: None,
        notes,
        shards: records,
        serving: None,
    };
    manifest.serving = Some(crate::serving::store_layout(storage, &manifest).await?);
    write_manifest(storage, &manifest).await?;
    tracing::info!(run_id, "sharded run finished");
    Ok(manifest)
}

impl From<RunError> for ScoreError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Store(e) => ScoreError::Store(e),
            other => ScoreError::Shard(other.to_string()),
        }
    }
}
