//! `tag_photos`: the most favourited photos per tag.
//!
//! Tags come from the `photos` table (space-separated, as Flickr's `tags` extra
//! gives them; lower-cased here). A photo's weight is its favourites held (|U(p)|:
//! the distinct users with a favourite of it); photos nobody favourited are left
//! out. Each tag keeps its top N, ranked by favourites descending, then photo id
//! ascending. Rows are ordered by tag, then rank.
//!
//! Two ways to the same rows:
//!
//! - [`tag_photos_batch`], from a graph built from every favourite (a run or
//!   photos shard that reads every raw table anyway);
//! - [`scanned_tag_photos`], from a scan of the `favorites` table's two id
//!   columns, bucket by bucket: each bucket's distinct (photo, user) pairs
//!   are counted on a task of their own (a user's rows are all in one
//!   bucket, so the counts add up), then `photos` is scanned for the tags.
//!   It holds one count per favourited photo, not the favourites: a run that
//!   reads only its targets' neighbourhood, and photos shard 0 with similar
//!   photos off, use it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
use polars::prelude::PlHashMap;

use super::error::ScoreError;
use super::prepare::Graph;
use crate::model::columns::{PhotosColumns, TagPhotosArrays, column};
use crate::model::packed as ids;
use crate::model::{Table, col};
use crate::store::{Batches, Storage};

/// Longest tag kept; longer ones are noise (Flickr's clean tags are short).
pub const MAX_TAG_LEN: usize = 64;

/// Each tag's photos as (favourites, photo), best first.
pub type Grouped<K> = BTreeMap<String, Vec<(u32, K)>>;

/// Tag lists being gathered: every (tag, photo) seen, each tag's list cut
/// back to its best `per_tag` whenever it grows past twice that, so that a
/// scan of every photo holds a few entries a tag, not every photo's tags.
struct TagLists<K> {
    per_tag: usize,
    by_tag: Grouped<K>,
}

/// Keeps the best `per_tag` distinct photos of `list`, best first:
/// favourites descending, then photo ascending. A photo listed twice (a
/// repeated tag, a repeated row) has the same favourites both times, so
/// its entries sort together and count once.
fn cut<K: Ord>(list: &mut Vec<(u32, K)>, per_tag: usize) {
    list.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    list.dedup_by(|a, b| a.1 == b.1);
    list.truncate(per_tag);
}

impl<K: Ord + Clone> TagLists<K> {
    fn new(per_tag: usize) -> Self {
        Self {
            per_tag,
            by_tag: BTreeMap::new(),
        }
    }

    /// Lists `photo`, with `favorites` favourites, under each of `tags`.
    fn add(&mut self, tags: &str, favorites: u32, photo: &K) {
        for tag in tags.split_whitespace() {
            if tag.chars().count() > MAX_TAG_LEN {
                continue;
            }
            let list = self.by_tag.entry(tag.to_lowercase()).or_default();
            list.push((favorites, photo.clone()));
            if list.len() >= 2 * self.per_tag + 64 {
                cut(list, self.per_tag);
            }
        }
    }

    /// Every tag's best `per_tag`.
    fn finish(mut self) -> Grouped<K> {
        for list in self.by_tag.values_mut() {
            cut(list, self.per_tag);
        }
        self.by_tag
    }
}

/// The top `per_tag` photos of every tag, from a graph of every favourite:
/// (favourites, photo code) lists.
pub fn tag_photos(
    graph: &Graph,
    photos: &[RecordBatch],
    per_tag: usize,
) -> Result<Grouped<u32>, ScoreError> {
    let mut lists = TagLists::new(per_tag);
    if per_tag == 0 {
        return Ok(lists.finish());
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
            if favorites > 0 {
                lists.add(tags.value(i), favorites as u32, &(p as u32));
            }
        }
    }
    Ok(lists.finish())
}

/// The `tag_photos` table of grouped lists, each photo's id given by `id`.
fn grouped_batch<'a, K>(
    grouped: &'a Grouped<K>,
    id: impl Fn(&'a K) -> Cow<'a, str>,
) -> Result<RecordBatch, ScoreError> {
    let rows: usize = grouped.values().map(Vec::len).sum();
    let (mut tag, mut rank, mut photo, mut favorites) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for (t, list) in grouped {
        for (i, (f, p)) in list.iter().enumerate() {
            tag.push(t.as_str());
            rank.push(i as i32 + 1);
            photo.push(id(p));
            favorites.push(i64::from(*f));
        }
    }
    Ok(TagPhotosArrays {
        tag: Arc::new(StringArray::from(tag)),
        rank: Arc::new(Int32Array::from(rank)),
        photo_id: Arc::new(StringArray::from_iter_values(photo)),
        favorites: Arc::new(Int64Array::from(favorites)),
    }
    .into_batch()?)
}

/// Builds the `tag_photos` table from a graph of every favourite.
pub fn tag_photos_batch(
    graph: &Graph,
    photos: &[RecordBatch],
    per_tag: usize,
) -> Result<RecordBatch, ScoreError> {
    let grouped = tag_photos(graph, photos, per_tag)?;
    grouped_batch(&grouped, |&p| Cow::Borrowed(&graph.photo_ids[p as usize]))
}

/// An id as a scan keys it: packed into a `u64` ([`ids::pack`], whose order
/// is the strings'), or, when some id of the table does not pack (imports
/// may hold ids that are not Flickr's), the string itself.
trait ScanKey: Ord + std::hash::Hash + Clone + Send + Sync + 'static {
    /// Why an id has no key of this kind.
    type Miss: Send + 'static;
    /// The key of an id.
    fn of(id: &str) -> Result<Self, Self::Miss>;
    /// The id of a key.
    fn id(&self) -> Cow<'_, str>;
}

/// An id that does not pack.
struct Unpacked;

impl ScanKey for u64 {
    type Miss = Unpacked;
    fn of(id: &str) -> Result<Self, Unpacked> {
        ids::pack(id).ok_or(Unpacked)
    }
    fn id(&self) -> Cow<'_, str> {
        Cow::Owned(ids::unpack_into(*self, &mut [0; ids::MAX_LEN]).to_string())
    }
}

impl ScanKey for String {
    type Miss = std::convert::Infallible;
    fn of(id: &str) -> Result<Self, Self::Miss> {
        Ok(id.to_string())
    }
    fn id(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

/// One object's favourites per photo: its rows, and its distinct (photo,
/// user) pairs counted by photo, ascending by photo.
type ObjectCounts<K> = (u64, Result<Vec<(K, u32)>, <K as ScanKey>::Miss>);

/// Every photo's favourites so far, and the rows counted.
type Counts<K> = (u64, Result<PlHashMap<K, u32>, <K as ScanKey>::Miss>);

fn count_object<K: ScanKey>(batches: Batches<'_>) -> Result<ObjectCounts<K>, ScoreError> {
    // (user, photo) of every favourite.
    let mut pairs: Vec<(K, K)> = Vec::new();
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        let users = column::<StringArray>(&batch, Table::Favorites, col::USER_ID)?;
        let photos = column::<StringArray>(&batch, Table::Favorites, col::PHOTO_ID)?;
        pairs.reserve(batch.num_rows());
        // A user's rows are stored together: their key is made once.
        let mut last: Option<(&str, K)> = None;
        for (user, photo) in users.iter().zip(photos.iter()) {
            // A row without either id is not a favourite (as in `prepare`).
            let (Some(user), Some(photo)) = (user, photo) else {
                continue;
            };
            let user = match &last {
                Some((id, key)) if *id == user => key.clone(),
                _ => match K::of(user) {
                    Ok(key) => last.insert((user, key)).1.clone(),
                    Err(miss) => return Ok((rows, Err(miss))),
                },
            };
            match K::of(photo) {
                Ok(photo) => pairs.push((user, photo)),
                Err(miss) => return Ok((rows, Err(miss))),
            }
        }
    }
    // Buckets are stored sorted by (user, photo): a repeated favourite is
    // then next to its twin, and only another file needs the sort.
    if !pairs.is_sorted() {
        pairs.sort_unstable();
    }
    pairs.dedup();
    let mut photos: Vec<K> = pairs.into_iter().map(|(_, photo)| photo).collect();
    photos.sort_unstable();
    let mut counts: Vec<(K, u32)> = Vec::new();
    for p in photos {
        match counts.last_mut() {
            Some((last, n)) if *last == p => *n += 1,
            _ => counts.push((p, 1)),
        }
    }
    Ok((rows, Ok(counts)))
}

/// The tag lists from a scan of `favorites` then `photos`, keyed by `K`,
/// and the favourites scanned; `Err` when an id has no key of that kind.
async fn scan_tag_lists<K: ScanKey>(
    storage: &Storage,
    per_tag: usize,
) -> Result<Result<(Grouped<K>, u64), K::Miss>, ScoreError> {
    let counted = storage
        .scan_raw(
            Table::Favorites,
            &[col::USER_ID, col::PHOTO_ID],
            count_object::<K>,
            || (0, Ok(PlHashMap::<K, u32>::default())),
            |(rows, acc): &mut Counts<K>, (read, counts)| {
                *rows += read;
                match (acc.as_mut(), counts) {
                    (Ok(total), Ok(counts)) => {
                        for (p, n) in counts {
                            *total.entry(p).or_insert(0) += n;
                        }
                    }
                    (Ok(_), Err(miss)) => *acc = Err(miss),
                    (Err(_), _) => {}
                }
                Ok::<_, ScoreError>(())
            },
        )
        .await?;
    let (rows, counts) = match counted {
        None => return Err(ScoreError::NoFavorites),
        Some((_, Err(miss))) => return Ok(Err(miss)),
        Some((rows, Ok(counts))) => (rows, Arc::new(counts)),
    };
    let lists = storage
        .scan_raw(
            Table::Photos,
            &[col::PHOTO_ID, col::TAGS],
            move |batches| {
                let mut lists = TagLists::new(per_tag);
                for batch in batches {
                    let batch = batch?;
                    let photo_ids = column::<StringArray>(&batch, Table::Photos, col::PHOTO_ID)?;
                    let tags = column::<StringArray>(&batch, Table::Photos, col::TAGS)?;
                    for (photo, tags) in photo_ids.iter().zip(tags.iter()) {
                        let (Some(photo), Some(tags)) = (photo, tags) else {
                            continue;
                        };
                        // An id without a key was never favourited: every
                        // favourited photo's id has one.
                        let Ok(key) = K::of(photo) else {
                            continue;
                        };
                        if let Some(&favorites) = counts.get(&key) {
                            lists.add(tags, favorites, &key);
                        }
                    }
                }
                Ok::<_, ScoreError>(lists.finish())
            },
            Grouped::<K>::new,
            |acc, grouped| {
                for (tag, list) in grouped {
                    let all = acc.entry(tag).or_default();
                    all.extend(list);
                    cut(all, per_tag);
                }
                Ok(())
            },
        )
        .await?;
    Ok(Ok((lists.unwrap_or_default(), rows)))
}

/// Builds the `tag_photos` table from a scan of the stored `favorites` and
/// `photos` tables, without building a graph: the same rows as
/// [`tag_photos_batch`] given every favourite. Also returns the favourite
/// rows scanned (none when `per_tag` is 0: nothing is read).
pub async fn scanned_tag_photos(
    storage: &Storage,
    per_tag: usize,
) -> Result<(RecordBatch, u64), ScoreError> {
    if per_tag == 0 {
        return Ok((grouped_batch(&Grouped::<u64>::new(), ScanKey::id)?, 0));
    }
    if let Ok((grouped, rows)) = scan_tag_lists::<u64>(storage, per_tag).await? {
        return Ok((grouped_batch(&grouped, ScanKey::id)?, rows));
    }
    tracing::debug!("an id is not a Flickr id, so the tag lists' scan keys strings");
    let Ok((grouped, rows)) = scan_tag_lists::<String>(storage, per_tag).await?;
    Ok((grouped_batch(&grouped, ScanKey::id)?, rows))
}

#[cfg(test)]
mod tests {
    use arrow_array::{ArrayRef, TimestampMicrosecondArray};
    use arrow_schema::ArrowError;

    use super::*;
    use crate::model::columns::{FavoritesArrays, PhotosArrays, TagPhotosColumns};
    use crate::raw::merge_raw;
    use crate::score::load::load_inputs;
    use crate::score::prepare::Csr;
    use crate::score::prepare::prepare;

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
        assert_eq!(got["film"], vec![(3, 0), (2, 2)]);
        assert_eq!(got["sea"], vec![(3, 0)]);
        assert_eq!(got.len(), 2);
        let batch = tag_photos_batch(&graph, &[photos], 2).expect("batch");
        assert_eq!(batch.num_rows(), 3);
        let cols = TagPhotosColumns::new(&batch).expect("columns");
        assert_eq!(cols.tag.value(2), "sea");
        assert_eq!(cols.photo_id.value(1), "102");
    }

    /// A community where tag lists are cut and tied: `users` users favourite
    /// pseudo-random photos of `photos` (a repeated draw is a duplicate row),
    /// each photo tagged with two of five tags in mixed case, some repeated.
    /// Photo `odd`, when given, replaces the last photo's id.
    fn community(
        users: usize,
        photos: usize,
        odd: Option<&str>,
    ) -> Result<(RecordBatch, RecordBatch), ArrowError> {
        let photo_id = |j: usize| match odd {
            Some(odd) if j + 1 == photos => odd.to_string(),
            _ => format!("{}", 53_000_000_000u64 + j as u64),
        };
        let mut state = 0x2545_f491_u64;
        let (mut user, mut photo, mut owner) = (Vec::new(), Vec::new(), Vec::new());
        for u in 0..users {
            for _ in 0..40 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                // Squared: a few photos are favourited often, most rarely.
                let draw = ((state >> 33) % 1_000) as usize;
                let j = draw * draw % photos;
                user.push(format!("{u}@N01"));
                photo.push(photo_id(j));
                owner.push(format!("{}@N01", j % users));
            }
        }
        let rows = user.len();
        let favorites = FavoritesArrays {
            user_id: Arc::new(StringArray::from(user)),
            photo_id: Arc::new(StringArray::from(photo)),
            owner_id: Arc::new(StringArray::from(owner)),
            date_faved: Arc::new(
                TimestampMicrosecondArray::from(vec![None; rows]).with_timezone("UTC"),
            ),
        }
        .into_batch()?;
        const TAGS: [&str; 5] = ["film", "Sea", "night", "CAT", "street"];
        let tags: Vec<Option<String>> = (0..photos)
            .map(|j| match j % 7 {
                0 => None,
                1 => Some(format!("{0} {0}", TAGS[j % 5])),
                _ => Some(format!(
                    "{} {}",
                    TAGS[j % 5],
                    TAGS[(j / 5) % 5].to_lowercase()
                )),
            })
            .collect();
        let nulls = || Arc::new(StringArray::from(vec![None::<&str>; photos]));
        let photos_batch = PhotosArrays {
            photo_id: Arc::new(StringArray::from_iter_values((0..photos).map(photo_id))),
            owner_id: Arc::new(StringArray::from_iter_values(
                (0..photos).map(|j| format!("{}@N01", j % users)),
            )),
            owner_name: nulls(),
            title: nulls(),
            server: nulls(),
            secret: nulls(),
            tags: Arc::new(StringArray::from(tags)),
            date_upload: Arc::new(
                TimestampMicrosecondArray::from(vec![None; photos]).with_timezone("UTC"),
            ),
        }
        .into_batch()?;
        Ok((favorites, photos_batch))
    }

    /// The tag lists a graph of every stored favourite gives, and those of
    /// the scan, for `per_tag`.
    async fn both(storage: &Storage, per_tag: usize) -> (RecordBatch, RecordBatch) {
        let inputs = load_inputs(storage).await.expect("read");
        let (graph, _) = prepare(&inputs, true).expect("graph");
        let from_graph = tag_photos_batch(&graph, &inputs.photos, per_tag).expect("graph lists");
        let (scanned, rows) = scanned_tag_photos(storage, per_tag)
            .await
            .expect("scanned lists");
        let stored: usize = inputs.favorites.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, stored as u64);
        (from_graph, scanned)
    }

    /// Rows that tie on favourites across the cut, so that the tie break
    /// decides which photo is kept.
    fn cut_at_a_tie(batch: &RecordBatch, per_tag: usize) -> bool {
        let cols = TagPhotosColumns::new(batch).expect("columns");
        (1..batch.num_rows()).any(|i| {
            cols.rank.value(i) as usize == per_tag
                && cols.tag.value(i) == cols.tag.value(i - 1)
                && cols.favorites.value(i) == cols.favorites.value(i - 1)
        })
    }

    /// Each tag's rows rank favourites descending, then photo id ascending.
    fn ranked_as_documented(batch: &RecordBatch) -> bool {
        let cols = TagPhotosColumns::new(batch).expect("columns");
        (1..batch.num_rows()).all(|i| {
            cols.tag.value(i) != cols.tag.value(i - 1)
                || (cols.favorites.value(i), cols.photo_id.value(i - 1))
                    < (cols.favorites.value(i - 1), cols.photo_id.value(i))
        })
    }

    /// Merges `favorites` and `photos` into their raw tables, as an import does.
    async fn store(storage: &Storage, favorites: RecordBatch, photos: RecordBatch) {
        merge_raw(storage, Table::Favorites, vec![favorites])
            .await
            .expect("favorites");
        merge_raw(storage, Table::Photos, vec![photos])
            .await
            .expect("photos");
    }

    fn memory(buckets: u32) -> Storage {
        Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory")
            .with_raw_buckets(buckets)
    }

    /// The scan gives the graph's rows: bucketed favourites, then one
    /// legacy file holding duplicate rows, then an id that does not pack.
    #[tokio::test]
    async fn scanned_tag_lists_equal_the_graphs() {
        let per_tag = 3;
        // Bucketed, as folds and imports write them.
        let storage = memory(4);
        let (favorites, photos) = community(60, 300, None).expect("community");
        store(&storage, favorites.clone(), photos.clone()).await;
        assert_eq!(
            storage
                .raw_layout(Table::Favorites)
                .await
                .expect("layout")
                .map(|(l, _)| l.buckets),
            Some(4)
        );
        let (from_graph, scanned) = both(&storage, per_tag).await;
        assert_eq!(from_graph.num_rows(), 5 * per_tag);
        assert!(cut_at_a_tie(&from_graph, per_tag));
        assert!(ranked_as_documented(&from_graph));
        assert_eq!(scanned, from_graph);

        // One legacy file, unsorted, with every favourite twice.
        let storage = memory(4);
        let doubled = arrow_select::concat::concat_batches(
            &Table::Favorites.schema(),
            [&favorites, &favorites],
        )
        .expect("doubled");
        storage
            .write_parquet(&Table::Favorites.raw_path(), Table::Favorites, &[doubled])
            .await
            .expect("legacy favorites");
        merge_raw(&storage, Table::Photos, vec![photos])
            .await
            .expect("photos");
        let (from_graph_legacy, scanned) = both(&storage, per_tag).await;
        assert_eq!(from_graph_legacy, from_graph);
        assert_eq!(scanned, from_graph);

        // A photo id that is not a Flickr id: both fall back to strings.
        let storage = memory(2);
        let (favorites, photos) = community(60, 300, Some("photo-x")).expect("community");
        store(&storage, favorites, photos).await;
        let (from_graph, scanned) = both(&storage, per_tag).await;
        assert_eq!(from_graph.num_rows(), 5 * per_tag);
        assert_eq!(scanned, from_graph);
    }

    #[tokio::test]
    async fn a_scan_without_favorites_says_so() {
        let storage = memory(4);
        let err = scanned_tag_photos(&storage, 3)
            .await
            .expect_err("no favourites");
        assert!(matches!(err, ScoreError::NoFavorites), "{err}");
    }

    /// A scan racing rebuckets (each replaces every bucket object and
    /// removes the old ones) counts each favourite once: it reads one
    /// generation whole, or starts again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_racing_rebuckets_counts_each_favourite_once() {
        let per_tag = 3;
        // Each GET takes a millisecond, as a remote store's would: a
        // rebucket can then replace the generation a scan is reading.
        let slow = object_store::throttle::ThrottledStore::new(
            object_store::memory::InMemory::new(),
            object_store::throttle::ThrottleConfig {
                wait_get_per_call: std::time::Duration::from_millis(1),
                ..Default::default()
            },
        );
        let storage = Storage::from_store(Arc::new(slow), "memory").with_raw_buckets(4);
        let (favorites, photos) = community(60, 300, None).expect("community");
        store(&storage, favorites.clone(), photos).await;
        let (expected, _) = both(&storage, per_tag).await;
        let (_, stored) = scanned_tag_photos(&storage, per_tag)
            .await
            .expect("scanned");
        // One task: the two loops interleave at every await (the scan waits
        // for its decoding tasks, the rebucket for its writes).
        let done = std::sync::atomic::AtomicBool::new(false);
        let rebuckets = async {
            for round in 0..30usize {
                let buckets = [3, 7][round % 2];
                crate::raw::rebucket(&storage.clone().with_raw_buckets(buckets), Table::Favorites)
                    .await
                    .expect("rebucketed");
                tokio::task::yield_now().await;
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        };
        let scan = async {
            let (mut scans, mut layouts) = (0, std::collections::BTreeSet::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                match scanned_tag_photos(&storage, per_tag).await {
                    Ok((got, rows)) => {
                        assert_eq!(rows, stored);
                        assert_eq!(got, expected);
                        scans += 1;
                    }
                    // Five layouts in a row changed under it: it says so.
                    Err(ScoreError::Store(e)) => {
                        assert!(e.to_string().contains("while it was scanned"), "{e}")
                    }
                    Err(e) => panic!("{e}"),
                }
                if let Some((layout, _)) =
                    storage.raw_layout(Table::Favorites).await.expect("layout")
                {
                    layouts.insert(layout.generation);
                }
            }
            (scans, layouts.len())
        };
        let ((), (scans, layouts)) = tokio::join!(rebuckets, scan);
        // The scans ran while the layout changed under them.
        assert!(layouts > 2, "{layouts} layouts seen");
        assert!(scans > 0);
    }

    /// A bucket the layout names that stays missing is an error, not fewer
    /// favourites.
    #[tokio::test]
    async fn a_missing_bucket_fails_the_scan() {
        let storage = memory(4);
        let (favorites, photos) = community(60, 300, None).expect("community");
        store(&storage, favorites, photos).await;
        let (layout, _) = storage
            .raw_layout(Table::Favorites)
            .await
            .expect("layout")
            .expect("a bucketed table");
        storage
            .delete(&layout.bucket_path(Table::Favorites, 2))
            .await
            .expect("deleted");
        let err = scanned_tag_photos(&storage, 3)
            .await
            .expect_err("a bucket is missing");
        assert!(
            err.to_string()
                .contains("changed 5 times while it was scanned"),
            "{err}"
        );
    }
}
