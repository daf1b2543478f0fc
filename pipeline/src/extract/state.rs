//! Extract's bookkeeping: the phases and outcomes, a finished user's pending
//! pull, the `extract_state` rows, the run's options and manifest, and where each
//! is kept in storage.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow_array::{Array, RecordBatch};
use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::model::Table;
use crate::model::arrow::{str_at, string_at, time_at};
use crate::model::columns::{ColumnError, ExtractStateColumns, TrackedUsersColumns};
use crate::runs::RunStatus;
use crate::store::{Storage, StoreError};

use super::client::Fave;
use super::error::ExtractError;

/// Where pending per-user results live.
pub const PENDING_DIR: &str = "extract/pending";
/// Where extract manifests live.
pub const MANIFEST_DIR: &str = "extract/manifests";

/// Which phase a user is pulled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A tracked user: favourites and contacts.
    Tracked,
    /// A neighbour: favourites only.
    Neighbor,
}

impl Phase {
    /// The name used in pending paths and logs.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Tracked => "tracked",
            Phase::Neighbor => "neighbor",
        }
    }
}

/// The result of pulling one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Pulled.
    Ok,
    /// Flickr code 1.
    NotFound,
    /// Flickr code 5.
    Deleted,
    /// Transient failures until the retries ran out.
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::NotFound,
        Outcome::Deleted,
        Outcome::Failed,
    ];

    /// The name stored in `extract_state.outcome`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Deleted => "deleted",
            Outcome::Failed => "failed",
        }
    }

    /// Parses a stored `extract_state.outcome`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == text)
    }
}

/// One finished user, as stored in `extract/pending/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserPull {
    /// The user.
    pub user_id: String,
    /// The phase.
    pub phase: Phase,
    /// What happened.
    pub outcome: Outcome,
    /// Whether the whole list was pulled (it replaces the stored set).
    pub full: bool,
    /// When.
    pub pulled_at: DateTime<Utc>,
    /// Favourites pulled.
    pub favorites: Vec<Fave>,
    /// Contacts pulled (tracked users only).
    pub contacts: Option<Vec<String>>,
    /// The favourites are the first page of the list (the newest), not "since
    /// the newest held": stored favourites at least as new as the page's
    /// oldest that the page lacks were deleted.
    #[serde(default)]
    pub first_page: bool,
    /// Flickr's `total` of the list, when the pull saw the first page.
    #[serde(default)]
    pub total: Option<i64>,
}

/// A user's row in `extract_state`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserState {
    /// Last pull attempt that finished.
    pub last_pulled_at: Option<i64>,
    /// Last full pull.
    pub last_full_pull_at: Option<i64>,
    /// Newest `date_faved` held (µs).
    pub newest_date_faved: Option<i64>,
    /// Last outcome (`None`: never pulled, or a value this version does not know).
    pub outcome: Option<Outcome>,
    /// Not before this time (not-found/deleted back-off).
    pub next_attempt_at: Option<i64>,
    /// Flickr's `total` of the list at the last pull that saw its first page.
    pub favorites_total: Option<i64>,
    /// The user's adaptive refresh interval (`None`: `refresh_after_hours`).
    pub refresh_hours: Option<f64>,
}

/// Options of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// "Now": freshness and state times are computed from it (tests move it).
    pub now: DateTime<Utc>,
    /// Process only users with `hash(nsid) % n == i`, and do not fold.
    pub shard: Option<(u32, u32)>,
    /// Run only this phase (sharded runs go phase by phase: every shard's tracked
    /// users must be in before the neighbours can be listed). `None` runs both.
    pub phase: Option<Phase>,
    /// The call budget (overrides `extract.max_calls`).
    pub budget: Option<u64>,
    /// Only newly tracked users and their neighbours (the fast path after
    /// `faverecs users add`).
    pub only_new: bool,
}

impl ExtractOptions {
    /// Both phases, unsharded, now.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            shard: None,
            phase: None,
            budget: None,
            only_new: false,
        }
    }
}

pub use crate::shard::shard_of;

/// Per-user counts, for the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCounts {
    /// Pulled in this run.
    pub fetched: usize,
    /// Already finished by an interrupted run.
    pub resumed: usize,
    /// Pulled recently enough.
    pub skipped_fresh: usize,
    /// Not found or deleted recently; waiting.
    pub skipped_backoff: usize,
    /// Code 1 this run.
    pub not_found: usize,
    /// Code 5 this run.
    pub deleted: usize,
    /// Failed after retries.
    pub failed: usize,
    /// Due, but past the run's call budget: kept their stored rows, and come
    /// first the next night.
    #[serde(default)]
    pub deferred: usize,
}

/// `extract/manifests/<run_id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExtractManifest {
    /// Run id.
    pub run_id: String,
    /// `running`, `succeeded` or `failed`.
    pub status: RunStatus,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: DateTime<Utc>,
    /// The shard, if any.
    pub shard: Option<String>,
    /// API calls made.
    pub calls: u64,
    /// Retries by cause.
    pub retries: BTreeMap<String, u64>,
    /// Tracked users.
    pub tracked: UserCounts,
    /// Neighbours.
    pub neighbors: UserCounts,
    /// Rows per table after folding.
    pub rows_written: BTreeMap<String, u64>,
    /// Up to 20 failures, `nsid: error`.
    pub failures: Vec<String>,
    /// The run's budget of calls, if it had one.
    #[serde(default)]
    pub budget: Option<u64>,
    /// How old the data behind the recommendations is after this run, in hours
    /// since each user's last pull: p50 and p90 over the neighbours weighted by
    /// influence, and over the tracked users.
    #[serde(default)]
    pub data_age_hours: Option<DataAge>,
    /// The error, for a failed run.
    pub error: Option<String>,
}

/// Percentiles of data age, in hours.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataAge {
    /// Neighbours, weighted by influence: median.
    pub neighbors_p50: f64,
    /// Neighbours, weighted by influence: 90th percentile.
    pub neighbors_p90: f64,
    /// Tracked users: median.
    pub tracked_p50: f64,
    /// Tracked users: 90th percentile.
    pub tracked_p90: f64,
}

/// Where a finished user's pull waits to be folded.
pub fn pending_path(phase: Phase, nsid: &str) -> Path {
    Path::from(format!("{PENDING_DIR}/{}/{nsid}.json", phase.name()))
}

/// Microseconds since the epoch, the contract's time unit.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The tracked users' NSIDs, sorted.
pub async fn tracked_users(storage: &Storage) -> Result<Vec<String>, ExtractError> {
    let batches = storage
        .read_raw(Table::TrackedUsers)
        .await?
        .unwrap_or_default();
    let mut set = BTreeSet::new();
    for b in &batches {
        let c = TrackedUsersColumns::new(b)?;
        set.extend(c.user_id.iter().flatten().map(str::to_string));
    }
    Ok(set.into_iter().collect())
}

/// When each tracked user was added (`tracked_users.added_at`, µs), where known.
pub async fn tracked_since(storage: &Storage) -> Result<HashMap<String, i64>, ExtractError> {
    let mut out = HashMap::new();
    for b in &storage
        .read_raw(Table::TrackedUsers)
        .await?
        .unwrap_or_default()
    {
        let c = TrackedUsersColumns::new(b)?;
        for i in 0..b.num_rows() {
            if let (Some(u), Some(t)) = (str_at(c.user_id, i), time_at(c.added_at, i)) {
                out.insert(u.to_string(), t);
            }
        }
    }
    Ok(out)
}

/// Every user's `extract_state` row.
pub async fn read_state(storage: &Storage) -> Result<HashMap<String, UserState>, ExtractError> {
    let batches = storage
        .read_raw(Table::ExtractState)
        .await?
        .unwrap_or_default();
    Ok(state_from_batches(&batches)?)
}

/// The `extract_state` rows of some batches, by user.
pub fn state_from_batches(
    batches: &[RecordBatch],
) -> Result<HashMap<String, UserState>, ColumnError> {
    let mut out = HashMap::new();
    for b in batches {
        let c = ExtractStateColumns::new(b)?;
        for i in 0..b.num_rows() {
            let Some(user) = string_at(c.user_id, i) else {
                continue;
            };
            out.insert(
                user,
                UserState {
                    last_pulled_at: time_at(c.last_pulled_at, i),
                    last_full_pull_at: time_at(c.last_full_pull_at, i),
                    newest_date_faved: time_at(c.newest_date_faved, i),
                    outcome: str_at(c.outcome, i).and_then(Outcome::parse),
                    next_attempt_at: time_at(c.next_attempt_at, i),
                    favorites_total: c
                        .favorites_total
                        .and_then(|a| (!a.is_null(i)).then(|| a.value(i))),
                    refresh_hours: c
                        .refresh_hours
                        .and_then(|a| (!a.is_null(i)).then(|| a.value(i))),
                },
            );
        }
    }
    Ok(out)
}

/// Every finished user waiting to be folded, in path order.
pub async fn read_pending(storage: &Storage) -> Result<Vec<UserPull>, StoreError> {
    let mut files = storage.list_files(&Path::from(PENDING_DIR)).await?;
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        out.push(storage.get_json::<UserPull>(&f).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn an_extract_state_file_from_before_the_added_columns_still_reads() {
        let ts = || {
            Arc::new(TimestampMicrosecondArray::from(vec![Some(5)]).with_timezone("UTC"))
                as arrow_array::ArrayRef
        };
        let full = Table::ExtractState.schema();
        let old: Vec<Field> = full
            .fields()
            .iter()
            .filter(|f| !matches!(f.name().as_str(), "favorites_total" | "refresh_hours"))
            .map(|f| f.as_ref().clone())
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(old)),
            vec![
                Arc::new(StringArray::from(vec!["1@N01"])),
                ts(),
                ts(),
                ts(),
                Arc::new(StringArray::from(vec!["ok"])),
                Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>]).with_timezone("UTC")),
            ],
        )
        .expect("old batch");
        let state = state_from_batches(&[batch]).expect("reads");
        let s = &state["1@N01"];
        assert_eq!(s.last_pulled_at, Some(5));
        assert_eq!(s.outcome, Some(Outcome::Ok));
        assert_eq!((s.favorites_total, s.refresh_hours), (None, None));
    }
}
