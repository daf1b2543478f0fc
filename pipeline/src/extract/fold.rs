//! The fold: every finished user's pending pull into the raw tables
//! (`favorites`, `photos`, `contacts`, `extract_state`), each rewritten in one
//! put, then the pending objects deleted.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::RecordBatch;
use chrono::{DateTime, Duration, Utc};

use crate::config::Settings;
use crate::frame::FrameError;
use crate::model::Table;
use crate::model::arrow::{str_at, string_array, string_at, time_at, timestamp_array};
use crate::model::columns::{
    ContactsArrays, ContactsColumns, ExtractStateArrays, FavoritesArrays, FavoritesColumns,
    PhotosArrays,
};
use crate::raw::{RawTableError, merge_raw, update_raw};
use crate::store::Storage;

use super::error::ExtractError;
use super::state::{
    Outcome, UserPull, UserState, micros, pending_path, read_pending, state_from_batches,
};

/// user_id, photo_id, owner_id, date_faved (µs) columns being assembled.
type FavoriteRows = (
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<i64>>,
);

/// A batch that does not fit its own contract schema (a bug) is reported as a
/// failed table write.
fn frame_error(e: arrow_schema::ArrowError) -> RawTableError {
    RawTableError::Frame(FrameError::from(e))
}

/// Folds every pending user into the raw tables, then deletes the pending objects.
/// Idempotent: folding the same pending users twice gives the same tables.
pub async fn fold(
    storage: &Storage,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, u64>, ExtractError> {
    let pulls = read_pending(storage).await?;
    let mut rows = BTreeMap::new();
    if pulls.is_empty() {
        return Ok(rows);
    }
    // Favourites: a full pull (or a user gone) replaces the user's stored set; an
    // incremental pull adds to it.
    let replaced: BTreeSet<&str> = pulls
        .iter()
        .filter(|p| p.full || p.outcome != Outcome::Ok)
        .map(|p| p.user_id.as_str())
        .collect();
    let r = update_raw(storage, Table::Favorites, |stored| {
        favorites_rows(&pulls, &replaced, &stored)
    })
    .await?;
    rows.insert("favorites".into(), r.rows_after as u64);

    // Photos: metadata from every favourite pulled; newest answer wins.
    let r = merge_raw(storage, Table::Photos, vec![photos_rows(&pulls)?]).await?;
    rows.insert("photos".into(), r.rows_after as u64);

    // Contacts: replaced for every user whose contacts were pulled.
    let with_contacts: BTreeSet<&str> = pulls
        .iter()
        .filter(|p| p.contacts.is_some())
        .map(|p| p.user_id.as_str())
        .collect();
    let r = update_raw(storage, Table::Contacts, |stored| {
        contacts_rows(&pulls, &with_contacts, &stored)
    })
    .await?;
    rows.insert("contacts".into(), r.rows_after as u64);

    // State.
    let r = update_raw(storage, Table::ExtractState, |stored| {
        state_rows(&pulls, &stored, settings, now)
    })
    .await?;
    rows.insert("extract_state".into(), r.rows_after as u64);

    for p in &pulls {
        storage.delete(&pending_path(p.phase, &p.user_id)).await?;
    }
    Ok(rows)
}

/// `favorites` after the fold: the pulled rows, then the stored rows of every
/// user whose stored set is kept.
fn favorites_rows(
    pulls: &[UserPull],
    replaced: &BTreeSet<&str>,
    stored: &[RecordBatch],
) -> Result<Vec<RecordBatch>, RawTableError> {
    let mut fav = FavoriteRows::default();
    for p in pulls {
        for f in &p.favorites {
            fav.0.push(Some(p.user_id.clone()));
            fav.1.push(Some(f.photo_id.clone()));
            fav.2.push(Some(f.owner_id.clone()));
            fav.3
                .push(f.date_faved.map(|d| d.saturating_mul(1_000_000)));
        }
    }
    for b in stored {
        let c = FavoritesColumns::new(b)?;
        for i in 0..b.num_rows() {
            if str_at(c.user_id, i).is_some_and(|u| !replaced.contains(u)) {
                fav.0.push(string_at(c.user_id, i));
                fav.1.push(string_at(c.photo_id, i));
                fav.2.push(string_at(c.owner_id, i));
                fav.3.push(time_at(c.date_faved, i));
            }
        }
    }
    let favorites = FavoritesArrays {
        user_id: string_array(fav.0),
        photo_id: string_array(fav.1),
        owner_id: string_array(fav.2),
        date_faved: timestamp_array(fav.3),
    }
    .into_batch()
    .map_err(frame_error)?;
    Ok(vec![favorites])
}

/// The `photos` rows of every favourite pulled.
fn photos_rows(pulls: &[UserPull]) -> Result<RecordBatch, RawTableError> {
    let mut ph: [Vec<Option<String>>; 7] = Default::default();
    let mut uploads = Vec::new();
    for f in pulls.iter().flat_map(|p| &p.favorites) {
        for (slot, v) in ph.iter_mut().zip([
            Some(f.photo_id.clone()),
            Some(f.owner_id.clone()),
            f.owner_name.clone(),
            f.title.clone(),
            f.server.clone(),
            f.secret.clone(),
            f.tags.clone(),
        ]) {
            slot.push(v);
        }
        uploads.push(f.date_upload.map(|d| d.saturating_mul(1_000_000)));
    }
    let [id, owner, owner_name, title, server, secret, tags] = ph.map(string_array);
    let photos = PhotosArrays {
        photo_id: id,
        owner_id: owner,
        owner_name,
        title,
        server,
        secret,
        tags,
        date_upload: timestamp_array(uploads),
    }
    .into_batch()
    .map_err(frame_error)?;
    Ok(photos)
}

/// `contacts` after the fold: the pulled contacts, then the stored ones of every
/// user whose contacts were not pulled.
fn contacts_rows(
    pulls: &[UserPull],
    with_contacts: &BTreeSet<&str>,
    stored: &[RecordBatch],
) -> Result<Vec<RecordBatch>, RawTableError> {
    let (mut cu, mut cc) = (Vec::new(), Vec::new());
    for p in pulls {
        for c in p.contacts.iter().flatten() {
            cu.push(Some(p.user_id.clone()));
            cc.push(Some(c.clone()));
        }
    }
    for b in stored {
        let c = ContactsColumns::new(b)?;
        for i in 0..b.num_rows() {
            if str_at(c.user_id, i).is_some_and(|u| !with_contacts.contains(u)) {
                cu.push(string_at(c.user_id, i));
                cc.push(string_at(c.contact_id, i));
            }
        }
    }
    let contacts = ContactsArrays {
        user_id: string_array(cu),
        contact_id: string_array(cc),
    }
    .into_batch()
    .map_err(frame_error)?;
    Ok(vec![contacts])
}

/// `extract_state` after the fold: every stored user's row, updated for the
/// users pulled.
fn state_rows(
    pulls: &[UserPull],
    stored: &[RecordBatch],
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<RecordBatch>, RawTableError> {
    let mut state = state_from_batches(stored)?;
    let retry_after = Duration::days(settings.extract.not_found_retry_days as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    for p in pulls {
        let s = state.entry(p.user_id.clone()).or_default();
        let at = micros(p.pulled_at);
        s.last_pulled_at = Some(at);
        if p.full {
            s.last_full_pull_at = Some(at);
        }
        let newest = p
            .favorites
            .iter()
            .filter_map(|f| f.date_faved)
            .max()
            .map(|d| d.saturating_mul(1_000_000));
        s.newest_date_faved = if p.full || p.outcome != Outcome::Ok {
            newest
        } else {
            s.newest_date_faved.max(newest)
        };
        s.outcome = Some(p.outcome);
        s.next_attempt_at =
            (p.outcome != Outcome::Ok).then(|| micros(now).saturating_add(retry_after));
    }
    let mut users: Vec<(&String, &UserState)> = state.iter().collect();
    users.sort_by(|a, b| a.0.cmp(b.0));
    let times = |get: fn(&UserState) -> Option<i64>| {
        timestamp_array(users.iter().map(|(_, s)| get(s)).collect())
    };
    let batch = ExtractStateArrays {
        user_id: string_array(users.iter().map(|(u, _)| Some((*u).clone())).collect()),
        last_pulled_at: times(|s| s.last_pulled_at),
        last_full_pull_at: times(|s| s.last_full_pull_at),
        newest_date_faved: times(|s| s.newest_date_faved),
        outcome: string_array(
            users
                .iter()
                .map(|(_, s)| s.outcome.map(|o| o.name().to_string()))
                .collect(),
        ),
        next_attempt_at: times(|s| s.next_attempt_at),
    }
    .into_batch()
    .map_err(frame_error)?;
    Ok(vec![batch])
}
