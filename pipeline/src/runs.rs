//! Runs and publishing: the manifest, the `CURRENT` pointer, listing and rollback.
//!
//! A run is a folder `runs/<run_id>/` holding its output tables and a
//! `manifest.json`. The manifest is written with status `running` when the run
//! starts and rewritten as `succeeded` (or `failed`) once every table is in place.
//!
//! Publishing writes one small object, `CURRENT`, naming the run. A single put is
//! atomic on every object store, so a reader sees either the old run or the new
//! one, never half of one; and a run is only publishable once its manifest says
//! `succeeded` and every file it lists exists. Publishing an older run is the
//! rollback.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::config::{LockSettings, Settings};
use crate::model::{
    CURRENT, PUBLISHED_COPY, RUNS_DIR, Table, is_run_id, is_safe_run_name, manifest_path,
};
use crate::store::{Storage, StoreError, Version, json_bytes};
use crate::text::capped;

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Started; tables may be partly written.
    Running,
    /// Every table is written; the run can be published.
    Succeeded,
    /// The run stopped with an error; see `error`.
    Failed,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        })
    }
}

/// The run's serving layout (`crate::serving`), as its manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServingFile {
    /// Where it is, relative to the run folder.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// How long one stage took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageTiming {
    /// Stage name (`load`, `prepare`, `flexplore`, `write`).
    pub stage: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// `runs/<run_id>/manifest.json`: what a run did, for operators and for `publish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// The run's id, also its folder name.
    pub run_id: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// The faverecs version that wrote it.
    pub faverecs_version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended, if it has.
    pub finished_at: Option<DateTime<Utc>>,
    /// Whether every favoriter was scored rather than the tracked users.
    pub all_users: bool,
    /// Row counts read, by input.
    pub rows_in: BTreeMap<String, u64>,
    /// Row counts written, by output table.
    pub rows_out: BTreeMap<String, u64>,
    /// Stage timings, in order.
    pub stages: Vec<StageTiming>,
    /// Files written, by table, relative to the run folder.
    pub tables: BTreeMap<String, Vec<String>>,
    /// The settings used. They hold no secrets by construction.
    #[schema(value_type = Object)]
    pub config: Settings,
    /// The error, when `status` is `failed`.
    pub error: Option<String>,
    /// A sharded run's shards, each with its timings, rows and peak memory
    /// (empty for a run scored by one process).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRecord>,
    /// What the run left out and why (e.g. algorithms skipped for want of
    /// photo owners), also logged as warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The serving layout `score` (or `--finish`) stored in the run; runs
    /// written before it existed have none, and `serve` builds its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingFile>,
}

/// The steps of a sharded score (`faverecs score --step`), in the order they run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ShardStep {
    /// The per-user lists (`photo_recs`, `photographer_recs`,
    /// `first_recommended`), users split by [`crate::shard::shard_of`] their NSID.
    Users,
    /// The per-photo rows (`similar_photos`) for the photos the tracked users
    /// favourited or were recommended, split by the photo id's shard; shard 0
    /// also writes `tag_photos`. Runs after every users shard.
    Photos,
}

impl ShardStep {
    /// Both steps, in order.
    pub const ALL: [ShardStep; 2] = [ShardStep::Users, ShardStep::Photos];

    /// Its name on the command line, in file names and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ShardStep::Users => "users",
            ShardStep::Photos => "photos",
        }
    }
}

/// What one shard of a sharded run did: `runs/<run_id>/shards/<step>-<i>-of-<n>.json`,
/// written when the shard has stored every file it lists. A shard without a
/// record has not succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShardRecord {
    /// The step.
    pub step: ShardStep,
    /// Its index, from 0.
    pub shard: u32,
    /// How many shards the step has.
    pub shards: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Whether every favoriter was scored rather than the tracked users.
    pub all_users: bool,
    /// Row counts read, by input (`targets`: the users or photos this shard did).
    pub rows_in: BTreeMap<String, u64>,
    /// Row counts written, by table.
    pub rows_out: BTreeMap<String, u64>,
    /// Stage timings, in order.
    pub stages: Vec<StageTiming>,
    /// Files written, by table, relative to the run folder.
    pub tables: BTreeMap<String, Vec<String>>,
    /// The process's peak resident memory (`VmHWM`), in MiB, where /proc has it.
    pub peak_rss_mib: Option<f64>,
    /// What the shard left out and why (as the manifest's `notes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A users shard's assignment of targets to shards: `nsid`, or
    /// `neighbourhood <digest>` (`crate::score::assign`). The same in every
    /// users shard of a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
}

/// The process's peak resident memory (`VmHWM` in `/proc/self/status`), in
/// MiB, where /proc has it.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// The process's resident memory now (`VmRSS`), in MiB, where /proc has it.
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

/// A `kB` field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// `shard 2/4`, or `shards 0/4, 2/4`.
fn shard_list(missing: &[u32], shards: u32) -> String {
    let list: Vec<String> = missing.iter().map(|i| format!("{i}/{shards}")).collect();
    let noun = if missing.len() == 1 {
        "shard"
    } else {
        "shards"
    };
    format!("{noun} {}", list.join(", "))
}

/// Where a shard's record is.
pub fn shard_record_path(run_id: &str, step: ShardStep, shard: u32, shards: u32) -> Path {
    Path::from(format!(
        "{RUNS_DIR}/{run_id}/shards/{}-{shard:04}-of-{shards:04}.json",
        step.name()
    ))
}

/// The records of a sharded run's step, by shard index, after checking that
/// every shard of it succeeded: all agree on the shard count, and none is
/// missing. The error names the missing shards and the command to rerun.
pub async fn complete_step(
    storage: &Storage,
    run_id: &str,
    step: ShardStep,
) -> Result<Vec<ShardRecord>, RunError> {
    let dir = Path::from(format!("{RUNS_DIR}/{run_id}/shards"));
    let mut records: Vec<ShardRecord> = Vec::new();
    for path in storage.list_files(&dir).await? {
        let name = path.filename().unwrap_or_default();
        if !name.starts_with(&format!("{}-", step.name())) || !name.ends_with(".json") {
            continue;
        }
        match storage.get_json::<ShardRecord>(&path).await {
            Ok(r) if r.step == step => records.push(r),
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {}
            Err(StoreError::Json { source, .. }) => {
                return Err(RunError::Broken {
                    run_id: run_id.to_string(),
                    file: format!("shards/{name}"),
                    reason: capped(&source.to_string(), 200),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    let Some(n) = records.iter().map(|r| r.shards).max() else {
        return Err(RunError::NoShards {
            run_id: run_id.to_string(),
            step,
        });
    };
    if let Some(other) = records.iter().find(|r| r.shards != n) {
        return Err(RunError::Broken {
            run_id: run_id.to_string(),
            file: "shards/".into(),
            reason: format!(
                "the {} step was run with {} shards and with {n}; rerun it with one count after removing runs/{run_id}/shards/{}-*",
                step.name(),
                other.shards,
                step.name()
            ),
        });
    }
    records.sort_by_key(|r| r.shard);
    records.dedup_by_key(|r| r.shard);
    let missing: Vec<u32> = (0..n)
        .filter(|i| records.binary_search_by_key(i, |r| r.shard).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(RunError::MissingShard {
            run_id: run_id.to_string(),
            step,
            missing,
            shards: n,
        });
    }
    // Shards that assigned targets differently (the raw tables changed
    // between them) may have scored a target twice, or not at all.
    let mut assignments: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in &records {
        let name = r.assignment.as_deref().unwrap_or("nsid");
        assignments
            .entry(name)
            .or_default()
            .push(format!("{}/{n}", r.shard));
    }
    if assignments.len() > 1 {
        let groups: Vec<String> = assignments
            .iter()
            .map(|(name, shards)| format!("{} by {name}", shards.join(", ")))
            .collect();
        return Err(RunError::Broken {
            run_id: run_id.to_string(),
            file: "shards/".into(),
            reason: format!(
                "the {} shards assigned targets differently ({}), so a target may have been scored twice or not at all: the raw tables changed between them; rerun every {} shard",
                step.name(),
                groups.join("; "),
                step.name()
            ),
        });
    }
    Ok(records)
}

/// The `CURRENT` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    /// The published run.
    pub run_id: String,
    /// When it was published.
    pub published_at: DateTime<Utc>,
    /// The runs published before it, newest first (at most [`HISTORY`]): what a
    /// rollback or a fallback goes back to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<Published>,
}

/// A run that was published, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The run.
    pub run_id: String,
    /// When it was published.
    pub published_at: DateTime<Utc>,
}

/// How many earlier publishes `CURRENT` remembers.
pub const HISTORY: usize = 5;

/// How many times a publish retries when another publish changed `CURRENT`
/// between its read and its write.
const PUBLISH_ATTEMPTS: u32 = 10;

/// One line of `faverecs runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// Its manifest; `None` when the folder has none (an interrupted start) or
    /// it cannot be read.
    pub manifest: Option<Manifest>,
    /// Why the manifest cannot be read, when it exists but cannot.
    pub unreadable: Option<String>,
    /// Whether `CURRENT` points at it.
    pub current: bool,
    /// A run left `running` (or without a manifest) by a writer that died: no
    /// live run lock names it, and it is older than the lock's lease.
    pub abandoned: bool,
    /// For a sharded run not yet finished: the shards that have succeeded, per
    /// step (`users 3/4, photos 0/4`).
    pub shards_done: Option<String>,
}

impl RunSummary {
    /// What `runs` and `/api/runs` show: the manifest's status, `abandoned`,
    /// `incomplete` (no manifest; a sharded run adds the shards done) or
    /// `unreadable (reason)`.
    pub fn status_text(&self) -> String {
        match (&self.manifest, &self.unreadable) {
            _ if self.abandoned => "abandoned".to_string(),
            (Some(m), _) => m.status.to_string(),
            (None, Some(reason)) => format!("unreadable ({reason})"),
            (None, None) => match &self.shards_done {
                Some(done) => format!("incomplete (shards done: {done})"),
                None => "incomplete".to_string(),
            },
        }
    }
}

/// When a run started, from its id (`YYYYMMDDTHHMMSSZ-…`).
pub fn run_started_at(run_id: &str) -> Option<DateTime<Utc>> {
    let stamp = run_id.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Why a publish or a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No such run.
    #[error("run {run_id} does not exist (see `faverecs runs` for the list)")]
    UnknownRun {
        /// The id asked for.
        run_id: String,
    },
    /// The id has characters a run id never has.
    #[error("{run_id:?} is not a run id (expected e.g. 20261123T013705Z-ab12cd)")]
    BadRunId {
        /// The id given.
        run_id: String,
    },
    /// The run is not finished or failed.
    #[error("run {run_id} is {status}, not succeeded; only a succeeded run can be published")]
    NotPublishable {
        /// The run.
        run_id: String,
        /// Its status.
        status: RunStatus,
    },
    /// A file the manifest lists is gone.
    #[error("run {run_id} is incomplete: {file} is missing; re-run `faverecs score`")]
    MissingFile {
        /// The run.
        run_id: String,
        /// The missing file.
        file: String,
    },
    /// A file of the run is damaged or does not match the contract.
    #[error("run {run_id} is broken: {file}: {reason}; re-run `faverecs score`")]
    Broken {
        /// The run.
        run_id: String,
        /// The file (or `table/` for a whole table), relative to the run folder.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A sharded run lacks shards.
    #[error(
        "run {run_id} is incomplete: {} of the {} step {} not succeeded; rerun {} with `faverecs score --run-id {run_id} --step {} --shard i/{shards}`, then `faverecs score --finish --run-id {run_id}`",
        shard_list(missing, *shards), step.name(),
        if missing.len() == 1 { "has" } else { "have" },
        if missing.len() == 1 { "it" } else { "each" },
        step.name()
    )]
    MissingShard {
        /// The run.
        run_id: String,
        /// The step.
        step: ShardStep,
        /// The shards missing, ascending.
        missing: Vec<u32>,
        /// The step's shard count.
        shards: u32,
    },
    /// A sharded run's step has not run at all.
    #[error(
        "run {run_id} is incomplete: no shard of the {} step has succeeded; run `faverecs score --run-id {run_id} --step {} --shard i/N` for every i, then `faverecs score --finish --run-id {run_id}`",
        step.name(), step.name()
    )]
    NoShards {
        /// The run.
        run_id: String,
        /// The step.
        step: ShardStep,
    },
    /// Every shard of a sharded run succeeded, but it was not finished.
    #[error(
        "run {run_id} is not finished: every shard succeeded, but `faverecs score --finish --run-id {run_id}` has not run"
    )]
    NotFinished {
        /// The run.
        run_id: String,
    },
    /// Nothing to publish.
    #[error(
        "there is no succeeded run that passes its checks to publish; run `faverecs score` first"
    )]
    NothingToPublish,
    /// Other publishes kept changing `CURRENT`.
    #[error(
        "CURRENT was changed by other publishes {attempts} times in a row; run {run_id} was not published, so run the command again"
    )]
    LostRace {
        /// The run that was to be published.
        run_id: String,
        /// Attempts made.
        attempts: u32,
    },
    /// `CURRENT` holds something that is not a pointer to a run.
    #[error(
        "CURRENT is unreadable ({reason}); publish a run to replace it: `faverecs publish --run <id>` (see `faverecs runs` for the ids)"
    )]
    GarbagePointer {
        /// What is wrong with it.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new run id: UTC time to the second plus six hex digits, so ids sort by start
/// time and two runs started in the same second do not collide.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let nanos = now.timestamp_subsec_nanos() as u64;
    let mix = (nanos ^ (u64::from(std::process::id()) << 20)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%SZ"),
        (mix >> 40) & 0xff_ffff
    )
}

/// The id of a sharded run from what the orchestrator passes every shard: a
/// run id as it is, or the run's start time in RFC 3339 (Step Functions'
/// `$$.Execution.StartTime`), made into `YYYYMMDDTHHMMSSZ-` and six hex
/// digits of a stable hash (FNV-1a) of the text, so every shard of one
/// execution makes the same id and two executions in the same second do
/// not. `None` for anything else.
pub fn sharded_run_id(text: &str) -> Option<String> {
    let text = text.trim();
    if is_run_id(text) {
        return Some(text.to_string());
    }
    let at = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    let hash = crate::shard::shard_of(text, 1 << 24);
    Some(format!("{}-{hash:06x}", at.format("%Y%m%dT%H%M%SZ")))
}

/// Reads a run's manifest.
pub async fn read_manifest(storage: &Storage, run_id: &str) -> Result<Manifest, RunError> {
    if !is_safe_run_name(run_id) {
        return Err(RunError::BadRunId {
            run_id: run_id.to_string(),
        });
    }
    match storage.get_json(&manifest_path(run_id)).await {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound { .. }) => Err(RunError::UnknownRun {
            run_id: run_id.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Writes a run's manifest.
pub async fn write_manifest(storage: &Storage, manifest: &Manifest) -> Result<(), StoreError> {
    storage
        .put_json(&manifest_path(&manifest.run_id), manifest)
        .await
}

/// What `CURRENT` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum PointerState {
    /// Nothing was ever published.
    Unpublished,
    /// A run is published.
    Published(Pointer),
    /// `CURRENT` exists but is not a pointer to a run: why.
    Garbage(String),
}

/// Reads `CURRENT`, telling a missing pointer from a garbage one. Only a
/// storage failure is an error.
pub async fn pointer_state(storage: &Storage) -> Result<PointerState, StoreError> {
    match storage.get_json::<Pointer>(&Path::from(CURRENT)).await {
        Ok(p) if is_run_id(&p.run_id) => Ok(PointerState::Published(p)),
        Ok(p) => Ok(PointerState::Garbage(format!(
            "it names {:?}, which is not a run id",
            p.run_id.chars().take(64).collect::<String>()
        ))),
        Err(StoreError::NotFound { .. }) => Ok(PointerState::Unpublished),
        Err(StoreError::Json { source, .. }) => Ok(PointerState::Garbage(format!(
            "it is not a pointer: {}",
            capped(&source.to_string(), 200)
        ))),
        Err(e) => Err(e),
    }
}

/// The published run, if any; a garbage `CURRENT` is
/// [`RunError::GarbagePointer`], with the command that repairs it.
pub async fn current(storage: &Storage) -> Result<Option<Pointer>, RunError> {
    match pointer_state(storage).await? {
        PointerState::Unpublished => Ok(None),
        PointerState::Published(p) => Ok(Some(p)),
        PointerState::Garbage(reason) => Err(RunError::GarbagePointer { reason }),
    }
}

/// Every run, oldest first, with unfinished runs whose writer is gone marked
/// abandoned (see [`crate::lock::run_is_live`]); a sharded run without a
/// manifest is not, while it is in progress ([`SHARDED_RUN_GRACE`]).
///
/// One bad run never hides the others: a manifest that cannot be read or
/// decoded (an unknown status, say) is listed as unreadable with the reason;
/// folders under `runs/` whose names are not run ids are ignored; a garbage
/// `CURRENT` marks no run current (and is logged).
pub async fn list_runs(storage: &Storage) -> Result<Vec<RunSummary>, RunError> {
    let current = match pointer_state(storage).await? {
        PointerState::Published(p) => Some(p.run_id),
        PointerState::Unpublished => None,
        PointerState::Garbage(reason) => {
            tracing::warn!(%reason, "CURRENT is unreadable; no run is marked current");
            None
        }
    };
    let lock = match crate::lock::read_lock(storage).await? {
        Some(crate::lock::Stored { holder: Ok(h), .. }) => Some(h),
        _ => None,
    };
    let lease = std::time::Duration::from_secs(
        lock.as_ref()
            .map_or(LockSettings::default().lease_secs, |h| h.lease_secs),
    );
    let now = Utc::now();
    let mut ids = storage.list_dirs(&Path::from(RUNS_DIR)).await?;
    ids.retain(|id| is_run_id(id));
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for run_id in ids {
        let (manifest, unreadable) = match read_manifest(storage, &run_id).await {
            Ok(m) => (Some(m), None),
            Err(RunError::UnknownRun { .. }) => (None, None),
            Err(RunError::Store(StoreError::Json { source, .. })) => {
                (None, Some(capped(&source.to_string(), 200)))
            }
            Err(e) => (None, Some(capped(&e.to_string(), 200))),
        };
        let unfinished = match &manifest {
            Some(m) => m.status == RunStatus::Running,
            None => unreadable.is_none(),
        };
        let started = manifest
            .as_ref()
            .map(|m| m.started_at)
            .or_else(|| run_started_at(&run_id))
            .unwrap_or(now);
        let sharded = match (&manifest, &unreadable) {
            (None, None) => shard_progress(storage, &run_id, started, now).await?,
            _ => None,
        };
        let abandoned = unfinished
            && !crate::lock::run_is_live(lock.as_ref(), &run_id, started, lease, now)
            && !sharded.as_ref().is_some_and(|(live, _)| *live);
        out.push(RunSummary {
            current: current.as_deref() == Some(run_id.as_str()),
            run_id,
            manifest,
            unreadable,
            abandoned,
            shards_done: sharded.map(|(_, done)| done),
        });
    }
    Ok(out)
}

/// How long a sharded run with no manifest yet counts as in progress after
/// its start or its newest shard record: its shards hold no run lock and may
/// run, one step after another, for longer than the lock's lease.
pub const SHARDED_RUN_GRACE: chrono::Duration = chrono::Duration::hours(24);

/// For a sharded run: whether it is still being made (it started, or its
/// newest shard record was written, within [`SHARDED_RUN_GRACE`]) and the
/// shards done per step (`users 3/4, photos 0/4`, from the records' names).
/// `None` when it has no shard record.
async fn shard_progress(
    storage: &Storage,
    run_id: &str,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<(bool, String)>, StoreError> {
    let records = storage
        .list_files(&Path::from(format!("{RUNS_DIR}/{run_id}/shards")))
        .await?;
    if records.is_empty() {
        return Ok(None);
    }
    let mut newest = started;
    let mut done: BTreeMap<ShardStep, (u32, u32)> = BTreeMap::new();
    for path in &records {
        match storage.last_modified(path).await {
            Ok(t) => newest = newest.max(t),
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
        // <step>-<i>-of-<n>.json
        let name = path
            .filename()
            .unwrap_or_default()
            .trim_end_matches(".json");
        let mut parts = name.split('-');
        let (Some(step), Some(_), Some("of"), Some(n)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let (Some(step), Ok(n)) = (
            ShardStep::ALL.into_iter().find(|s| s.name() == step),
            n.parse::<u32>(),
        ) {
            let entry = done.entry(step).or_insert((0, n));
            entry.0 += 1;
            entry.1 = entry.1.max(n);
        }
    }
    let text = ShardStep::ALL
        .into_iter()
        .map(|step| {
            let (k, n) = done.get(&step).copied().unwrap_or((0, 0));
            if n == 0 {
                format!("{} none", step.name())
            } else {
                format!("{} {k}/{n}", step.name())
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Some((now - newest < SHARDED_RUN_GRACE, text)))
}

/// Checks a succeeded run before it is published: every file its manifest lists
/// exists, opens as Parquet with the table's contract schema, and the footers'
/// row counts add up to the manifest's count for the table. Reads footers only.
pub async fn verify(storage: &Storage, manifest: &Manifest) -> Result<(), RunError> {
    let broken = |file: String, reason: String| RunError::Broken {
        run_id: manifest.run_id.clone(),
        file,
        reason,
    };
    for (name, files) in &manifest.tables {
        let Some(table) = Table::RUN.into_iter().find(|t| t.name() == name) else {
            return Err(broken(
                format!("{name}/"),
                "the manifest lists a table that is not a run table".into(),
            ));
        };
        let mut rows = 0u64;
        for file in files {
            let path = Path::from(format!("{RUNS_DIR}/{}/{file}", manifest.run_id));
            match storage.check_parquet(&path, table).await {
                Ok(n) => rows += n,
                Err(StoreError::NotFound { .. }) => {
                    return Err(RunError::MissingFile {
                        run_id: manifest.run_id.clone(),
                        file: file.clone(),
                    });
                }
                // Storage failing is not a verdict on the run.
                Err(e @ (StoreError::Object { .. } | StoreError::PermissionDenied { .. })) => {
                    return Err(e.into());
                }
                Err(e) => return Err(broken(file.clone(), e.to_string())),
            }
        }
        let expected = manifest.rows_out.get(name).copied().unwrap_or(0);
        if rows != expected {
            return Err(broken(
                format!("{name}/"),
                format!("its files hold {rows} rows, the manifest says {expected}"),
            ));
        }
    }
    if let Some(s) = &manifest.serving {
        let path = Path::from(format!("{RUNS_DIR}/{}/{}", manifest.run_id, s.file));
        match storage.size(&path).await {
            Ok(n) if n == s.bytes => {}
            Ok(n) => {
                return Err(broken(
                    s.file.clone(),
                    format!("it holds {n} bytes, the manifest says {}", s.bytes),
                ));
            }
            Err(StoreError::NotFound { .. }) => {
                return Err(RunError::MissingFile {
                    run_id: manifest.run_id.clone(),
                    file: s.file.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Makes a run current, after [`verify`]ing it. With `None`, the newest
/// succeeded run that passes the checks is published; runs that fail them are
/// skipped with a warning naming the file and the reason.
pub async fn publish(storage: &Storage, run_id: Option<&str>) -> Result<Pointer, RunError> {
    let manifest = match run_id {
        Some(id) => match read_manifest(storage, id).await {
            Err(RunError::UnknownRun { run_id }) => {
                return Err(unfinished_sharded(storage, &run_id)
                    .await?
                    .unwrap_or(RunError::UnknownRun { run_id }));
            }
            other => other?,
        },
        None => {
            let mut newest_good = None;
            for r in list_runs(storage).await?.into_iter().rev() {
                let Some(m) = r.manifest.filter(|m| m.status == RunStatus::Succeeded) else {
                    continue;
                };
                match verify(storage, &m).await {
                    Ok(()) => {
                        newest_good = Some(m);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(run_id = %m.run_id, error = %e, "skipping a run that fails its checks")
                    }
                }
            }
            newest_good.ok_or(RunError::NothingToPublish)?
        }
    };
    if manifest.status != RunStatus::Succeeded {
        return Err(RunError::NotPublishable {
            run_id: manifest.run_id,
            status: manifest.status,
        });
    }
    verify(storage, &manifest).await?;
    write_pointer(storage, &manifest.run_id).await
}

/// Why a run with no manifest cannot be published, when it is a sharded run
/// not finished: the first missing shard, or that `--finish` has not run.
/// `None` when the run has no shard records (it does not exist).
async fn unfinished_sharded(storage: &Storage, run_id: &str) -> Result<Option<RunError>, RunError> {
    let dir = Path::from(format!("{RUNS_DIR}/{run_id}/shards"));
    if storage.list_files(&dir).await?.is_empty() {
        return Ok(None);
    }
    for step in ShardStep::ALL {
        if let Err(e) = complete_step(storage, run_id, step).await {
            return Ok(Some(e));
        }
    }
    Ok(Some(RunError::NotFinished {
        run_id: run_id.to_string(),
    }))
}

/// Points `CURRENT` at `run_id`, remembering the run it pointed at before. The
/// write is conditional on the `CURRENT` that was read, so two publishes at once
/// cannot lose each other's history; the loser reads again and retries.
async fn write_pointer(storage: &Storage, run_id: &str) -> Result<Pointer, RunError> {
    let path = Path::from(CURRENT);
    for _ in 0..PUBLISH_ATTEMPTS {
        let version = storage.version(&path).await?;
        let before = match version {
            Version::Absent => None,
            // Garbage: replaced, with no history to carry.
            Version::At(_) => match pointer_state(storage).await? {
                PointerState::Published(p) => Some(p),
                PointerState::Unpublished | PointerState::Garbage(_) => None,
            },
        };
        let mut previous: Vec<Published> = before
            .map(|p| {
                let mut list = vec![Published {
                    run_id: p.run_id,
                    published_at: p.published_at,
                }];
                list.extend(p.previous);
                list
            })
            .unwrap_or_default();
        previous.retain(|p| p.run_id != run_id);
        previous.truncate(HISTORY);
        let pointer = Pointer {
            run_id: run_id.to_string(),
            published_at: Utc::now(),
            previous,
        };
        let bytes = json_bytes(&path, &pointer)?;
        match storage.put_if(&path, bytes, &version).await {
            Ok(_) => {
                // Athena's `current_run` table reads this copy; a failure here
                // leaves it one publish behind, which the next publish mends.
                let copy = Path::from(PUBLISHED_COPY);
                let head = Published {
                    run_id: pointer.run_id.clone(),
                    published_at: pointer.published_at,
                };
                // One line: Athena's JSON SerDe reads one object per line.
                let mut line = serde_json::to_vec(&head).unwrap_or_default();
                line.push(b'\n');
                if let Err(e) = storage.put_bytes_replacing(&copy, line.into()).await {
                    tracing::warn!(error = %e, "published/current.json not updated; CURRENT is");
                }
                return Ok(pointer);
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::info!(
                    run_id,
                    "another publish changed CURRENT first; trying again"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RunError::LostRace {
        run_id: run_id.to_string(),
        attempts: PUBLISH_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_gives_its_start_time() {
        let id = new_run_id("2026-11-23T01:37:05Z".parse().expect("time"));
        assert_eq!(
            run_started_at(&id),
            Some("2026-11-23T01:37:05Z".parse().expect("time"))
        );
        assert_eq!(run_started_at("junk"), None);
    }

    #[test]
    fn a_sharded_run_id_comes_from_a_run_id_or_a_start_time() {
        let id = "20261130T020000Z-00aa01";
        assert_eq!(sharded_run_id(id).as_deref(), Some(id));
        let made = sharded_run_id("2026-11-30T02:00:00.123Z").expect("an RFC 3339 time");
        assert!(is_run_id(&made), "{made}");
        assert!(made.starts_with("20261130T020000Z-"), "{made}");
        assert_eq!(
            sharded_run_id("2026-11-30T02:00:00.123Z"),
            Some(made.clone())
        );
        assert_ne!(sharded_run_id("2026-11-30T02:00:00.456Z"), Some(made));
        for bad in ["", "yesterday", "../../etc", "20261130T020000Z"] {
            assert_eq!(sharded_run_id(bad), None, "{bad}");
        }
    }

    /// A users step whose shards assigned targets differently cannot
    /// complete: one of its targets may have been scored twice, or not at
    /// all. Records written before the field existed count as `nsid`.
    #[tokio::test]
    async fn shards_that_assigned_targets_differently_do_not_complete_their_step() {
        let storage = Storage::from_store(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "mem",
        );
        let run = "20261130T020000Z-00aa01";
        let now = Utc::now();
        let record = |shard: u32, assignment: Option<&str>| ShardRecord {
            step: ShardStep::Users,
            shard,
            shards: 3,
            started_at: now,
            finished_at: now,
            all_users: false,
            rows_in: BTreeMap::new(),
            rows_out: BTreeMap::new(),
            stages: Vec::new(),
            tables: BTreeMap::new(),
            peak_rss_mib: None,
            notes: Vec::new(),
            assignment: assignment.map(str::to_string),
        };
        let put = |r: ShardRecord| {
            let storage = storage.clone();
            async move {
                let path = shard_record_path(run, r.step, r.shard, r.shards);
                storage.put_json(&path, &r).await.expect("put");
            }
        };
        put(record(0, None)).await;
        put(record(1, Some("nsid"))).await;
        put(record(2, Some("nsid"))).await;
        let done = complete_step(&storage, run, ShardStep::Users).await;
        assert_eq!(done.expect("one assignment").len(), 3);

        put(record(0, Some("neighbourhood 00000000000000aa"))).await;
        put(record(2, Some("neighbourhood 00000000000000bb"))).await;
        let err = complete_step(&storage, run, ShardStep::Users)
            .await
            .expect_err("three assignments")
            .to_string();
        for part in [
            "0/3 by neighbourhood 00000000000000aa",
            "1/3 by nsid",
            "2/3 by neighbourhood 00000000000000bb",
            "rerun every users shard",
        ] {
            assert!(err.contains(part), "{part:?} missing from {err}");
        }
    }

    #[test]
    fn run_ids_sort_by_time_and_are_valid() {
        let a = new_run_id("2026-11-23T01:37:05Z".parse().expect("time"));
        let b = new_run_id("2026-11-23T01:37:06Z".parse().expect("time"));
        assert!(a < b);
        assert!(a.starts_with("20261123T013705Z-"));
        assert!(is_run_id(&a));
    }
}
