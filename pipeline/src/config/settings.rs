//! The validated settings every stage reads. They hold no secrets, so a run's
//! manifest records them.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Validated settings for every stage. Contains no secrets, so it is safe to record
/// in a run manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// Where the tables live.
    pub storage: StorageSettings,
    /// The Flickr API client (the key is not here: it comes from FLICKR_API_KEY).
    pub flickr: FlickrSettings,
    /// The extract stage.
    pub extract: ExtractSettings,
    /// Scoring knobs.
    pub score: ScoreSettings,
    /// Similar photos.
    pub similar: SimilarSettings,
    /// Offline evaluation.
    #[serde(default)]
    pub evaluate: EvaluateSettings,
    /// The HTTP service.
    pub serve: ServeSettings,
    /// What `faverecs gc` keeps. Older manifests lack it: the defaults.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// The run lock. Older manifests lack it: the defaults.
    #[serde(default)]
    pub lock: LockSettings,
    /// The synthetic community used by `faverecs demo` and the benchmarks.
    pub demo: DemoSettings,
}

/// Where the object store is and how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StorageSettings {
    /// The parsed `storage.url`.
    pub url: StorageUrl,
    /// An S3 endpoint override (a local S3 API server); `None` uses AWS's, or
    /// `AWS_ENDPOINT_URL` when that is set.
    pub endpoint: Option<String>,
    /// Hash buckets of a large raw table (favorites, contacts, dismissals)
    /// when it is first written or rebucketed; older settings lack it.
    #[serde(default = "default_raw_buckets")]
    pub raw_buckets: u32,
}

fn default_raw_buckets() -> u32 {
    DEFAULT_RAW_BUCKETS
}

/// The bucket count when `storage.raw_buckets` is not given.
pub const DEFAULT_RAW_BUCKETS: u32 = 64;

/// The most buckets a raw table may have (`bucket=NNNN` has four digits).
pub const MAX_RAW_BUCKETS: u32 = 4096;

/// A storage location, parsed from `storage.url`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StorageUrl {
    /// A directory on the local file system (created if missing).
    Local {
        /// The directory, as given (may be relative to the working directory).
        path: PathBuf,
    },
    /// An S3 bucket, with an optional key prefix under which everything lives.
    S3 {
        /// The bucket name.
        bucket: String,
        /// Key prefix without leading or trailing slashes; empty for the bucket root.
        prefix: String,
    },
}

impl StorageUrl {
    /// Parses a plain path, `file:///…` or `s3://bucket/prefix`.
    pub fn parse(text: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected a plain path, file:///… or s3://bucket/prefix";
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("is empty ({EXPECTED})"));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("has no bucket name ({EXPECTED})"));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(format!("is not an absolute file URL ({EXPECTED})"));
            }
            return Ok(StorageUrl::Local {
                path: PathBuf::from(rest),
            });
        }
        // Anything that looks like `scheme:` but was not recognised is a typo such as
        // `s3:/x` or `gs://x`, not a directory name.
        let scheme_like = text
            .split_once(':')
            .map(|(head, _)| {
                !head.is_empty()
                    && head.len() > 1
                    && head
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            })
            .unwrap_or(false);
        if scheme_like {
            return Err(format!("is not a supported URL ({EXPECTED})"));
        }
        Ok(StorageUrl::Local {
            path: PathBuf::from(text),
        })
    }
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageUrl::Local { path } => write!(f, "{}", path.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Flickr API client settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlickrSettings {
    /// REST endpoint, e.g. `https://api.flickr.com/services/rest/`.
    pub api_url: String,
    /// Calls per hour allowed for the whole process.
    pub calls_per_hour: u32,
    /// Calls allowed back to back.
    pub burst: u32,
    /// Seconds before one HTTP request is abandoned.
    pub timeout_secs: u64,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Most seconds spent retrying one call.
    pub max_retry_secs: u64,
    /// Favourites asked for per call (Flickr allows at most 500).
    pub per_page: u32,
    /// Favourites kept per user.
    pub max_favorites_per_user: usize,
    /// favorites.getPublicList calls per user.
    pub max_calls_per_user: u32,
}

/// Extract stage settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExtractSettings {
    /// Users fetched concurrently.
    pub concurrency: usize,
    /// Hours before a user is pulled again.
    pub refresh_after_hours: u64,
    /// Days between full pulls of a user's list.
    pub full_refresh_after_days: u64,
    /// Days before a not-found or deleted user is tried again.
    pub not_found_retry_days: u64,
    /// The run fails at this percentage of failed users.
    pub max_failed_percent: u32,
    /// The shortest a user's adaptive refresh interval gets, in hours.
    #[serde(default = "default_min_refresh")]
    pub min_refresh_hours: u64,
    /// The longest a user's adaptive refresh interval gets, in hours.
    #[serde(default = "default_max_refresh")]
    pub max_refresh_hours: u64,
    /// The longest a tracked user's refresh interval gets, in hours (their
    /// own favourites shape their lists the most); by default the same as
    /// `max_refresh_hours`. Older manifests lack it.
    #[serde(default = "default_tracked_max_refresh")]
    pub tracked_max_refresh_hours: u64,
    /// How neighbours are ordered under a budget. Older manifests lack it.
    #[serde(default)]
    pub order: Order,
    /// The run's budget of API calls (retries included); `None`: no budget.
    /// Older manifests lack it.
    #[serde(default)]
    pub max_calls: Option<u64>,
}

/// Scoring knobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreSettings {
    /// Photo recs kept per user.
    pub photo_recs_per_user: usize,
    /// Photographer recs kept per user.
    pub photographer_recs_per_user: usize,
    /// Neighbors listed per photo rec, to explain it.
    pub top_neighbors_per_rec: usize,
    /// Rayon threads for the kernel; 0 means one per core.
    pub threads: usize,
    /// The photo-rec algorithms, in display order. (The serde defaults below let
    /// manifests written before a key existed still be read.)
    #[serde(default = "flexplore_only")]
    pub algorithms: Vec<crate::model::Algorithm>,
    /// `itemknn`: similar photos used per favourite.
    #[serde(default)]
    pub itemknn_neighbors: usize,
    /// `explore`: the sample's seed.
    #[serde(default)]
    pub explore_seed: u64,
    /// Photos kept per tag in `tag_photos`.
    #[serde(default)]
    pub tag_photos_per_tag: usize,
    /// A tracked user whose Flexplore list is shorter than this gets it filled
    /// with the neighbourhood's popular photos, marked as a fallback (0: never).
    #[serde(default)]
    pub fallback_below: usize,
    /// How a sharded run's users step assigns targets to its shards.
    #[serde(default)]
    pub shard_targets_by: ShardTargetsBy,
}

/// `score.shard_targets_by`: how a sharded run's users step assigns targets
/// to shards (`crate::score::assign`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardTargetsBy {
    /// Targets that share neighbours go to the same shard, when a users
    /// shard reads only its targets' neighbourhood; every shard then reads
    /// every target's favourites to make the same assignment. Otherwise, as
    /// `nsid`.
    Neighbourhood,
    /// A hash of the target's NSID (`crate::shard::shard_of`), as extract
    /// shards users: a shard reads only its own targets' favourites.
    #[default]
    Nsid,
}

impl ShardTargetsBy {
    /// The config value.
    pub fn name(self) -> &'static str {
        match self {
            ShardTargetsBy::Neighbourhood => "neighbourhood",
            ShardTargetsBy::Nsid => "nsid",
        }
    }
}

fn flexplore_only() -> Vec<crate::model::Algorithm> {
    vec![crate::model::Algorithm::Flexplore]
}

/// Offline-evaluation settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct EvaluateSettings {
    /// Whether `score` evaluates too (`faverecs evaluate` always does).
    pub enabled: bool,
    /// Share of each tracked user's favourites hidden, newest first.
    pub holdout_percent: u32,
    /// Seed of the random split used when `date_faved` is missing.
    pub seed: u64,
    /// Cut-offs the metrics are computed at, ascending.
    pub ks: Vec<usize>,
}

/// Similar-photos settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SimilarSettings {
    /// Whether score computes them.
    pub enabled: bool,
    /// Rows kept per photo.
    pub k: usize,
    /// Least co-favourites for a pair.
    pub min_common: u32,
    /// The measure.
    pub similarity: crate::model::Similarity,
    /// BM25's K1.
    #[serde(default)]
    pub bm25_k1: f64,
    /// BM25's B.
    #[serde(default)]
    pub bm25_b: f64,
}

/// `extract.order`: how due neighbours are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// New users' neighbours, overdue, then due, each by influence × staleness
    /// ÷ cost (docs/architecture.md).
    #[default]
    Priority,
    /// Stalest first, nothing else: the round-robin baseline of the freshness
    /// benchmark.
    Staleness,
}

/// HTTP service settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServeSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// Seconds between checks for a newly published run.
    pub poll_interval_secs: u64,
    /// What serve does when the published run cannot be loaded and it has
    /// nothing loaded yet (a restart). Older manifests lack it: the default.
    #[serde(default)]
    pub on_bad_run: OnBadRun,
}

/// Retention: what `faverecs gc` (and `nightly`) keeps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetentionSettings {
    /// The newest succeeded runs kept, besides the published one.
    pub keep_runs: usize,
    /// Runs younger than this many days are kept whatever their status
    /// (abandoned runs aside).
    pub keep_days: u64,
    /// Temporary files (`<object>#<n>`, stale `.lock` files) older than this
    /// many seconds are removed; younger ones may belong to a writer at work.
    pub stray_grace_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            keep_runs: 7,
            keep_days: 14,
            stray_grace_secs: 3600,
        }
    }
}

/// The run lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockSettings {
    /// Seconds after its holder's last heartbeat at which the lock may be taken
    /// over; the holder renews it every third of this.
    pub lease_secs: u64,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings { lease_secs: 300 }
    }
}

/// `serve.on_bad_run`: when the published run cannot be loaded at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRun {
    /// Serve the newest previously published run that loads, and say so (a
    /// `Faverecs-Fallback` header, `/api/runs/current`, `/readyz` "degraded").
    #[default]
    Previous,
    /// Answer 503 naming the run and why, until a loadable run is published.
    Unavailable,
}

impl OnBadRun {
    /// The config value.
    pub fn name(self) -> &'static str {
        match self {
            OnBadRun::Previous => "previous",
            OnBadRun::Unavailable => "unavailable",
        }
    }
}

/// Synthetic community settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DemoSettings {
    /// People in the community (each favourites and most also photograph).
    pub users: usize,
    /// How many of them are tracked users.
    pub tracked_users: usize,
    /// Taste clusters.
    pub clusters: usize,
    /// Seed: the same seed always gives the same community.
    pub seed: u64,
}

fn default_min_refresh() -> u64 {
    12
}

fn default_max_refresh() -> u64 {
    168
}

fn default_tracked_max_refresh() -> u64 {
    168
}
