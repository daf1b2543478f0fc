//! Loading a published run into a [`Snapshot`]: the run's tables are read side by
//! side, then each is turned into the service's lists by a loader of its own.
//! Every column is read by name through `pipeline::model::columns`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use pipeline::model::Table;
use pipeline::model::arrow::{str_at, string_at, time_at};
use pipeline::model::columns::{
    ColumnError, FirstRecommendedColumns, PhotoRecsColumns, PhotographerRecsColumns, PhotosColumns,
    SimilarPhotosColumns, TagPhotosColumns, TrackedUsersColumns,
};
use pipeline::model::metrics::read_metrics;
use pipeline::model::run_table_dir;
use pipeline::runs::{Manifest, Pointer, RunStatus, read_manifest};
use pipeline::store::Storage;

use crate::page::{default_window, user_page_json};
use crate::snapshot::{
    PhotoCard, PhotoInfo, PhotoItem, PhotographerItem, SimilarItem, Snapshot, TagItem, UserLists,
    photo_url, thumbnail_url,
};

/// Why a run could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading the run failed.
    #[error("run {run_id}: {reason}")]
    Run {
        /// The run.
        run_id: String,
        /// What went wrong.
        reason: String,
    },
}

/// Hands out one shared copy of each distinct string (NSIDs, photo ids).
#[derive(Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(a.clone());
        a
    }
}

/// What the run's `photos` table says of a photo.
struct PhotoMeta {
    tags: Vec<String>,
    owner_id: String,
    owner_name: Option<String>,
    title: Option<String>,
    server: Option<String>,
    secret: Option<String>,
}

/// (user, photo) → (first recommended at, first recommended in this run).
type FirstSeen = HashMap<(Arc<str>, Arc<str>), (i64, bool)>;

/// Loads a succeeded run completely.
pub async fn load_snapshot(storage: &Storage, pointer: &Pointer) -> Result<Snapshot, LoadError> {
    let run_id = pointer.run_id.as_str();
    let fail = |reason: String| LoadError::Run {
        run_id: run_id.to_string(),
        reason,
    };
    let manifest = read_manifest(storage, run_id)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if manifest.status != RunStatus::Succeeded {
        return Err(fail(format!(
            "status is {}, not succeeded",
            manifest.status
        )));
    }
    let read = |table: Table| async move {
        storage
            .read_table_dir(&run_table_dir(run_id, table), table)
            .await
    };
    let (photos, photo_recs, photographer_recs, tracked_rows, similar_rows, tag_rows) =
        tokio::try_join!(
            read(Table::Photos),
            read(Table::PhotoRecs),
            read(Table::PhotographerRecs),
            read(Table::TrackedUsers),
            read(Table::SimilarPhotos),
            read(Table::TagPhotos),
        )
        .map_err(|e| fail(e.to_string()))?;
    let (first_rows, metric_rows) =
        tokio::try_join!(read(Table::FirstRecommended), read(Table::Metrics))
            .map_err(|e| fail(e.to_string()))?;
    build(
        manifest,
        pointer,
        Tables {
            photos,
            photo_recs,
            photographer_recs,
            tracked_rows,
            similar_rows,
            tag_rows,
            first_rows,
            metric_rows,
        },
    )
    .map_err(|e| fail(e.to_string()))
}

/// A run's tables as read.
struct Tables {
    photos: Vec<RecordBatch>,
    photo_recs: Vec<RecordBatch>,
    photographer_recs: Vec<RecordBatch>,
    tracked_rows: Vec<RecordBatch>,
    similar_rows: Vec<RecordBatch>,
    tag_rows: Vec<RecordBatch>,
    first_rows: Vec<RecordBatch>,
    metric_rows: Vec<RecordBatch>,
}

fn build(manifest: Manifest, pointer: &Pointer, t: Tables) -> Result<Snapshot, LoadError> {
    let run_id = manifest.run_id.clone();
    let column_err = |e: ColumnError| LoadError::Run {
        run_id: run_id.clone(),
        reason: e.to_string(),
    };
    let metrics = read_metrics(&t.metric_rows).map_err(column_err)?;
    let algorithms = algorithm_order(&manifest, &t.photo_recs).map_err(column_err)?;
    // Ids are interned while loading: every NSID and photo id is held once.
    let mut names_pool = Interner::default();
    let first = first_recommended(&t.first_rows, &run_id, &mut names_pool).map_err(column_err)?;
    let (tracked, by_username) = tracked_users(&t.tracked_rows).map_err(column_err)?;
    let (meta, owner_names) = photo_meta(&t.photos).map_err(column_err)?;
    let mut users: HashMap<String, UserLists> = HashMap::new();
    photo_recs(
        &t.photo_recs,
        &algorithms,
        &meta,
        &first,
        &mut names_pool,
        &mut users,
    )
    .map_err(column_err)?;
    photographer_recs(&t.photographer_recs, &owner_names, &mut users).map_err(column_err)?;
    let infos = photo_infos(&meta);
    let similar = similar_photos(&t.similar_rows, &infos).map_err(column_err)?;
    let tags = tag_photos(&t.tag_rows, &infos).map_err(column_err)?;
    finish_users(&mut users, &algorithms, &run_id).map_err(|e| LoadError::Run {
        run_id: run_id.clone(),
        reason: format!("cannot serialise a default page: {e}"),
    })?;
    Ok(Snapshot {
        etag: axum::http::HeaderValue::from_str(&format!("W/\"{run_id}\"")).ok(),
        manifest,
        published_at: pointer.published_at,
        users,
        tracked,
        by_username,
        algorithms,
        metrics,
        similar,
        photos: infos,
        tags,
    })
}

/// Display order: the run's configured algorithms, then any other found in the
/// rows (a hand-made run), by name.
fn algorithm_order(
    manifest: &Manifest,
    photo_recs: &[RecordBatch],
) -> Result<Vec<String>, ColumnError> {
    let mut algorithms: Vec<String> = manifest
        .config
        .score
        .algorithms
        .iter()
        .map(|a| a.name().to_string())
        .collect();
    let mut found: Vec<String> = Vec::new();
    for b in photo_recs {
        let a = PhotoRecsColumns::new(b)?.algorithm;
        for r in 0..b.num_rows() {
            if let Some(name) = str_at(a, r)
                && !algorithms.iter().any(|x| x == name)
                && !found.iter().any(|x| x == name)
            {
                found.push(name.to_string());
            }
        }
    }
    found.sort();
    algorithms.extend(found);
    Ok(algorithms)
}

fn first_recommended(
    batches: &[RecordBatch],
    run_id: &str,
    names_pool: &mut Interner,
) -> Result<FirstSeen, ColumnError> {
    let mut first = FirstSeen::new();
    for b in batches {
        let c = FirstRecommendedColumns::new(b)?;
        for r in 0..b.num_rows() {
            let (Some(u), Some(p), Some(run), Some(at)) = (
                str_at(c.user_id, r),
                str_at(c.photo_id, r),
                str_at(c.first_run_id, r),
                time_at(c.first_recommended_at, r),
            ) else {
                continue;
            };
            first.insert((names_pool.get(u), names_pool.get(p)), (at, run == run_id));
        }
    }
    Ok(first)
}

/// Tracked users: NSID → username, and lower-cased username → NSID.
type Tracked = (HashMap<String, Option<String>>, HashMap<String, String>);

fn tracked_users(batches: &[RecordBatch]) -> Result<Tracked, ColumnError> {
    let mut tracked = HashMap::new();
    let mut by_username = HashMap::new();
    for b in batches {
        let c = TrackedUsersColumns::new(b)?;
        for r in 0..b.num_rows() {
            let Some(id) = string_at(c.user_id, r) else {
                continue;
            };
            let name = string_at(c.username, r);
            if let Some(n) = &name {
                by_username
                    .entry(n.to_lowercase())
                    .or_insert_with(|| id.clone());
            }
            tracked.insert(id, name);
        }
    }
    Ok((tracked, by_username))
}

/// Photo metadata by id, and owner NSID → display name.
type Meta = (HashMap<String, PhotoMeta>, HashMap<String, String>);

fn photo_meta(batches: &[RecordBatch]) -> Result<Meta, ColumnError> {
    let mut meta: HashMap<String, PhotoMeta> = HashMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for b in batches {
        let c = PhotosColumns::new(b)?;
        for r in 0..b.num_rows() {
            let (Some(id), Some(owner)) = (string_at(c.photo_id, r), string_at(c.owner_id, r))
            else {
                continue;
            };
            let owner_name = string_at(c.owner_name, r);
            if let Some(n) = &owner_name {
                names.entry(owner.clone()).or_insert_with(|| n.clone());
            }
            let tags = str_at(c.tags, r)
                .map(|t| t.split_whitespace().map(str::to_lowercase).collect())
                .unwrap_or_default();
            meta.insert(
                id,
                PhotoMeta {
                    tags,
                    owner_id: owner,
                    owner_name,
                    title: string_at(c.title, r),
                    server: string_at(c.server, r),
                    secret: string_at(c.secret, r),
                },
            );
        }
    }
    Ok((meta, names))
}

fn photo_recs(
    batches: &[RecordBatch],
    algorithms: &[String],
    meta: &HashMap<String, PhotoMeta>,
    first: &FirstSeen,
    names_pool: &mut Interner,
    users: &mut HashMap<String, UserLists>,
) -> Result<(), ColumnError> {
    let mut cards: HashMap<String, Arc<PhotoCard>> = HashMap::new();
    for b in batches {
        let c = PhotoRecsColumns::new(b)?;
        for r in 0..b.num_rows() {
            let (Some(user), Some(photo_id), Some(algorithm)) = (
                str_at(c.user_id, r),
                str_at(c.photo_id, r),
                str_at(c.algorithm, r),
            ) else {
                continue;
            };
            let Some(slot) = algorithms.iter().position(|a| a == algorithm) else {
                continue;
            };
            let card = match cards.get(photo_id) {
                Some(card) => card.clone(),
                None => {
                    let owner_id = string_at(c.owner_id, r);
                    let m = meta.get(photo_id);
                    let card = Arc::new(PhotoCard {
                        photo_id: photo_id.to_string(),
                        thumbnail_url: m.and_then(|m| {
                            thumbnail_url(photo_id, m.server.as_deref(), m.secret.as_deref())
                        }),
                        photo_url: photo_url(photo_id, owner_id.as_deref()),
                        owner_name: m.and_then(|m| m.owner_name.clone()),
                        title: m.and_then(|m| m.title.clone()),
                        owner_id,
                    });
                    cards.insert(photo_id.to_string(), card.clone());
                    card
                }
            };
            let mut interned = |list: arrow_array::ArrayRef| -> Box<[Arc<str>]> {
                use arrow_array::cast::AsArray;
                list.as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(|s| names_pool.get(s))
                    .collect()
            };
            let top_neighbors = interned(c.top_neighbors.value(r));
            let similar_to = interned(c.similar_to.value(r));
            let key = (names_pool.get(user), names_pool.get(photo_id));
            let (first_at, is_new) = first.get(&key).map_or((None, false), |(t, n)| {
                (chrono::DateTime::from_timestamp_micros(*t), *n)
            });
            let lists = match users.get_mut(user) {
                Some(l) => &mut l.photos,
                None => &mut users.entry(user.to_string()).or_default().photos,
            };
            if lists.len() < algorithms.len() {
                lists.resize(algorithms.len(), Vec::new());
            }
            lists[slot].push(PhotoItem {
                first_recommended_at: first_at,
                is_new,
                // Runs written before the column existed have no fallbacks.
                fallback: c
                    .fallback
                    .is_some_and(|f| arrow_array::Array::is_valid(f, r) && f.value(r)),
                rank: c.rank.value(r),
                photo: card,
                score: c.score.value(r),
                neighbor_count: c.neighbor_count.value(r),
                top_neighbors,
                similar_to,
            });
        }
    }
    Ok(())
}

fn photographer_recs(
    batches: &[RecordBatch],
    owner_names: &HashMap<String, String>,
    users: &mut HashMap<String, UserLists>,
) -> Result<(), ColumnError> {
    for b in batches {
        let c = PhotographerRecsColumns::new(b)?;
        for r in 0..b.num_rows() {
            let (Some(user), Some(who)) =
                (string_at(c.user_id, r), string_at(c.photographer_id, r))
            else {
                continue;
            };
            users
                .entry(user)
                .or_default()
                .photographers
                .push(PhotographerItem {
                    rank: c.rank.value(r),
                    photographer_name: owner_names.get(&who).cloned(),
                    photostream_url: format!("https://www.flickr.com/photos/{who}/"),
                    photographer_id: who,
                    score: c.score.value(r),
                    common_favorites: c.common_favorites.value(r),
                    total_favorites: c.total_favorites.value(r),
                });
        }
    }
    Ok(())
}

fn photo_infos(meta: &HashMap<String, PhotoMeta>) -> HashMap<String, PhotoInfo> {
    meta.iter()
        .map(|(id, m)| {
            (
                id.clone(),
                PhotoInfo {
                    photo_id: id.clone(),
                    owner_id: m.owner_id.clone(),
                    owner_name: m.owner_name.clone(),
                    title: m.title.clone(),
                    thumbnail_url: thumbnail_url(id, m.server.as_deref(), m.secret.as_deref()),
                    photo_url: photo_url(id, Some(&m.owner_id)),
                    tags: m.tags.clone(),
                },
            )
        })
        .collect()
}

fn similar_photos(
    batches: &[RecordBatch],
    infos: &HashMap<String, PhotoInfo>,
) -> Result<HashMap<String, Vec<SimilarItem>>, ColumnError> {
    let mut similar: HashMap<String, Vec<SimilarItem>> = HashMap::new();
    for b in batches {
        let c = SimilarPhotosColumns::new(b)?;
        for r in 0..b.num_rows() {
            let (Some(p), Some(q), Some(alg)) = (
                string_at(c.photo_id, r),
                string_at(c.similar_photo_id, r),
                string_at(c.algorithm, r),
            ) else {
                continue;
            };
            let info = infos.get(&q);
            similar.entry(p).or_default().push(SimilarItem {
                rank: c.rank.value(r),
                score: c.score.value(r),
                common_favorites: c.common_favorites.value(r),
                algorithm: alg,
                photo: PhotoCard::listed(q, info),
            });
        }
    }
    for list in similar.values_mut() {
        list.sort_by_key(|s| s.rank);
    }
    Ok(similar)
}

fn tag_photos(
    batches: &[RecordBatch],
    infos: &HashMap<String, PhotoInfo>,
) -> Result<HashMap<String, Vec<TagItem>>, ColumnError> {
    let mut tags: HashMap<String, Vec<TagItem>> = HashMap::new();
    for b in batches {
        let c = TagPhotosColumns::new(b)?;
        for r in 0..b.num_rows() {
            let (Some(tag), Some(p)) = (string_at(c.tag, r), string_at(c.photo_id, r)) else {
                continue;
            };
            let info = infos.get(&p);
            tags.entry(tag).or_default().push(TagItem {
                rank: c.rank.value(r),
                favorites: c.favorites.value(r),
                photo: PhotoCard::listed(p, info),
            });
        }
    }
    for list in tags.values_mut() {
        list.sort_by_key(|t| t.rank);
    }
    Ok(tags)
}

/// Sorts every list by rank (tables are written in rank order; a hand-made run
/// with several files may not be) and serialises each user's default pages.
fn finish_users(
    users: &mut HashMap<String, UserLists>,
    algorithms: &[String],
    run_id: &str,
) -> Result<(), serde_json::Error> {
    let w = default_window();
    let first = algorithms.first().map_or("flexplore", String::as_str);
    for (user, lists) in users.iter_mut() {
        lists.photos.resize(algorithms.len(), Vec::new());
        for list in &mut lists.photos {
            list.sort_by_key(|p| p.rank);
        }
        lists.photographers.sort_by_key(|p| p.rank);
        let default = lists.photos.first().map_or(&[][..], Vec::as_slice);
        lists.default_photos = user_page_json(run_id, user, first, &w, default)?.into();
        lists.default_photographers =
            user_page_json(run_id, user, "flexplore", &w, &lists.photographers)?.into();
    }
    Ok(())
}
