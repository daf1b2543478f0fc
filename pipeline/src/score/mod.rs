//! Score: raw tables in, a new run out.
//!
//! Stages, each timed in the manifest:
//!
//! 1. `load` — read the raw tables (one task per table) and the published run's
//!    `first_recommended` from storage;
//! 2. `prepare` — dictionary-encode the ids into an integer graph ([`prepare`]);
//! 3. `recommend` — the Rayon kernels of every configured algorithm
//!    ([`algorithms`]: Flexplore with its `explore` sample, `itemknn`, `popular`);
//! 4. `similar_photos` — item-to-item rows ([`similar`]);
//! 5. `evaluate` — when enabled, the offline evaluation ([`crate::evaluate`]);
//! 6. `write` — the output tables (plus the run's copy of `photos` for the
//!    recommended photos and of `tracked_users`), built straight into Arrow from the
//!    kernel's integer results (they are already in final row order, so a Polars
//!    frame in between would only add a copy) and encoded part by part on the Rayon
//!    pool (`encode_tables`), then uploaded, then the manifest.

pub mod algorithms;
pub mod flexplore;
pub mod prepare;
pub mod similar;
pub mod tags;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};
use chrono::Utc;

use crate::config::Settings;
use crate::frame::FrameError;
use crate::model::{Table, run_table_dir};
use crate::runs::{Manifest, RunStatus, StageTiming, new_run_id, write_manifest};
use crate::store::{ParquetEncoder, Storage, StoreError};

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
    /// A background task died (a bug: it panicked).
    #[error("{what} failed: {reason}")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// The runtime's account of it.
        reason: String,
    },
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
    // Decoding is CPU work: one task per table lets the runtime's workers decode
    // the tables side by side.
    let read = |table: Table| {
        let storage = storage.clone();
        tokio::spawn(async move { storage.read_raw(table).await })
    };
    let tasks = [
        read(Table::Favorites),
        read(Table::Photos),
        read(Table::Contacts),
        read(Table::TrackedUsers),
        read(Table::Dismissals),
    ];
    let mut tables = Vec::with_capacity(tasks.len());
    for task in tasks {
        let read = task.await.map_err(|e| ScoreError::Task {
            what: "reading the raw tables",
            reason: e.to_string(),
        })??;
        // Without favourites there is nothing to score, whatever else is wrong.
        if tables.is_empty() && read.is_none() {
            return Err(ScoreError::NoFavorites);
        }
        tables.push(read);
    }
    let mut tables = tables.into_iter();
    let mut next = || tables.next().flatten().unwrap_or_default();
    Ok(Inputs {
        favorites: next(),
        photos: next(),
        contacts: next(),
        tracked_users: next(),
        dismissals: next(),
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

/// Prepares and scores in memory: raw batches in, `photo_recs` and
/// `photographer_recs` out. This is the whole computation without storage, used by
/// the tests.
pub fn compute(
    inputs: &Inputs,
    options: ScoreOptions,
    params: &AlgorithmParams,
    threads: usize,
) -> Result<(RecordBatch, RecordBatch, PrepareStats), ScoreError> {
    let pool = pool(threads)?;
    let (graph, stats) = pool.install(|| prepare::prepare(inputs, options.all_users))?;
    let recs = pool.install(|| algorithms::recommend(&graph, params));
    let names = Names::new(&graph);
    Ok((
        photo_recs_chunk(&graph, &names, &recs, 0..graph.targets.len())?,
        photographer_recs_batch(&names, &graph.targets, &recs.photographers)?,
        stats,
    ))
}

/// The graph's id strings as Arrow arrays. Output string columns are gathered
/// from these with `take` by integer id — one tight copy per column — instead of
/// appending strings one at a time from scattered heap `String`s.
pub struct Names {
    /// User NSIDs by integer id.
    users: StringArray,
    /// Photo ids by integer id.
    photos: StringArray,
}

impl Names {
    /// Copies the graph's dictionaries once.
    pub fn new(graph: &Graph) -> Self {
        Names {
            users: StringArray::from_iter_values(&graph.user_ids),
            photos: StringArray::from_iter_values(&graph.photo_ids),
        }
    }
}

/// Gathers `names[ids]` (a null id gives a null string).
fn gather(names: &StringArray, ids: Vec<Option<u32>>) -> Result<ArrayRef, ScoreError> {
    Ok(arrow_select::take::take(
        names,
        &arrow_array::UInt32Array::from(ids),
        None,
    )?)
}

/// A list<string> column collected as integer ids, gathered when finished.
struct IdLists {
    offsets: Vec<i32>,
    values: Vec<Option<u32>>,
}

impl IdLists {
    fn new(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: Vec::new(),
        }
    }

    fn push(&mut self, ids: &[u32]) {
        self.values.extend(ids.iter().map(|&v| Some(v)));
        self.offsets.push(self.values.len() as i32);
    }

    fn finish(self, names: &StringArray) -> Result<ArrayRef, ScoreError> {
        let field = Arc::new(Field::new("item", DataType::Utf8, false));
        Ok(Arc::new(arrow_array::ListArray::try_new(
            field,
            arrow_buffer::OffsetBuffer::new(self.offsets.into()),
            gather(names, self.values)?,
            None,
        )?))
    }
}

/// The `photo_recs` rows of the targets in `targets` (indexes into
/// `graph.targets`), ordered by user, then algorithm (in config order), then rank.
fn photo_recs_chunk(
    graph: &Graph,
    names: &Names,
    recs: &Recommendations,
    targets: std::ops::Range<usize>,
) -> Result<RecordBatch, ScoreError> {
    let n: usize = recs
        .photos
        .iter()
        .flat_map(|(_, l)| l[targets.clone()].iter().map(Vec::len))
        .sum();
    let algorithms = StringArray::from_iter_values(recs.photos.iter().map(|(a, _)| a.name()));
    let mut user = Vec::with_capacity(n);
    let mut rank = Vec::with_capacity(n);
    let mut photo = Vec::with_capacity(n);
    let mut owner = Vec::with_capacity(n);
    let mut score = Vec::with_capacity(n);
    let mut count = Vec::with_capacity(n);
    let mut algorithm = Vec::with_capacity(n);
    let mut top = IdLists::new(n);
    let mut similar_to = IdLists::new(n);
    for i in targets {
        let u = graph.targets[i];
        for (a, (_, lists)) in recs.photos.iter().enumerate() {
            let Some(list) = lists.get(i) else { continue };
            for (r, p) in list.iter().enumerate() {
                user.push(Some(u));
                rank.push(r as i32 + 1);
                photo.push(Some(p.photo));
                owner.push(match graph.owner[p.photo as usize] {
                    prepare::NO_OWNER => None,
                    o => Some(o),
                });
                score.push(p.score);
                count.push(p.neighbor_count as i32);
                top.push(&p.top_neighbors);
                similar_to.push(&p.similar_to);
                algorithm.push(Some(a as u32));
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        gather(&names.users, user)?,
        Arc::new(Int32Array::from(rank)),
        gather(&names.photos, photo)?,
        gather(&names.users, owner)?,
        Arc::new(Float64Array::from(score)),
        Arc::new(Int32Array::from(count)),
        top.finish(&names.users)?,
        similar_to.finish(&names.photos)?,
        gather(&algorithms, algorithm)?,
    ];
    Ok(RecordBatch::try_new(Table::PhotoRecs.schema(), columns)?)
}

/// Builds the `photographer_recs` rows of `targets` (their lists are `recs`),
/// ordered by user then rank.
pub fn photographer_recs_batch(
    names: &Names,
    targets: &[u32],
    recs: &[Vec<flexplore::PhotographerRec>],
) -> Result<RecordBatch, ScoreError> {
    let (mut user, mut rank, mut who, mut score, mut common, mut total) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (&u, list) in targets.iter().zip(recs) {
        for (i, p) in list.iter().enumerate() {
            user.push(Some(u));
            rank.push(i as i32 + 1);
            who.push(Some(p.photographer));
            score.push(p.score);
            common.push(i64::from(p.common));
            total.push(i64::from(p.total));
        }
    }
    let columns: Vec<ArrayRef> = vec![
        gather(&names.users, user)?,
        Arc::new(Int32Array::from(rank)),
        gather(&names.users, who)?,
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
    similar: Option<(&[u32], &[Vec<similar::SimilarRow>])>,
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

/// The published run's `first_recommended` rows, looked up by user then photo
/// (by `&str`, no allocation per lookup).
#[derive(Debug, Default)]
struct PreviousFirst {
    /// user → photo → (first time, index into `runs`).
    by_user: HashMap<String, HashMap<String, (i64, usize)>>,
    /// The distinct run ids (a few hundred after a year of nightly runs).
    runs: Vec<String>,
}

/// Reads the published run's `first_recommended` table; empty when nothing is
/// published or the table is unreadable (every rec then counts as new).
async fn previous_first_recommended(storage: &Storage) -> Result<PreviousFirst, ScoreError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    let mut previous = PreviousFirst::default();
    let Some(pointer) = crate::runs::current(storage).await? else {
        return Ok(previous);
    };
    let dir = run_table_dir(&pointer.run_id, Table::FirstRecommended);
    let batches = match storage.read_table_dir(&dir, Table::FirstRecommended).await {
        Ok(batches) => batches,
        Err(e) => {
            tracing::warn!(error = %e, run = %pointer.run_id, "previous run's first_recommended unreadable; every rec counts as new");
            return Ok(previous);
        }
    };
    let mut run_index: HashMap<String, usize> = HashMap::new();
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
            let run = match run_index.get(r.value(i)) {
                Some(&at) => at,
                None => {
                    previous.runs.push(r.value(i).to_string());
                    run_index.insert(r.value(i).to_string(), previous.runs.len() - 1);
                    previous.runs.len() - 1
                }
            };
            previous
                .by_user
                .entry(u.value(i).to_string())
                .or_default()
                .insert(p.value(i).to_string(), (t.value(i), run));
        }
    }
    Ok(previous)
}

/// When each photo rec of some targets was first made: one row per (user, photo),
/// whichever algorithms recommended it, in first appearance order (algorithms in
/// config order, then rank). Recs already in the published run keep that run's
/// date; the others are new in this run. Kept apart from `photo_recs` so that
/// table stays a pure function of the input.
fn first_recommended_chunk(
    graph: &Graph,
    names: &Names,
    recs: &Recommendations,
    targets: std::ops::Range<usize>,
    previous: &PreviousFirst,
    run_id: &str,
    now: i64,
) -> Result<RecordBatch, ScoreError> {
    let (mut users, mut photos) = (Vec::new(), Vec::new());
    // Index into `previous.runs`, or `previous.runs.len()` for this run.
    let (mut at, mut first_run) = (Vec::new(), Vec::new());
    let mut seen: HashSet<u32> = HashSet::new();
    for i in targets {
        let u = graph.targets[i];
        let known = previous.by_user.get(graph.user_ids[u as usize].as_str());
        seen.clear();
        for (_, lists) in &recs.photos {
            for r in lists.get(i).into_iter().flatten() {
                if !seen.insert(r.photo) {
                    continue;
                }
                users.push(Some(u));
                photos.push(Some(r.photo));
                let before = known.and_then(|m| m.get(graph.photo_ids[r.photo as usize].as_str()));
                match before {
                    Some(&(t, run)) => {
                        at.push(t);
                        first_run.push(Some(run as u32));
                    }
                    None => {
                        at.push(now);
                        first_run.push(Some(previous.runs.len() as u32));
                    }
                }
            }
        }
    }
    let runs = StringArray::from_iter_values(
        previous
            .runs
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(run_id)),
    );
    Ok(RecordBatch::try_new(
        Table::FirstRecommended.schema(),
        vec![
            gather(&names.users, users)?,
            gather(&names.photos, photos)?,
            Arc::new(arrow_array::TimestampMicrosecondArray::from(at).with_timezone("UTC")),
            gather(&runs, first_run)?,
        ],
    )?)
}

/// One file of a run's table, built and encoded, waiting to be uploaded.
struct Part {
    table: Table,
    /// `part-NNNNN.parquet`; parts are numbered per table from 0.
    file: String,
    rows: u64,
    bytes: bytes::Bytes,
}

/// Builds one part, writing its batches into the encoder as it goes.
type Build<'a> = Box<dyn Fn(&mut ParquetEncoder) -> Result<(), ScoreError> + Send + Sync + 'a>;

/// Items (targets, or similar-photo sources) per batch inside a part: small
/// enough that a batch's memory is reused by the next one while still in cache,
/// large enough to amortise a batch.
const ITEMS_PER_WRITE: usize = 256;

/// Builds batches of at most [`ITEMS_PER_WRITE`] items of `items` with `build`
/// and encodes each before building the next.
fn write_in_batches(
    encoder: &mut ParquetEncoder,
    items: &std::ops::Range<usize>,
    build: impl Fn(std::ops::Range<usize>) -> Result<RecordBatch, ScoreError>,
) -> Result<(), ScoreError> {
    for start in items.clone().step_by(ITEMS_PER_WRITE) {
        let end = (start + ITEMS_PER_WRITE).min(items.end);
        encoder.write(&build(start..end)?)?;
    }
    Ok(())
}

/// Cuts items (targets, or similar-photo sources) with the given row counts into
/// consecutive ranges holding about `rows` rows each: a range closes once it
/// reaches `rows`, so an item's rows never straddle two files. Always at least
/// one (possibly empty) range, so every table has a file.
fn part_ranges(lengths: impl Iterator<Item = usize>, rows: usize) -> Vec<std::ops::Range<usize>> {
    let (mut out, mut start, mut filled, mut n) = (Vec::new(), 0, 0, 0);
    for len in lengths {
        filled += len;
        n += 1;
        if filled >= rows {
            out.push(start..n);
            (start, filled) = (n, 0);
        }
    }
    if start < n || out.is_empty() {
        out.push(start..n);
    }
    out
}

/// Builds and encodes every table a run writes besides its manifest, on the
/// current Rayon pool. The work is cut into parts — ranges of whole users for the
/// per-user tables, ranges of source photos for `similar_photos`, fixed row
/// counts for the rest — and each part is built, encoded and dropped by one task,
/// so only the parts in flight are ever held uncompressed. Part boundaries depend
/// on the results alone, never on the thread count.
fn encode_tables(
    inputs: &Inputs,
    computed: &Computed,
    settings: &Settings,
    previous: &PreviousFirst,
    run_id: &str,
    started: chrono::DateTime<Utc>,
) -> Result<Vec<Part>, ScoreError> {
    use rayon::prelude::*;
    let Computed {
        graph,
        recs,
        similar,
        metrics,
        ..
    } = computed;
    let now = started.timestamp_micros();
    let names = &Names::new(graph);
    let mut jobs: Vec<(Table, usize, Build)> = Vec::new();

    let users = part_ranges(
        (0..graph.targets.len()).map(|i| {
            recs.photos
                .iter()
                .map(|(_, l)| l.get(i).map_or(0, Vec::len))
                .sum()
        }),
        PART_ROWS,
    );
    for (i, r) in users.into_iter().enumerate() {
        let (r2, r3) = (r.clone(), r.clone());
        jobs.push((
            Table::PhotoRecs,
            i,
            Box::new(move |enc| {
                write_in_batches(enc, &r, |t| photo_recs_chunk(graph, names, recs, t))
            }),
        ));
        jobs.push((
            Table::FirstRecommended,
            i,
            Box::new(move |enc| {
                write_in_batches(enc, &r2, |t| {
                    first_recommended_chunk(graph, names, recs, t, previous, run_id, now)
                })
            }),
        ));
        jobs.push((
            Table::PhotographerRecs,
            i,
            Box::new(move |enc| {
                write_in_batches(enc, &r3, |t| {
                    photographer_recs_batch(
                        names,
                        &graph.targets[t.clone()],
                        &recs.photographers[t],
                    )
                })
            }),
        ));
    }

    let measure = settings.similar.similarity;
    let sources = similar.as_ref().map_or(0, |(s, _)| s.len());
    let lengths = (0..sources).map(|i| similar.as_ref().map_or(0, |(_, rows)| rows[i].len()));
    for (i, r) in part_ranges(lengths, PART_ROWS).into_iter().enumerate() {
        jobs.push((
            Table::SimilarPhotos,
            i,
            Box::new(move |enc| {
                write_in_batches(enc, &r, |r| {
                    let part = similar.as_ref().map(|(s, rows)| (&s[r.clone()], &rows[r]));
                    similar_photos_batch(graph, part, measure)
                })
            }),
        ));
    }

    // The tables that need no per-user work, built while the parts above encode.
    let rest = || -> Result<Vec<Part>, ScoreError> {
        let tag_photos =
            tags::tag_photos_batch(graph, &inputs.photos, settings.score.tag_photos_per_tag)?;
        let photos = recommended_photos(inputs, graph, recs, similar.as_ref(), &tag_photos)?;
        let mut parts = Vec::new();
        for (table, batches) in [
            (Table::TagPhotos, vec![tag_photos]),
            (Table::Metrics, vec![metrics.clone()]),
            (Table::Photos, photos),
            (Table::TrackedUsers, inputs.tracked_users.clone()),
        ] {
            for (i, part) in split_rows(&batches, PART_ROWS).into_iter().enumerate() {
                parts.push(encode_part(run_id, table, i, |enc| {
                    for b in &part {
                        enc.write(b)?;
                    }
                    Ok(())
                })?);
            }
        }
        Ok(parts)
    };
    let (parts, rest) = rayon::join(
        || {
            jobs.par_iter()
                .map(|(table, i, build)| encode_part(run_id, *table, *i, build))
                .collect::<Result<Vec<Part>, ScoreError>>()
        },
        rest,
    );
    let mut parts = parts?;
    parts.extend(rest?);
    Ok(parts)
}

/// Builds and encodes part `i` of `table`.
fn encode_part(
    run_id: &str,
    table: Table,
    i: usize,
    build: impl Fn(&mut ParquetEncoder) -> Result<(), ScoreError>,
) -> Result<Part, ScoreError> {
    let clock = Instant::now();
    let file = format!("part-{i:05}.parquet");
    let path = run_table_dir(run_id, table).join(file.as_str());
    let mut encoder = ParquetEncoder::new(&path, table)?;
    build(&mut encoder)?;
    let (bytes, rows) = encoder.finish()?;
    tracing::debug!(%path, rows, ms = clock.elapsed().as_millis() as u64, "part encoded");
    Ok(Part {
        table,
        file,
        rows,
        bytes,
    })
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

/// Prepares and runs every algorithm (and the evaluation) on a new pool of
/// `threads` workers, which it hands back for building the output tables.
fn compute_all(
    inputs: &Inputs,
    options: ScoreOptions,
    params: &AlgorithmParams,
    settings: &Settings,
    threads: usize,
) -> Result<(Computed, rayon::ThreadPool), ScoreError> {
    let mut timings = Vec::new();
    let pool = pool(threads)?;
    let t = Instant::now();
    let (graph, stats) = pool.install(|| prepare::prepare(inputs, options.all_users))?;
    timings.push(("prepare", t.elapsed().as_secs_f64()));
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
    Ok((
        Computed {
            graph,
            stats,
            recs,
            similar,
            metrics,
            timings,
        },
        pool,
    ))
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
    let previous = previous_first_recommended(storage).await?;
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
    let (run_id, started) = (manifest.run_id.clone(), manifest.started_at);
    // CPU-bound: keep it off the async workers.
    let (stats, timings, parts, encode_seconds) = tokio::task::spawn_blocking(move || {
        let (computed, pool) = compute_all(&inputs, options, &params, &settings_, threads)?;
        let clock = Instant::now();
        let parts = pool.install(|| {
            encode_tables(&inputs, &computed, &settings_, &previous, &run_id, started)
        })?;
        let Computed { stats, timings, .. } = computed;
        Ok::<_, ScoreError>((stats, timings, parts, clock.elapsed()))
    })
    .await
    .map_err(|e| ScoreError::Threads {
        threads,
        reason: e.to_string(),
    })??;
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
    tracing::debug!(
        ms = encode_seconds.as_millis() as u64,
        parts = parts.len(),
        "output tables built and encoded"
    );
    let clock = Instant::now();
    // Every table of the run is listed, even with no rows (it then has one empty
    // file).
    for table in Table::RUN {
        manifest.rows_out.insert(table.name().to_string(), 0);
        manifest.tables.insert(table.name().to_string(), Vec::new());
    }
    let mut uploads = Vec::with_capacity(parts.len());
    for part in parts {
        let path = run_table_dir(&manifest.run_id, part.table).join(part.file.as_str());
        *manifest
            .rows_out
            .entry(part.table.name().to_string())
            .or_insert(0) += part.rows;
        manifest
            .tables
            .entry(part.table.name().to_string())
            .or_default()
            .push(format!("{}/{}", part.table.name(), part.file));
        let storage = storage.clone();
        uploads.push(tokio::spawn(async move {
            storage.put_bytes(&path, part.bytes).await
        }));
    }
    for upload in uploads {
        upload.await.map_err(|e| ScoreError::Threads {
            threads,
            reason: e.to_string(),
        })??;
    }
    record(
        manifest,
        "write",
        (encode_seconds + clock.elapsed()).as_secs_f64(),
    );
    Ok(())
}

#[cfg(test)]
mod tests;
