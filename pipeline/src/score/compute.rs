//! The CPU-bound stages of a run on one Rayon pool: `prepare`, `recommend`,
//! `similar_photos` and, when enabled, `evaluate`.

use std::time::Instant;

use arrow_array::RecordBatch;

use crate::config::Settings;
use crate::model::metrics::metrics_batch;

use super::algorithms::{self, AlgorithmParams, Recommendations};
use super::error::ScoreError;
use super::evaluate;
use super::params::{ScoreOptions, similar_params};
use super::prepare::{self, Graph, Inputs, PrepareStats};
use super::similar;

/// A pool of `threads` Rayon workers (0 = one per core).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, ScoreError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ScoreError::Threads {
            threads,
            reason: e.to_string(),
        })
}

/// What the CPU-bound part of a score run produces.
pub struct Computed {
    /// The integer graph the kernels ran on.
    pub graph: Graph,
    /// Counts from `prepare`, for the manifest.
    pub stats: PrepareStats,
    /// Every algorithm's lists.
    pub recs: Recommendations,
    /// Similar-photo sources and their rows, when enabled.
    pub similar: Option<(Vec<u32>, Vec<Vec<similar::SimilarRow>>)>,
    /// The `metrics` table (empty unless evaluated).
    pub metrics: RecordBatch,
    /// Seconds per stage, in order.
    pub timings: Vec<(&'static str, f64)>,
}

/// The first half of `prepare` ([`prepare::encode`]), on a new pool of
/// `threads` workers, which it hands back for [`compute_all`]; with its
/// seconds. Nothing of the raw rows is needed after it but by the evaluation
/// (and `photos` and `tracked_users` by the output tables), so the caller
/// may free them before the graph is built.
pub fn encode(
    inputs: &Inputs,
    threads: usize,
) -> Result<(prepare::Encoded, rayon::ThreadPool, f64), ScoreError> {
    let pool = pool(threads)?;
    let t = Instant::now();
    let encoded = pool.install(|| prepare::encode(inputs))?;
    Ok((encoded, pool, t.elapsed().as_secs_f64()))
}

/// Builds the graph from [`encode`]'s codes and runs every algorithm (and the
/// evaluation, from `inputs`) on its pool, which it hands back for building
/// the output tables.
pub fn compute_all(
    (encoded, pool, encode_seconds): (prepare::Encoded, rayon::ThreadPool, f64),
    inputs: &Inputs,
    options: ScoreOptions,
    params: &AlgorithmParams,
    settings: &Settings,
) -> Result<(Computed, rayon::ThreadPool), ScoreError> {
    let mut timings = Vec::new();
    let t = Instant::now();
    let (graph, stats) = pool.install(|| prepare::build(encoded, options.all_users))?;
    timings.push(("prepare", encode_seconds + t.elapsed().as_secs_f64()));
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
        let metrics = evaluate::evaluate(inputs, options, params, &settings.evaluate, &pool)?;
        timings.push(("evaluate", t.elapsed().as_secs_f64()));
        metrics_batch(&metrics)?
    } else {
        metrics_batch(&[])?
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
