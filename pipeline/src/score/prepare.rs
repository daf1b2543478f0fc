//! Preparation: raw tables in, an integer graph out.
//!
//! Every NSID and photo id is dictionary-encoded straight from the Arrow columns
//! the reader produced. One hash lookup per row gives each id a provisional code
//! in first-seen order (a row equal to the one before reuses its code unhashed,
//! which makes the sorted `user_id` column nearly free); then the distinct ids,
//! far fewer than the rows, are sorted and the codes renumbered. So integer order
//! equals string order: "id ascending" tie breaks compare integers, and favourites
//! sorted by (user, photo) come out already in CSR order. User ids and photo ids
//! are independent dictionaries, built on two threads. Duplicate favourites are
//! removed on the integer pairs while building the CSR.
//!
//! This used to be Polars work (unique, sort, then a left join per column to look
//! the codes up): converting the batches to frames, hashing each column twice and
//! joining took about 0.5 s of a 1.15M-favourite run, against about 0.15 s for one
//! hash pass here (docs/performance.md). Polars still does the table work of
//! import (dedupe), evaluation splits and `faverecs sql`.

use arrow_array::{Array, RecordBatch, StringArray};
use polars::prelude::PlHashMap;
use rayon::prelude::*;

use crate::model::columns::ColumnError;
use crate::model::columns::{
    ContactsColumns, DismissalsColumns, FavoritesColumns, PhotosColumns, TrackedUsersColumns,
};

use super::error::ScoreError;

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
    pub fn from_pairs(rows: usize, mut pairs: Vec<(u32, u32)>) -> Self {
        pairs.sort_unstable();
        pairs.dedup();
        let mut offsets = vec![0usize; rows + 1];
        for &(r, _) in &pairs {
            offsets[r as usize + 1] += 1;
        }
        for i in 0..rows {
            offsets[i + 1] += offsets[i];
        }
        Self {
            offsets,
            values: pairs.into_iter().map(|(_, v)| v).collect(),
        }
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
    pub user_ids: Vec<String>,
    /// Photo ids, sorted; a photo's integer id is its index here.
    pub photo_ids: Vec<String>,
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

/// Distinct ids in first-seen order, with provisional codes; [`Dictionary::finish`]
/// sorts them.
#[derive(Default)]
struct Dictionary<'a> {
    codes: PlHashMap<&'a str, u32>,
    values: Vec<&'a str>,
}

/// Marks a null or unknown id in a provisional code column.
const NONE: u32 = u32::MAX;

impl<'a> Dictionary<'a> {
    /// Adds every value of the column and returns their provisional codes
    /// ([`NONE`] for nulls).
    fn insert(&mut self, column: &[&'a StringArray]) -> Vec<u32> {
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
                        let code = *self.codes.entry(v).or_insert(next);
                        if code == next {
                            self.values.push(v);
                        }
                        last = Some((v, code));
                        code
                    }
                };
                out.push(code);
            }
        }
        out
    }

    /// Provisional codes of the column's values without adding any ([`NONE`] for
    /// nulls and ids not in the dictionary).
    fn lookup(&self, column: &[&'a StringArray]) -> Vec<u32> {
        column
            .iter()
            .flat_map(|a| a.iter())
            .map(|v| v.and_then(|v| self.codes.get(v).copied()).unwrap_or(NONE))
            .collect()
    }

    /// The ids sorted, and for each provisional code its final code.
    fn finish(self) -> Sorted {
        let mut order: Vec<(&str, u32)> = self.values.iter().copied().zip(0u32..).collect();
        // Distinct keys, so the unstable sort is deterministic.
        order.par_sort_unstable();
        let mut remap = vec![NONE; order.len()];
        for (code, &(_, provisional)) in order.iter().enumerate() {
            remap[provisional as usize] = code as u32;
        }
        Sorted {
            ids: order.into_iter().map(|(v, _)| v.to_string()).collect(),
            remap,
        }
    }
}

/// A finished dictionary.
struct Sorted {
    /// The ids, ascending.
    ids: Vec<String>,
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
    let mut dict = Dictionary::default();
    let favorites = dict.insert(&strings(&inputs.favorites, |b| {
        Ok(FavoritesColumns::new(b)?.photo_id)
    })?);
    let photos = dict.lookup(&strings(&inputs.photos, |b| {
        Ok(PhotosColumns::new(b)?.photo_id)
    })?);
    let dismissals = dict.lookup(&strings(&inputs.dismissals, |b| {
        Ok(DismissalsColumns::new(b)?.photo_id)
    })?);
    Ok(PhotoCodes {
        dict: dict.finish(),
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
    let mut dict = Dictionary::default();
    let favorites = dict.insert(&strings(&inputs.favorites, |b| {
        Ok(FavoritesColumns::new(b)?.user_id)
    })?);
    let favorite_owners = dict.insert(&strings(&inputs.favorites, |b| {
        Ok(FavoritesColumns::new(b)?.owner_id)
    })?);
    let photo_owners = dict.insert(&strings(&inputs.photos, |b| {
        Ok(PhotosColumns::new(b)?.owner_id)
    })?);
    let tracked = dict.insert(&strings(&inputs.tracked_users, |b| {
        Ok(TrackedUsersColumns::new(b)?.user_id)
    })?);
    let contacts = (
        dict.insert(&strings(&inputs.contacts, |b| {
            Ok(ContactsColumns::new(b)?.user_id)
        })?),
        dict.insert(&strings(&inputs.contacts, |b| {
            Ok(ContactsColumns::new(b)?.contact_id)
        })?),
    );
    let dismissals = (
        dict.insert(&strings(&inputs.dismissals, |b| {
            Ok(DismissalsColumns::new(b)?.user_id)
        })?),
        dict.insert(&strings(&inputs.dismissals, |b| {
            Ok(DismissalsColumns::new(b)?.dismissed_user_id)
        })?),
    );
    Ok(UserCodes {
        dict: dict.finish(),
        favorites,
        favorite_owners,
        photo_owners,
        tracked,
        contacts,
        dismissals,
    })
}

/// Builds the integer graph. With `all_users`, every user with a favourite is a
/// target; otherwise the tracked users are. Runs on the current Rayon pool.
pub fn prepare(inputs: &Inputs, all_users: bool) -> Result<(Graph, PrepareStats), ScoreError> {
    let clock = std::time::Instant::now();
    let lap = |what: &str| {
        tracing::debug!(
            step = what,
            ms = clock.elapsed().as_millis() as u64,
            "prepare"
        )
    };
    if inputs.favorites.iter().all(|b| b.num_rows() == 0) {
        return Err(ScoreError::NoFavorites);
    }
    let (photo, user) = rayon::join(|| photo_codes(inputs), || user_codes(inputs));
    let (photo, user) = (photo?, user?);
    let n_users = user.dict.ids.len();
    let n_photos = photo.dict.ids.len();
    lap("dictionaries");

    // Favourites: every raw row's (user, photo) pair; from_pairs sorts (a no-op
    // walk when the table is stored sorted) and drops duplicates.
    let favorites_csr = Csr::from_pairs(
        n_users,
        user.favorites
            .iter()
            .zip(&photo.favorites)
            .filter_map(|(&u, &p)| Some((user.dict.get(u)?, photo.dict.get(p)?)))
            .collect(),
    );
    let favoriters = favorites_csr.transpose(n_photos);
    lap("csr");

    // A photo has one owner. Every owner the data states counts (any favourites row,
    // and the photos table); if they disagree the smallest id wins, so the choice
    // does not depend on row order.
    let mut owner = vec![NO_OWNER; n_photos];
    let claims = photo
        .favorites
        .iter()
        .zip(&user.favorite_owners)
        .chain(photo.photos.iter().zip(&user.photo_owners));
    for (&p, &o) in claims {
        if let (Some(p), Some(o)) = (photo.dict.get(p), user.dict.get(o)) {
            owner[p as usize] = owner[p as usize].min(o);
        }
    }
    let without_owner = favorites_csr
        .values
        .iter()
        .filter(|&&p| owner[p as usize] == NO_OWNER)
        .count() as u64;
    lap("owners");

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

    #[test]
    fn csr_transpose_lists_rows_per_value_sorted() {
        let csr = Csr::from_pairs(3, vec![(2, 0), (0, 1), (0, 0), (1, 1), (0, 1)]);
        assert_eq!(csr.row(0), &[0, 1]);
        assert_eq!(csr.row(1), &[1]);
        assert_eq!(csr.row(2), &[0]);
        let t = csr.transpose(2);
        assert_eq!(t.row(0), &[0, 2]);
        assert_eq!(t.row(1), &[0, 1]);
    }
}
