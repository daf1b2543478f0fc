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
    Thumbnail::of(photo_id, server, secret).map(|t| t.to_string())
}

/// The photo's Flickr page.
pub fn photo_url(photo_id: &str, owner_id: Option<&str>) -> String {
    PhotoUrl::of(photo_id, owner_id).to_string()
}

/// A photo's thumbnail URL, written out only when displayed or serialised
/// (as the string [`thumbnail_url`] gives).
#[derive(Debug, Clone, Copy)]
pub struct Thumbnail<'a> {
    photo_id: &'a str,
    server: &'a str,
    secret: &'a str,
}

impl<'a> Thumbnail<'a> {
    /// The thumbnail, when the parts are what Flickr's are.
    pub fn of(photo_id: &'a str, server: Option<&'a str>, secret: Option<&'a str>) -> Option<Self> {
        let server = server
            .filter(|s| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))?;
        let secret = secret.filter(|s| {
            !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
        })?;
        is_photo_id(photo_id).then_some(Thumbnail {
            photo_id,
            server,
            secret,
        })
    }
}

impl std::fmt::Display for Thumbnail<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Thumbnail {
            photo_id,
            server,
            secret,
        } = self;
        write!(
            f,
            "https://live.staticflickr.com/{server}/{photo_id}_{secret}_q.jpg"
        )
    }
}

/// A photo's Flickr page, written out only when displayed or serialised (as
/// the string [`photo_url`] gives).
#[derive(Debug, Clone, Copy)]
pub struct PhotoUrl<'a> {
    photo_id: &'a str,
    owner_id: Option<&'a str>,
}

impl<'a> PhotoUrl<'a> {
    /// The page of `photo_id`, under its owner's when the owner is a NSID.
    pub fn of(photo_id: &'a str, owner_id: Option<&'a str>) -> Self {
        PhotoUrl {
            photo_id,
            owner_id: owner_id.filter(|o| is_nsid(o)),
        }
    }
}

impl std::fmt::Display for PhotoUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.photo_id;
        match self.owner_id {
            Some(owner) => write!(f, "https://www.flickr.com/photos/{owner}/{id}"),
            None => write!(f, "https://www.flickr.com/photo.gne?id={id}"),
        }
    }
}

macro_rules! serialize_as_string {
    ($($t:ident),+) => {$(
        impl Serialize for $t<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )+};
}
serialize_as_string!(Thumbnail, PhotoUrl);

/// A photo rec as the layout builder writes it: [`PhotoItem`]'s fields, in
/// its order, borrowed from the run's tables instead of copied into strings
/// (the JSON is byte for byte the same; a test checks it).
#[derive(Serialize)]
pub(crate) struct PhotoItemRow<'a, N: Serialize> {
    pub rank: i32,
    pub photo_id: &'a str,
    pub owner_id: Option<&'a str>,
    pub owner_name: Option<&'a str>,
    pub title: Option<&'a str>,
    pub thumbnail_url: Option<Thumbnail<'a>>,
    pub photo_url: PhotoUrl<'a>,
    pub score: f64,
    pub neighbor_count: i32,
    pub top_neighbors: N,
    pub similar_to: N,
    pub first_recommended_at: Option<DateTime<Utc>>,
    pub is_new: bool,
    pub fallback: bool,
}
