//! What the service answers, item by item: the JSON of one entry of a list.
//! The layout stores each item already serialised, and the service's OpenAPI
//! document derives its schemas from these same types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{is_nsid, is_photo_id};

/// What a user's list is of (the first fields of its page).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct UserList {
    /// The user.
    pub user_id: String,
    /// The algorithm that made the list.
    pub algorithm: String,
}

/// What a list item shows of a photo (its fields appear inline in the item).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
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

/// A photo rec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PhotoItem {
    /// 1-based rank.
    pub rank: i32,
    /// The photo (its fields appear inline in the JSON).
    #[serde(flatten)]
    pub photo: PhotoCard,
    /// The algorithm's score.
    pub score: f64,
    /// How many neighbors back it (photos, for `itemknn`).
    pub neighbor_count: i32,
    /// The neighbors who contributed most, best first (`flexplore`, `explore`).
    pub top_neighbors: Vec<String>,
    /// The user's favourites it is most similar to, best first (`itemknn`).
    pub similar_to: Vec<String>,
    /// When this photo was first recommended to this user.
    pub first_recommended_at: Option<DateTime<Utc>>,
    /// First recommended in the run being served.
    pub is_new: bool,
    /// A popular photo filling the list of a user with too few favourites for
    /// recommendations of their own (the page says so).
    pub fallback: bool,
}

/// A photographer rec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
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

/// A similar photo.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
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

/// One of a tag's most favourited photos.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TagItem {
    /// 1-based rank.
    pub rank: i32,
    /// The photo (its fields appear inline in the JSON).
    #[serde(flatten)]
    pub photo: PhotoCard,
    /// Favourites held for it.
    pub favorites: i64,
}

/// What a run knows about a photo.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
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

macro_rules! deref_card {
    ($($t:ty),+) => {$(
        impl std::ops::Deref for $t {
            type Target = PhotoCard;
            fn deref(&self) -> &PhotoCard {
                &self.photo
            }
        }
    )+};
}
deref_card!(PhotoItem, SimilarItem, TagItem);

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
