//! The published run as the service holds it: its manifest, its metrics and
//! its serving layout (`pipeline::serving`), memory-mapped. A request
//! binary-searches the layout's index and answers the record's bytes, so the
//! process holds the directory, not the lists: its own memory does not grow
//! with the run (the OS page cache holds the file). [`crate::load`] opens a
//! [`Snapshot`] completely before [`crate::state`] swaps it in, so a request sees
//! one run or the other, never a mixture.

use pipeline::model::metrics::Metric;
use pipeline::runs::Manifest;
use pipeline::serving::{Layout, LayoutError, List, section};

pub use pipeline::serving::{
    PhotoCard, PhotoInfo, PhotoItem, PhotographerItem, SimilarItem, TagItem, UserList, photo_url,
    thumbnail_url,
};

use crate::error::ApiError;

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
    /// The per-user algorithms in the run, in display order (the run's
    /// `score.algorithms`); what `algorithm=` is checked against.
    pub algorithms: Vec<String>,
    /// The run's offline-evaluation metrics (empty when it was not evaluated).
    pub metrics: Vec<Metric>,
    /// The run's lists.
    pub layout: Layout,
    /// The layout section of each of [`Snapshot::algorithms`]' photo recs,
    /// named once rather than per request.
    pub(crate) photo_sections: Vec<String>,
}

/// A record of the layout that does not decode: the file was checked when it
/// was opened, so this is damage since, answered as a 503 that says so.
fn damaged(e: LayoutError) -> ApiError {
    tracing::error!(error = %e, "a record of the served run's layout cannot be read");
    ApiError::Unavailable("part of the served run cannot be read right now".into())
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
    pub fn lookup(&self, query: &str) -> Option<String> {
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
        if self.username(key).is_some() || self.has_user(key) {
            return Some(key.to_string());
        }
        let id = self
            .layout
            .get(section::USERNAMES, key.to_lowercase().as_bytes())?;
        String::from_utf8(id.to_vec()).ok()
    }

    /// Whether `user` has lists in the run.
    pub fn has_user(&self, user: &str) -> bool {
        self.layout.get(section::USERS, user.as_bytes()).is_some()
    }

    /// Every user with lists, in NSID order.
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        keys(&self.layout, section::USERS)
    }

    /// Every photo with similar photos, in id order.
    pub fn similar_photo_ids(&self) -> impl Iterator<Item = &str> {
        keys(&self.layout, section::SIMILAR)
    }

    /// Every tag with a list, in order.
    pub fn tag_names(&self) -> impl Iterator<Item = &str> {
        keys(&self.layout, section::TAGS)
    }

    /// A tracked user's username: `None` when not tracked, `Some(None)` when
    /// tracked without one.
    pub fn username(&self, user: &str) -> Option<Option<String>> {
        let raw = self.layout.get(section::TRACKED, user.as_bytes())?;
        Some(serde_json::from_slice(&raw).unwrap_or(None))
    }

    /// The user's photo recs of the algorithm at `index`.
    pub fn photo_list(&self, user: &str, index: usize) -> Result<Option<List>, ApiError> {
        let Some(name) = self.photo_sections.get(index) else {
            return Ok(None);
        };
        self.layout.list(name, user.as_bytes()).map_err(damaged)
    }

    /// The user's photographer recs.
    pub fn photographer_list(&self, user: &str) -> Result<Option<List>, ApiError> {
        self.layout
            .list(section::PHOTOGRAPHERS, user.as_bytes())
            .map_err(damaged)
    }

    /// A photo's similar photos.
    pub fn similar_list(&self, photo_id: &str) -> Result<Option<List>, ApiError> {
        self.layout
            .list(section::SIMILAR, photo_id.as_bytes())
            .map_err(damaged)
    }

    /// A tag's most favourited photos.
    pub fn tag_list(&self, tag: &str) -> Result<Option<List>, ApiError> {
        self.layout
            .list(section::TAGS, tag.as_bytes())
            .map_err(damaged)
    }

    /// Whether the run has a list for `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.layout.get(section::TAGS, tag.as_bytes()).is_some()
    }

    /// What the run knows of a photo.
    pub fn photo_info(&self, photo_id: &str) -> Option<PhotoInfo> {
        let raw = self.layout.get(section::PHOTO_INFO, photo_id.as_bytes())?;
        serde_json::from_slice(&raw).ok()
    }

    /// Seconds since the run was published.
    pub fn age_seconds(&self) -> i64 {
        (chrono::Utc::now() - self.published_at)
            .num_seconds()
            .max(0)
    }
}

/// A section's keys as text (keys that are not UTF-8 are skipped).
fn keys<'a>(layout: &'a Layout, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let section = layout.section(name);
    (0..section.len()).filter_map(move |i| std::str::from_utf8(section.key(i)?).ok())
}

/// Items `range` of `list` decoded, for the HTML pages (none when there is no
/// list).
pub fn decode<T: serde::de::DeserializeOwned>(
    list: Option<&List>,
    range: std::ops::Range<usize>,
) -> Result<Vec<T>, ApiError> {
    list.map_or(Ok(Vec::new()), |l| l.decode(range).map_err(damaged))
}
