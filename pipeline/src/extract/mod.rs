//! Extract: favourites and contacts from the Flickr API into the raw tables.
//!
//! Phase 1 pulls the favourites and contacts of every tracked user; phase 2 pulls
//! the favourites of their neighbours (the owners of the tracked users' favourites),
//! each user at most once per run. Both phases are "a list of users in, rows out",
//! so they can be sharded by a stable hash of the NSID.
//!
//! Resumability: each finished user is written as one object,
//! `extract/pending/<phase>/<nsid>.json`, in one atomic put. A run killed at any
//! point leaves only whole users behind; the same command resumes, skipping users
//! whose object exists. At the end, every pending user is folded into the raw tables
//! (each rewritten in one atomic put) and the pending objects are deleted. Folding is
//! idempotent, so a kill during it is also safe: the next run folds again.
//!
//! Freshness and deletions: a user pulled within `extract.refresh_after_hours` is
//! skipped and keeps their stored rows. Otherwise the pull is incremental
//! (`min_fave_date` = newest favourite held; the answer is added to the stored set)
//! unless the last full pull is older than `extract.full_refresh_after_days`, in
//! which case the whole list is pulled and replaces the stored set, which is how
//! deleted favourites disappear. A tracked user's contacts are pulled with each full
//! pull and kept in between.

pub mod client;
pub mod sim;
pub mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::import::{ImportError, merge_raw, replace_raw};
use crate::model::{Table, is_nsid};
use crate::store::{Storage, StoreError};

use client::{Fave, FlickrClient, FlickrError};

/// Where pending per-user results live.
pub const PENDING_DIR: &str = "extract/pending";
/// Where extract manifests live.
pub const MANIFEST_DIR: &str = "extract/manifests";

/// Why an extract run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Nobody to pull.
    #[error(
        "there are no tracked users; add some with `faverecs users add <flickr URL | NSID | username>`"
    )]
    NoTrackedUsers,
    /// Flickr refused the key, or it is missing.
    #[error(transparent)]
    Flickr(#[from] FlickrError),
    /// Too many users failed.
    #[error(
        "{failed} of {attempted} users failed ({percent:.0}% ≥ extract.max_failed_percent = {limit}%): the run is stopped and nothing was folded into the tables; finished users are kept and the same command resumes. First failures: {examples}"
    )]
    TooManyFailures {
        /// Users that failed.
        failed: usize,
        /// Users attempted.
        attempted: usize,
        /// failed / attempted.
        percent: f64,
        /// The limit.
        limit: u32,
        /// A few failures.
        examples: String,
    },
    /// `--phase` was malformed.
    #[error("--phase {0:?} is not a phase (expected tracked or neighbors)")]
    BadPhase(String),
    /// `--shard` was malformed.
    #[error("--shard {0:?} is not i/N with 0 ≤ i < N (e.g. --shard 0/4)")]
    BadShard(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing tables failed.
    #[error(transparent)]
    Import(#[from] ImportError),
}

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
    fn name(self) -> &'static str {
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
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Deleted => "deleted",
            Outcome::Failed => "failed",
        }
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
    /// Last outcome.
    pub outcome: Option<String>,
    /// Not before this time (not-found/deleted back-off).
    pub next_attempt_at: Option<i64>,
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
}

impl ExtractOptions {
    /// Both phases, unsharded, now.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            shard: None,
            phase: None,
        }
    }
}

/// Parses `tracked` or `neighbors`.
pub fn parse_phase(text: &str) -> Result<Phase, ExtractError> {
    match text {
        "tracked" => Ok(Phase::Tracked),
        "neighbors" | "neighbours" => Ok(Phase::Neighbor),
        other => Err(ExtractError::BadPhase(other.to_string())),
    }
}

/// Parses `i/N`.
pub fn parse_shard(text: &str) -> Result<(u32, u32), ExtractError> {
    let bad = || ExtractError::BadShard(text.to_string());
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<u32>().map_err(|_| bad())?,
        n.trim().parse::<u32>().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// A stable hash of an NSID (FNV-1a), so shards agree across machines and versions.
pub fn shard_of(nsid: &str, shards: u32) -> u32 {
    let h = nsid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % u64::from(shards)) as u32
}

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
}

/// `extract/manifests/<run_id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExtractManifest {
    /// Run id.
    pub run_id: String,
    /// `succeeded` or `failed`.
    pub status: String,
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
    /// The error, for a failed run.
    pub error: Option<String>,
}

fn pending_path(phase: Phase, nsid: &str) -> Path {
    Path::from(format!("{PENDING_DIR}/{}/{nsid}.json", phase.name()))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn strings_of(batches: &[RecordBatch], col: usize) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column(col).as_string::<i32>();
        out.extend(a.iter().map(|v| v.map(str::to_string)));
    }
    out
}

fn times_of(batches: &[RecordBatch], col: usize) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column(col).as_primitive::<TimestampMicrosecondType>();
        out.extend(a.iter());
    }
    out
}

/// The tracked users' NSIDs, sorted.
pub async fn tracked_users(storage: &Storage) -> Result<Vec<String>, StoreError> {
    let batches = storage
        .read_raw(Table::TrackedUsers)
        .await?
        .unwrap_or_default();
    let set: BTreeSet<String> = strings_of(&batches, 0).into_iter().flatten().collect();
    Ok(set.into_iter().collect())
}

async fn read_state(storage: &Storage) -> Result<HashMap<String, UserState>, StoreError> {
    let b = storage
        .read_raw(Table::ExtractState)
        .await?
        .unwrap_or_default();
    let users = strings_of(&b, 0);
    let (pulled, full, newest, outcome, next) = (
        times_of(&b, 1),
        times_of(&b, 2),
        times_of(&b, 3),
        strings_of(&b, 4),
        times_of(&b, 5),
    );
    let mut out = HashMap::new();
    for i in 0..users.len() {
        if let Some(u) = &users[i] {
            out.insert(
                u.clone(),
                UserState {
                    last_pulled_at: pulled[i],
                    last_full_pull_at: full[i],
                    newest_date_faved: newest[i],
                    outcome: outcome[i].clone(),
                    next_attempt_at: next[i],
                },
            );
        }
    }
    Ok(out)
}

async fn read_pending(storage: &Storage) -> Result<Vec<UserPull>, StoreError> {
    let mut files = storage.list_files(&Path::from(PENDING_DIR)).await?;
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        out.push(storage.get_json::<UserPull>(&f).await?);
    }
    Ok(out)
}

enum Step {
    Resumed,
    Fresh,
    Backoff,
    Pulled(Outcome),
    Failed(String),
}

struct Ctx<'a> {
    storage: &'a Storage,
    client: &'a FlickrClient,
    settings: &'a Settings,
    state: &'a HashMap<String, UserState>,
    done: &'a BTreeSet<(Phase, String)>,
    now: DateTime<Utc>,
}

async fn pull_user(
    ctx: &Ctx<'_>,
    phase: Phase,
    user: String,
) -> Result<(String, Step), ExtractError> {
    if ctx.done.contains(&(phase, user.clone())) {
        return Ok((user, Step::Resumed));
    }
    let now = micros(ctx.now);
    let st = ctx.state.get(&user).cloned().unwrap_or_default();
    if st.next_attempt_at.is_some_and(|t| t > now) {
        return Ok((user, Step::Backoff));
    }
    let refresh = Duration::hours(ctx.settings.extract.refresh_after_hours as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    if st.outcome.as_deref() == Some("ok")
        && st
            .last_pulled_at
            .is_some_and(|t| t.saturating_add(refresh) > now)
    {
        return Ok((user, Step::Fresh));
    }
    let full_after = Duration::days(ctx.settings.extract.full_refresh_after_days as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    let full = st.newest_date_faved.is_none()
        || st
            .last_full_pull_at
            .is_none_or(|t| t.saturating_add(full_after) <= now);
    let min_fave_date = if full {
        None
    } else {
        st.newest_date_faved.map(|m| m / 1_000_000)
    };
    let classify = |e: FlickrError| -> Result<Result<Outcome, String>, ExtractError> {
        match e {
            FlickrError::NotFound { .. } => Ok(Ok(Outcome::NotFound)),
            FlickrError::Deleted { .. } => Ok(Ok(Outcome::Deleted)),
            FlickrError::InvalidKey | FlickrError::MissingKey | FlickrError::Client(_) => {
                Err(e.into())
            }
            other => Ok(Err(other.to_string())),
        }
    };
    let mut pull = UserPull {
        user_id: user.clone(),
        phase,
        outcome: Outcome::Ok,
        full,
        pulled_at: ctx.now,
        favorites: Vec::new(),
        contacts: None,
    };
    match ctx.client.favorites(&user, min_fave_date).await {
        Ok(f) => pull.favorites = f,
        Err(e) => match classify(e)? {
            Ok(outcome) => pull.outcome = outcome,
            Err(msg) => return Ok((user, Step::Failed(msg))),
        },
    }
    // Contacts change rarely and only feed the photographer-rec exclusions, so they
    // are pulled with the full list and kept between full pulls.
    if phase == Phase::Tracked && full && pull.outcome == Outcome::Ok {
        match ctx.client.contacts(&user).await {
            Ok(c) => pull.contacts = Some(c),
            Err(e) => match classify(e)? {
                Ok(outcome) => pull.outcome = outcome,
                Err(msg) => return Ok((user, Step::Failed(msg))),
            },
        }
    }
    ctx.storage
        .put_json(&pending_path(phase, &user), &pull)
        .await?;
    Ok((user, Step::Pulled(pull.outcome)))
}

async fn run_phase(
    ctx: &Ctx<'_>,
    phase: Phase,
    users: Vec<String>,
    counts: &mut UserCounts,
    failures: &mut Vec<String>,
) -> Result<(), ExtractError> {
    let total = users.len();
    let step = (total / 10).max(1);
    let mut seen = 0usize;
    // A live bar on a terminal; plain log lines (every 10%) otherwise.
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>9} [{bar:30}] {pos}/{len} users  {msg}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(phase.name());
        bar
    });
    let started = std::time::Instant::now();
    let mut results = futures::stream::iter(users)
        .map(|u| pull_user(ctx, phase, u))
        .buffer_unordered(ctx.settings.extract.concurrency);
    while let Some((user, s)) = results.try_next().await? {
        seen += 1;
        match s {
            Step::Resumed => counts.resumed += 1,
            Step::Fresh => counts.skipped_fresh += 1,
            Step::Backoff => counts.skipped_backoff += 1,
            Step::Pulled(Outcome::NotFound) => counts.not_found += 1,
            Step::Pulled(Outcome::Deleted) => counts.deleted += 1,
            Step::Pulled(_) => counts.fetched += 1,
            Step::Failed(msg) => {
                counts.failed += 1;
                tracing::warn!(%user, error = %msg, "user failed after retries");
                if failures.len() < 20 {
                    failures.push(format!("{user}: {msg}"));
                }
            }
        }
        let calls = ctx.client.stats.calls();
        if let Some(bar) = &bar {
            let retries: u64 = ctx.client.stats.retries().values().sum();
            let rate = calls as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("{calls} calls ({rate:.1}/s), {retries} retries"));
            bar.inc(1);
        } else if seen.is_multiple_of(step) || seen == total {
            tracing::info!(
                phase = phase.name(),
                done = seen,
                total,
                calls,
                "extract progress"
            );
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    Ok(())
}

/// Runs the extract stage and writes its manifest.
pub async fn run_extract(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
) -> Result<ExtractManifest, ExtractError> {
    let started = Utc::now();
    let run_id = crate::runs::new_run_id(started);
    let mut manifest = ExtractManifest {
        run_id: run_id.clone(),
        status: "running".into(),
        started_at: started,
        finished_at: started,
        shard: options.shard.map(|(i, n)| format!("{i}/{n}")),
        calls: 0,
        retries: BTreeMap::new(),
        tracked: UserCounts::default(),
        neighbors: UserCounts::default(),
        rows_written: BTreeMap::new(),
        failures: Vec::new(),
        error: None,
    };
    let result = extract_into(storage, settings, client, options, &mut manifest).await;
    manifest.finished_at = Utc::now();
    manifest.calls = client.stats.calls();
    manifest.retries = client.stats.retries();
    manifest.status = if result.is_ok() {
        "succeeded"
    } else {
        "failed"
    }
    .into();
    if let Err(e) = &result {
        manifest.error = Some(e.to_string());
    }
    storage
        .put_json(
            &Path::from(format!("{MANIFEST_DIR}/{run_id}.json")),
            &manifest,
        )
        .await?;
    result.map(|()| manifest)
}

async fn extract_into(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
    manifest: &mut ExtractManifest,
) -> Result<(), ExtractError> {
    let in_shard = |u: &String| options.shard.is_none_or(|(i, n)| shard_of(u, n) == i);
    let tracked = tracked_users(storage).await?;
    if tracked.is_empty() {
        return Err(ExtractError::NoTrackedUsers);
    }
    let state = read_state(storage).await?;
    let pending = read_pending(storage).await?;
    let done: BTreeSet<(Phase, String)> = pending
        .iter()
        .map(|p| (p.phase, p.user_id.clone()))
        .collect();
    let ctx = Ctx {
        storage,
        client,
        settings,
        state: &state,
        done: &done,
        now: options.now,
    };
    let mut failures = Vec::new();
    let runs = |p: Phase| options.phase.is_none_or(|only| only == p);
    if runs(Phase::Tracked) {
        let mine: Vec<String> = tracked.iter().filter(|u| in_shard(u)).cloned().collect();
        run_phase(
            &ctx,
            Phase::Tracked,
            mine,
            &mut manifest.tracked,
            &mut failures,
        )
        .await?;
    }

    // Neighbours: owners of the tracked users' favourites, stored or just pulled.
    let tracked_set: BTreeSet<&String> = tracked.iter().collect();
    let mut neighbors = BTreeSet::new();
    let stored = storage
        .read_raw(Table::Favorites)
        .await?
        .unwrap_or_default();
    for (u, o) in strings_of(&stored, 0)
        .into_iter()
        .zip(strings_of(&stored, 2))
    {
        if let (Some(u), Some(o)) = (u, o)
            && tracked_set.contains(&u)
        {
            neighbors.insert(o);
        }
    }
    for p in read_pending(storage).await? {
        if p.phase == Phase::Tracked {
            neighbors.extend(p.favorites.into_iter().map(|f| f.owner_id));
        }
    }
    let neighbors: Vec<String> = neighbors
        .into_iter()
        .filter(|n| is_nsid(n) && !tracked_set.contains(n) && in_shard(n))
        .collect();
    if runs(Phase::Neighbor) {
        run_phase(
            &ctx,
            Phase::Neighbor,
            neighbors,
            &mut manifest.neighbors,
            &mut failures,
        )
        .await?;
    }
    manifest.failures = failures.clone();

    let attempted: usize = [&manifest.tracked, &manifest.neighbors]
        .iter()
        .map(|c| c.fetched + c.not_found + c.deleted + c.failed)
        .sum();
    let failed = manifest.tracked.failed + manifest.neighbors.failed;
    if attempted > 0 {
        let percent = 100.0 * failed as f64 / attempted as f64;
        if percent >= f64::from(settings.extract.max_failed_percent) {
            return Err(ExtractError::TooManyFailures {
                failed,
                attempted,
                percent,
                limit: settings.extract.max_failed_percent,
                examples: failures
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    if options.shard.is_some() || options.phase.is_some() {
        tracing::info!(
            "phase/shard done; fold with `faverecs extract --fold-only` once every shard has finished"
        );
        return Ok(());
    }
    manifest.rows_written = fold(storage, settings, options.now).await?;
    Ok(())
}

/// user_id, photo_id, owner_id, date_faved (µs) columns being assembled.
type FavoriteColumns = (
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<i64>>,
);

fn str_array(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn ts_array(v: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
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
    let stored = storage
        .read_raw(Table::Favorites)
        .await?
        .unwrap_or_default();
    let mut fav: FavoriteColumns = Default::default();
    for p in &pulls {
        for f in &p.favorites {
            fav.0.push(Some(p.user_id.clone()));
            fav.1.push(Some(f.photo_id.clone()));
            fav.2.push(Some(f.owner_id.clone()));
            fav.3
                .push(f.date_faved.map(|d| d.saturating_mul(1_000_000)));
        }
    }
    let (su, sp, so, sd) = (
        strings_of(&stored, 0),
        strings_of(&stored, 1),
        strings_of(&stored, 2),
        times_of(&stored, 3),
    );
    for i in 0..su.len() {
        if su[i].as_deref().is_some_and(|u| !replaced.contains(u)) {
            fav.0.push(su[i].clone());
            fav.1.push(sp[i].clone());
            fav.2.push(so[i].clone());
            fav.3.push(sd[i]);
        }
    }
    let favorites = RecordBatch::try_new(
        Table::Favorites.schema(),
        vec![
            str_array(fav.0),
            str_array(fav.1),
            str_array(fav.2),
            ts_array(fav.3),
        ],
    )
    .map_err(|e| ImportError::Frame(e.into()))?;
    let r = replace_raw(storage, Table::Favorites, vec![favorites]).await?;
    rows.insert("favorites".into(), r.rows_after as u64);

    // Photos: metadata from every favourite pulled; newest answer wins.
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
    let [a, b, c, d, e, f, g] = ph;
    let photos = RecordBatch::try_new(
        Table::Photos.schema(),
        vec![
            str_array(a),
            str_array(b),
            str_array(c),
            str_array(d),
            str_array(e),
            str_array(f),
            str_array(g),
            ts_array(uploads),
        ],
    )
    .map_err(|e| ImportError::Frame(e.into()))?;
    let r = merge_raw(storage, Table::Photos, vec![photos]).await?;
    rows.insert("photos".into(), r.rows_after as u64);

    // Contacts: replaced for every user whose contacts were pulled.
    let with_contacts: BTreeSet<&str> = pulls
        .iter()
        .filter(|p| p.contacts.is_some())
        .map(|p| p.user_id.as_str())
        .collect();
    let stored = storage.read_raw(Table::Contacts).await?.unwrap_or_default();
    let (mut cu, mut cc) = (Vec::new(), Vec::new());
    for p in &pulls {
        for c in p.contacts.iter().flatten() {
            cu.push(Some(p.user_id.clone()));
            cc.push(Some(c.clone()));
        }
    }
    for (u, c) in strings_of(&stored, 0)
        .into_iter()
        .zip(strings_of(&stored, 1))
    {
        if u.as_deref().is_some_and(|u| !with_contacts.contains(u)) {
            cu.push(u);
            cc.push(c);
        }
    }
    let contacts =
        RecordBatch::try_new(Table::Contacts.schema(), vec![str_array(cu), str_array(cc)])
            .map_err(|e| ImportError::Frame(e.into()))?;
    let r = replace_raw(storage, Table::Contacts, vec![contacts]).await?;
    rows.insert("contacts".into(), r.rows_after as u64);

    // State.
    let mut state = read_state(storage).await?;
    let retry_after = Duration::days(settings.extract.not_found_retry_days as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    for p in &pulls {
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
        s.outcome = Some(p.outcome.name().to_string());
        s.next_attempt_at =
            (p.outcome != Outcome::Ok).then(|| micros(now).saturating_add(retry_after));
    }
    let mut users: Vec<(&String, &UserState)> = state.iter().collect();
    users.sort_by(|a, b| a.0.cmp(b.0));
    let batch = RecordBatch::try_new(
        Table::ExtractState.schema(),
        vec![
            str_array(users.iter().map(|(u, _)| Some((*u).clone())).collect()),
            ts_array(users.iter().map(|(_, s)| s.last_pulled_at).collect()),
            ts_array(users.iter().map(|(_, s)| s.last_full_pull_at).collect()),
            ts_array(users.iter().map(|(_, s)| s.newest_date_faved).collect()),
            str_array(users.iter().map(|(_, s)| s.outcome.clone()).collect()),
            ts_array(users.iter().map(|(_, s)| s.next_attempt_at).collect()),
        ],
    )
    .map_err(|e| ImportError::Frame(e.into()))?;
    let r = replace_raw(storage, Table::ExtractState, vec![batch]).await?;
    rows.insert("extract_state".into(), r.rows_after as u64);

    for p in &pulls {
        storage.delete(&pending_path(p.phase, &p.user_id)).await?;
    }
    Ok(rows)
}
