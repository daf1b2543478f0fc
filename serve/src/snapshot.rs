//! The published run, loaded into memory.
//!
//! A [`Snapshot`] holds one run's lists keyed by user, ready to serialise, so a
//! request is a hash lookup and a slice. It is built completely before it replaces
//! the previous one, so a request sees one run or the other, never a mixture.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use pipeline::model::{Table, is_nsid, is_photo_id, run_table_dir};
use pipeline::runs::{Manifest, Pointer, RunStatus, current, read_manifest};
use pipeline::store::Storage;
use serde::Serialize;

/// What a list item shows of a photo: held once per photo and shared by every
/// list that contains it, so a run of millions of recs over far fewer photos
/// costs memory per photo, not per rec.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhotoCard {
    /// Flickr photo id.
    pub photo_id: String,
    /// Owner NSID, when known.
    pub owner_id: Option<String>,
    /// Owner display name, when known.
    pub owner_name: Option<String>,
    /// Title, when known.
    pub title: Option<String>,
    /// 150 px square thumbnail, when the server and secret are known.
    pub thumbnail_url: Option<String>,
    /// The photo's page on Flickr.
    pub photo_url: String,
}

/// A photo rec as the API returns it (serialised by hand below: the shared card's
/// fields appear inline).
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoItem {
    /// 1-based rank.
    pub rank: i32,
    /// The photo, shared.
    pub photo: Arc<PhotoCard>,
    /// The algorithm's score.
    pub score: f64,
    /// How many neighbors back it (photos, for `itemknn`).
    pub neighbor_count: i32,
    /// The neighbors who contributed most, best first (`flexplore`, `explore`).
    pub top_neighbors: Box<[Arc<str>]>,
    /// The user's favourites it is most similar to, best first (`itemknn`).
    pub similar_to: Box<[Arc<str>]>,
    /// When this photo was first recommended to this user.
    pub first_recommended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// First recommended in the run being served.
    pub is_new: bool,
}

/// A list of shared strings, serialised as a JSON array of strings.
struct Strs<'a>(&'a [Arc<str>]);

impl Serialize for Strs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| &**x))
    }
}

impl Serialize for PhotoItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = &*self.photo;
        let mut m = s.serialize_map(Some(13))?;
        m.serialize_entry("rank", &self.rank)?;
        m.serialize_entry("photo_id", &p.photo_id)?;
        m.serialize_entry("owner_id", &p.owner_id)?;
        m.serialize_entry("owner_name", &p.owner_name)?;
        m.serialize_entry("title", &p.title)?;
        m.serialize_entry("score", &self.score)?;
        m.serialize_entry("neighbor_count", &self.neighbor_count)?;
        m.serialize_entry("top_neighbors", &Strs(&self.top_neighbors))?;
        m.serialize_entry("similar_to", &Strs(&self.similar_to))?;
        m.serialize_entry("thumbnail_url", &p.thumbnail_url)?;
        m.serialize_entry("photo_url", &p.photo_url)?;
        m.serialize_entry("first_recommended_at", &self.first_recommended_at)?;
        m.serialize_entry("is_new", &self.is_new)?;
        m.end()
    }
}

impl std::ops::Deref for PhotoItem {
    type Target = PhotoCard;
    fn deref(&self) -> &PhotoCard {
        &self.photo
    }
}

/// Hands out one shared copy of each distinct string (NSIDs, photo ids).
#[derive(Default)]
struct Interner(std::collections::HashSet<Arc<str>>);

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

/// A photographer rec as the API returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhotographerItem {
    /// 1-based rank.
    pub rank: i32,
    /// The photographer's NSID.
    pub photographer_id: String,
    /// Display name, when known.
    pub photographer_name: Option<String>,
    /// score(n).
    pub score: f64,
    /// Favourites in common with the user.
    pub common_favorites: i64,
    /// The photographer's favourites held.
    pub total_favorites: i64,
    /// Their photostream on Flickr.
    pub photostream_url: String,
}

/// A similar photo as the API returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimilarItem {
    /// 1-based rank.
    pub rank: i32,
    /// The similar photo (its fields appear inline in the JSON).
    #[serde(flatten)]
    pub photo: PhotoCard,
    /// Similarity score.
    pub score: f64,
    /// Users who favourited both.
    pub common_favorites: i64,
    /// The measure (`cosine`, `jaccard`, `bm25`).
    pub algorithm: String,
}

/// One of a tag's most favourited photos, as the API returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TagItem {
    /// 1-based rank.
    pub rank: i32,
    /// The photo (its fields appear inline in the JSON).
    #[serde(flatten)]
    pub photo: PhotoCard,
    /// Favourites held for it.
    pub favorites: i64,
}

impl std::ops::Deref for SimilarItem {
    type Target = PhotoCard;
    fn deref(&self) -> &PhotoCard {
        &self.photo
    }
}

impl std::ops::Deref for TagItem {
    type Target = PhotoCard;
    fn deref(&self) -> &PhotoCard {
        &self.photo
    }
}

impl PhotoCard {
    /// The card of a photo listed by id, from what the run knows of it.
    fn listed(photo_id: String, info: Option<&PhotoInfo>) -> Self {
        PhotoCard {
            title: info.and_then(|i| i.title.clone()),
            owner_id: info.map(|i| i.owner_id.clone()),
            owner_name: info.and_then(|i| i.owner_name.clone()),
            thumbnail_url: info.and_then(|i| i.thumbnail_url.clone()),
            photo_url: info.map_or_else(|| photo_url(&photo_id, None), |i| i.photo_url.clone()),
            photo_id,
        }
    }
}

/// What a run knows about a photo.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhotoInfo {
    /// Photo id.
    pub photo_id: String,
    /// Owner NSID.
    pub owner_id: String,
    /// Owner display name.
    pub owner_name: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Thumbnail.
    pub thumbnail_url: Option<String>,
    /// The photo's page on Flickr.
    pub photo_url: String,
    /// Its tags (lower-cased), as the `photos` table lists them.
    pub tags: Vec<String>,
}

/// One user's lists.
#[derive(Debug, Clone, Default)]
pub struct UserLists {
    /// Photo recs in rank order, one list per algorithm, in the order of
    /// [`Snapshot::algorithms`].
    pub photos: Vec<Vec<PhotoItem>>,
    /// Photographer recs in rank order.
    pub photographers: Vec<PhotographerItem>,
    /// The JSON of the default photos page (first algorithm), serialised once at
    /// load: most requests ask for exactly that.
    pub default_photos: axum::body::Bytes,
    /// Likewise for photographers.
    pub default_photographers: axum::body::Bytes,
}

/// One loaded run.
#[derive(Debug)]
pub struct Snapshot {
    /// The run's manifest.
    pub manifest: Manifest,
    /// When it was published.
    pub published_at: chrono::DateTime<chrono::Utc>,
    /// `W/"<run_id>"`, built once: the validator of every response that depends
    /// only on the run.
    pub etag: Option<axum::http::HeaderValue>,
    /// Lists by user NSID.
    pub users: HashMap<String, UserLists>,
    /// The per-user algorithms in the run, in display order (the run's
    /// `score.algorithms`); what `algorithm=` is checked against.
    pub algorithms: Vec<String>,
    /// The run's offline-evaluation metrics (empty when it was not evaluated).
    pub metrics: Vec<MetricRow>,
    /// Similar photos by photo id, rank order.
    pub similar: HashMap<String, Vec<SimilarItem>>,
    /// Photos the run knows, by id.
    pub photos: HashMap<String, PhotoInfo>,
    /// The most favourited photos per tag, rank order.
    pub tags: HashMap<String, Vec<TagItem>>,
    /// Tracked users of the run: NSID → username.
    pub tracked: HashMap<String, Option<String>>,
    /// Lower-cased username → NSID, for lookups.
    by_username: HashMap<String, String>,
}

/// One row of the run's `metrics` table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricRow {
    /// The algorithm.
    pub algorithm: String,
    /// The cut-off.
    pub k: i32,
    /// Users evaluated.
    pub users_evaluated: i64,
    /// Mean precision@k.
    pub precision: f64,
    /// Mean recall@k.
    pub recall: f64,
    /// Mean nDCG@k.
    pub ndcg: f64,
    /// MAP@k.
    pub map: f64,
    /// Hit rate@k.
    pub hit_rate: f64,
    /// Catalogue coverage@k.
    pub coverage: f64,
}

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

struct PhotoMeta {
    tags: Vec<String>,
    owner_id: String,
    owner_name: Option<String>,
    title: Option<String>,
    server: Option<String>,
    secret: Option<String>,
}

/// Thumbnail URL parts come from data, so they are checked before they are
/// placed in a URL: a server is digits, a secret is hex.
pub fn thumbnail_url(photo_id: &str, server: Option<&str>, secret: Option<&str>) -> Option<String> {
    let server = server
        .filter(|s| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))?;
    let secret = secret
        .filter(|s| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
    is_photo_id(photo_id)
        .then(|| format!("https://live.staticflickr.com/{server}/{photo_id}_{secret}_q.jpg"))
}

/// The photo's Flickr page.
pub fn photo_url(photo_id: &str, owner_id: Option<&str>) -> String {
    match owner_id.filter(|o| is_nsid(o)) {
        Some(owner) => format!("https://www.flickr.com/photos/{owner}/{photo_id}"),
        None => format!("https://www.flickr.com/photo.gne?id={photo_id}"),
    }
}

fn str_at(batch: &RecordBatch, col: usize, row: usize) -> Option<String> {
    let a = batch.column(col).as_string::<i32>();
    (!a.is_null(row)).then(|| a.value(row).to_string())
}

impl Snapshot {
    /// The position of `algorithm` in [`Snapshot::algorithms`] (the first when
    /// `None`), or `None` when the run does not have it.
    pub fn algorithm_index(&self, algorithm: Option<&str>) -> Option<usize> {
        match algorithm {
            None => (!self.algorithms.is_empty()).then_some(0),
            Some(a) => self.algorithms.iter().position(|x| x == a),
        }
    }

    /// Loads a succeeded run completely.
    pub async fn load(storage: &Storage, pointer: &Pointer) -> Result<Self, LoadError> {
        let run_id = pointer.run_id.clone();
        let fail = |reason: String| LoadError::Run {
            run_id: run_id.clone(),
            reason,
        };
        let manifest = read_manifest(storage, &run_id)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if manifest.status != RunStatus::Succeeded {
            return Err(fail(format!(
                "status is {}, not succeeded",
                manifest.status
            )));
        }
        let read = |table: Table| {
            let dir = run_table_dir(&run_id, table);
            async move { storage.read_table_dir(&dir, table).await }
        };
        let photos = read(Table::Photos).await.map_err(|e| fail(e.to_string()))?;
        let photo_recs = read(Table::PhotoRecs)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let photographer_recs = read(Table::PhotographerRecs)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let tracked_rows = read(Table::TrackedUsers)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let similar_rows = read(Table::SimilarPhotos)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let tag_rows = read(Table::TagPhotos)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let first_rows = read(Table::FirstRecommended)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let metric_rows = read(Table::Metrics)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut metrics = Vec::new();
        for b in &metric_rows {
            let f = |c: usize| b.column(c).as_primitive::<Float64Type>();
            let (k, users) = (
                b.column(1).as_primitive::<Int32Type>(),
                b.column(2).as_primitive::<Int64Type>(),
            );
            for r in 0..b.num_rows() {
                let Some(algorithm) = str_at(b, 0, r) else {
                    continue;
                };
                metrics.push(MetricRow {
                    algorithm,
                    k: k.value(r),
                    users_evaluated: users.value(r),
                    precision: f(3).value(r),
                    recall: f(4).value(r),
                    ndcg: f(5).value(r),
                    map: f(6).value(r),
                    hit_rate: f(7).value(r),
                    coverage: f(8).value(r),
                });
            }
        }
        // Display order: the run's configured algorithms, then any other found in
        // the rows (a hand-made run), by name.
        let mut algorithms: Vec<String> = manifest
            .config
            .score
            .algorithms
            .iter()
            .map(|a| a.name().to_string())
            .collect();
        let mut found: Vec<String> = Vec::new();
        for b in &photo_recs {
            let a = b.column(8).as_string::<i32>();
            for r in 0..b.num_rows() {
                if !a.is_null(r)
                    && !algorithms.iter().any(|x| x == a.value(r))
                    && !found.iter().any(|x| x == a.value(r))
                {
                    found.push(a.value(r).to_string());
                }
            }
        }
        found.sort();
        algorithms.extend(found);
        // Ids are interned while loading: every NSID and photo id is held once.
        let mut names_pool = Interner::default();
        let mut first: HashMap<(Arc<str>, Arc<str>), (i64, bool)> = HashMap::new();
        for b in &first_rows {
            let t = b
                .column(2)
                .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
            let (u, p, run) = (
                b.column(0).as_string::<i32>(),
                b.column(1).as_string::<i32>(),
                b.column(3).as_string::<i32>(),
            );
            for r in 0..b.num_rows() {
                if u.is_null(r) || p.is_null(r) || run.is_null(r) {
                    continue;
                }
                first.insert(
                    (names_pool.get(u.value(r)), names_pool.get(p.value(r))),
                    (t.value(r), run.value(r) == run_id),
                );
            }
        }
        let mut tracked = HashMap::new();
        let mut by_username = HashMap::new();
        for b in &tracked_rows {
            for r in 0..b.num_rows() {
                let Some(id) = str_at(b, 0, r) else { continue };
                let name = str_at(b, 1, r);
                if let Some(n) = &name {
                    by_username
                        .entry(n.to_lowercase())
                        .or_insert_with(|| id.clone());
                }
                tracked.insert(id, name);
            }
        }

        let mut meta: HashMap<String, PhotoMeta> = HashMap::new();
        let mut names: HashMap<String, String> = HashMap::new();
        for b in &photos {
            for r in 0..b.num_rows() {
                let (Some(id), Some(owner)) = (str_at(b, 0, r), str_at(b, 1, r)) else {
                    continue;
                };
                let owner_name = str_at(b, 2, r);
                if let Some(n) = &owner_name {
                    names.entry(owner.clone()).or_insert_with(|| n.clone());
                }
                let tags = str_at(b, 6, r)
                    .map(|t| t.split_whitespace().map(str::to_lowercase).collect())
                    .unwrap_or_default();
                meta.insert(
                    id,
                    PhotoMeta {
                        tags,
                        owner_id: owner,
                        owner_name,
                        title: str_at(b, 3, r),
                        server: str_at(b, 4, r),
                        secret: str_at(b, 5, r),
                    },
                );
            }
        }

        let mut users: HashMap<String, UserLists> = HashMap::new();
        let mut cards: HashMap<String, Arc<PhotoCard>> = HashMap::new();
        for b in &photo_recs {
            let rank = b.column(1).as_primitive::<Int32Type>();
            let score = b.column(4).as_primitive::<Float64Type>();
            let count = b.column(5).as_primitive::<Int32Type>();
            let top = b.column(6).as_list::<i32>();
            let because = b.column(7).as_list::<i32>();
            let (users_col, photos_col) = (
                b.column(0).as_string::<i32>(),
                b.column(2).as_string::<i32>(),
            );
            let algorithm_col = b.column(8).as_string::<i32>();
            for r in 0..b.num_rows() {
                if users_col.is_null(r) || photos_col.is_null(r) || algorithm_col.is_null(r) {
                    continue;
                }
                let (user, photo_id) = (users_col.value(r), photos_col.value(r));
                let Some(slot) = algorithms.iter().position(|a| a == algorithm_col.value(r)) else {
                    continue;
                };
                let card = match cards.get(photo_id) {
                    Some(c) => c.clone(),
                    None => {
                        let owner_id = str_at(b, 3, r);
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
                    let list = list.as_string::<i32>();
                    list.iter().flatten().map(|s| names_pool.get(s)).collect()
                };
                let top_neighbors = interned(top.value(r));
                let similar_to = interned(because.value(r));
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
                    rank: rank.value(r),
                    photo: card,
                    score: score.value(r),
                    neighbor_count: count.value(r),
                    top_neighbors,
                    similar_to,
                });
            }
        }
        for b in &photographer_recs {
            let rank = b.column(1).as_primitive::<Int32Type>();
            let score = b.column(3).as_primitive::<Float64Type>();
            let common = b.column(4).as_primitive::<Int64Type>();
            let total = b.column(5).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                let (Some(user), Some(who)) = (str_at(b, 0, r), str_at(b, 2, r)) else {
                    continue;
                };
                users
                    .entry(user)
                    .or_default()
                    .photographers
                    .push(PhotographerItem {
                        rank: rank.value(r),
                        photographer_name: names.get(&who).cloned(),
                        photostream_url: format!("https://www.flickr.com/photos/{who}/"),
                        photographer_id: who,
                        score: score.value(r),
                        common_favorites: common.value(r),
                        total_favorites: total.value(r),
                    });
            }
        }
        let infos: HashMap<String, PhotoInfo> = meta
            .iter()
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
            .collect();
        let mut similar: HashMap<String, Vec<SimilarItem>> = HashMap::new();
        for b in &similar_rows {
            let rank = b.column(1).as_primitive::<Int32Type>();
            let score = b.column(3).as_primitive::<Float64Type>();
            let common = b.column(4).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                let (Some(p), Some(q), Some(alg)) =
                    (str_at(b, 0, r), str_at(b, 2, r), str_at(b, 5, r))
                else {
                    continue;
                };
                let info = infos.get(&q);
                similar.entry(p).or_default().push(SimilarItem {
                    rank: rank.value(r),
                    score: score.value(r),
                    common_favorites: common.value(r),
                    algorithm: alg,
                    photo: PhotoCard::listed(q, info),
                });
            }
        }
        for list in similar.values_mut() {
            list.sort_by_key(|s| s.rank);
        }
        let mut tags: HashMap<String, Vec<TagItem>> = HashMap::new();
        for b in &tag_rows {
            let rank = b.column(1).as_primitive::<Int32Type>();
            let favorites = b.column(3).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                let (Some(tag), Some(p)) = (str_at(b, 0, r), str_at(b, 2, r)) else {
                    continue;
                };
                let info = infos.get(&p);
                tags.entry(tag).or_default().push(TagItem {
                    rank: rank.value(r),
                    favorites: favorites.value(r),
                    photo: PhotoCard::listed(p, info),
                });
            }
        }
        for list in tags.values_mut() {
            list.sort_by_key(|t| t.rank);
        }
        // Tables are written in rank order; sort anyway so a hand-made run with
        // several files still serves ranks in order.
        let w = crate::api::default_window();
        let first = algorithms.first().map_or("flexplore", String::as_str);
        for (user, lists) in users.iter_mut() {
            lists.photos.resize(algorithms.len(), Vec::new());
            for list in &mut lists.photos {
                list.sort_by_key(|p| p.rank);
            }
            lists.photographers.sort_by_key(|p| p.rank);
            let default = lists.photos.first().map_or(&[][..], Vec::as_slice);
            lists.default_photos = crate::api::page_json(&run_id, user, first, &w, default).into();
            lists.default_photographers =
                crate::api::page_json(&run_id, user, "flexplore", &w, &lists.photographers).into();
        }
        Ok(Snapshot {
            manifest,
            published_at: pointer.published_at,
            users,
            tracked,
            by_username,
            algorithms,
            metrics,
            etag: axum::http::HeaderValue::from_str(&format!("W/\"{run_id}\"")).ok(),
            similar,
            photos: infos,
            tags,
        })
    }

    /// Finds a tracked user from what a person pastes: a Flickr photostream or
    /// profile URL, an NSID, or a username / path alias. Nothing is fetched: only
    /// the users held in the run can be found.
    pub fn lookup(&self, query: &str) -> Option<&str> {
        let q = query.trim();
        let key = match q.split_once("flickr.com/") {
            Some((_, rest)) => {
                let mut parts = rest.split('/');
                match parts.next() {
                    Some("photos") | Some("people") => parts.next().unwrap_or(""),
                    _ => "",
                }
            }
            None => q,
        };
        let key = key.split(['?', '#']).next().unwrap_or("");
        if let Some((id, _)) = self.tracked.get_key_value(key) {
            return Some(id.as_str());
        }
        if let Some((id, _)) = self.users.get_key_value(key) {
            return Some(id.as_str());
        }
        self.by_username
            .get(&key.to_lowercase())
            .map(String::as_str)
    }

    /// Seconds since the run was published.
    pub fn age_seconds(&self) -> i64 {
        (chrono::Utc::now() - self.published_at)
            .num_seconds()
            .max(0)
    }
}

/// Shared state: the storage and the snapshot being served.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Where runs are read from.
    pub storage: Storage,
    /// The loaded run; `None` until the first load succeeds.
    current: Arc<RwLock<Option<Arc<Snapshot>>>>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<crate::http::Metrics>,
}

impl AppState {
    /// State with nothing loaded yet.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            current: Arc::new(RwLock::new(None)),
            metrics: Arc::new(crate::http::Metrics::default()),
        }
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn swap(&self, snapshot: Snapshot) {
        let new = Some(Arc::new(snapshot));
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Loads the published run if it differs from the one being served. On any
    /// failure the current snapshot keeps serving and the error is returned.
    pub async fn refresh(&self) -> Result<Option<String>, LoadError> {
        let pointer = current(&self.storage).await.map_err(|e| LoadError::Run {
            run_id: "CURRENT".into(),
            reason: e.to_string(),
        })?;
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        if self
            .snapshot()
            .is_some_and(|s| s.manifest.run_id == pointer.run_id)
        {
            return Ok(None);
        }
        let snapshot = Snapshot::load(&self.storage, &pointer).await?;
        let run_id = snapshot.manifest.run_id.clone();
        self.swap(snapshot);
        Ok(Some(run_id))
    }
}
