//! Preparation: raw tables in, an integer graph out.
//!
//! Every NSID and photo id is dictionary-encoded straight from the Arrow columns
//! the reader produced. Flickr's ids are packed into `u64`s that sort as the
//! strings do ([`super::ids`]); one hash lookup of that integer per row gives each
//! id a provisional code in first-seen order (a row equal to the one before
//! reuses its code unhashed, which makes the sorted `user_id` column nearly
//! free). Then the distinct ids, far fewer than the rows, are sorted and the
//! codes renumbered. So integer order equals string order: "id ascending" tie
//! breaks compare integers, and favourites sorted by (user, photo) come out
//! already in CSR order, grouped by a counting sort. When any id of a dictionary
//! is not a Flickr id (imports may hold others), that dictionary hashes the
//! strings themselves, with the same result. User ids and photo ids are
//! independent dictionaries, built on two threads. Duplicate favourites are
//! removed on the integer pairs while building the CSR.
//!
//! This used to be Polars work (unique, sort, then a left join per column to look
//! the codes up): converting the batches to frames, hashing each column twice and
//! joining took about 0.5 s of a 1.15M-favourite run, against about 0.15 s for one
//! hash pass here (docs/performance.md). Polars still does the table work of
//! import (dedupe), evaluation splits and `faverecs sql`.

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, RecordBatch, StringArray, cast::AsArray};
use polars::prelude::PlHashMap;
use rayon::prelude::*;

use crate::model::columns::ColumnError;
use crate::model::columns::{
    ContactsColumns, DismissalsColumns, FavoritesColumns, PhotosColumns, TrackedUsersColumns,
};

use super::error::ScoreError;
use super::ids::Ids;
use crate::frame::FrameError;
use crate::model::packed as ids;

/// Marks a photo whose owner is unknown.
pub const NO_OWNER: u32 = u32::MAX;

/// Compressed sparse rows: row `i`'s values are `values[offsets[i]..offsets[i+1]]`,
/// sorted ascending and distinct.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    /// Row starts; one more entry than there are rows.
    pub offsets: Vec<usize>,
    /// Concatenated row values.
    pub values: Vec<u32>,
}

impl Csr {
    /// Builds from `(row, value)` pairs in any order; duplicates are removed.
    pub fn from_pairs(rows: usize, pairs: Vec<(u32, u32)>) -> Self {
        Self::from_sorted_rows(rows, pairs.iter().copied())
    }

    /// Builds from `(row, value)` pairs in any order, given as an iterator
    /// walked twice; duplicates are removed. A counting sort by row keeps each row's
    /// values in the order given, and only a row that is not already strictly
    /// ascending is sorted and deduplicated. The raw tables are stored sorted by
    /// (user, photo), so this is linear, with no global sort and no pair vector.
    pub fn from_sorted_rows<I>(rows: usize, pairs: I) -> Self
    where
        I: Iterator<Item = (u32, u32)> + Clone,
    {
        let mut offsets = vec![0usize; rows + 1];
        for (r, _) in pairs.clone() {
            offsets[r as usize + 1] += 1;
        }
        for i in 0..rows {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets[..rows].to_vec();
        let mut values = vec![0u32; offsets[rows]];
        for (r, v) in pairs {
            let at = &mut next[r as usize];
            values[*at] = v;
            *at += 1;
        }
        drop(next);
        // Sort and deduplicate the rows that need it, moving rows down over
        // the duplicates removed.
        let (mut start, mut write) = (0usize, 0usize);
        for i in 0..rows {
            let end = offsets[i + 1];
            offsets[i] = write;
            let row = &mut values[start..end];
            let ascending = row.windows(2).all(|w| w[0] < w[1]);
            if ascending && write == start {
                write = end;
            } else {
                if !ascending {
                    row.sort_unstable();
                }
                let first = write;
                for k in start..end {
                    let v = values[k];
                    if write == first || values[write - 1] != v {
                        values[write] = v;
                        write += 1;
                    }
                }
            }
            start = end;
        }
        offsets[rows] = write;
        values.truncate(write);
        Self { offsets, values }
    }

    /// The values of row `i`.
    #[inline]
    pub fn row(&self, i: u32) -> &[u32] {
        let i = i as usize;
        &self.values[self.offsets[i]..self.offsets[i + 1]]
    }

    /// The transpose: for each value, the rows holding it (sorted).
    pub fn transpose(&self, cols: usize) -> Self {
        let mut offsets = vec![0usize; cols + 1];
        for &v in &self.values {
            offsets[v as usize + 1] += 1;
        }
        for i in 0..cols {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut values = vec![0u32; self.values.len()];
        // Rows are visited in ascending order, so each output row comes out sorted.
        for r in 0..self.offsets.len() - 1 {
            for &v in self.row(r as u32) {
                values[next[v as usize]] = r as u32;
                next[v as usize] += 1;
            }
        }
        Self { offsets, values }
    }
}

/// Everything the kernel needs, with ids replaced by dense integers.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// User NSIDs, sorted; a user's integer id is its index here.
    pub user_ids: Ids,
    /// Photo ids, sorted; a photo's integer id is its index here.
    pub photo_ids: Ids,
    /// F(u): user → favourited photos.
    pub favorites: Csr,
    /// Photo → users who favourited it (the transpose of `favorites`).
    pub favoriters: Csr,
    /// Photo → owner user id, or [`NO_OWNER`].
    pub owner: Vec<u32>,
    /// User → followed users.
    pub contacts: Csr,
    /// User → dismissed photos.
    pub dismissed_photos: Csr,
    /// User → dismissed users.
    pub dismissed_users: Csr,
    /// The users to score, ascending.
    pub targets: Vec<u32>,
    /// Every target of the run, ascending: the community whose neighbourhood
    /// `popular` ranks. The same as `targets`, except in a user shard
    /// ([`super::sharded`]), which scores only its share of them.
    pub community: Vec<u32>,
}

impl Graph {
    /// Whether any photo has a known owner. Without one there are no
    /// neighbours: Flexplore, `explore` and photographer recs are skipped
    /// ([`NO_OWNERS`]).
    pub fn has_owners(&self) -> bool {
        self.owner.iter().any(|&o| o != NO_OWNER)
    }
}

/// Why a run without photo owners has no Flexplore, `explore` or
/// photographer recs: the manifest's note and the log's warning.
pub const NO_OWNERS: &str = "no favourite has a known photo owner, so there are no neighbors: flexplore, explore and photographer recs are skipped (itemknn, popular, which is then global, and similar photos are not). Import favorites with an owner_id column, or a photos table with owner_id for the favourited photos";

/// Raw tables as read from storage.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `favorites` batches.
    pub favorites: Vec<RecordBatch>,
    /// `photos` batches (may be empty).
    pub photos: Vec<RecordBatch>,
    /// `contacts` batches (may be empty).
    pub contacts: Vec<RecordBatch>,
    /// `tracked_users` batches (may be empty with `all_users`).
    pub tracked_users: Vec<RecordBatch>,
    /// `dismissals` batches (may be empty).
    pub dismissals: Vec<RecordBatch>,
}

/// Counts gathered while preparing, recorded in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrepareStats {
    /// Favourites after removing duplicates.
    pub favorites: u64,
    /// Favourites whose photo owner is unknown (they still count in F(u)).
    pub favorites_without_owner: u64,
    /// Distinct users seen anywhere.
    pub users: u64,
    /// Distinct photos favourited.
    pub photos: u64,
    /// Users scored.
    pub targets: u64,
}

/// One string column of every batch of a table, picked by its typed view.
fn strings<'a>(
    batches: &'a [RecordBatch],
    pick: impl Fn(&'a RecordBatch) -> Result<&'a StringArray, ColumnError>,
) -> Result<Vec<&'a StringArray>, ScoreError> {
    Ok(batches.iter().map(pick).collect::<Result<_, _>>()?)
}

/// How a dictionary holds its ids: packed into integers ([`ids`]), or as the
/// strings themselves when some id does not pack.
trait Key<'a>: Copy + Eq + std::hash::Hash + Ord + Send + Sync {
    /// Why an id has no key of this kind.
    type Miss;
    /// The key of an id.
    fn of(id: &'a str) -> Result<Self, Self::Miss>;
    /// Appends the id of a key.
    fn append_id(self, ids: &mut StringBuilder);
}

/// An id that does not pack.
struct Unpacked;

impl Key<'_> for u64 {
    type Miss = Unpacked;
    #[inline]
    fn of(id: &str) -> Result<Self, Unpacked> {
        ids::pack(id).ok_or(Unpacked)
    }
    fn append_id(self, ids: &mut StringBuilder) {
        ids.append_value(ids::unpack_into(self, &mut [0; ids::MAX_LEN]));
    }
}

impl<'a> Key<'a> for &'a str {
    type Miss = std::convert::Infallible;
    #[inline]
    fn of(id: &'a str) -> Result<Self, Self::Miss> {
        Ok(id)
    }
    fn append_id(self, ids: &mut StringBuilder) {
        ids.append_value(self);
    }
}

/// Distinct ids in first-seen order, with provisional codes; [`Dictionary::finish`]
/// sorts them.
struct Dictionary<'a, K> {
    codes: PlHashMap<K, u32>,
    values: Vec<K>,
    ids: std::marker::PhantomData<&'a str>,
}

impl<K> Default for Dictionary<'_, K> {
    fn default() -> Self {
        Self {
            codes: PlHashMap::default(),
            values: Vec::new(),
            ids: std::marker::PhantomData,
        }
    }
}

/// Marks a null or unknown id in a provisional code column.
const NONE: u32 = u32::MAX;

impl<'a, K: Key<'a>> Dictionary<'a, K> {
    /// Adds every value of the column and returns their provisional codes
    /// ([`NONE`] for nulls), or why a value has no key.
    fn insert(&mut self, column: &[&'a StringArray]) -> Result<Vec<u32>, K::Miss> {
        let rows = column.iter().map(|a| a.len()).sum();
        let mut out = Vec::with_capacity(rows);
        let mut last: Option<(&str, u32)> = None;
        for array in column {
            for v in array.iter() {
                let code = match (v, last) {
                    (None, _) => NONE,
                    (Some(v), Some((l, code))) if l == v => code,
                    (Some(v), _) => {
                        let next = self.values.len() as u32;
                        let key = K::of(v)?;
                        let code = *self.codes.entry(key).or_insert(next);
                        if code == next {
                            self.values.push(key);
                        }
                        last = Some((v, code));
                        code
                    }
                };
                out.push(code);
            }
        }
        Ok(out)
    }

    /// Provisional codes of the column's values without adding any ([`NONE`] for
    /// nulls and ids not in the dictionary, which include ids without a key).
    fn lookup(&self, column: &[&'a StringArray]) -> Vec<u32> {
        column
            .iter()
            .flat_map(|a| a.iter())
            .map(|v| {
                v.and_then(|v| K::of(v).ok())
                    .and_then(|k| self.codes.get(&k).copied())
                    .unwrap_or(NONE)
            })
            .collect()
    }

    /// The ids sorted, and for each provisional code its final code. Fails
    /// past 2 GiB of ids (about 180M Flickr ids), which a column's 32-bit
    /// offsets cannot address.
    fn finish(self) -> Result<Sorted, ScoreError> {
        // The hash map is most of a dictionary's memory: free it before the
        // sorted copy is made.
        let Dictionary { codes, values, .. } = self;
        drop(codes);
        let mut order: Vec<(K, u32)> = values.into_iter().zip(0u32..).collect();
        // Distinct keys, so the unstable sort is deterministic; packed keys sort
        // as their strings do.
        order.par_sort_unstable();
        let mut remap = vec![NONE; order.len()];
        for (code, &(_, provisional)) in order.iter().enumerate() {
            remap[provisional as usize] = code as u32;
        }
        // The ids are written in chunks side by side, then copied once into
        // a column of their exact size. A chunk holds at most 2^26 ids of at
        // most 17 bytes, so its builder never overflows; `concat` reports a
        // column that would.
        let chunk = order
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .clamp(1 << 16, 1 << 26);
        let chunks: Vec<StringArray> = order
            .par_chunks(chunk)
            .map(|keys| {
                // Flickr's photo ids have 11 digits and NSIDs 12 characters.
                let mut ids = StringBuilder::with_capacity(keys.len(), keys.len() * 12);
                for &(key, _) in keys {
                    key.append_id(&mut ids);
                }
                ids.finish()
            })
            .collect();
        drop(order);
        let ids = match chunks.as_slice() {
            [] => Ids::default(),
            [one] => Ids::from(one.clone()),
            many => {
                let arrays: Vec<&dyn Array> = many.iter().map(|a| a as &dyn Array).collect();
                let all = arrow_select::concat::concat(&arrays).map_err(FrameError::from)?;
                Ids::from(all.as_string::<i32>().clone())
            }
        };
        Ok(Sorted { ids, remap })
    }
}

/// A finished dictionary.
struct Sorted {
    /// The ids, ascending.
    ids: Ids,
    /// Provisional code → final code.
    remap: Vec<u32>,
}

impl Sorted {
    /// The final code of a provisional one.
    #[inline]
    fn get(&self, provisional: u32) -> Option<u32> {
        self.remap.get(provisional as usize).copied()
    }

    /// Final codes of a provisional column.
    fn column(&self, provisional: &[u32]) -> Vec<Option<u32>> {
        provisional.iter().map(|&c| self.get(c)).collect()
    }
}

/// `(a, b)` pairs of the rows where both are known.
fn pairs(a: &[Option<u32>], b: &[Option<u32>]) -> Vec<(u32, u32)> {
    a.iter()
        .zip(b)
        .filter_map(|(&x, &y)| Some((x?, y?)))
        .collect()
}

/// Builds a dictionary with packed keys, or with strings when an id does not
/// pack (ids from imports need not be Flickr's).
fn packed_or_strings<'a, T>(
    what: &str,
    build: impl Fn(&mut Dictionary<'a, u64>) -> Result<T, Unpacked>,
    fallback: impl Fn(&mut Dictionary<'a, &'a str>) -> Result<T, std::convert::Infallible>,
) -> Result<(T, Sorted), ScoreError> {
    let mut dict = Dictionary::default();
    if let Ok(codes) = build(&mut dict) {
        return Ok((codes, dict.finish()?));
    }
    tracing::debug!(
        what,
        "an id is not a Flickr id, so this dictionary keeps strings"
    );
    let mut dict = Dictionary::default();
    let Ok(codes) = fallback(&mut dict);
    Ok((codes, dict.finish()?))
}

/// The photo side: the photo dictionary is built from the favourites only (a
/// photo nobody favourited is not in the graph); `photos` and `dismissals` rows
/// are looked up in it.
struct PhotoCodes {
    dict: Sorted,
    favorites: Vec<u32>,
    photos: Vec<u32>,
    dismissals: Vec<u32>,
}

fn photo_codes(inputs: &Inputs) -> Result<PhotoCodes, ScoreError> {
    let favorites = strings(
        &inputs.favorites,
        |b| Ok(FavoritesColumns::new(b)?.photo_id),
    )?;
    let photos = strings(&inputs.photos, |b| Ok(PhotosColumns::new(b)?.photo_id))?;
    let dismissals = strings(&inputs.dismissals, |b| {
        Ok(DismissalsColumns::new(b)?.photo_id)
    })?;
    macro_rules! codes {
        () => {
            |dict| {
                let favorites = dict.insert(&favorites)?;
                Ok([favorites, dict.lookup(&photos), dict.lookup(&dismissals)])
            }
        };
    }
    let ([favorites, photos, dismissals], dict) =
        packed_or_strings("photo ids", codes!(), codes!())?;
    Ok(PhotoCodes {
        dict,
        favorites,
        photos,
        dismissals,
    })
}

/// The user side: every column that names a user adds to one dictionary.
struct UserCodes {
    dict: Sorted,
    favorites: Vec<u32>,
    favorite_owners: Vec<u32>,
    photo_owners: Vec<u32>,
    tracked: Vec<u32>,
    contacts: (Vec<u32>, Vec<u32>),
    dismissals: (Vec<u32>, Vec<u32>),
}

fn user_codes(inputs: &Inputs) -> Result<UserCodes, ScoreError> {
    let columns = [
        strings(&inputs.favorites, |b| Ok(FavoritesColumns::new(b)?.user_id))?,
        strings(
            &inputs.favorites,
            |b| Ok(FavoritesColumns::new(b)?.owner_id),
        )?,
        strings(&inputs.photos, |b| Ok(PhotosColumns::new(b)?.owner_id))?,
        strings(&inputs.tracked_users, |b| {
            Ok(TrackedUsersColumns::new(b)?.user_id)
        })?,
        strings(&inputs.contacts, |b| Ok(ContactsColumns::new(b)?.user_id))?,
        strings(
            &inputs.contacts,
            |b| Ok(ContactsColumns::new(b)?.contact_id),
        )?,
        strings(&inputs.dismissals, |b| {
            Ok(DismissalsColumns::new(b)?.user_id)
        })?,
        strings(&inputs.dismissals, |b| {
            Ok(DismissalsColumns::new(b)?.dismissed_user_id)
        })?,
    ];
    macro_rules! codes {
        () => {
            |dict| {
                let mut out: [Vec<u32>; 8] = Default::default();
                for (codes, column) in out.iter_mut().zip(&columns) {
                    *codes = dict.insert(column)?;
                }
                Ok(out)
            }
        };
    }
    let (
        [
            favorites,
            favorite_owners,
            photo_owners,
            tracked,
            contacts,
            contact_ids,
            dismissals,
            dismissed_users,
        ],
        dict,
    ) = packed_or_strings("NSIDs", codes!(), codes!())?;
    Ok(UserCodes {
        dict,
        favorites,
        favorite_owners,
        photo_owners,
        tracked,
        contacts: (contacts, contact_ids),
        dismissals: (dismissals, dismissed_users),
    })
}

/// The raw tables' ids as codes, with the sorted dictionaries: all that
/// [`build`] needs of them, holding nothing of the raw rows, so that these can
/// be freed first.
pub struct Encoded {
    photo: PhotoCodes,
    user: UserCodes,
}

/// Builds the integer graph ([`encode`] then [`build`]). With `all_users`,
/// every user with a favourite is a target; otherwise the tracked users are.
/// Runs on the current Rayon pool.
pub fn prepare(inputs: &Inputs, all_users: bool) -> Result<(Graph, PrepareStats), ScoreError> {
    build(encode(inputs)?, all_users)
}

/// Logs a step of `prepare` with the memory it has taken so far.
fn lap(what: &str, clock: std::time::Instant) {
    tracing::debug!(
        step = what,
        ms = clock.elapsed().as_millis() as u64,
        peak_rss_mib = crate::runs::peak_rss_mib(),
        rss_mib = crate::runs::rss_mib(),
        "prepare"
    )
}

/// The first half of [`prepare`]: encodes every id of the raw tables through
/// the user and photo dictionaries (built on two threads).
pub fn encode(inputs: &Inputs) -> Result<Encoded, ScoreError> {
    let clock = std::time::Instant::now();
    if inputs.favorites.iter().all(|b| b.num_rows() == 0) {
        return Err(ScoreError::NoFavorites);
    }
    let (photo, user) = rayon::join(|| photo_codes(inputs), || user_codes(inputs));
    let encoded = Encoded {
        photo: photo?,
        user: user?,
    };
    lap("dictionaries", clock);
    Ok(encoded)
}

/// The second half of [`prepare`]: the graph from the codes.
pub fn build(encoded: Encoded, all_users: bool) -> Result<(Graph, PrepareStats), ScoreError> {
    let clock = std::time::Instant::now();
    let lap = |what: &str| lap(what, clock);
    let Encoded {
        mut photo,
        mut user,
    } = encoded;
    let n_users = user.dict.ids.len();
    let n_photos = photo.dict.ids.len();

    // A photo has one owner. Every owner the data states counts (any favourites row,
    // and the photos table); if they disagree the smallest id wins, so the choice
    // does not depend on row order. Each code column is freed once used.
    let mut owner = vec![NO_OWNER; n_photos];
    let favorite_owners = std::mem::take(&mut user.favorite_owners);
    let claims = photo
        .favorites
        .iter()
        .zip(&favorite_owners)
        .chain(photo.photos.iter().zip(&user.photo_owners));
    for (&p, &o) in claims {
        if let (Some(p), Some(o)) = (photo.dict.get(p), user.dict.get(o)) {
            owner[p as usize] = owner[p as usize].min(o);
        }
    }
    drop(favorite_owners);
    lap("owners");

    // Favourites: every raw row's (user, photo) pair, grouped by user and
    // deduplicated (sorted only where a user's rows are not stored sorted).
    let favorites_csr = Csr::from_sorted_rows(
        n_users,
        std::mem::take(&mut user.favorites)
            .iter()
            .zip(&std::mem::take(&mut photo.favorites))
            .filter_map(|(&u, &p)| Some((user.dict.get(u)?, photo.dict.get(p)?))),
    );
    let favoriters = favorites_csr.transpose(n_photos);
    let without_owner = favorites_csr
        .values
        .iter()
        .filter(|&&p| owner[p as usize] == NO_OWNER)
        .count() as u64;
    lap("csr");

    let contacts_csr = Csr::from_pairs(
        n_users,
        pairs(
            &user.dict.column(&user.contacts.0),
            &user.dict.column(&user.contacts.1),
        ),
    );
    let dismissed_by = user.dict.column(&user.dismissals.0);
    let dismissed_photos = Csr::from_pairs(
        n_users,
        pairs(&dismissed_by, &photo.dict.column(&photo.dismissals)),
    );
    let dismissed_users = Csr::from_pairs(
        n_users,
        pairs(&dismissed_by, &user.dict.column(&user.dismissals.1)),
    );

    let mut targets: Vec<u32> = if all_users {
        (0..n_users as u32)
            .filter(|&u| !favorites_csr.row(u).is_empty())
            .collect()
    } else {
        user.tracked
            .iter()
            .filter_map(|&u| user.dict.get(u))
            .collect()
    };
    targets.sort_unstable();
    targets.dedup();
    if targets.is_empty() {
        return Err(ScoreError::NoTargets { all_users });
    }

    let stats = PrepareStats {
        favorites: favorites_csr.values.len() as u64,
        favorites_without_owner: without_owner,
        users: n_users as u64,
        photos: n_photos as u64,
        targets: targets.len() as u64,
    };
    Ok((
        Graph {
            user_ids: user.dict.ids,
            photo_ids: photo.dict.ids,
            favorites: favorites_csr,
            favoriters,
            owner,
            contacts: contacts_csr,
            dismissed_photos,
            dismissed_users,
            community: targets.clone(),
            targets,
        },
        stats,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Final codes and sorted ids of one column, through a dictionary of `K`.
    fn encoded<'a, K: Key<'a>>(column: &[&'a StringArray]) -> (Vec<Option<u32>>, Vec<String>) {
        let mut dict = Dictionary::<K>::default();
        let Ok(codes) = dict.insert(column) else {
            panic!("the ids do not pack");
        };
        let sorted = dict.finish().expect("a small dictionary");
        let ids = sorted.ids.iter().map(str::to_string).collect();
        (sorted.column(&codes), ids)
    }

    proptest::proptest! {
        /// Packed keys give the codes and ids that string keys give, so which
        /// one a run uses never shows in its tables.
        #[test]
        fn packed_and_string_dictionaries_agree(
            ids in proptest::collection::vec(
                proptest::option::of("[1-9][0-9]{0,11}(@N0[0-9])?"), 0..200),
        ) {
            let array = StringArray::from(ids.clone());
            let column = [&array];
            let packed = encoded::<u64>(&column);
            proptest::prop_assert_eq!(&packed, &encoded::<&str>(&column));
            let mut distinct: Vec<&String> = ids.iter().flatten().collect();
            distinct.sort();
            distinct.dedup();
            proptest::prop_assert_eq!(packed.1.iter().collect::<Vec<_>>(), distinct);
        }
    }

    #[test]
    fn a_dictionary_with_an_id_that_does_not_pack_keeps_strings() {
        let users = StringArray::from(vec!["10@N01", "9@N01", "alice"]);
        let columns = [&users];
        let ([codes], dict) = packed_or_strings(
            "NSIDs",
            |d| Ok([d.insert(&columns)?]),
            |d| Ok([d.insert(&columns)?]),
        )
        .expect("a small dictionary");
        assert_eq!(
            dict.ids.iter().collect::<Vec<_>>(),
            ["10@N01", "9@N01", "alice"]
        );
        assert_eq!(dict.column(&codes), [Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn csr_transpose_lists_rows_per_value_sorted() {
        let csr = Csr::from_pairs(3, vec![(2, 0), (0, 1), (0, 0), (1, 1), (0, 1)]);
        assert_eq!(csr.row(0), &[0, 1]);
        assert_eq!(csr.row(1), &[1]);
        assert_eq!(csr.row(2), &[0]);
        let unsorted = [(2, 0), (0, 1), (0, 0), (1, 1), (0, 1), (1, 1), (2, 0)];
        assert_eq!(Csr::from_sorted_rows(3, unsorted.into_iter()), csr);
        let sorted = [(0, 0), (0, 1), (0, 1), (1, 1), (2, 0)];
        assert_eq!(Csr::from_sorted_rows(3, sorted.into_iter()), csr);
        assert_eq!(
            Csr::from_sorted_rows(4, [(3, 7), (1, 2), (3, 5)].into_iter()),
            Csr::from_pairs(4, vec![(3, 7), (1, 2), (3, 5)])
        );
        let t = csr.transpose(2);
        assert_eq!(t.row(0), &[0, 2]);
        assert_eq!(t.row(1), &[0, 1]);
    }
}
