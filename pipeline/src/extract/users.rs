//! Tracked users: add (resolving a Flickr URL, NSID or username), list, remove.

use chrono::{DateTime, Utc};

use super::client::{FlickrClient, FlickrError, Person};
use super::error::ExtractError;
use super::state::tracked_users;
use crate::frame::FrameError;
use crate::model::arrow::{string_array, timestamp_array};
use crate::model::columns::{TrackedUsersArrays, TrackedUsersColumns};
use crate::model::{Table, is_nsid};
use crate::raw::{RawTableError, merge_raw, update_raw};
use crate::store::Storage;

/// Why a user could not be added.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Flickr does not know them.
    #[error(
        "no Flickr user matches {input:?} (tried it as {tried}); check the spelling, or paste their photostream URL (https://www.flickr.com/photos/…/)"
    )]
    Unknown {
        /// What was given.
        input: String,
        /// How it was looked up.
        tried: &'static str,
    },
    /// The input is none of the accepted forms.
    #[error("{0:?} is not a Flickr URL, an NSID (e.g. 38134034@N04) or a username")]
    Unrecognised(String),
    /// Flickr failed.
    #[error(transparent)]
    Flickr(FlickrError),
    /// Storage failed.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] RawTableError),
}

/// Resolves a photostream or profile URL, an NSID or a username to a person.
pub async fn resolve(client: &FlickrClient, input: &str) -> Result<Person, UsersError> {
    let input = input.trim();
    let unknown = |tried| UsersError::Unknown {
        input: input.to_string(),
        tried,
    };
    let map = |e: FlickrError, tried| match e {
        FlickrError::NotFound { .. } | FlickrError::Deleted { .. } => unknown(tried),
        other => UsersError::Flickr(other),
    };
    if input.contains("flickr.com/") {
        let url = if input.starts_with("http") {
            input.to_string()
        } else {
            format!("https://{input}")
        };
        return client.lookup_url(&url).await.map_err(|e| map(e, "a URL"));
    }
    if is_nsid(input) {
        // favorites.getPublicList with one item answers code 1 for an unknown NSID.
        client
            .call(
                "flickr.favorites.getPublicList",
                &[
                    ("user_id", input.to_string()),
                    ("per_page", "1".to_string()),
                ],
            )
            .await
            .map_err(|e| map(e, "an NSID"))?;
        return Ok(Person {
            nsid: input.to_string(),
            username: None,
        });
    }
    if input.is_empty() || input.len() > 100 || input.chars().any(char::is_control) {
        return Err(UsersError::Unrecognised(input.to_string()));
    }
    client
        .find_by_username(input)
        .await
        .map_err(|e| map(e, "a username"))
}

/// Adds a person to `tracked_users`.
pub async fn add(storage: &Storage, person: &Person, now: DateTime<Utc>) -> Result<(), UsersError> {
    let batch = TrackedUsersArrays {
        user_id: string_array(vec![Some(person.nsid.clone())]),
        username: string_array(vec![person.username.clone()]),
        added_at: timestamp_array(vec![Some(now.timestamp_micros())]),
    }
    .into_batch()
    .map_err(|e| RawTableError::Frame(FrameError::from(e)))?;
    merge_raw(storage, Table::TrackedUsers, vec![batch]).await?;
    Ok(())
}

/// Removes a person from `tracked_users`; returns whether they were there.
pub async fn remove(storage: &Storage, nsid: &str) -> Result<bool, UsersError> {
    if !tracked_users(storage).await?.iter().any(|u| u == nsid) {
        return Ok(false);
    }
    // A read-modify-write of the table, safe against a concurrent `users add`
    // or import: see `raw::update_raw`.
    update_raw(storage, Table::TrackedUsers, |stored| {
        let mut kept = Vec::with_capacity(stored.len());
        for b in &stored {
            let ids = TrackedUsersColumns::new(b)?.user_id;
            let mask: arrow_array::BooleanArray =
                ids.iter().map(|v| Some(v != Some(nsid))).collect();
            kept.push(
                arrow_select::filter::filter_record_batch(b, &mask)
                    .map_err(|e| RawTableError::Frame(FrameError::from(e)))?,
            );
        }
        Ok(kept)
    })
    .await?;
    Ok(true)
}

/// The tracked users, sorted.
pub async fn list(storage: &Storage) -> Result<Vec<String>, UsersError> {
    Ok(tracked_users(storage).await?)
}
