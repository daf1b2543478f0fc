//! The output tables' rows, built straight into Arrow from the kernels' integer
//! results: they are already in final row order, and string columns are gathered
//! from the id dictionaries with Arrow's `take`.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};

use crate::model::Similarity;
use crate::model::columns::{
    FirstRecommendedArrays, PhotoRecsArrays, PhotographerRecsArrays, PhotosColumns,
    SimilarPhotosArrays, TagPhotosColumns,
};

use super::algorithms::Recommendations;
use super::error::ScoreError;
use super::flexplore;
use super::load::PreviousFirst;
use super::prepare::{self, Graph, Inputs};
use super::similar;

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
    /// The graph's dictionaries (their buffers are shared, not copied).
    pub fn new(graph: &Graph) -> Self {
        Names {
            users: graph.user_ids.array(),
            photos: graph.photo_ids.array(),
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
pub fn photo_recs_chunk(
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
    let mut fallback = Vec::with_capacity(n);
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
                fallback.push(Some(p.fallback));
            }
        }
    }
    Ok(PhotoRecsArrays {
        user_id: gather(&names.users, user)?,
        rank: Arc::new(Int32Array::from(rank)),
        photo_id: gather(&names.photos, photo)?,
        owner_id: gather(&names.users, owner)?,
        score: Arc::new(Float64Array::from(score)),
        neighbor_count: Arc::new(Int32Array::from(count)),
        top_neighbors: top.finish(&names.users)?,
        similar_to: similar_to.finish(&names.photos)?,
        algorithm: gather(&algorithms, algorithm)?,
        fallback: Arc::new(arrow_array::BooleanArray::from(fallback)),
    }
    .into_batch()?)
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
    Ok(PhotographerRecsArrays {
        user_id: gather(&names.users, user)?,
        rank: Arc::new(Int32Array::from(rank)),
        photographer_id: gather(&names.users, who)?,
        score: Arc::new(Float64Array::from(score)),
        common_favorites: Arc::new(Int64Array::from(common)),
        total_favorites: Arc::new(Int64Array::from(total)),
    }
    .into_batch()?)
}

/// Which photos the recs and the similar-photos rows show, by integer id.
fn shown_photos(
    graph: &Graph,
    recs: &Recommendations,
    similar: Option<&(Vec<u32>, Vec<Vec<similar::SimilarRow>>)>,
) -> Vec<bool> {
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
    shown
}

/// The ids of the photos the recs and the similar-photos rows show (what
/// [`recommended_photos`] keeps, but for `tag_photos`), ascending.
pub fn shown_photo_ids<'a>(
    graph: &'a Graph,
    recs: &Recommendations,
    similar: Option<&(Vec<u32>, Vec<Vec<similar::SimilarRow>>)>,
) -> impl Iterator<Item = &'a str> {
    let shown = shown_photos(graph, recs, similar);
    graph
        .photo_ids
        .iter()
        .zip(shown)
        .filter_map(|(id, s)| s.then_some(id))
}

/// The metadata rows of the photos a run shows — recommended by any algorithm,
/// either side of a similar-photos row, or listed in `tag_photos` — so a run is
/// self-contained. Photos are marked by integer id; only the `photos` rows are
/// looked up by string (binary search in the sorted dictionary).
pub fn recommended_photos(
    inputs: &Inputs,
    graph: &Graph,
    recs: &Recommendations,
    similar: Option<&(Vec<u32>, Vec<Vec<similar::SimilarRow>>)>,
    tag_photos: &RecordBatch,
) -> Result<Vec<RecordBatch>, ScoreError> {
    let mut shown = shown_photos(graph, recs, similar);
    let index = |id: &str| graph.photo_ids.position(id);
    // Tag lists made from a scan may list photos outside a neighbourhood's
    // graph: those are kept by id.
    let mut listed_elsewhere = HashSet::new();
    for id in TagPhotosColumns::new(tag_photos)?.photo_id.iter().flatten() {
        match index(id) {
            Some(p) => shown[p] = true,
            None => {
                listed_elsewhere.insert(id);
            }
        }
    }
    let mut out = Vec::new();
    for batch in &inputs.photos {
        let photo_ids = PhotosColumns::new(batch)?.photo_id;
        let mask: arrow_array::BooleanArray = photo_ids
            .iter()
            .map(|p| {
                Some(p.is_some_and(|p| match index(p) {
                    Some(at) => shown[at],
                    None => listed_elsewhere.contains(p),
                }))
            })
            .collect();
        out.push(arrow_select::filter::filter_record_batch(batch, &mask)?);
    }
    Ok(out)
}

/// Builds the `similar_photos` table, rows ordered by photo then rank.
pub fn similar_photos_batch(
    graph: &Graph,
    similar: Option<(&[u32], &[Vec<similar::SimilarRow>])>,
    measure: Similarity,
) -> Result<RecordBatch, ScoreError> {
    let (mut photo, mut rank, mut other, mut score, mut common) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if let Some((sources, rows)) = similar {
        for (&p, list) in sources.iter().zip(rows.iter()) {
            for (i, r) in list.iter().enumerate() {
                photo.push(&graph.photo_ids[p as usize]);
                rank.push(i as i32 + 1);
                other.push(&graph.photo_ids[r.photo as usize]);
                score.push(r.score);
                common.push(i64::from(r.common));
            }
        }
    }
    let n = photo.len();
    Ok(SimilarPhotosArrays {
        photo_id: Arc::new(StringArray::from(photo)),
        rank: Arc::new(Int32Array::from(rank)),
        similar_photo_id: Arc::new(StringArray::from(other)),
        score: Arc::new(Float64Array::from(score)),
        common_favorites: Arc::new(Int64Array::from(common)),
        algorithm: Arc::new(StringArray::from(vec![measure.name(); n])),
    }
    .into_batch()?)
}

/// When each photo rec of some targets was first made: one row per (user, photo),
/// whichever algorithms recommended it, in first appearance order (algorithms in
/// config order, then rank). Recs already in the published run keep that run's
/// date; the others are new in this run. Kept apart from `photo_recs` so that
/// table stays a pure function of the input.
pub fn first_recommended_chunk(
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
        seen.clear();
        for (_, lists) in &recs.photos {
            for r in lists.get(i).into_iter().flatten() {
                if !seen.insert(r.photo) {
                    continue;
                }
                users.push(Some(u));
                photos.push(Some(r.photo));
                match previous.get(u, r.photo) {
                    Some((t, run)) => {
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
    Ok(FirstRecommendedArrays {
        user_id: gather(&names.users, users)?,
        photo_id: gather(&names.photos, photos)?,
        first_recommended_at: Arc::new(
            arrow_array::TimestampMicrosecondArray::from(at).with_timezone("UTC"),
        ),
        first_run_id: gather(&runs, first_run)?,
    }
    .into_batch()?)
}
