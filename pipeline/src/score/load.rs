//! The `load` stage: the raw tables, and the published run's
//! `first_recommended` rows that say which recs are new.
//!
//! A run reads every raw table whole, unless every table it writes can be
//! made from its targets' neighbourhood ([`neighbourhood_suffices`]). Then it
//! reads only the favourites of the targets, then those of their neighbours
//! (the owners of the photos the targets favourited), the photos table's rows
//! of the photos no favourite read names an owner for (none in data pulled
//! from Flickr), and the targets' contacts and dismissals
//! ([`load_neighbourhood`]): on the 8M-favourite community with 1 000 tracked
//! users, about an eighth of the favourites. The `photos` rows of the photos
//! the run shows are read once it has made its lists (`score_into`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use polars::prelude::{InitHashMaps, PlHashMap};

use crate::config::{Settings, ShardTargetsBy};
use crate::model::algorithm::Algorithm;
use crate::model::col;
use crate::model::columns::{
    FavoritesColumns, FirstRecommendedColumns, PhotosColumns, TrackedUsersColumns,
};
use crate::model::{Table, run_table_dir};
use crate::runs::PointerState;
use crate::shard::shard_of;
use crate::store::{IdSet, Select, Storage};

use super::assign::{self, Share};
use super::error::ScoreError;
use super::prepare::{Graph, Inputs};

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

/// Which of a run's targets it scores: all of them, or one shard's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scored {
    /// An unsharded run: every target.
    All,
    /// Shard `i` of `n` of the users step: the targets whose NSID hashes to it.
    Shard(u32, u32),
}

/// Whether every table a run (or a users shard) writes can be made from the
/// favourites of its targets and of their neighbours, so that
/// [`load_neighbourhood`] may replace the whole read. Not with `--all-users`
/// (every favoriter is a target), nor with `itemknn` (it needs the
/// favoriters of the targets' photos and their favourites: two hops). An
/// unsharded run also writes `similar_photos` (two hops) and, when
/// evaluating, `metrics` (a split of every favourite), so it needs
/// `similar.enabled = false` and `evaluate.enabled = false`; a users shard
/// writes neither. (Its `tag_photos` then comes from a scan of the
/// favourites' ids, [`super::tags::scanned_tag_photos`].)
pub fn neighbourhood_suffices(settings: &Settings, all_users: bool, scored: Scored) -> bool {
    let per_user_only = !all_users && !settings.score.algorithms.contains(&Algorithm::ItemKnn);
    per_user_only
        && match scored {
            Scored::Shard(..) => true,
            Scored::All => !settings.similar.enabled && !settings.evaluate.enabled,
        }
}

/// What [`load_run_inputs`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The rows.
    pub inputs: Inputs,
    /// What was read, for the manifest and the log, when not every table.
    pub note: Option<String>,
    /// The targets a users shard scores, when it planned them by
    /// neighbourhood; otherwise it scores by NSID hash.
    pub planned: Option<Share>,
}

/// Reads what a run needs: the neighbourhood of its targets when that
/// suffices ([`neighbourhood_suffices`]) and the tracked users have a
/// neighbourhood, else every raw table. The note, for the manifest and the
/// log, says what was read.
pub async fn load_run_inputs(
    storage: &Storage,
    settings: &Settings,
    all_users: bool,
    scored: Scored,
) -> Result<Loaded, ScoreError> {
    if neighbourhood_suffices(settings, all_users, scored) {
        // `popular` and the fallbacks rank the neighbourhood of every target,
        // so a shard then reads every target's, not only its own.
        let community = settings.score.algorithms.contains(&Algorithm::Popular)
            || settings.score.fallback_below > 0;
        let pick = match scored {
            Scored::Shard(..) if community => Pick::Every,
            Scored::Shard(i, n) => match settings.score.shard_targets_by {
                ShardTargetsBy::Neighbourhood => Pick::Planned(i, n),
                ShardTargetsBy::Nsid => Pick::Hashed(i, n),
            },
            Scored::All => Pick::Every,
        };
        if let Some((inputs, read, planned)) = load_neighbourhood(storage, pick).await? {
            let mut note = format!(
                "read only the neighbourhood of the targets (the algorithms and tables configured need nothing else): the favourites of {} targets and {} neighbours ({} rows), the photos they name, and the targets' contacts and dismissals",
                read.targets, read.neighbours, read.favorites
            );
            if let Some(Share::Neighbourhood { targets, digest }) = &planned {
                note.push_str(&format!(
                    "; targets assigned to shards by neighbourhood (plan {digest}): {} here, after reading the favourites of all {} targets ({} rows) to plan",
                    targets.len(),
                    read.planned_from.0,
                    read.planned_from.1
                ));
            }
            tracing::info!(
                targets = read.targets,
                neighbours = read.neighbours,
                favorites = read.favorites,
                "read only the targets' neighbourhood"
            );
            return Ok(Loaded {
                inputs,
                note: Some(note),
                planned,
            });
        }
        tracing::info!("the targets have no neighbourhood; reading every raw table");
    }
    Ok(Loaded {
        inputs: load_inputs(storage).await?,
        ..Loaded::default()
    })
}

/// The `favorites` columns a neighbourhood read leaves undecoded (they read as
/// nulls): no table it makes uses them. `date_faved` orders the favourites
/// that evaluation hides, and an evaluating run reads every raw table.
const UNSCORED: &[&str] = &[col::DATE_FAVED];

/// Which targets' neighbourhood [`load_neighbourhood`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Every tracked user's.
    Every,
    /// Those of the tracked users whose NSID hashes to shard `i` of `n`.
    Hashed(u32, u32),
    /// Those that [`assign::plan`] gives shard `i` of `n`, from the
    /// favourites of every tracked user.
    Planned(u32, u32),
}

/// What [`load_neighbourhood`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourhoodRead {
    /// Targets whose favourites were read.
    pub targets: usize,
    /// Neighbours (not targets) whose favourites were read.
    pub neighbours: usize,
    /// Favourite rows read.
    pub favorites: usize,
    /// With [`Pick::Planned`], the targets planned and their favourite rows,
    /// read to plan; (0, 0) otherwise.
    pub planned_from: (usize, usize),
}

/// The distinct values of one string column of `batches`.
fn distinct<'a>(
    batches: &'a [arrow_array::RecordBatch],
    pick: impl Fn(
        &'a arrow_array::RecordBatch,
    ) -> Result<&'a arrow_array::StringArray, crate::model::columns::ColumnError>,
) -> Result<polars::prelude::PlHashSet<&'a str>, ScoreError> {
    let mut out = polars::prelude::PlHashSet::default();
    for b in batches {
        out.extend(pick(b)?.iter().flatten());
    }
    Ok(out)
}

/// The photos that no row of `favorites` names an owner for, but for those in
/// `except`. One pass over the owner columns' null counts when every row names
/// one.
fn unowned_photos(
    favorites: &[arrow_array::RecordBatch],
    except: &IdSet,
) -> Result<IdSet, ScoreError> {
    let mut columns = Vec::with_capacity(favorites.len());
    for b in favorites {
        let cols = FavoritesColumns::new(b)?;
        columns.push((cols.photo_id, cols.owner_id));
    }
    let mut unowned: polars::prelude::PlHashSet<&str> = Default::default();
    for (photos, owners) in &columns {
        if owners.null_count() > 0 {
            let rows = photos.iter().zip(owners.iter());
            unowned.extend(rows.filter_map(|(p, o)| p.filter(|_| o.is_none())));
        }
    }
    if !unowned.is_empty() {
        for (photos, owners) in &columns {
            for (p, o) in photos.iter().zip(owners.iter()) {
                if let (Some(p), Some(_)) = (p, o) {
                    unowned.remove(p);
                }
            }
        }
    }
    Ok(IdSet::new(
        unowned.into_iter().filter(|p| !except.contains(p)),
    ))
}

/// Reads the favourites of the tracked users `pick` picks, then those of
/// their neighbours, the `photos` rows of the photos those favourites name no
/// owner for (first the targets', to find their owners), as owner claims, and
/// the targets' contacts and dismissals. `tracked_users`
/// is read whole. `None` when there is nothing to narrow: no tracked users,
/// no favourites table, or no owner for any target's favourite (then
/// `popular` is global, which needs every favourite).
///
/// With [`Pick::Planned`] it reads every tracked user's favourites, plans
/// the targets over the shards from them ([`assign::plan`]), keeps its own
/// targets' rows, and returns the [`Share`] it scores. A shard the plan
/// leaves without targets reads no neighbours.
///
/// A photo's owner is the smallest NSID the rows read name for it. Flickr's
/// data names one owner per photo, so that is the owner a whole read finds;
/// imported rows that disagree about a photo's owner (a favourite against the
/// photos table, which is read only for photos no favourite read names an
/// owner for) can make the two reads differ for that photo.
pub async fn load_neighbourhood(
    storage: &Storage,
    pick: Pick,
) -> Result<Option<(Inputs, NeighbourhoodRead, Option<Share>)>, ScoreError> {
    let clock = std::time::Instant::now();
    let lap = |step: &str| {
        tracing::debug!(
            step,
            ms = clock.elapsed().as_millis() as u64,
            peak_rss_mib = crate::runs::peak_rss_mib(),
            rss_mib = crate::runs::rss_mib(),
            "neighbourhood read"
        )
    };
    let Some(tracked_users) = storage.read_raw(Table::TrackedUsers).await? else {
        return Ok(None);
    };
    let mut targets = {
        let tracked = distinct(&tracked_users, |b| Ok(TrackedUsersColumns::new(b)?.user_id))?;
        let keep = |user: &str| match pick {
            Pick::Hashed(i, n) => shard_of(user, n) == i,
            Pick::Every | Pick::Planned(..) => true,
        };
        Arc::new(IdSet::new(tracked.into_iter().filter(|u| keep(u))))
    };
    if targets.is_empty() {
        return Ok(None);
    }
    let mut of_targets = Select::new(col::USER_ID, targets.clone());
    let Some(mut favorites) = storage
        .read_raw_where(Table::Favorites, &of_targets.clone().skipping(UNSCORED))
        .await?
    else {
        return Ok(None);
    };
    let mut planned = None;
    let mut planned_from = (0, 0);
    if let Pick::Planned(i, n) = pick {
        let (own, digest) = planned_share(&targets, &favorites, i, n)?;
        planned_from = (targets.len(), rows(&favorites));
        let own = Arc::new(own);
        planned = Some(Share::Neighbourhood {
            targets: own.clone(),
            digest,
        });
        lap("planned");
        if own.is_empty() {
            let read = NeighbourhoodRead {
                targets: 0,
                neighbours: 0,
                favorites: rows(&favorites),
                planned_from,
            };
            let inputs = Inputs {
                favorites,
                tracked_users,
                ..Inputs::default()
            };
            return Ok(Some((inputs, read, planned)));
        }
        favorites = rows_of(favorites, &own)?;
        of_targets = Select::new(col::USER_ID, own.clone());
        targets = own;
    }
    // The owners of the targets' photos: named by the favourites, or else by
    // the photos table, whose rows for those photos are kept as owner claims.
    let mut owners: polars::prelude::PlHashSet<String> = Default::default();
    for b in &favorites {
        let cols = FavoritesColumns::new(b)?;
        owners.extend(cols.owner_id.iter().flatten().map(str::to_string));
    }
    let unowned_of_targets = Arc::new(unowned_photos(&favorites, &IdSet::default())?);
    let mut photos = Vec::new();
    if !unowned_of_targets.is_empty() {
        let select = Select::new(col::PHOTO_ID, unowned_of_targets.clone());
        photos = storage
            .read_raw_where(Table::Photos, &select)
            .await?
            .unwrap_or_default();
        for b in &photos {
            let cols = PhotosColumns::new(b)?;
            owners.extend(cols.owner_id.iter().flatten().map(str::to_string));
        }
    }
    lap("targets' favourites");
    if owners.is_empty() {
        return Ok(None);
    }
    let neighbours = Arc::new(IdSet::new(owners.iter().filter(|o| !targets.contains(o))));
    drop(owners);
    if !neighbours.is_empty() {
        let of_neighbours = Select::new(col::USER_ID, neighbours.clone()).skipping(UNSCORED);
        favorites.extend(
            storage
                .read_raw_where(Table::Favorites, &of_neighbours)
                .await?
                .unwrap_or_default(),
        );
    }
    lap("neighbours' favourites");
    // Owner claims for the other photos no favourite read names an owner for:
    // none in data pulled from Flickr, whose favourites always name one. The
    // rows of the photos a run shows are read once it knows them
    // (`score_into`).
    let unowned = unowned_photos(&favorites, &unowned_of_targets)?;
    if !unowned.is_empty() {
        let select = Select::new(col::PHOTO_ID, Arc::new(unowned));
        photos.extend(
            storage
                .read_raw_where(Table::Photos, &select)
                .await?
                .unwrap_or_default(),
        );
    }
    lap("photos");
    let contacts = storage
        .read_raw_where(Table::Contacts, &of_targets)
        .await?
        .unwrap_or_default();
    let dismissals = storage
        .read_raw_where(Table::Dismissals, &of_targets)
        .await?
        .unwrap_or_default();
    let read = NeighbourhoodRead {
        targets: targets.len(),
        neighbours: neighbours.len(),
        favorites: rows(&favorites),
        planned_from,
    };
    Ok(Some((
        Inputs {
            favorites,
            photos,
            contacts,
            tracked_users,
            dismissals,
        },
        read,
        planned,
    )))
}

/// The rows of `batches`.
fn rows(batches: &[arrow_array::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Plans every target over `n` shards from their favourites
/// ([`assign::plan`]: a favourite's user and its photo's owner are a target
/// and a neighbour) and returns shard `i`'s targets and the plan's digest.
fn planned_share(
    targets: &IdSet,
    favorites: &[arrow_array::RecordBatch],
    i: u32,
    n: u32,
) -> Result<(IdSet, String), ScoreError> {
    let mut ids: Vec<&str> = targets.iter().collect();
    ids.sort_unstable();
    let mut columns = Vec::with_capacity(favorites.len());
    for b in favorites {
        let cols = FavoritesColumns::new(b)?;
        columns.push((cols.user_id, cols.owner_id));
    }
    let named = columns
        .iter()
        .flat_map(|(users, owners)| users.iter().zip(owners.iter()))
        .filter_map(|(u, o)| Some((u?, o?)));
    let plan = assign::plan(&ids, named, n);
    let own = ids.iter().zip(&plan.shard).filter(|&(_, &s)| s == i);
    Ok((IdSet::new(own.map(|(t, _)| *t)), plan.digest))
}

/// The rows of `users` in favourites `batches`.
fn rows_of(
    batches: Vec<arrow_array::RecordBatch>,
    users: &IdSet,
) -> Result<Vec<arrow_array::RecordBatch>, ScoreError> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mask: arrow_array::BooleanArray = FavoritesColumns::new(&b)?
            .user_id
            .iter()
            .map(|u| Some(u.is_some_and(|u| users.contains(u))))
            .collect();
        let kept = arrow_select::filter::filter_record_batch(&b, &mask)
            .map_err(crate::frame::FrameError::from)?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Ok(out)
}

/// When the published run first recommended each photo it recommended to this
/// run's targets: one row per (user, photo), by graph code, looked up without
/// a string. About 16 bytes a row (it was a map of owned strings: 920 MiB
/// for the 11.7M rows of the 8M community scored for every favoriter).
#[derive(Debug, Default)]
pub struct PreviousFirst {
    /// A user code's rows are `rows[starts[u]..starts[u + 1]]`; empty when
    /// nothing was published.
    starts: Vec<usize>,
    /// By user, then photo code ascending.
    rows: Vec<Known>,
    /// The distinct run ids (a few hundred after a year of nightly runs).
    pub runs: Vec<String>,
}

/// One previous row: a photo code, its first time and an index into `runs`.
#[derive(Debug, Clone, Copy)]
struct Known {
    photo: u32,
    run: u32,
    at: i64,
}

impl PreviousFirst {
    /// Indexes the published run's `first_recommended` rows (`batches`,
    /// consumed one at a time) by `graph`'s codes, keeping the rows of its
    /// targets for photos it knows: a photo it does not know cannot be
    /// recommended again. A (user, photo) found twice (only in a hand-made
    /// table) keeps its earliest time.
    pub fn new(batches: Vec<RecordBatch>, graph: &Graph) -> Result<Self, ScoreError> {
        let mut previous = PreviousFirst::default();
        if batches.is_empty() {
            return Ok(previous);
        }
        let mut photo_codes: PlHashMap<&str, u32> = PlHashMap::with_capacity(graph.photo_ids.len());
        photo_codes.extend(
            graph
                .photo_ids
                .iter()
                .enumerate()
                .map(|(code, id)| (id, code as u32)),
        );
        let target_code = |user: &str| {
            let code = graph.user_ids.position(user)? as u32;
            graph.targets.binary_search(&code).is_ok().then_some(code)
        };
        let mut run_index: HashMap<String, u32> = HashMap::new();
        let mut keyed: Vec<(u32, Known)> = Vec::new();
        for b in batches {
            let cols = FirstRecommendedColumns::new(&b)?;
            // Rows come grouped by user, and mostly of one run: a user or a
            // run equal to the row before's is not looked up again.
            let mut last: Option<(&str, Option<u32>)> = None;
            let mut last_run: Option<(&str, u32)> = None;
            for i in 0..b.num_rows() {
                let user = cols.user_id.value(i);
                let code = match last {
                    Some((u, code)) if u == user => code,
                    _ => target_code(user),
                };
                last = Some((user, code));
                let (Some(user), Some(&photo)) = (code, photo_codes.get(cols.photo_id.value(i)))
                else {
                    continue;
                };
                let run_id = cols.first_run_id.value(i);
                let run = match last_run {
                    Some((r, at)) if r == run_id => at,
                    _ => match run_index.get(run_id) {
                        Some(&at) => at,
                        None => {
                            let at = previous.runs.len() as u32;
                            previous.runs.push(run_id.to_string());
                            run_index.insert(run_id.to_string(), at);
                            at
                        }
                    },
                };
                last_run = Some((run_id, run));
                let at = cols.first_recommended_at.value(i);
                keyed.push((user, Known { photo, run, at }));
            }
        }
        crate::sort::sort_grouped(
            &mut keyed,
            |a, b| a.0 == b.0,
            |(u, k)| (*u, k.photo, k.at, k.run),
        );
        keyed.dedup_by_key(|(u, k)| (*u, k.photo));
        previous.starts = vec![0; graph.user_ids.len() + 1];
        for (u, _) in &keyed {
            previous.starts[*u as usize + 1] += 1;
        }
        for u in 1..previous.starts.len() {
            previous.starts[u] += previous.starts[u - 1];
        }
        previous.rows = keyed.into_iter().map(|(_, k)| k).collect();
        Ok(previous)
    }

    /// When user code `user` was first recommended photo code `photo`, and
    /// in which of [`Self::runs`]; `None` if the published run did not
    /// recommend it.
    pub fn get(&self, user: u32, photo: u32) -> Option<(i64, usize)> {
        let u = user as usize;
        let rows = &self.rows[*self.starts.get(u)?..*self.starts.get(u + 1)?];
        let i = rows.binary_search_by_key(&photo, |k| k.photo).ok()?;
        Some((rows[i].at, rows[i].run as usize))
    }
}

/// The published run's `first_recommended` rows, of `users` only when given
/// (each part read with a row filter: the parts are sorted by user); empty when
/// nothing is published or the table is unreadable (every rec then counts as
/// new).
pub async fn previous_first_recommended(
    storage: &Storage,
    users: Option<Arc<IdSet>>,
) -> Result<Vec<RecordBatch>, ScoreError> {
    let pointer = match crate::runs::pointer_state(storage).await? {
        PointerState::Published(p) => p,
        PointerState::Unpublished => return Ok(Vec::new()),
        PointerState::Garbage(reason) => {
            tracing::warn!(%reason, "CURRENT is unreadable; every rec counts as new");
            return Ok(Vec::new());
        }
    };
    let table = Table::FirstRecommended;
    let dir = run_table_dir(&pointer.run_id, table);
    let read = async {
        let Some(users) = users else {
            return storage.read_table_dir(&dir, table).await;
        };
        let select = Select::new(col::USER_ID, users);
        storage.read_table_dir_where(&dir, table, &select).await
    };
    match read.await {
        Ok(batches) => Ok(batches),
        Err(e) => {
            tracing::warn!(error = %e, run = %pointer.run_id, "previous run's first_recommended unreadable; every rec counts as new");
            Ok(Vec::new())
        }
    }
}
