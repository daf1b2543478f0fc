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

/// A photo rec as the layout builder writes it: [`PhotoItem`]'s fields,
/// borrowed from the run's tables instead of copied into strings, written by
/// [`PhotoItemRow::write_json`] exactly as serde_json writes a [`PhotoItem`]
/// (tests check it byte for byte). It is written by hand because the layout
/// holds one per photo rec (11.7M for the 8M-favourite community scored for
/// every favoriter), and through serde most of the layout's time went to
/// escaping keys and ids that need none, and to formatting the same few
/// times again and again.
pub(crate) struct PhotoItemRow<'a, N> {
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

impl<'a, N: Iterator<Item = &'a str>> PhotoItemRow<'a, N> {
    /// Appends the item's JSON to `out`.
    pub(crate) fn write_json(self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.extend_from_slice(b"{\"rank\":");
        integer(out, self.rank);
        out.extend_from_slice(b",\"photo_id\":");
        string(out, self.photo_id)?;
        out.extend_from_slice(b",\"owner_id\":");
        optional(out, self.owner_id)?;
        out.extend_from_slice(b",\"owner_name\":");
        optional(out, self.owner_name)?;
        out.extend_from_slice(b",\"title\":");
        optional(out, self.title)?;
        out.extend_from_slice(b",\"thumbnail_url\":");
        match self.thumbnail_url {
            Some(t) => t.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"photo_url\":");
        self.photo_url.write_json(out)?;
        out.extend_from_slice(b",\"score\":");
        serde_json::to_writer(&mut *out, &self.score)?;
        out.extend_from_slice(b",\"neighbor_count\":");
        integer(out, self.neighbor_count);
        out.extend_from_slice(b",\"top_neighbors\":");
        strings(out, self.top_neighbors)?;
        out.extend_from_slice(b",\"similar_to\":");
        strings(out, self.similar_to)?;
        out.extend_from_slice(b",\"first_recommended_at\":");
        match self.first_recommended_at {
            Some(at) => time(out, at),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"is_new\":");
        out.extend_from_slice(if self.is_new { b"true" } else { b"false" });
        out.extend_from_slice(b",\"fallback\":");
        out.extend_from_slice(if self.fallback { b"true}" } else { b"false}" });
        Ok(())
    }
}

impl Thumbnail<'_> {
    /// Appends the URL as a JSON string: its parts were checked to be digits
    /// and hex ([`Thumbnail::of`]), so nothing in it is escaped.
    fn write_json(&self, out: &mut Vec<u8>) {
        for part in [
            "\"https://live.staticflickr.com/",
            self.server,
            "/",
            self.photo_id,
            "_",
            self.secret,
            "_q.jpg\"",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
    }
}

impl PhotoUrl<'_> {
    /// Appends the URL as a JSON string (the owner, when there is one, is a
    /// NSID, so only the photo id may need escaping).
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        if !plain(self.photo_id) {
            return string(out, &self.to_string());
        }
        match self.owner_id {
            Some(owner) => {
                out.extend_from_slice(b"\"https://www.flickr.com/photos/");
                out.extend_from_slice(owner.as_bytes());
                out.push(b'/');
            }
            None => out.extend_from_slice(b"\"https://www.flickr.com/photo.gne?id="),
        }
        out.extend_from_slice(self.photo_id.as_bytes());
        out.push(b'"');
        Ok(())
    }
}

/// Whether serde_json writes `s` as it is, between quotes: it escapes `"`,
/// `\` and the control characters below U+0020, and nothing else. The
/// check has no early exit, so that it runs over 16 bytes at a time.
fn plain(s: &str) -> bool {
    s.as_bytes().chunks(16).all(|chunk| {
        !chunk.iter().fold(false, |bad, &b| {
            bad | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    })
}

/// Appends `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    if plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

/// Appends `s` as a JSON string, or `null`.
fn optional(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), serde_json::Error> {
    match s {
        Some(s) => string(out, s),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// Appends a JSON array of strings.
fn strings<'a>(
    out: &mut Vec<u8>,
    values: impl Iterator<Item = &'a str>,
) -> Result<(), serde_json::Error> {
    out.push(b'[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, v)?;
    }
    out.push(b']');
    Ok(())
}

/// Appends an integer.
fn integer(out: &mut Vec<u8>, v: i32) {
    use std::io::Write;
    // Writing into a vector does not fail.
    let _ = write!(out, "{v}");
}

/// Appends a time as chrono's serde writes it (RFC 3339, `Z`, 0, 3, 6 or 9
/// fraction digits). Each thread keeps the text of the last time it wrote:
/// a run's items share a few times (its own start and those of the runs
/// before it), so the text is rarely made again.
fn time(out: &mut Vec<u8>, at: DateTime<Utc>) {
    thread_local! {
        static LAST: std::cell::RefCell<(Option<DateTime<Utc>>, String)> =
            const { std::cell::RefCell::new((None, String::new())) };
    }
    LAST.with_borrow_mut(|(last, text)| {
        if *last != Some(at) {
            *text = at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            *last = Some(at);
        }
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The item as the service's own type serialises it.
    fn served<'a>(
        row: &PhotoItemRow<'a, impl Iterator<Item = &'a str> + Clone>,
    ) -> serde_json::Result<String> {
        let item = PhotoItem {
            rank: row.rank,
            photo: PhotoCard {
                photo_id: row.photo_id.to_string(),
                owner_id: row.owner_id.map(str::to_string),
                owner_name: row.owner_name.map(str::to_string),
                title: row.title.map(str::to_string),
                thumbnail_url: row.thumbnail_url.map(|t| t.to_string()),
                photo_url: row.photo_url.to_string(),
            },
            score: row.score,
            neighbor_count: row.neighbor_count,
            top_neighbors: row.top_neighbors.clone().map(str::to_string).collect(),
            similar_to: row.similar_to.clone().map(str::to_string).collect(),
            first_recommended_at: row.first_recommended_at,
            is_new: row.is_new,
            fallback: row.fallback,
        };
        serde_json::to_string(&item)
    }

    /// Written by hand, an item is byte for byte what serde_json makes of
    /// [`PhotoItem`]: strings that need escaping (quotes, backslashes,
    /// control characters, in ids too), ones that do not (non-ASCII, DEL),
    /// nulls, empty and long lists, scores of every shape, and times with 0,
    /// 3, 6 and 9 fraction digits, each twice in a row (the cached text).
    #[test]
    fn a_photo_item_written_by_hand_is_what_serde_writes() -> Result<(), Box<dyn std::error::Error>>
    {
        let times = [
            Utc.timestamp_opt(1_764_720_000, 0).unwrap(),
            Utc.timestamp_opt(1_764_720_000, 120_000_000).unwrap(),
            Utc.timestamp_opt(1_764_720_000, 943_677_000).unwrap(),
            Utc.timestamp_opt(1_764_720_000, 943_677_001).unwrap(),
            Utc.timestamp_opt(0, 1_000).unwrap(),
        ];
        let texts = [
            "Wild harbour",
            "say \"cheese\"",
            "back\\slash",
            "tab\there\nnewline\u{1}\u{1f}",
            "café 東京 \u{7f}",
            "a title long enough to span more than one sixteen-byte chunk \" at the end",
            "",
        ];
        let ids = ["50012214826", "5001\"2", "50\\0", "1\n2", "é"];
        let names: Vec<&str> = vec!["21065981@N03", "x\"y", "20151284@N04"];
        let scores = [38.29336197203885, 0.0, -1.5, 1e-300, 1e21, 3.0, f64::NAN];
        let mut checked = 0;
        for (i, &photo_id) in ids.iter().enumerate() {
            for (j, &text) in texts.iter().enumerate() {
                let at = times[(i + j) % times.len()];
                for first in [Some(at), Some(at), None] {
                    let owner = ["21096221@N03", "not \"a\" nsid"][j % 2];
                    let row = PhotoItemRow {
                        rank: [1, -7, i32::MAX][j % 3],
                        photo_id,
                        owner_id: (j % 3 != 2).then_some(owner),
                        owner_name: (j % 2 == 0).then_some(text),
                        title: Some(text),
                        thumbnail_url: Thumbnail::of(photo_id, Some("65535"), Some("ab12cd")),
                        photo_url: PhotoUrl::of(photo_id, Some(owner)),
                        score: scores[(i + j) % scores.len()],
                        neighbor_count: (i * j) as i32,
                        top_neighbors: names[..j % 4].iter().copied(),
                        similar_to: names[(j % 4).min(names.len())..].iter().copied(),
                        first_recommended_at: first,
                        is_new: j % 2 == 1,
                        fallback: j % 3 == 1,
                    };
                    let want = served(&row)?;
                    let mut got = Vec::new();
                    row.write_json(&mut got)?;
                    assert_eq!(String::from_utf8(got)?, want);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, ids.len() * texts.len() * 3);
        Ok(())
    }
}
