//! Score: raw tables in, a new run out.
//!
//! Stages, each timed in the manifest:
//!
//! 1. `load` — read the raw tables from storage;
//! 2. `prepare` — Polars table work into an integer graph ([`prepare`]);
//! 3. `recommend` — the Rayon kernels of every configured algorithm
//!    ([`algorithms`]: Flexplore with its `explore` sample, `itemknn`, `popular`);
//! 4. `similar_photos` — item-to-item rows ([`similar`]);
//! 5. `evaluate` — when enabled, the offline evaluation ([`crate::evaluate`]);
//! 6. `write` — the output tables (plus the run's copy of `photos` for the
//!    recommended photos and of `tracked_users`), built straight into Arrow from the kernel's
//!    integer results (they are already in final row order, so a Polars frame in
//!    between would only add a copy), then the manifest.

pub mod algorithms;
pub mod flexplore;
pub mod prepare;
pub mod similar;
pub mod tags;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use chrono::Utc;

use crate::config::Settings;
use crate::frame::FrameError;
use crate::model::{Table, run_table_dir};
use crate::runs::{Manifest, RunStatus, StageTiming, new_run_id, write_manifest};
use crate::store::{Storage, StoreError};

pub use algorithms::{Algorithm, AlgorithmParams, Recommendations};
pub use flexplore::{Params, UserRecs};
pub use prepare::{Graph, Inputs, PrepareStats};

/// Why scoring could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// There are no favourites at all.
    #[error(
        "the favorites table is empty or missing; import some with `faverecs import favorites FILE` (or run the extractor) first"
    )]
    NoFavorites,
    /// No favourite has a known photo owner.
    #[error(
        "no favourite has an owner_id: Flexplore finds neighbors through photo owners, so it cannot run. Import favorites with an owner_id column, or a photos table with owner_id for the favourited photos"
    )]
    NoOwners,
    /// Nobody to score.
    #[error("{}", if *all_users { "no user has a favourite to score" } else { "there are no tracked users to score; add some with `faverecs import tracked FILE`, or pass --all-users to score every favoriter" })]
    NoTargets {
        /// Whether `--all-users` was given.
        all_users: bool,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Polars or Arrow failed.
    #[error("preparing tables: {0}")]
    Frame(#[from] FrameError),
    /// The thread pool could not be built.
    #[error("cannot start {threads} scoring threads: {reason}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// Why not.
        reason: String,
    },
}

impl From<polars::prelude::PolarsError> for ScoreError {
    fn from(e: polars::prelude::PolarsError) -> Self {
        ScoreError::Frame(FrameError::Polars(e))
    }
}

impl From<arrow_schema::ArrowError> for ScoreError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        ScoreError::Frame(FrameError::Arrow(e))
    }
}

/// Options of one score run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Score every favoriter instead of the tracked users.
    pub all_users: bool,
}

impl Params {
    /// The kernel parameters from settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Params {
            photo_recs: settings.score.photo_recs_per_user,
            photographer_recs: settings.score.photographer_recs_per_user,
            top_neighbors: settings.score.top_neighbors_per_rec,
            explore_seed: Some(settings.score.explore_seed),
        }
    }
}

impl AlgorithmParams {
    /// Every algorithm's parameters from settings.
    pub fn from_settings(settings: &Settings) -> Self {
        AlgorithmParams {
            algorithms: settings.score.algorithms.clone(),
            flexplore: Params::from_settings(settings),
            itemknn: similar::SimilarParams {
                k: settings.score.itemknn_neighbors,
                ..similar_params(settings)
            },
        }
    }
}

/// The similar-photos parameters from settings.
pub fn similar_params(settings: &Settings) -> similar::SimilarParams {
    similar::SimilarParams {
        k: settings.similar.k,
        min_common: settings.similar.min_common,
        similarity: settings.similar.similarity,
        bm25: similar::Bm25 {
            k1: settings.similar.bm25_k1,
            b: settings.similar.bm25_b,
        },
    }
}

/// Loads the raw tables.
pub async fn load_inputs(storage: &Storage) -> Result<Inputs, ScoreError> {
    Ok(Inputs {
        favorites: storage
            .read_raw(Table::Favorites)
            .await?
            .ok_or(ScoreError::NoFavorites)?,
        photos: storage.read_raw(Table::Photos).await?.unwrap_or_default(),
        contacts: storage.read_raw(Table::Contacts).await?.unwrap_or_default(),
        tracked_users: storage
            .read_raw(Table::TrackedUsers)
            .await?
            .unwrap_or_default(),
        dismissals: storage
            .read_raw(Table::Dismissals)
            .await?
            .unwrap_or_default(),
    })
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, ScoreError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ScoreError::Threads {
            threads,
            reason: e.to_string(),
        })
}

/// Runs every algorithm on a pool of `threads` workers (0 = one per core).
pub fn recommend_with_threads(
    graph: &Graph,
    params: &AlgorithmParams,
    threads: usize,
) -> Result<Recommendations, ScoreError> {
    Ok(pool(threads)?.install(|| algorithms::recommend(graph, params)))
}

/// Prepares and scores in memory: raw batches in, `photo_recs` and
/// `photographer_recs` out. This is the whole computation without storage, used by
/// the tests.
pub fn compute(
    inputs: &Inputs,
    options: ScoreOptions,
    params: &AlgorithmParams,
    threads: usize,
) -> Result<(RecordBatch, RecordBatch, PrepareStats), ScoreError> {
    let (graph, stats) = prepare::prepare(inputs, options.all_users)?;
    let recs = recommend_with_threads(&graph, params, threads)?;
    Ok((
        photo_recs_batch(&graph, &recs)?,
        photographer_recs_batch(&graph, &recs.photographers)?,
        stats,
    ))
}

/// Builds the `photo_recs` table as one batch, rows ordered by user, then
/// algorithm (in config order), then rank.
pub fn photo_recs_batch(graph: &Graph, recs: &Recommendations) -> Result<RecordBatch, ScoreError> {
    let batches = photo_recs_batches(graph, recs)?;
    Ok(arrow_select::concat::concat_batches(
        &Table::PhotoRecs.schema(),
        &batches,
    )?)
}

/// Targets per batch when output batches are built in parallel.
const TARGETS_PER_BATCH: usize = 2048;

/// Builds the `photo_recs` table as batches of whole users, in parallel, in
/// final row order.
pub fn photo_recs_batches(
    graph: &Graph,
    recs: &Recommendations,
) -> Result<Vec<RecordBatch>, ScoreError> {
    use rayon::prelude::*;
    let chunks: Vec<usize> = (0..graph.targets.len())
        .step_by(TARGETS_PER_BATCH)
        .collect();
    chunks
        .par_iter()
        .map(|&start| {
            let end = (start + TARGETS_PER_BATCH).min(graph.targets.len());
            photo_recs_chunk(graph, recs, start..end)
        })
        .collect()
}

/// A list<string> column built from offsets and values directly.
struct StringLists {
    offsets: Vec<i32>,
    values: StringBuilder,
}

impl StringLists {
    fn new(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: StringBuilder::new(),
        }
    }

    fn push<'a>(&mut self, items: impl Iterator<Item = &'a str>) {
        let mut n = *self.offsets.last().unwrap_or(&0);
        for s in items {
            self.values.append_value(s);
            n += 1;
        }
        self.offsets.push(n);
    }

    fn finish(mut self) -> Result<ArrayRef, ScoreError> {
        let field = Arc::new(Field::new("item", DataType::Utf8, false));
        Ok(Arc::new(arrow_array::ListArray::try_new(
            field,
            arrow_buffer::OffsetBuffer::new(self.offsets.into()),
            Arc::new(self.values.finish()),
            None,
        )?))
    }
}

fn photo_recs_chunk(
    graph: &Graph,
    recs: &Recommendations,
    targets: std::ops::Range<usize>,
) -> Result<RecordBatch, ScoreError> {
    let n: usize = recs
        .photos
        .iter()
        .flat_map(|(_, l)| l[targets.clone()].iter().map(Vec::len))
        .sum();
    let mut user = StringBuilder::with_capacity(n, n * 14);
    let mut rank = Vec::with_capacity(n);
    let mut photo = StringBuilder::with_capacity(n, n * 11);
    let mut owner = StringBuilder::with_capacity(n, n * 14);
    let mut score = Vec::with_capacity(n);
    let mut count = Vec::with_capacity(n);
    let mut algorithm = StringBuilder::with_capacity(n, n * 9);
    let mut top = StringLists::new(n);
    let mut similar_to = StringLists::new(n);
    for i in targets {
        let u = graph.targets[i];
        for (a, lists) in &recs.photos {
            let Some(list) = lists.get(i) else { continue };
            for (r, p) in list.iter().enumerate() {
                user.append_value(&graph.user_ids[u as usize]);
                rank.push(r as i32 + 1);
                photo.append_value(&graph.photo_ids[p.photo as usize]);
                match graph.owner[p.photo as usize] {
                    prepare::NO_OWNER => owner.append_null(),
                    o => owner.append_value(&graph.user_ids[o as usize]),
                }
                score.push(p.score);
                count.push(p.neighbor_count as i32);
                top.push(
                    p.top_neighbors
                        .iter()
                        .map(|&v| graph.user_ids[v as usize].as_str()),
                );
                similar_to.push(
                    p.similar_to
                        .iter()
                        .map(|&f| graph.photo_ids[f as usize].as_str()),
                );
                algorithm.append_value(a.name());
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(user.finish()),
        Arc::new(Int32Array::from(rank)),
        Arc::new(photo.finish()),
        Arc::new(owner.finish()),
        Arc::new(Float64Array::from(score)),
        Arc::new(Int32Array::from(count)),
        top.finish()?,
        similar_to.finish()?,
        Arc::new(algorithm.finish()),
    ];
    Ok(RecordBatch::try_new(Table::PhotoRecs.schema(), columns)?)
}

/// Builds the `photographer_recs` table, rows ordered by user then rank.
pub fn photographer_recs_batch(
    graph: &Graph,
    recs: &[Vec<flexplore::PhotographerRec>],
) -> Result<RecordBatch, ScoreError> {
    let rows = graph
        .targets
        .iter()
        .zip(recs)
        .flat_map(|(&u, list)| list.iter().enumerate().map(move |(i, p)| (u, i, p)));
    let (mut user, mut rank, mut who, mut score, mut common, mut total) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (u, i, p) in rows {
        user.push(graph.user_ids[u as usize].as_str());
        rank.push(i as i32 + 1);
        who.push(graph.user_ids[p.photographer as usize].as_str());
        score.push(p.score);
        common.push(i64::from(p.common));
        total.push(i64::from(p.total));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(user)),
        Arc::new(Int32Array::from(rank)),
        Arc::new(StringArray::from(who)),
        Arc::new(Float64Array::from(score)),
        Arc::new(Int64Array::from(common)),
        Arc::new(Int64Array::from(total)),
    ];
    Ok(RecordBatch::try_new(
        Table::PhotographerRecs.schema(),
        columns,
    )?)
}

/// The metadata rows of the photos a run shows — recommended by any algorithm,
/// either side of a similar-photos row, or listed in `tag_photos` — so a run is
/// self-contained. Photos are marked by integer id; only the `photos` rows are
/// looked up by string (binary search in the sorted dictionary).
fn recommended_photos(
    inputs: &Inputs,
    graph: &Graph,
    recs: &Recommendations,
    similar: Option<&(Vec<u32>, Vec<Vec<similar::SimilarRow>>)>,
    tag_photos: &RecordBatch,
) -> Result<Vec<RecordBatch>, ScoreError> {
    use arrow_array::cast::AsArray;
    let mut shown = vec![false; graph.photo_ids.len()];
    for (_, lists) in &recs.photos {
        for r in lists.iter().flatten() {
            shown[r.photo as usize] = true;
        }
    }
    if let Some((sources, rows)) = similar {
        for (&p, list) in sources.iter().zip(rows.iter()) {
            shown[p as usize] = true;
            for r in list {
                shown[r.photo as usize] = true;
            }
        }
    }
    let index = |id: &str| {
        graph
            .photo_ids
            .binary_search_by(|x| x.as_str().cmp(id))
            .ok()
    };
    for id in tag_photos.column(2).as_string::<i32>().iter().flatten() {
        if let Some(p) = index(id) {
            shown[p] = true;
        }
    }
    let mut out = Vec::new();
    for batch in &inputs.photos {
        let photo_ids = batch.column(0).as_string::<i32>();
        let mask: arrow_array::BooleanArray = photo_ids
            .iter()
            .map(|p| Some(p.and_then(index).is_some_and(|p| shown[p])))
            .collect();
        out.push(arrow_select::filter::filter_record_batch(batch, &mask)?);
    }
    Ok(out)
}

/// Builds the `similar_photos` table, rows ordered by photo then rank.
pub fn similar_photos_batch(
    graph: &Graph,
    similar: Option<&(Vec<u32>, Vec<Vec<similar::SimilarRow>>)>,
    measure: similar::Similarity,
) -> Result<RecordBatch, ScoreError> {
    let (mut photo, mut rank, mut other, mut score, mut common) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if let Some((sources, rows)) = similar {
        for (&p, list) in sources.iter().zip(rows.iter()) {
            for (i, r) in list.iter().enumerate() {
                photo.push(graph.photo_ids[p as usize].as_str());
                rank.push(i as i32 + 1);
                other.push(graph.photo_ids[r.photo as usize].as_str());
                score.push(r.score);
                common.push(i64::from(r.common));
            }
        }
    }
    let n = photo.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(photo)),
        Arc::new(Int32Array::from(rank)),
        Arc::new(StringArray::from(other)),
        Arc::new(Float64Array::from(score)),
        Arc::new(Int64Array::from(common)),
        Arc::new(StringArray::from(vec![measure.name(); n])),
    ];
    Ok(RecordBatch::try_new(
        Table::SimilarPhotos.schema(),
        columns,
    )?)
}

/// When each photo rec was first made. Recs already in the published run keep that
/// run's date; the others are new in this run. Kept apart from `photo_recs` so that
/// table stays a pure function of the input.
async fn first_recommended(
    storage: &Storage,
    photo_recs: &[RecordBatch],
    run_id: &str,
    started: chrono::DateTime<Utc>,
) -> Result<Vec<RecordBatch>, ScoreError> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    // user → photo → (first time, index into `runs`): looked up by &str, no
    // allocation per row.
    type Previous =
        std::collections::HashMap<String, std::collections::HashMap<String, (i64, usize)>>;
    let mut previous: Previous = Default::default();
    let mut runs: Vec<String> = Vec::new();
    let mut run_index: std::collections::HashMap<String, usize> = Default::default();
    if let Some(pointer) = crate::runs::current(storage).await? {
        let dir = run_table_dir(&pointer.run_id, Table::FirstRecommended);
        match storage.read_table_dir(&dir, Table::FirstRecommended).await {
            Ok(batches) => {
                for b in &batches {
                    let (u, p) = (
                        b.column(0).as_string::<i32>(),
                        b.column(1).as_string::<i32>(),
                    );
                    let (t, r) = (
                        b.column(2).as_primitive::<TimestampMicrosecondType>(),
                        b.column(3).as_string::<i32>(),
                    );
                    for i in 0..b.num_rows() {
                        // One entry per distinct run id (a few hundred after a
                        // year of nightly runs), looked up by hash.
                        let run = match run_index.get(r.value(i)) {
                            Some(&at) => at,
                            None => {
                                runs.push(r.value(i).to_string());
                                run_index.insert(r.value(i).to_string(), runs.len() - 1);
                                runs.len() - 1
                            }
                        };
                        previous
                            .entry(u.value(i).to_string())
                            .or_default()
                            .insert(p.value(i).to_string(), (t.value(i), run));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, run = %pointer.run_id, "previous run's first_recommended unreadable; every rec counts as new")
            }
        }
    }
    let now = started.timestamp_micros();
    let mut out = Vec::with_capacity(photo_recs.len());
    for batch in photo_recs {
        let (users, photos) = (
            batch.column(0).as_string::<i32>(),
            batch.column(2).as_string::<i32>(),
        );
        // One row per (user, photo), whichever algorithms recommended it, in
        // first appearance order. A batch holds whole users, ordered by user, so a
        // set of the current user's photos suffices.
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut seen: HashSet<&str> = HashSet::new();
        for i in 0..batch.num_rows() {
            if i > 0 && users.value(i) != users.value(i - 1) {
                seen.clear();
            }
            keep.push(seen.insert(photos.value(i)));
        }
        let keep = arrow_array::BooleanArray::from(keep);
        let users = arrow_select::filter::filter(users, &keep)?;
        let photos = arrow_select::filter::filter(photos, &keep)?;
        let (users_col, photos_col) = (users.clone(), photos.clone());
        let (users, photos) = (users.as_string::<i32>(), photos.as_string::<i32>());
        let mut at = Vec::with_capacity(users.len());
        let mut first_run = StringBuilder::with_capacity(users.len(), users.len() * run_id.len());
        for i in 0..users.len() {
            match previous
                .get(users.value(i))
                .and_then(|m| m.get(photos.value(i)))
            {
                Some(&(t, r)) => {
                    at.push(t);
                    first_run.append_value(&runs[r]);
                }
                None => {
                    at.push(now);
                    first_run.append_value(run_id);
                }
            }
        }
        out.push(RecordBatch::try_new(
            Table::FirstRecommended.schema(),
            vec![
                users_col,
                photos_col,
                Arc::new(arrow_array::TimestampMicrosecondArray::from(at).with_timezone("UTC")),
                Arc::new(first_run.finish()),
            ],
        )?);
    }
    Ok(out)
}

/// Logs a stage's time and adds it to the manifest.
fn record(manifest: &mut Manifest, stage: &str, seconds: f64) {
    tracing::info!(stage, seconds, "stage done");
    manifest.stages.push(StageTiming {
        stage: stage.to_string(),
        seconds,
    });
}

/// Rows per output file.
pub const PART_ROWS: usize = 500_000;

/// Cuts batches into parts of at most `rows` rows (at least one part, possibly
/// empty, so every table has a file).
fn split_rows(batches: &[RecordBatch], rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut filled = 0usize;
    for b in batches {
        let mut offset = 0;
        while offset < b.num_rows() {
            if filled == rows {
                parts.push(Vec::new());
                filled = 0;
            }
            let take = (rows - filled).min(b.num_rows() - offset);
            if let Some(last) = parts.last_mut() {
                last.push(b.slice(offset, take));
            }
            filled += take;
            offset += take;
        }
    }
    parts
}

/// What the CPU-bound part of a score run produces.
struct Computed {
    graph: Graph,
    stats: PrepareStats,
    recs: Recommendations,
    similar: Option<(Vec<u32>, Vec<Vec<similar::SimilarRow>>)>,
    metrics: RecordBatch,
    timings: Vec<(&'static str, f64)>,
}

fn compute_all(
    inputs: &Inputs,
    options: ScoreOptions,
    params: &AlgorithmParams,
    settings: &Settings,
    threads: usize,
) -> Result<Computed, ScoreError> {
    let mut timings = Vec::new();
    let t = Instant::now();
    let (graph, stats) = prepare::prepare(inputs, options.all_users)?;
    timings.push(("prepare", t.elapsed().as_secs_f64()));
    let pool = pool(threads)?;
    let t = Instant::now();
    let recs = pool.install(|| algorithms::recommend(&graph, params));
    timings.push(("recommend", t.elapsed().as_secs_f64()));
    let similar = if settings.similar.enabled {
        let t = Instant::now();
        let rows = pool.install(|| similar_rows(&graph, &recs, params, similar_params(settings)));
        timings.push(("similar_photos", t.elapsed().as_secs_f64()));
        Some(rows)
    } else {
        None
    };
    let metrics = if settings.evaluate.enabled {
        let t = Instant::now();
        let metrics =
            crate::evaluate::evaluate(inputs, options, params, &settings.evaluate, &pool)?;
        timings.push(("evaluate", t.elapsed().as_secs_f64()));
        crate::evaluate::metrics_batch(&metrics)?
    } else {
        crate::evaluate::metrics_batch(&[])?
    };
    Ok(Computed {
        graph,
        stats,
        recs,
        similar,
        metrics,
        timings,
    })
}

/// Similar-photo rows for every photo the targets favourited or were recommended
/// (by any algorithm). The rows `itemknn` already computed for the favourites are
/// reused when they were made with the same measure and at least as many
/// neighbours; only the remaining photos are computed.
fn similar_rows(
    graph: &Graph,
    recs: &Recommendations,
    params: &AlgorithmParams,
    sp: similar::SimilarParams,
) -> (Vec<u32>, Vec<Vec<similar::SimilarRow>>) {
    let recommended = recs
        .photos
        .iter()
        .flat_map(|(_, lists)| lists.iter().flatten().map(|r| r.photo));
    let sources = similar::sources(graph, recommended);
    let reusable = recs.knn.as_ref().filter(|_| {
        let k = params.itemknn;
        k.similarity == sp.similarity
            && k.min_common == sp.min_common
            && k.bm25 == sp.bm25
            && k.k >= sp.k
    });
    let Some(knn) = reusable else {
        let rows = similar::similar_photos(graph, &sources, sp);
        return (sources, rows);
    };
    let missing: Vec<u32> = sources
        .iter()
        .copied()
        .filter(|&p| knn.sources.binary_search(&p).is_err())
        .collect();
    let mut computed = similar::similar_photos(graph, &missing, sp).into_iter();
    let rows = sources
        .iter()
        .map(|&p| {
            if knn.sources.binary_search(&p).is_ok() {
                knn.of(p).iter().take(sp.k).copied().collect()
            } else {
                computed.next().unwrap_or_default()
            }
        })
        .collect();
    (sources, rows)
}

/// Scores, writes a new run and returns its manifest. The run is not published.
pub async fn run_score(
    storage: &Storage,
    settings: &Settings,
    options: ScoreOptions,
) -> Result<Manifest, ScoreError> {
    let started = Utc::now();
    let mut manifest = Manifest {
        run_id: new_run_id(started),
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

async fn score_into(
    storage: &Storage,
    settings: &Settings,
    options: ScoreOptions,
    manifest: &mut Manifest,
) -> Result<(), ScoreError> {
    let clock = Instant::now();
    let inputs = load_inputs(storage).await?;
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
    let inputs = Arc::new(inputs);
    let work = inputs.clone();
    let settings_ = settings.clone();
    // CPU-bound: keep it off the async workers.
    let computed = tokio::task::spawn_blocking(move || {
        compute_all(&work, options, &params, &settings_, threads)
    })
    .await
    .map_err(|e| ScoreError::Threads {
        threads,
        reason: e.to_string(),
    })??;
    let Computed {
        graph,
        stats,
        recs,
        similar,
        metrics,
        timings,
    } = computed;
    for (stage, seconds) in timings {
        record(manifest, stage, seconds);
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
    let clock = Instant::now();
    let lap = |what: &str| {
        tracing::debug!(
            step = what,
            ms = clock.elapsed().as_millis() as u64,
            "write"
        )
    };
    let photo_recs = photo_recs_batches(&graph, &recs)?;
    lap("photo_recs");
    let photographer_recs = photographer_recs_batch(&graph, &recs.photographers)?;
    let similar_batch =
        similar_photos_batch(&graph, similar.as_ref(), settings.similar.similarity)?;
    let tag_photos =
        tags::tag_photos_batch(&graph, &inputs.photos, settings.score.tag_photos_per_tag)?;
    let photos = recommended_photos(&inputs, &graph, &recs, similar.as_ref(), &tag_photos)?;
    lap("batches");
    let first =
        first_recommended(storage, &photo_recs, &manifest.run_id, manifest.started_at).await?;
    lap("first_recommended");
    // Tables are cut into parts of a fixed row count, so the files do not depend on
    // the thread count, and the parts are encoded concurrently.
    let mut jobs = Vec::new();
    for (table, batches) in [
        (Table::PhotoRecs, photo_recs),
        (Table::PhotographerRecs, vec![photographer_recs]),
        (Table::FirstRecommended, first),
        (Table::SimilarPhotos, vec![similar_batch]),
        (Table::TagPhotos, vec![tag_photos]),
        (Table::Metrics, vec![metrics]),
        (Table::Photos, photos),
        (Table::TrackedUsers, inputs.tracked_users.clone()),
    ] {
        let mut files = Vec::new();
        for (i, part) in split_rows(&batches, PART_ROWS).into_iter().enumerate() {
            let file = format!("part-{i:05}.parquet");
            let path = run_table_dir(&manifest.run_id, table)
                .clone()
                .join(file.as_str());
            let storage = storage.clone();
            jobs.push(tokio::spawn(async move {
                storage
                    .write_parquet(&path, table, &part)
                    .await
                    .map(|rows| (table, rows))
            }));
            files.push(format!("{}/{file}", table.name()));
        }
        manifest.rows_out.insert(table.name().to_string(), 0);
        manifest.tables.insert(table.name().to_string(), files);
    }
    for job in jobs {
        let (table, rows) = job.await.map_err(|e| ScoreError::Threads {
            threads,
            reason: e.to_string(),
        })??;
        *manifest
            .rows_out
            .entry(table.name().to_string())
            .or_insert(0) += rows;
    }
    record(manifest, "write", clock.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests;
