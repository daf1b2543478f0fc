//! Building a run's serving layout from its tables (the contract's columns,
//! read by name), so it is a function of the published tables alone: the
//! same tables give the same bytes, whoever builds them.

use std::collections::BTreeMap;
use std::io::Write;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use polars::prelude::{InitHashMaps, PlHashMap, PlHashSet};

use crate::model::Table;
use crate::model::arrow::{str_at, time_at};
use crate::model::columns::{
    ColumnError, FirstRecommendedColumns, PhotoRecsColumns, PhotographerRecsColumns, PhotosColumns,
    SimilarPhotosColumns, TagPhotosColumns, TrackedUsersColumns,
};
use crate::model::packed;
use crate::model::run_table_dir;
use crate::runs::Manifest;
use crate::store::Storage;

use super::format::{DEFAULT_LIMIT, LayoutError, LayoutWriter, list_header, page_json_with};
use super::items::{
    PhotoCard, PhotoInfo, PhotoItemRow, PhotoUrl, PhotographerItem, SimilarItem, TagItem,
    Thumbnail, UserList, photo_url, thumbnail_url,
};
use super::section;

/// The tables a layout is built from whole; the per-user tables and
/// `similar_photos` are read a part at a time ([`parts`]).
pub struct RunTables {
    photos: Vec<RecordBatch>,
    tracked_users: Vec<RecordBatch>,
    tag_photos: Vec<RecordBatch>,
    /// How the per-user tables are cut.
    users: UserParts,
    /// The files of `similar_photos`, in name order.
    similar: Vec<object_store::path::Path>,
}

/// How the per-user tables (`photo_recs`, `photographer_recs`,
/// `first_recommended`) are read.
#[derive(Debug, Clone, PartialEq)]
pub enum UserParts {
    /// Their files have the same names, and a file of each name holds the
    /// same users (`score` cuts the three tables by the same ranges of
    /// targets, and each shard its own): read a name at a time.
    Aligned(Vec<String>),
    /// They do not (a hand-made run): read whole, as one part.
    Whole,
}

/// One part of a run's tables, as [`build`] takes them.
pub enum Part {
    /// The per-user tables' rows of some users: all of their rows.
    Users {
        /// `photo_recs`.
        photo_recs: Vec<RecordBatch>,
        /// `photographer_recs`.
        photographer_recs: Vec<RecordBatch>,
        /// `first_recommended`.
        first_recommended: Vec<RecordBatch>,
    },
    /// One file of `similar_photos`, holding all the rows of its photos.
    Similar(Vec<RecordBatch>),
}

fn failed(e: impl std::fmt::Display) -> LayoutError {
    LayoutError::Build(e.to_string())
}

impl From<ColumnError> for LayoutError {
    fn from(e: ColumnError) -> Self {
        failed(e)
    }
}

impl From<serde_json::Error> for LayoutError {
    fn from(e: serde_json::Error) -> Self {
        failed(e)
    }
}

/// Reads the run's tables built whole (side by side), and lists the parts
/// of the others.
pub async fn read_tables(storage: &Storage, run_id: &str) -> Result<RunTables, LayoutError> {
    let read = |table: Table| async move {
        storage
            .read_table_dir(&run_table_dir(run_id, table), table)
            .await
    };
    let files =
        |table: Table| async move { storage.table_files(&run_table_dir(run_id, table)).await };
    let (photos, tracked_users, tag_photos, recs, photographers, first, similar) =
        tokio::try_join!(
            read(Table::Photos),
            read(Table::TrackedUsers),
            read(Table::TagPhotos),
            files(Table::PhotoRecs),
            files(Table::PhotographerRecs),
            files(Table::FirstRecommended),
            files(Table::SimilarPhotos),
        )
        .map_err(failed)?;
    let names = |files: &[object_store::path::Path]| -> Vec<String> {
        files
            .iter()
            .filter_map(|f| f.filename().map(str::to_string))
            .collect()
    };
    let users = if names(&recs) == names(&photographers) && names(&recs) == names(&first) {
        UserParts::Aligned(names(&recs))
    } else {
        UserParts::Whole
    };
    Ok(RunTables {
        photos,
        tracked_users,
        tag_photos,
        users,
        similar,
    })
}

impl RunTables {
    /// How the per-user tables are read.
    pub fn user_parts(&self) -> &UserParts {
        &self.users
    }
}

/// The parts of `t`'s run in the order [`build`] takes them, read from
/// storage by a task of their own, each while the one before is built: the
/// per-user parts, then the files of `similar_photos`. At most two parts are
/// held at once: the one being built and the one read next. The iterator
/// blocks; it is for the builder's blocking thread.
pub fn parts(
    storage: &Storage,
    run_id: &str,
    t: &RunTables,
) -> impl Iterator<Item = Result<Part, LayoutError>> + Send + use<> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let (storage, run_id) = (storage.clone(), run_id.to_string());
    let files: Vec<Option<String>> = match &t.users {
        UserParts::Aligned(names) => names.iter().cloned().map(Some).collect(),
        UserParts::Whole => vec![None],
    };
    let similar = t.similar.clone();
    tokio::spawn(async move {
        let storage = &storage;
        let dir = |table: Table| run_table_dir(&run_id, table);
        let read = |table: Table, file: Option<String>| {
            let dir = dir(table);
            async move {
                match file {
                    Some(f) => storage.read_parquet(&dir.clone().join(f), table).await,
                    None => storage.read_table_dir(&dir, table).await,
                }
            }
        };
        for file in files {
            // A part is read once the builder has taken the one before.
            let Ok(slot) = tx.reserve().await else {
                return; // The builder stopped.
            };
            let part = tokio::try_join!(
                read(Table::PhotoRecs, file.clone()),
                read(Table::PhotographerRecs, file.clone()),
                read(Table::FirstRecommended, file),
            )
            .map(
                |(photo_recs, photographer_recs, first_recommended)| Part::Users {
                    photo_recs,
                    photographer_recs,
                    first_recommended,
                },
            )
            .map_err(failed);
            let failed = part.is_err();
            slot.send(part);
            if failed {
                return;
            }
        }
        for path in similar {
            let Ok(slot) = tx.reserve().await else {
                return;
            };
            let part = storage
                .read_parquet(&path, Table::SimilarPhotos)
                .await
                .map(Part::Similar)
                .map_err(failed);
            let failed = part.is_err();
            slot.send(part);
            if failed {
                return;
            }
        }
    });
    std::iter::from_fn(move || rx.blocking_recv())
}

/// A row: (batch, row).
type At = (usize, usize);

/// A list record in parts: its head, its default page, and its items joined,
/// of which those from `rest` on (the ones not on the page) are stored.
struct Record {
    head: Vec<u8>,
    page: Vec<u8>,
    items: Vec<u8>,
    rest: usize,
}

/// What the `photos` table says of the photos, by id (the last row of an id).
struct Photos<'a> {
    cols: Vec<PhotosColumns<'a>>,
    by_id: PlHashMap<&'a str, At>,
    owner_names: PlHashMap<&'a str, &'a str>,
}

impl<'a> Photos<'a> {
    fn new(batches: &'a [RecordBatch]) -> Result<Self, ColumnError> {
        let cols = batches
            .iter()
            .map(PhotosColumns::new)
            .collect::<Result<Vec<_>, _>>()?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let mut by_id = PlHashMap::with_capacity(rows);
        let mut owner_names = PlHashMap::default();
        for (bi, c) in cols.iter().enumerate() {
            for r in 0..batches[bi].num_rows() {
                let (Some(id), Some(owner)) = (str_at(c.photo_id, r), str_at(c.owner_id, r)) else {
                    continue;
                };
                if let Some(n) = str_at(c.owner_name, r) {
                    owner_names.entry(owner).or_insert(n);
                }
                by_id.insert(id, (bi, r));
            }
        }
        Ok(Photos {
            cols,
            by_id,
            owner_names,
        })
    }

    fn field(
        &self,
        at: At,
        f: impl Fn(&PhotosColumns<'a>) -> &'a arrow_array::StringArray,
    ) -> Option<&'a str> {
        str_at(f(&self.cols[at.0]), at.1)
    }

    fn info(&self, id: &str) -> Option<PhotoInfo> {
        let &at = self.by_id.get(id)?;
        let owner = self.field(at, |c| c.owner_id)?.to_string();
        Some(PhotoInfo {
            photo_id: id.to_string(),
            owner_name: self.field(at, |c| c.owner_name).map(str::to_string),
            title: self.field(at, |c| c.title).map(str::to_string),
            thumbnail_url: thumbnail_url(
                id,
                self.field(at, |c| c.server),
                self.field(at, |c| c.secret),
            ),
            photo_url: photo_url(id, Some(&owner)),
            tags: self
                .field(at, |c| c.tags)
                .map(|t| t.split_whitespace().map(str::to_lowercase).collect())
                .unwrap_or_default(),
            owner_id: owner,
        })
    }
}

/// When each (user, photo) of the run was first recommended, and whether in
/// this run: the `first_recommended` rows, as (batch, row) pairs sorted by
/// user then photo, and each user's range of them. 8 bytes a row (a hash map
/// keyed by both strings took about 50: 600 MB for the 11.7M rows of the 8M
/// community scored for every favoriter), and 8 more for the photo ids packed
/// ([`crate::model::packed`]), which a lookup searches instead of the
/// strings when every one of them packs.
struct FirstRecs<'a> {
    cols: Vec<FirstRecommendedColumns<'a>>,
    rows: Vec<(u32, u32)>,
    packed: Option<Vec<u64>>,
    users: PlHashMap<&'a str, std::ops::Range<usize>>,
    run_id: &'a str,
}

impl<'a> FirstRecs<'a> {
    fn new(batches: &'a [RecordBatch], run_id: &'a str) -> Result<Self, LayoutError> {
        let cols = batches
            .iter()
            .map(FirstRecommendedColumns::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
        for (bi, c) in cols.iter().enumerate() {
            for r in 0..batches[bi].num_rows() {
                let whole = str_at(c.user_id, r).is_some()
                    && str_at(c.photo_id, r).is_some()
                    && str_at(c.first_run_id, r).is_some()
                    && time_at(c.first_recommended_at, r).is_some();
                if whole {
                    let at = (u32::try_from(bi), u32::try_from(r));
                    let (Ok(b), Ok(r)) = at else {
                        return Err(failed("first_recommended holds over 4 billion rows"));
                    };
                    rows.push((b, r));
                }
            }
        }
        let mut first = FirstRecs {
            cols,
            rows: Vec::new(),
            packed: None,
            users: PlHashMap::default(),
            run_id,
        };
        // Stable: rows of one (user, photo), which only a hand-made table
        // has, keep the table's order.
        crate::sort::sort_grouped(
            &mut rows,
            |a, b| first.user(*a) == first.user(*b),
            |x| (first.user(*x), first.photo(*x)),
        );
        let mut users = PlHashMap::default();
        let mut start = 0;
        for group in rows.chunk_by(|a, b| first.user(*a) == first.user(*b)) {
            users.insert(first.user(group[0]), start..start + group.len());
            start += group.len();
        }
        // Packed order is string order, so the packed ids are sorted as the
        // rows are within each user.
        first.packed = rows.iter().map(|&x| packed::pack(first.photo(x))).collect();
        first.rows = rows;
        first.users = users;
        Ok(first)
    }

    /// The users it holds rows of.
    fn users(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.users.keys().copied()
    }

    fn user(&self, (b, r): (u32, u32)) -> &'a str {
        self.cols[b as usize].user_id.value(r as usize)
    }

    fn photo(&self, (b, r): (u32, u32)) -> &'a str {
        self.cols[b as usize].photo_id.value(r as usize)
    }

    /// When `user` was first recommended `photo`, and whether in this run;
    /// of rows of one (user, photo), the last.
    fn get(&self, user: &str, photo: &str) -> Option<(i64, bool)> {
        let range = self.users.get(user)?.clone();
        let at = match &self.packed {
            Some(packed) => {
                // A photo id that does not pack is none of these rows'.
                let photo = packed::pack(photo)?;
                let packed = &packed[range.clone()];
                let last = packed.partition_point(|&p| p <= photo).checked_sub(1)?;
                if packed[last] != photo {
                    return None;
                }
                self.rows[range.start + last]
            }
            None => {
                let rows = &self.rows[range];
                let last = rows.partition_point(|&x| self.photo(x) <= photo);
                let at = *rows.get(last.checked_sub(1)?)?;
                if self.photo(at) != photo {
                    return None;
                }
                at
            }
        };
        let c = &self.cols[at.0 as usize];
        let r = at.1 as usize;
        Some((
            c.first_recommended_at.value(r),
            c.first_run_id.value(r) == self.run_id,
        ))
    }
}

/// Rows whose records are built at once (on the Rayon pool), then written in
/// order: bounds the records held in memory (a few MiB of JSON), whatever the
/// number of keys or the length of their lists. A list longer than this is a
/// batch of its own.
const ROWS_PER_BATCH: usize = 8192;

/// Writes the list of each key of `rows` (sorted by key, then rank, stably)
/// into section `name`; `item` serialises one row onto the end of a buffer,
/// `about` names a key's list for its pre-serialised default page (`None`: no
/// default page). Records are built in parallel, a batch of keys at a time,
/// and written in key order, so the bytes do not depend on the thread count.
fn write_lists<W: Write + Send, K: AsRef<[u8]> + Ord + Copy + Send + Sync>(
    w: &mut LayoutWriter<W>,
    name: &str,
    rows: &mut [(K, i32, At)],
    item: impl Fn(At, &mut Vec<u8>) -> Result<(), LayoutError> + Sync,
    about: Option<&(dyn Fn(K) -> UserList + Sync)>,
    run_id: &str,
) -> Result<(), LayoutError> {
    use rayon::prelude::*;
    rows.sort_by_key(|r| (r.0, r.1));
    let mut groups = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let key = rows[i].0;
        let end = i + rows[i..].iter().take_while(|r| r.0 == key).count();
        groups.push(i..end);
        i = end;
    }
    let record = |range: &std::ops::Range<usize>| -> Result<Record, LayoutError> {
        let key = rows[range.start].0;
        let mut items = Vec::with_capacity(range.len() * 512);
        let mut spans = Vec::with_capacity(range.len());
        for r in &rows[range.clone()] {
            let start = items.len();
            item(r.2, &mut items)?;
            spans.push(start..items.len());
        }
        let Some(about) = about else {
            return Ok(Record {
                head: list_header(0, &spans)?,
                page: Vec::new(),
                items,
                rest: 0,
            });
        };
        // The items on the default page are read from it: the record's body
        // is the page, then the items after it.
        let shown = spans.len().min(DEFAULT_LIMIT);
        let mut on_page = Vec::with_capacity(shown);
        let page = page_json_with(
            &about(key),
            run_id,
            spans.len(),
            0,
            DEFAULT_LIMIT,
            spans[..shown].iter().map(|s| &items[s.clone()]),
            |at| on_page.push(at),
        )?;
        let rest = spans.get(shown).map_or(items.len(), |s| s.start);
        for (span, at) in spans.iter_mut().zip(on_page) {
            *span = at;
        }
        for span in &mut spans[shown..] {
            *span = span.start - rest + page.len()..span.end - rest + page.len();
        }
        Ok(Record {
            head: list_header(page.len(), &spans)?,
            page,
            items,
            rest,
        })
    };
    w.resume(name)?;
    let mut batches = Vec::new();
    let mut start = 0;
    while start < groups.len() {
        let first_row = groups[start].start;
        let end = start
            + 1
            + groups[start + 1..]
                .iter()
                .take_while(|g| g.end - first_row <= ROWS_PER_BATCH)
                .count();
        batches.push(&groups[start..end]);
        start = end;
    }
    // Each batch's records are written while the next batch's are built:
    // the writes (the kernel copying them into the file) take one thread,
    // the Rayon pool's others build. Two batches are held at most.
    let mut write = |batch: &[std::ops::Range<usize>], records: Vec<Record>| {
        for (range, r) in batch.iter().zip(records) {
            let parts = [&r.head[..], &r.page, &r.items[r.rest..]];
            w.add_parts(rows[range.start].0.as_ref(), &parts)?;
        }
        Ok::<_, LayoutError>(())
    };
    let mut built: Option<(&[std::ops::Range<usize>], Vec<Record>)> = None;
    for batch in batches {
        let (records, written) = rayon::join(
            || batch.par_iter().map(record).collect::<Result<Vec<_>, _>>(),
            || match built.take() {
                Some((done, records)) => write(done, records),
                None => Ok(()),
            },
        );
        written?;
        built = Some((batch, records?));
    }
    match built {
        Some((done, records)) => write(done, records),
        None => Ok(()),
    }
}

/// The names in row `r` of a list-of-strings column, nulls left out.
struct Names<'a> {
    values: &'a arrow_array::StringArray,
    range: std::ops::Range<usize>,
}

impl<'a> Names<'a> {
    fn at(list: &'a arrow_array::ListArray, r: usize) -> Self {
        let offsets = list.value_offsets();
        Names {
            values: list.values().as_string::<i32>(),
            range: offsets[r] as usize..offsets[r + 1] as usize,
        }
    }
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let i = self.range.next()?;
            if arrow_array::Array::is_valid(self.values, i) {
                return Some(self.values.value(i));
            }
        }
    }
}

/// Builds the layout of `manifest`'s run from `t` and its `parts` ([`parts`],
/// in that order) into `out`, a part at a time: each part's records are
/// written before the next part is taken, so what is held is the tables read
/// whole (`photos`, `tracked_users`, `tag_photos`), one or two parts, and
/// the sections' keys. The same tables cut into the same parts give the same
/// bytes; tables cut otherwise give the same records, in another order.
pub fn build<W: Write + Send>(
    manifest: &Manifest,
    t: &RunTables,
    parts: impl IntoIterator<Item = Result<Part, LayoutError>>,
    out: W,
) -> Result<W, LayoutError> {
    let run_id = manifest.run_id.as_str();
    let photos = Photos::new(&t.photos)?;
    let mut w = LayoutWriter::new(out);
    w.begin(section::META)?;
    // The configured algorithms, in display order; any other the rows name
    // (a hand-made run) is added as found, and listed after them by name.
    let configured: Vec<String> = manifest
        .config
        .score
        .algorithms
        .iter()
        .map(|a| a.name().to_string())
        .collect();
    let mut algorithms = configured.clone();
    for a in &algorithms {
        w.begin(&section::photos(a))?;
    }
    w.begin(section::PHOTOGRAPHERS)?;
    w.begin(section::USERS)?;
    w.begin(section::SIMILAR)?;
    let mut users: std::collections::BTreeSet<String> = Default::default();
    let expected = match &t.users {
        UserParts::Aligned(names) => names.len(),
        UserParts::Whole => 1,
    } + t.similar.len();
    let mut taken = 0;
    for part in parts {
        taken += 1;
        match part? {
            Part::Users {
                photo_recs,
                photographer_recs,
                first_recommended,
            } => {
                let part = UserPart {
                    photo_recs: &photo_recs,
                    photographer_recs: &photographer_recs,
                    first_recommended: &first_recommended,
                };
                part.write(&mut w, &photos, &mut algorithms, &mut users, run_id)?;
            }
            Part::Similar(batches) => write_similar(&mut w, &photos, &batches, run_id)?,
        }
    }
    if taken != expected {
        return Err(failed(format!(
            "the run's tables were read in part: {taken} of {expected} parts"
        )));
    }
    w.resume(section::USERS)?;
    for u in &users {
        w.add(u.as_bytes(), b"")?;
    }
    drop(users);
    let mut found = algorithms.split_off(configured.len());
    found.sort();
    algorithms.extend(found);
    w.resume(section::META)?;
    w.add(b"algorithms", &serde_json::to_vec(&algorithms)?)?;

    let tagc = t
        .tag_photos
        .iter()
        .map(TagPhotosColumns::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for (bi, c) in tagc.iter().enumerate() {
        for r in 0..t.tag_photos[bi].num_rows() {
            if let (Some(tag), Some(_)) = (str_at(c.tag, r), str_at(c.photo_id, r)) {
                rows.push((tag, c.rank.value(r), (bi, r)));
            }
        }
    }
    let tag_item = |(bi, r): At, out: &mut Vec<u8>| -> Result<(), LayoutError> {
        let c = &tagc[bi];
        let p = str_at(c.photo_id, r).unwrap_or_default();
        Ok(serde_json::to_writer(
            out,
            &TagItem {
                rank: c.rank.value(r),
                favorites: c.favorites.value(r),
                photo: PhotoCard::listed(p.to_string(), photos.info(p).as_ref()),
            },
        )?)
    };
    write_lists(&mut w, section::TAGS, &mut rows, tag_item, None, run_id)?;
    drop(rows);

    w.begin(section::PHOTO_INFO)?;
    let mut ids: Vec<&str> = photos.by_id.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        if let Some(info) = photos.info(id) {
            w.add(id.as_bytes(), &serde_json::to_vec(&info)?)?;
        }
    }

    let mut tracked: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut by_username: BTreeMap<String, &str> = BTreeMap::new();
    for b in &t.tracked_users {
        let c = TrackedUsersColumns::new(b)?;
        for r in 0..b.num_rows() {
            let Some(id) = str_at(c.user_id, r) else {
                continue;
            };
            let name = str_at(c.username, r);
            if let Some(n) = name {
                by_username.entry(n.to_lowercase()).or_insert(id);
            }
            tracked.insert(id, name);
        }
    }
    w.begin(section::TRACKED)?;
    for (id, name) in &tracked {
        w.add(id.as_bytes(), &serde_json::to_vec(name)?)?;
    }
    w.begin(section::USERNAMES)?;
    for (name, id) in &by_username {
        w.add(name.as_bytes(), id.as_bytes())?;
    }
    w.finish(run_id)
}

/// A part of the per-user tables.
struct UserPart<'a> {
    photo_recs: &'a [RecordBatch],
    photographer_recs: &'a [RecordBatch],
    first_recommended: &'a [RecordBatch],
}

impl UserPart<'_> {
    /// Writes the part's photo recs (into the section of each algorithm,
    /// adding to `algorithms` any it names that is not there) and
    /// photographer recs, and adds its users to `users`. Its
    /// `first_recommended` rows must all be of users whose photo recs it
    /// holds.
    fn write<W: Write + Send>(
        &self,
        w: &mut LayoutWriter<W>,
        photos: &Photos<'_>,
        algorithms: &mut Vec<String>,
        users: &mut std::collections::BTreeSet<String>,
        run_id: &str,
    ) -> Result<(), LayoutError> {
        let first = FirstRecs::new(self.first_recommended, run_id)?;
        let recs = self
            .photo_recs
            .iter()
            .map(PhotoRecsColumns::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut recommended: PlHashSet<&str> = PlHashSet::new();
        let mut by_algorithm: Vec<Vec<(&str, i32, At)>> = vec![Vec::new(); algorithms.len()];
        // Rows usually come grouped by user and algorithm: when a row's match
        // the previous row's, its user is not inserted and its slot not
        // searched again.
        let mut last_user = None;
        let mut last_slot: Option<(&str, usize)> = None;
        for (bi, c) in recs.iter().enumerate() {
            for r in 0..self.photo_recs[bi].num_rows() {
                let (Some(user), Some(_), Some(algorithm)) = (
                    str_at(c.user_id, r),
                    str_at(c.photo_id, r),
                    str_at(c.algorithm, r),
                ) else {
                    continue;
                };
                let slot = match last_slot {
                    Some((name, slot)) if name == algorithm => slot,
                    _ => match algorithms.iter().position(|a| a == algorithm) {
                        Some(slot) => slot,
                        None => {
                            algorithms.push(algorithm.to_string());
                            by_algorithm.push(Vec::new());
                            algorithms.len() - 1
                        }
                    },
                };
                last_slot = Some((algorithm, slot));
                if last_user != Some(user) {
                    recommended.insert(user);
                    last_user = Some(user);
                }
                by_algorithm[slot].push((user, c.rank.value(r), (bi, r)));
            }
        }
        if let Some(user) = first.users().find(|u| !recommended.contains(u)) {
            return Err(failed(format!(
                "first_recommended holds rows of user {user} apart from their photo recs (in another part)"
            )));
        }
        users.extend(recommended.iter().map(|u| u.to_string()));
        for (slot, rows) in by_algorithm.iter_mut().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let algorithm = algorithms[slot].as_str();
            let photo_item = |(bi, r): At, out: &mut Vec<u8>| -> Result<(), LayoutError> {
                let c = &recs[bi];
                let (Some(user), Some(photo_id)) = (str_at(c.user_id, r), str_at(c.photo_id, r))
                else {
                    return Err(failed("a photo rec lost its key"));
                };
                let owner_id = str_at(c.owner_id, r);
                let meta = photos.by_id.get(photo_id).copied();
                let (at, is_new) = first.get(user, photo_id).map_or((None, false), |(t, n)| {
                    (chrono::DateTime::from_timestamp_micros(t), n)
                });
                let item = PhotoItemRow {
                    rank: c.rank.value(r),
                    photo_id,
                    owner_id,
                    owner_name: meta.and_then(|m| photos.field(m, |c| c.owner_name)),
                    title: meta.and_then(|m| photos.field(m, |c| c.title)),
                    thumbnail_url: meta.and_then(|m| {
                        Thumbnail::of(
                            photo_id,
                            photos.field(m, |c| c.server),
                            photos.field(m, |c| c.secret),
                        )
                    }),
                    photo_url: PhotoUrl::of(photo_id, owner_id),
                    score: c.score.value(r),
                    neighbor_count: c.neighbor_count.value(r),
                    top_neighbors: Names::at(c.top_neighbors, r),
                    similar_to: Names::at(c.similar_to, r),
                    first_recommended_at: at,
                    is_new,
                    // Runs written before the column existed have no fallbacks.
                    fallback: c
                        .fallback
                        .is_some_and(|f| arrow_array::Array::is_valid(f, r) && f.value(r)),
                };
                Ok(item.write_json(out)?)
            };
            let about = |user: &str| UserList {
                user_id: user.to_string(),
                algorithm: algorithm.to_string(),
            };
            // Only the default (first) algorithm's lists get a stored default
            // page: a request names another algorithm, and its page is joined.
            write_lists(
                w,
                &section::photos(algorithm),
                rows,
                photo_item,
                (slot == 0).then_some(&about as &(dyn Fn(&str) -> UserList + Sync)),
                run_id,
            )?;
            *rows = Vec::new();
        }

        let prec = self
            .photographer_recs
            .iter()
            .map(PhotographerRecsColumns::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows = Vec::new();
        for (bi, c) in prec.iter().enumerate() {
            for r in 0..self.photographer_recs[bi].num_rows() {
                if let (Some(user), Some(_)) = (str_at(c.user_id, r), str_at(c.photographer_id, r))
                {
                    if !recommended.contains(user) {
                        users.insert(user.to_string());
                    }
                    rows.push((user, c.rank.value(r), (bi, r)));
                }
            }
        }
        let photographer_item = |(bi, r): At, out: &mut Vec<u8>| -> Result<(), LayoutError> {
            let c = &prec[bi];
            let who = str_at(c.photographer_id, r).unwrap_or_default();
            Ok(serde_json::to_writer(
                out,
                &PhotographerItem {
                    rank: c.rank.value(r),
                    photographer_name: photos.owner_names.get(who).map(|n| n.to_string()),
                    photostream_url: format!("https://www.flickr.com/photos/{who}/"),
                    photographer_id: who.to_string(),
                    score: c.score.value(r),
                    common_favorites: c.common_favorites.value(r),
                    total_favorites: c.total_favorites.value(r),
                },
            )?)
        };
        let about = |user: &str| UserList {
            user_id: user.to_string(),
            algorithm: "flexplore".to_string(),
        };
        write_lists(
            w,
            section::PHOTOGRAPHERS,
            &mut rows,
            photographer_item,
            Some(&about),
            run_id,
        )
    }
}

/// Writes the lists of one file of `similar_photos`.
fn write_similar<W: Write + Send>(
    w: &mut LayoutWriter<W>,
    photos: &Photos<'_>,
    batches: &[RecordBatch],
    run_id: &str,
) -> Result<(), LayoutError> {
    let sim = batches
        .iter()
        .map(SimilarPhotosColumns::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for (bi, c) in sim.iter().enumerate() {
        for r in 0..batches[bi].num_rows() {
            if let (Some(p), Some(_), Some(_)) = (
                str_at(c.photo_id, r),
                str_at(c.similar_photo_id, r),
                str_at(c.algorithm, r),
            ) {
                rows.push((p, c.rank.value(r), (bi, r)));
            }
        }
    }
    let similar_item = |(bi, r): At, out: &mut Vec<u8>| -> Result<(), LayoutError> {
        let c = &sim[bi];
        let q = str_at(c.similar_photo_id, r).unwrap_or_default();
        Ok(serde_json::to_writer(
            out,
            &SimilarItem {
                rank: c.rank.value(r),
                score: c.score.value(r),
                common_favorites: c.common_favorites.value(r),
                algorithm: str_at(c.algorithm, r).unwrap_or_default().to_string(),
                photo: PhotoCard::listed(q.to_string(), photos.info(q).as_ref()),
            },
        )?)
    };
    write_lists(w, section::SIMILAR, &mut rows, similar_item, None, run_id)
}
