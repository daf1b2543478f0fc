//! The published run as the service holds it: one run's lists keyed by user,
//! ready to serialise, so a request is a hash lookup and a slice. [`crate::load`]
//! builds a [`Snapshot`] completely before [`crate::state`] swaps it in, so a
//! request sees one run or the other, never a mixture.

use std::collections::HashMap;
use std::sync::Arc;

use pipeline::model::metrics::Metric;
use pipeline::model::{is_nsid, is_photo_id};
use pipeline::runs::Manifest;
use serde::Serialize;
use utoipa::ToSchema;

/// What a list item shows of a photo: held once per photo and shared by every
/// list that contains it, so a run of millions of recs over far fewer photos
/// costs memory per photo, not per rec.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
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

/// A photo rec as the API returns it (serialised through `PhotoItemJson` below:
/// the shared card's fields appear inline).
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
    /// A popular photo filling the list of a user with too little data, not a
    /// recommendation of their own.
    pub fallback: bool,
}

/// A list of shared strings, serialised as a JSON array of strings.
struct Strs<'a>(&'a [Arc<str>]);

impl Serialize for Strs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| &**x))
    }
}

/// A [`PhotoItem`] as the API writes it, the shared card's fields inline. Its
/// derived schema is the one the OpenAPI document gives for `PhotoItem`, so the
/// document and the JSON come from one definition.
#[derive(Serialize, ToSchema)]
#[schema(as = PhotoItem)]
struct PhotoItemJson<'a> {
    /// 1-based rank.
    rank: i32,
    /// Flickr photo id.
    photo_id: &'a str,
    /// Owner NSID, when known.
    owner_id: Option<&'a str>,
    /// Owner display name, when known.
    owner_name: Option<&'a str>,
    /// Title, when known.
    title: Option<&'a str>,
    /// The algorithm's score.
    score: f64,
    /// How many neighbors back it (photos, for `itemknn`).
    neighbor_count: i32,
    /// The neighbors who contributed most, best first (`flexplore`, `explore`).
    #[schema(value_type = Vec<String>)]
    top_neighbors: Strs<'a>,
    /// The user's favourites it is most similar to, best first (`itemknn`).
    #[schema(value_type = Vec<String>)]
    similar_to: Strs<'a>,
    /// 150 px square thumbnail, when the server and secret are known.
    thumbnail_url: Option<&'a str>,
    /// The photo's page on Flickr.
    photo_url: &'a str,
    /// When this photo was first recommended to this user.
    first_recommended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// First recommended in the run being served.
    is_new: bool,
    /// A popular photo filling the list of a user with too few favourites for
    /// recommendations of their own (the page says so).
    fallback: bool,
}

impl Serialize for PhotoItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = &*self.photo;
        PhotoItemJson {
            rank: self.rank,
            photo_id: &p.photo_id,
            owner_id: p.owner_id.as_deref(),
            owner_name: p.owner_name.as_deref(),
            title: p.title.as_deref(),
            score: self.score,
            neighbor_count: self.neighbor_count,
            top_neighbors: Strs(&self.top_neighbors),
            similar_to: Strs(&self.similar_to),
            thumbnail_url: p.thumbnail_url.as_deref(),
            photo_url: &p.photo_url,
            first_recommended_at: self.first_recommended_at,
            is_new: self.is_new,
            fallback: self.fallback,
        }
        .serialize(s)
    }
}

impl utoipa::PartialSchema for PhotoItem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        PhotoItemJson::schema()
    }
}

impl ToSchema for PhotoItem {
    fn name() -> std::borrow::Cow<'static, str> {
        PhotoItemJson::name()
    }
}

impl std::ops::Deref for PhotoItem {
    type Target = PhotoCard;
    fn deref(&self) -> &PhotoCard {
        &self.photo
    }
}

/// A photographer rec as the API returns it.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
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
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
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
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
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
    pub fn listed(photo_id: String, info: Option<&PhotoInfo>) -> Self {
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
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
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
    pub metrics: Vec<Metric>,
    /// Similar photos by photo id, rank order.
    pub similar: HashMap<String, Vec<SimilarItem>>,
    /// Photos the run knows, by id.
    pub photos: HashMap<String, PhotoInfo>,
    /// The most favourited photos per tag, rank order.
    pub tags: HashMap<String, Vec<TagItem>>,
    /// Tracked users of the run: NSID → username.
    pub tracked: HashMap<String, Option<String>>,
    /// Lower-cased username → NSID, for lookups.
    pub by_username: HashMap<String, String>,
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

impl Snapshot {
    /// The position of `algorithm` in [`Snapshot::algorithms`] (the first when
    /// `None`), or `None` when the run does not have it.
    pub fn algorithm_index(&self, algorithm: Option<&str>) -> Option<usize> {
        match algorithm {
            None => (!self.algorithms.is_empty()).then_some(0),
            Some(a) => self.algorithms.iter().position(|x| x == a),
        }
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
