//! Cutting a run's tables into parts, and building and encoding each part on the
//! Rayon pool, so only the parts in flight are ever held uncompressed.

use std::time::Instant;

use arrow_array::RecordBatch;
use chrono::Utc;

use crate::config::Settings;
use crate::model::{Table, run_table_dir};
use crate::store::ParquetEncoder;

use super::algorithms::Recommendations;
use super::compute::Computed;
use super::error::ScoreError;
use super::load::PreviousFirst;
use super::output::{
    Names, first_recommended_chunk, photo_recs_chunk, photographer_recs_batch, recommended_photos,
    similar_photos_batch,
};
use super::prepare::{Graph, Inputs};
use super::similar::SimilarRow;
use super::tags;

/// One file of a run's table, built and encoded, waiting to be uploaded.
pub struct Part {
    /// The table it belongs to.
    pub table: Table,
    /// `part-NNNNN.parquet`; parts are numbered per table from 0.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
    /// The encoded Parquet file.
    pub bytes: bytes::Bytes,
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
pub fn part_ranges(
    lengths: impl Iterator<Item = usize>,
    rows: usize,
) -> Vec<std::ops::Range<usize>> {
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

/// One part to build: its table, its number, and how to build it.
pub type Job<'a> = (Table, usize, Build<'a>);

/// Builds and encodes every table a run writes besides its manifest, on the
/// current Rayon pool. The work is cut into parts — ranges of whole users for the
/// per-user tables, ranges of source photos for `similar_photos`, fixed row
/// counts for the rest — and each part is built, encoded and dropped by one task,
/// so only the parts in flight are ever held uncompressed. Part boundaries depend
/// on the results alone, never on the thread count.
pub fn encode_tables(
    inputs: &Inputs,
    computed: &Computed,
    scanned_tags: Option<RecordBatch>,
    settings: &Settings,
    previous: &PreviousFirst,
    run_id: &str,
    started: chrono::DateTime<Utc>,
) -> Result<Vec<Part>, ScoreError> {
    let Computed {
        graph,
        recs,
        similar,
        metrics,
        ..
    } = computed;
    let names = &Names::new(graph);
    let mut jobs = user_jobs(graph, names, recs, previous, run_id, started);
    jobs.extend(similar_jobs(graph, similar.as_ref(), settings));

    // The tables that need no per-user work, built while the parts above encode.
    let rest = || -> Result<Vec<Part>, ScoreError> {
        // Scanned when the graph holds only the targets' neighbourhood.
        let tag_photos = match scanned_tags {
            Some(scanned) => scanned,
            None => {
                tags::tag_photos_batch(graph, &inputs.photos, settings.score.tag_photos_per_tag)?
            }
        };
        let photos = recommended_photos(inputs, graph, recs, similar.as_ref(), &tag_photos)?;
        let mut parts = Vec::new();
        for (table, batches) in [
            (Table::TagPhotos, vec![tag_photos]),
            (Table::Metrics, vec![metrics.clone()]),
            (Table::Photos, photos),
            (Table::TrackedUsers, inputs.tracked_users.clone()),
        ] {
            parts.extend(encode_batches(run_id, table, "", &batches)?);
        }
        Ok(parts)
    };
    let (parts, rest) = rayon::join(|| encode_jobs(run_id, "", &jobs), rest);
    let mut parts = parts?;
    parts.extend(rest?);
    Ok(parts)
}

/// The parts of the per-user tables (`photo_recs`, `first_recommended`,
/// `photographer_recs`) of `graph.targets`: ranges of whole users of about
/// [`PART_ROWS`] rows.
pub fn user_jobs<'a>(
    graph: &'a Graph,
    names: &'a Names,
    recs: &'a Recommendations,
    previous: &'a PreviousFirst,
    run_id: &'a str,
    started: chrono::DateTime<Utc>,
) -> Vec<Job<'a>> {
    let now = started.timestamp_micros();
    let mut jobs: Vec<Job<'a>> = Vec::new();
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
    jobs
}

/// The parts of `similar_photos`: ranges of source photos of about
/// [`PART_ROWS`] rows (one empty part when there are none).
pub fn similar_jobs<'a>(
    graph: &'a Graph,
    similar: Option<&'a (Vec<u32>, Vec<Vec<SimilarRow>>)>,
    settings: &Settings,
) -> Vec<Job<'a>> {
    let measure = settings.similar.similarity;
    let sources = similar.map_or(0, |(s, _)| s.len());
    let lengths = (0..sources).map(|i| similar.map_or(0, |(_, rows)| rows[i].len()));
    let mut jobs: Vec<Job<'a>> = Vec::new();
    for (i, r) in part_ranges(lengths, PART_ROWS).into_iter().enumerate() {
        jobs.push((
            Table::SimilarPhotos,
            i,
            Box::new(move |enc| {
                write_in_batches(enc, &r, |r| {
                    let part = similar.map(|(s, rows)| (&s[r.clone()], &rows[r]));
                    similar_photos_batch(graph, part, measure)
                })
            }),
        ));
    }
    jobs
}

/// Builds and encodes `jobs` on the current Rayon pool, files named
/// `part-<prefix><n>.parquet`.
pub fn encode_jobs(run_id: &str, prefix: &str, jobs: &[Job<'_>]) -> Result<Vec<Part>, ScoreError> {
    use rayon::prelude::*;
    jobs.par_iter()
        .map(|(table, i, build)| encode_part(run_id, *table, prefix, *i, build))
        .collect()
}

/// Encodes whole batches of `table` into parts of at most [`PART_ROWS`] rows
/// (one empty part when there are none).
pub fn encode_batches(
    run_id: &str,
    table: Table,
    prefix: &str,
    batches: &[RecordBatch],
) -> Result<Vec<Part>, ScoreError> {
    split_rows(batches, PART_ROWS)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            encode_part(run_id, table, prefix, i, |enc| {
                for b in &part {
                    enc.write(b)?;
                }
                Ok(())
            })
        })
        .collect()
}

/// Builds and encodes part `i` of `table`: `part-<prefix><i>.parquet`.
fn encode_part(
    run_id: &str,
    table: Table,
    prefix: &str,
    i: usize,
    build: impl Fn(&mut ParquetEncoder) -> Result<(), ScoreError>,
) -> Result<Part, ScoreError> {
    let clock = Instant::now();
    let file = format!("part-{prefix}{i:05}.parquet");
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

/// Rows per output file.
pub const PART_ROWS: usize = 500_000;

/// Cuts batches into parts of at most `rows` rows (at least one part, possibly
/// empty, so every table has a file).
pub fn split_rows(batches: &[RecordBatch], rows: usize) -> Vec<Vec<RecordBatch>> {
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
