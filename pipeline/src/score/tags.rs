//! `tag_photos`: the most favourited photos per tag.
//!
//! Tags come from the `photos` table (space-separated, as Flickr's `tags` extra
//! gives them; lower-cased here). A photo's weight is its favourites held (|U(p)|);
//! photos nobody favourited are left out. Each tag keeps its top N, ranked by
//! favourites descending, then photo id ascending. Rows are ordered by tag, then
//! rank.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};

use super::error::ScoreError;
use super::flexplore::top_k;
use super::prepare::Graph;
use crate::model::columns::{PhotosColumns, TagPhotosArrays};

/// Longest tag kept; longer ones are noise (Flickr's clean tags are short).
pub const MAX_TAG_LEN: usize = 64;

/// The top `per_tag` photos of every tag, as grouped lists of (favourites, photo).
pub fn tag_photos(
    graph: &Graph,
    photos: &[RecordBatch],
    per_tag: usize,
) -> Result<BTreeMap<String, Vec<(f64, u32)>>, ScoreError> {
    let mut by_tag: BTreeMap<String, Vec<(f64, u32)>> = BTreeMap::new();
    if per_tag == 0 {
        return Ok(by_tag);
    }
    for b in photos {
        let cols = PhotosColumns::new(b)?;
        let (ids, tags) = (cols.photo_id, cols.tags);
        for i in 0..b.num_rows() {
            if tags.is_null(i) || ids.is_null(i) {
                continue;
            }
            let Some(p) = graph.photo_ids.position(ids.value(i)) else {
                continue;
            };
            let favorites = graph.favoriters.row(p as u32).len();
            if favorites == 0 {
                continue;
            }
            for tag in tags.value(i).split_whitespace() {
                if tag.chars().count() > MAX_TAG_LEN {
                    continue;
                }
                by_tag
                    .entry(tag.to_lowercase())
                    .or_default()
                    .push((favorites as f64, p as u32));
            }
        }
    }
    for list in by_tag.values_mut() {
        // A photo listed twice (a repeated tag, a repeated row) counts once.
        list.sort_unstable_by_key(|&(_, p)| p);
        list.dedup_by_key(|&mut (_, p)| p);
        top_k(list, per_tag, |&x| x);
    }
    Ok(by_tag)
}

/// Builds the `tag_photos` table.
pub fn tag_photos_batch(
    graph: &Graph,
    photos: &[RecordBatch],
    per_tag: usize,
) -> Result<RecordBatch, ScoreError> {
    let (mut tag, mut rank, mut photo, mut favorites) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let grouped = tag_photos(graph, photos, per_tag)?;
    for (t, list) in &grouped {
        for (i, &(f, p)) in list.iter().enumerate() {
            tag.push(t.as_str());
            rank.push(i as i32 + 1);
            photo.push(&graph.photo_ids[p as usize]);
            favorites.push(f as i64);
        }
    }
    Ok(TagPhotosArrays {
        tag: Arc::new(StringArray::from(tag)),
        rank: Arc::new(Int32Array::from(rank)),
        photo_id: Arc::new(StringArray::from(photo)),
        favorites: Arc::new(Int64Array::from(favorites)),
    }
    .into_batch()?)
}

#[cfg(test)]
mod tests {
    use arrow_array::{ArrayRef, TimestampMicrosecondArray};

    use super::*;
    use crate::model::Table;
    use crate::model::columns::TagPhotosColumns;
    use crate::score::prepare::Csr;

    #[test]
    fn hand_computed_tag_photos() {
        // Photos 0..4 ("100".."103"); favourites: 100 ×3, 101 ×1, 102 ×2, 103 ×0.
        let favs = vec![(0, 0), (1, 0), (2, 0), (0, 1), (0, 2), (1, 2)];
        let favorites = Csr::from_pairs(3, favs);
        let graph = Graph {
            user_ids: ["1@N01", "2@N01", "3@N01"].into_iter().collect(),
            photo_ids: ["100", "101", "102", "103"].into_iter().collect(),
            favoriters: favorites.transpose(4),
            favorites,
            owner: vec![0; 4],
            ..Graph::default()
        };
        let s = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
        let n = 5;
        let photos = RecordBatch::try_new(
            Table::Photos.schema(),
            vec![
                s(vec![
                    Some("100"),
                    Some("101"),
                    Some("102"),
                    Some("103"),
                    Some("999"),
                ]),
                s(vec![Some("1@N01"); n]),
                s(vec![None; n]),
                s(vec![None; n]),
                s(vec![None; n]),
                s(vec![None; n]),
                // 101 lists "Film" twice and in upper case; 103 has no favourite;
                // 999 is not in the graph.
                s(vec![
                    Some("film sea"),
                    Some("Film film"),
                    Some("film"),
                    Some("film"),
                    Some("sea"),
                ]),
                Arc::new(TimestampMicrosecondArray::from(vec![None; n]).with_timezone("UTC")),
            ],
        )
        .expect("photos batch");
        let got = tag_photos(&graph, std::slice::from_ref(&photos), 2).expect("tags");
        // film: 100 (3), 102 (2), then 101 (1) cut by per_tag = 2.
        assert_eq!(got["film"], vec![(3.0, 0), (2.0, 2)]);
        assert_eq!(got["sea"], vec![(3.0, 0)]);
        assert_eq!(got.len(), 2);
        let batch = tag_photos_batch(&graph, &[photos], 2).expect("batch");
        assert_eq!(batch.num_rows(), 3);
        let cols = TagPhotosColumns::new(&batch).expect("columns");
        assert_eq!(cols.tag.value(2), "sea");
        assert_eq!(cols.photo_id.value(1), "102");
    }
}
