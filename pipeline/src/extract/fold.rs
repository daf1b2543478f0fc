//! The fold: every finished user's pending pull into the raw tables
//! (`favorites`, `photos`, `contacts`, `extract_state`), then the pending
//! objects deleted. `photos` and `extract_state` are rewritten in one put
//! each; `favorites` and `contacts` only in the buckets of the users pulled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch};
use chrono::{DateTime, Duration, Utc};

use crate::config::Settings;
use crate::frame::FrameError;
use crate::model::Table;
use crate::model::arrow::{str_at, string_array, string_at, time_at, timestamp_array};
use crate::model::columns::{
    ContactsArrays, ContactsColumns, ExtractStateArrays, FavoritesArrays, FavoritesColumns,
    PhotosArrays,
};
use crate::raw::{RawTableError, merge_raw, update_raw, update_raw_users};
use crate::store::Storage;

use super::error::ExtractError;
use super::plan::{interval_hours, next_interval};
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
    let cap = settings.flickr.max_favorites_per_user;
    let pulled: BTreeSet<String> = pulls.iter().map(|p| p.user_id.clone()).collect();
    let changes = std::cell::RefCell::new(BTreeMap::new());
    // Only the buckets of the pulled users are rewritten, each on its own.
    let r = update_raw_users(storage, Table::Favorites, &pulled, |bucket, stored| {
        let in_bucket = pulls.iter().filter(|p| bucket.holds(&p.user_id));
        let (rows, seen) = favorites_rows(in_bucket, &replaced, &stored, cap)?;
        changes.borrow_mut().extend(seen);
        Ok(rows)
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
    let owners: BTreeSet<String> = with_contacts.iter().map(|u| u.to_string()).collect();
    let r = update_raw_users(storage, Table::Contacts, &owners, |bucket, stored| {
        let in_bucket = pulls.iter().filter(|p| bucket.holds(&p.user_id));
        contacts_rows(in_bucket, &with_contacts, &stored)
    })
    .await?;
    rows.insert("contacts".into(), r.rows_after as u64);

    // State.
    let r = update_raw(storage, Table::ExtractState, |stored| {
        state_rows(&pulls, &stored, &changes.borrow(), settings, now)
    })
    .await?;
    rows.insert("extract_state".into(), r.rows_after as u64);

    for p in &pulls {
        storage.delete(&pending_path(p.phase, &p.user_id)).await?;
    }
    Ok(rows)
}

/// What the fold saw of one pulled user's list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ListChange {
    /// Favourites pulled that were not held.
    new: usize,
    /// Held favourites a first-page pull showed deleted.
    deleted: usize,
}

/// `favorites` after the fold: every pulled user's rows (the pull, then their
/// stored rows unless replaced), capped at their newest
/// `flickr.max_favorites_per_user`, as the seed photo-recommender kept them, so
/// incremental pulls never grow a list past the cap (which would change
/// total(n) in the formula); then everyone else's stored rows, as they were.
///
/// A first-page pull shows the newest favourites: a held one at least as new as
/// the page's oldest, which the page lacks, was deleted and is dropped.
fn favorites_rows<'a>(
    pulls: impl Iterator<Item = &'a UserPull>,
    replaced: &BTreeSet<&str>,
    stored: &[RecordBatch],
    cap: usize,
) -> Result<(Vec<RecordBatch>, BTreeMap<String, ListChange>), RawTableError> {
    type Row = (String, Option<String>, Option<i64>);
    let mut pulled: BTreeMap<&str, (&UserPull, Vec<Row>, Vec<Row>)> = BTreeMap::new();
    for p in pulls {
        let rows = p
            .favorites
            .iter()
            .map(|f| {
                (
                    f.photo_id.clone(),
                    Some(f.owner_id.clone()),
                    f.date_faved.map(|d| d.saturating_mul(1_000_000)),
                )
            })
            .collect();
        pulled.insert(p.user_id.as_str(), (p, rows, Vec::new()));
    }
    let mut fav = FavoriteRows::default();
    for b in stored {
        let c = FavoritesColumns::new(b)?;
        for i in 0..b.num_rows() {
            let Some(u) = str_at(c.user_id, i) else {
                continue;
            };
            if let Some((_, _, held)) = pulled.get_mut(u) {
                if let Some(photo) = string_at(c.photo_id, i) {
                    held.push((photo, string_at(c.owner_id, i), time_at(c.date_faved, i)));
                }
                continue;
            }
            fav.0.push(Some(u.to_string()));
            fav.1.push(string_at(c.photo_id, i));
            fav.2.push(string_at(c.owner_id, i));
            fav.3.push(time_at(c.date_faved, i));
        }
    }
    let mut changes = BTreeMap::new();
    for (user, (pull, mut rows, held)) in pulled {
        let held_ids: BTreeSet<&str> = held.iter().map(|r| r.0.as_str()).collect();
        let on_page: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
        let mut change = ListChange {
            new: rows
                .iter()
                .filter(|r| !held_ids.contains(r.0.as_str()))
                .count(),
            deleted: 0,
        };
        if !replaced.contains(user) {
            let boundary = if pull.first_page {
                match rows.iter().filter_map(|r| r.2).min() {
                    Some(oldest) => Some(oldest),
                    // An empty first page of an empty list: everything went.
                    None if pull.total == Some(0) => Some(i64::MIN),
                    None => None,
                }
            } else {
                None
            };
            for r in held {
                let gone = boundary.is_some_and(|b| r.2.is_some_and(|d| d >= b))
                    && !on_page.contains(&r.0);
                if gone {
                    change.deleted += 1;
                } else {
                    rows.push(r);
                }
            }
        }
        changes.insert(user.to_string(), change);
        // The pull's row of a photo wins over the stored one; then newest first
        // (undated last), ties by photo id.
        let mut seen = BTreeSet::new();
        rows.retain(|r| seen.insert(r.0.clone()));
        rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(cap);
        for (photo, owner, date) in rows {
            fav.0.push(Some(user.to_string()));
            fav.1.push(Some(photo));
            fav.2.push(owner);
            fav.3.push(date);
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
    Ok((vec![favorites], changes))
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
fn contacts_rows<'a>(
    pulls: impl Iterator<Item = &'a UserPull>,
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
///
/// Each pulled user's refresh interval adapts to the change the fold saw
/// ([`next_interval`]). A first-page pull whose `total` disagrees with the last
/// total plus the new minus the deleted (older favourites were deleted, or more
/// changed than a page shows) clears `last_full_pull_at`, so the next run pulls
/// the whole list.
fn state_rows(
    pulls: &[UserPull],
    stored: &[RecordBatch],
    changes: &BTreeMap<String, ListChange>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<RecordBatch>, RawTableError> {
    let mut state = state_from_batches(stored)?;
    let retry_after = Duration::days(settings.extract.not_found_retry_days as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    for p in pulls {
        let s = state.entry(p.user_id.clone()).or_default();
        let first_pull = s.last_pulled_at.is_none();
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
        if p.outcome != Outcome::Ok {
            continue;
        }
        let change = changes.get(&p.user_id).copied().unwrap_or_default();
        // A first pull finds everything "new"; the interval adapts from the
        // second on.
        if !first_pull {
            s.refresh_hours = Some(next_interval(
                interval_hours(s, settings),
                change.new,
                settings,
            ));
        }
        if p.first_page
            && let (Some(before), Some(total)) = (s.favorites_total, p.total)
        {
            let expected = before + change.new as i64 - change.deleted as i64;
            if total != expected {
                tracing::debug!(user = %p.user_id, total, expected, "the list changed beyond its first page; a full pull is next");
                s.last_full_pull_at = None;
            }
        }
        s.favorites_total = p.total;
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
        favorites_total: Arc::new(Int64Array::from(
            users
                .iter()
                .map(|(_, s)| s.favorites_total)
                .collect::<Vec<_>>(),
        )),
        refresh_hours: Arc::new(Float64Array::from(
            users
                .iter()
                .map(|(_, s)| s.refresh_hours)
                .collect::<Vec<_>>(),
        )),
    }
    .into_batch()
    .map_err(frame_error)?;
    Ok(vec![batch])
}
