//! Preparation: raw tables in, an integer graph out.
//!
//! Polars does the table work: favourites are deduplicated, owners missing from
//! `favorites` are filled from `photos` by a join, and every NSID and photo id is
//! dictionary-encoded by joining against its sorted distinct values. Because the
//! dictionaries are sorted, integer order equals string order, so "id ascending" tie
//! breaks can compare integers, and the favourites (sorted by user then photo) come
//! out already in CSR order.

use arrow_array::RecordBatch;
use polars::prelude::{
    DataFrame, DataFrameJoinOps, IntoColumn, JoinArgs, JoinType, MaintainOrderJoin, NamedFrom,
    PlSmallStr, Series, SortOptions,
};

use crate::frame::{FrameError, batches_to_frame};
use crate::import::dedupe_sorted;
use crate::model::{Table, col};

use super::ScoreError;

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
}

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

fn frame(batches: &[RecordBatch], table: Table) -> Result<DataFrame, FrameError> {
    batches_to_frame(batches, &table.schema())
}

fn str_column(df: &DataFrame, name: &str, alias: &str) -> Result<Series, FrameError> {
    Ok(df
        .column(name)?
        .as_materialized_series()
        .clone()
        .with_name(PlSmallStr::from_str(alias)))
}

/// Sorted distinct non-null values of the given string series, with their index.
fn dictionary(parts: Vec<Series>) -> Result<(DataFrame, Vec<String>), FrameError> {
    let mut all = Series::new(PlSmallStr::from_static("id"), Vec::<&str>::new());
    // Distinct values per part first: each part has far fewer distinct ids than
    // rows, so the concatenation stays small.
    for p in parts {
        all.append(&p.drop_nulls().unique()?)?;
    }
    let sorted = all
        .drop_nulls()
        .unique()?
        .sort(SortOptions::default().with_maintain_order(true))?;
    let ids: Vec<String> = sorted.str()?.iter().flatten().map(str::to_string).collect();
    let df = DataFrame::new_infer_height(vec![sorted.into_column()])?
        .with_row_index(PlSmallStr::from_static("idx"), None)?;
    Ok((df, ids))
}

/// Replaces each value of `df[column]` by its index in `dict` (null when absent or
/// null). A left join that keeps the left order, so row i maps to output i.
fn encode(df: &DataFrame, column: &str, dict: &DataFrame) -> Result<Vec<Option<u32>>, FrameError> {
    let left = DataFrame::new_infer_height(vec![
        df.column(column)?
            .clone()
            .with_name(PlSmallStr::from_static("key")),
    ])?;
    let mut args = JoinArgs::new(JoinType::Left);
    args.maintain_order = MaintainOrderJoin::Left;
    let joined = left.join(dict, ["key"], ["id"], args, None)?;
    Ok(joined.column("idx")?.idx()?.iter().collect())
}

/// Like [`encode`], for a column sorted ascending: walks the column and the sorted
/// dictionary together, searching the dictionary only where the value changes, so
/// no row is hashed.
fn encode_sorted(
    df: &DataFrame,
    column: &str,
    ids: &[String],
) -> Result<Vec<Option<u32>>, FrameError> {
    let values = df.column(column)?.str()?;
    let mut out = Vec::with_capacity(values.len());
    let mut last: Option<(&str, Option<u32>)> = None;
    let mut from = 0usize;
    for v in values.iter() {
        let code = match (v, last) {
            (None, _) => None,
            (Some(v), Some((l, code))) if l == v => code,
            (Some(v), _) => {
                // Out of order after all: search the whole dictionary again.
                if last.is_some_and(|(l, _)| v < l) {
                    from = 0;
                }
                let at = from + ids[from..].partition_point(|x| x.as_str() < v);
                let code = (ids.get(at).map(String::as_str) == Some(v)).then_some(at as u32);
                from = at;
                last = Some((v, code));
                code
            }
        };
        out.push(code);
    }
    Ok(out)
}

fn pairs(a: Vec<Option<u32>>, b: Vec<Option<u32>>) -> Vec<(u32, u32)> {
    a.into_iter()
        .zip(b)
        .filter_map(|(x, y)| Some((x?, y?)))
        .collect()
}

/// True when the favourites batches are in strictly increasing (user_id, photo_id)
/// order, i.e. sorted and free of duplicates.
fn sorted_unique(batches: &[RecordBatch]) -> bool {
    use arrow_array::cast::AsArray;
    let mut last: Option<(&str, &str)> = None;
    for b in batches {
        let (u, p) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let key = (u.value(i), p.value(i));
            if last.is_some_and(|l| l >= key) {
                return false;
            }
            last = Some(key);
        }
    }
    true
}

/// Builds the integer graph. With `all_users`, every user with a favourite is a
/// target; otherwise the tracked users are.
pub fn prepare(inputs: &Inputs, all_users: bool) -> Result<(Graph, PrepareStats), ScoreError> {
    let clock = std::time::Instant::now();
    let lap = |what: &str| {
        tracing::debug!(
            step = what,
            ms = clock.elapsed().as_millis() as u64,
            "prepare"
        )
    };
    let raw_favorites = frame(&inputs.favorites, Table::Favorites)?;
    // Every writer stores raw tables sorted and unique by key; checking that is a
    // linear scan, much cheaper than the hash-and-sort that fixes it when it is not
    // so (a hand-made file).
    let already = sorted_unique(&inputs.favorites);
    let mut favorites = if already {
        raw_favorites.clone()
    } else {
        dedupe_sorted(&raw_favorites, Table::Favorites)?
    };
    // Sorted by user_id either way: telling Polars lets unique() take its linear
    // fast path instead of hashing 1M strings.
    let mut users_sorted = favorites
        .column(col::USER_ID)?
        .as_materialized_series()
        .clone();
    users_sorted.set_sorted_flag(polars::series::IsSorted::Ascending);
    favorites.replace(col::USER_ID, users_sorted.into_column())?;
    lap("favorites");
    if favorites.height() == 0 {
        return Err(ScoreError::NoFavorites);
    }
    let photos = frame(&inputs.photos, Table::Photos)?;
    let contacts = frame(&inputs.contacts, Table::Contacts)?;
    let tracked = frame(&inputs.tracked_users, Table::TrackedUsers)?;
    let dismissals = frame(&inputs.dismissals, Table::Dismissals)?;

    let (user_dict, user_ids) = dictionary(vec![
        str_column(&favorites, col::USER_ID, "id")?,
        str_column(&raw_favorites, col::OWNER_ID, "id")?,
        str_column(&photos, col::OWNER_ID, "id")?,
        str_column(&tracked, col::USER_ID, "id")?,
        str_column(&contacts, col::USER_ID, "id")?,
        str_column(&contacts, col::CONTACT_ID, "id")?,
        str_column(&dismissals, col::USER_ID, "id")?,
        str_column(&dismissals, col::DISMISSED_USER_ID, "id")?,
    ])?;
    let (photo_dict, photo_ids) = dictionary(vec![str_column(&favorites, col::PHOTO_ID, "id")?])?;
    let n_users = user_ids.len();
    let n_photos = photo_ids.len();
    lap("dictionaries");

    // Favourites are sorted by user_id (checked or made so above).
    let fav_user = encode_sorted(&favorites, col::USER_ID, &user_ids)?;
    let fav_photo = encode(&favorites, col::PHOTO_ID, &photo_dict)?;
    // Owners come from every raw row: deduplicating may have dropped the one row of
    // a photo that stated its owner.
    let (raw_photo, raw_owner) = if already {
        (
            fav_photo.clone(),
            encode(&favorites, col::OWNER_ID, &user_dict)?,
        )
    } else {
        (
            encode(&raw_favorites, col::PHOTO_ID, &photo_dict)?,
            encode(&raw_favorites, col::OWNER_ID, &user_dict)?,
        )
    };
    lap("encode favorites");

    // A photo has one owner. Every owner the data states counts (any favourites row,
    // and the photos table); if they disagree the smallest id wins, so the choice
    // does not depend on row order.
    let mut owner = vec![NO_OWNER; n_photos];
    let mut claim = |p: Option<u32>, o: Option<u32>| {
        if let (Some(p), Some(o)) = (p, o) {
            owner[p as usize] = owner[p as usize].min(o);
        }
    };
    for (p, o) in raw_photo.into_iter().zip(raw_owner) {
        claim(p, o);
    }
    let photo_photo = encode(&photos, col::PHOTO_ID, &photo_dict)?;
    let photo_owner = encode(&photos, col::OWNER_ID, &user_dict)?;
    for (p, o) in photo_photo.into_iter().zip(photo_owner) {
        claim(p, o);
    }
    let without_owner = fav_photo
        .iter()
        .filter(|p| p.is_none_or(|p| owner[p as usize] == NO_OWNER))
        .count() as u64;
    if owner.iter().all(|&o| o == NO_OWNER) {
        return Err(ScoreError::NoOwners);
    }
    lap("owners");

    let favorites_csr = Csr::from_pairs(n_users, pairs(fav_user, fav_photo));
    let favoriters = favorites_csr.transpose(n_photos);
    lap("csr");

    let contacts_csr = Csr::from_pairs(
        n_users,
        pairs(
            encode(&contacts, col::USER_ID, &user_dict)?,
            encode(&contacts, col::CONTACT_ID, &user_dict)?,
        ),
    );
    let dismissed_by = encode(&dismissals, col::USER_ID, &user_dict)?;
    let dismissed_photos = Csr::from_pairs(
        n_users,
        pairs(
            dismissed_by.clone(),
            encode(&dismissals, col::PHOTO_ID, &photo_dict)?,
        ),
    );
    let dismissed_users = Csr::from_pairs(
        n_users,
        pairs(
            dismissed_by,
            encode(&dismissals, col::DISMISSED_USER_ID, &user_dict)?,
        ),
    );

    let mut targets: Vec<u32> = if all_users {
        (0..n_users as u32)
            .filter(|&u| !favorites_csr.row(u).is_empty())
            .collect()
    } else {
        encode(&tracked, col::USER_ID, &user_dict)?
            .into_iter()
            .flatten()
            .collect()
    };
    targets.sort_unstable();
    targets.dedup();
    if targets.is_empty() {
        return Err(ScoreError::NoTargets { all_users });
    }

    let stats = PrepareStats {
        favorites: favorites.height() as u64,
        favorites_without_owner: without_owner,
        users: n_users as u64,
        photos: n_photos as u64,
        targets: targets.len() as u64,
    };
    Ok((
        Graph {
            user_ids,
            photo_ids,
            favorites: favorites_csr,
            favoriters,
            owner,
            contacts: contacts_csr,
            dismissed_photos,
            dismissed_users,
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
