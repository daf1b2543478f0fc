//! Settings, loaded in layers and validated into typed structs.
//!
//! The layers, later ones winning: the embedded defaults (byte-for-byte
//! `config/local.toml`), an optional TOML file given with `--config`, then
//! environment variables named `FAVERECS__SECTION__KEY`. Command-line flags are the
//! last layer and are applied by the binary on the validated [`Settings`].
//!
//! Loading happens in two steps, as ripgrep parses its flags: first into `Raw*`
//! structs that mirror the file (unknown keys are refused), then into [`Settings`],
//! whose values have been checked. Every error names the key, the value and what
//! was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

/// The built-in defaults: exactly the text of `config/local.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../config/local.toml");

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "FAVERECS__";

/// A configuration problem, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist or cannot be read.
    #[error("config file {path}: {reason} (pass an existing TOML file to --config)")]
    File {
        /// The path as given.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// A key is unknown, has the wrong type, or could not be parsed.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A key parsed but its value is not acceptable.
    #[error("config key {key}: {value:?} {problem}")]
    Invalid {
        /// Dotted key, e.g. `storage.url`.
        key: &'static str,
        /// The offending value, as text.
        value: String,
        /// What is wrong and what is expected.
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    storage: RawStorage,
    flickr: RawFlickr,
    extract: RawExtract,
    score: RawScore,
    similar: RawSimilar,
    evaluate: RawEvaluate,
    serve: RawServe,
    demo: RawDemo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    url: String,
    endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlickr {
    api_url: String,
    calls_per_hour: i64,
    burst: i64,
    timeout_secs: i64,
    max_attempts: i64,
    max_retry_secs: i64,
    per_page: i64,
    max_favorites_per_user: i64,
    max_calls_per_user: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtract {
    concurrency: i64,
    refresh_after_hours: i64,
    full_refresh_after_days: i64,
    not_found_retry_days: i64,
    max_failed_percent: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScore {
    photo_recs_per_user: i64,
    photographer_recs_per_user: i64,
    top_neighbors_per_rec: i64,
    threads: i64,
    algorithms: Vec<String>,
    itemknn_neighbors: i64,
    explore_seed: i64,
    tag_photos_per_tag: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimilar {
    enabled: bool,
    k: i64,
    min_common: i64,
    similarity: String,
    bm25_k1: f64,
    bm25_b: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvaluate {
    enabled: bool,
    holdout_percent: i64,
    seed: i64,
    ks: Vec<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    addr: String,
    poll_interval_secs: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemo {
    users: i64,
    tracked_users: i64,
    clusters: i64,
    seed: i64,
}

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
}

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
    pub algorithms: Vec<crate::score::Algorithm>,
    /// `itemknn`: similar photos used per favourite.
    #[serde(default)]
    pub itemknn_neighbors: usize,
    /// `explore`: the sample's seed.
    #[serde(default)]
    pub explore_seed: u64,
    /// Photos kept per tag in `tag_photos`.
    #[serde(default)]
    pub tag_photos_per_tag: usize,
}

fn flexplore_only() -> Vec<crate::score::Algorithm> {
    vec![crate::score::Algorithm::Flexplore]
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
    pub similarity: crate::score::similar::Similarity,
    /// BM25's K1.
    #[serde(default)]
    pub bm25_k1: f64,
    /// BM25's B.
    #[serde(default)]
    pub bm25_b: f64,
}

/// HTTP service settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServeSettings {
    /// Listen address.
    pub addr: SocketAddr,
    /// Seconds between checks for a newly published run.
    pub poll_interval_secs: u64,
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

impl Settings {
    /// Loads the embedded defaults, then `file` if given, then the process
    /// environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] but with an explicit environment, so tests need not
    /// touch the process environment.
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        // Collect the overrides ourselves: figment's Env reads the process
        // environment, and tests must be able to pass their own.
        let mut overrides = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            overrides.push((name, key, value));
        }
        let mut env_names = std::collections::HashMap::new();
        for (name, key, value) in overrides {
            if !key.contains('.') {
                return Err(ConfigError::Parse(format!(
                    "environment variable {name} does not name a key (expected {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}STORAGE__URL)"
                )));
            }
            // figment parses "2" as an integer and "true" as a bool, as TOML would.
            let Ok(parsed) = value.parse::<figment::value::Value>();
            figment = figment.merge(figment::providers::Serialized::default(&key, parsed));
            env_names.insert(key, name);
        }
        let raw: RawSettings = figment.extract().map_err(|e| {
            let mut parts = Vec::new();
            for err in e {
                let mut key = err.path.join(".");
                let problem = match &err.kind {
                    figment::error::Kind::UnknownField(field, expected) => {
                        if err.path.last() != Some(field) {
                            key = if key.is_empty() {
                                field.clone()
                            } else {
                                format!("{key}.{field}")
                            };
                        }
                        format!("unknown key (expected one of: {})", expected.join(", "))
                    }
                    other => other.to_string(),
                };
                let source = match env_names.get(&key) {
                    Some(name) => format!("from environment variable {name}"),
                    None if file.is_some() => format!(
                        "from {} or the defaults",
                        file.map(|f| f.display().to_string()).unwrap_or_default()
                    ),
                    None => "from the defaults".to_string(),
                };
                let key = if key.is_empty() {
                    "(top level)".into()
                } else {
                    key
                };
                parts.push(format!("config key {key}: {problem} ({source})"));
            }
            ConfigError::Parse(parts.join("; "))
        })?;
        raw.validate()
    }
}

fn positive(key: &'static str, value: i64, max: i64) -> Result<usize, ConfigError> {
    if value < 1 || value > max {
        return Err(ConfigError::Invalid {
            key,
            value: value.to_string(),
            problem: format!("is out of range (expected a whole number from 1 to {max})"),
        });
    }
    Ok(value as usize)
}

impl RawSettings {
    fn validate(self) -> Result<Settings, ConfigError> {
        let url = StorageUrl::parse(&self.storage.url).map_err(|problem| ConfigError::Invalid {
            key: "storage.url",
            value: self.storage.url.clone(),
            problem,
        })?;
        let endpoint = match self.storage.endpoint.trim() {
            "" => None,
            e if e.starts_with("http://") || e.starts_with("https://") => Some(e.to_string()),
            e => {
                return Err(ConfigError::Invalid {
                    key: "storage.endpoint",
                    value: e.to_string(),
                    problem:
                        "is not an http(s) URL (expected e.g. http://127.0.0.1:5000, or empty)"
                            .into(),
                });
            }
        };
        let threads = self.score.threads;
        if !(0..=1024).contains(&threads) {
            return Err(ConfigError::Invalid {
                key: "score.threads",
                value: threads.to_string(),
                problem: "is out of range (expected 0 for one per core, or 1 to 1024)".into(),
            });
        }
        let addr = self
            .serve
            .addr
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Invalid {
                key: "serve.addr",
                value: self.serve.addr.clone(),
                problem: "is not a socket address (expected e.g. 127.0.0.1:8080)".into(),
            })?;
        let demo = DemoSettings {
            users: positive("demo.users", self.demo.users, 10_000_000)?,
            tracked_users: positive("demo.tracked_users", self.demo.tracked_users, 10_000_000)?,
            clusters: positive("demo.clusters", self.demo.clusters, 10_000)?,
            seed: u64::try_from(self.demo.seed).map_err(|_| ConfigError::Invalid {
                key: "demo.seed",
                value: self.demo.seed.to_string(),
                problem: "is negative (expected a whole number ≥ 0)".into(),
            })?,
        };
        if demo.tracked_users > demo.users {
            return Err(ConfigError::Invalid {
                key: "demo.tracked_users",
                value: demo.tracked_users.to_string(),
                problem: format!("is larger than demo.users = {}", demo.users),
            });
        }
        let api_url = self.flickr.api_url.trim().to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "flickr.api_url",
                value: api_url,
                problem:
                    "is not an http(s) URL (expected e.g. https://api.flickr.com/services/rest/)"
                        .into(),
            });
        }
        let f = &self.flickr;
        let flickr = FlickrSettings {
            api_url,
            calls_per_hour: positive("flickr.calls_per_hour", f.calls_per_hour, 1_000_000)? as u32,
            burst: positive("flickr.burst", f.burst, 10_000)? as u32,
            timeout_secs: positive("flickr.timeout_secs", f.timeout_secs, 3600)? as u64,
            max_attempts: positive("flickr.max_attempts", f.max_attempts, 100)? as u32,
            max_retry_secs: positive("flickr.max_retry_secs", f.max_retry_secs, 86_400)? as u64,
            per_page: positive("flickr.per_page", f.per_page, 500)? as u32,
            max_favorites_per_user: positive(
                "flickr.max_favorites_per_user",
                f.max_favorites_per_user,
                1_000_000,
            )?,
            max_calls_per_user: positive("flickr.max_calls_per_user", f.max_calls_per_user, 10_000)?
                as u32,
        };
        let e = &self.extract;
        let extract = ExtractSettings {
            concurrency: positive("extract.concurrency", e.concurrency, 256)?,
            refresh_after_hours: positive(
                "extract.refresh_after_hours",
                e.refresh_after_hours,
                100_000,
            )? as u64,
            full_refresh_after_days: positive(
                "extract.full_refresh_after_days",
                e.full_refresh_after_days,
                10_000,
            )? as u64,
            not_found_retry_days: positive(
                "extract.not_found_retry_days",
                e.not_found_retry_days,
                10_000,
            )? as u64,
            max_failed_percent: positive("extract.max_failed_percent", e.max_failed_percent, 100)?
                as u32,
        };
        let similarity = crate::score::similar::Similarity::parse(self.similar.similarity.trim())
            .ok_or_else(|| ConfigError::Invalid {
            key: "similar.similarity",
            value: self.similar.similarity.clone(),
            problem: "is not a similarity (expected cosine, jaccard or bm25)".into(),
        })?;
        let (k1, b) = (self.similar.bm25_k1, self.similar.bm25_b);
        if !(k1.is_finite() && k1 > 0.0 && k1 <= 1e6) {
            return Err(ConfigError::Invalid {
                key: "similar.bm25_k1",
                value: k1.to_string(),
                problem: "is out of range (expected a number above 0, e.g. 1.2)".into(),
            });
        }
        if !(0.0..=1.0).contains(&b) {
            return Err(ConfigError::Invalid {
                key: "similar.bm25_b",
                value: b.to_string(),
                problem: "is out of range (expected a number from 0 to 1, e.g. 0.75)".into(),
            });
        }
        let mut algorithms = Vec::new();
        for name in &self.score.algorithms {
            let a = crate::score::Algorithm::parse(name.trim()).ok_or_else(|| {
                ConfigError::Invalid {
                    key: "score.algorithms",
                    value: name.clone(),
                    problem:
                        "is not an algorithm (expected flexplore, itemknn, popular or explore)"
                            .into(),
                }
            })?;
            if algorithms.contains(&a) {
                return Err(ConfigError::Invalid {
                    key: "score.algorithms",
                    value: name.clone(),
                    problem: "is listed twice (list each algorithm once)".into(),
                });
            }
            algorithms.push(a);
        }
        if algorithms.is_empty() {
            return Err(ConfigError::Invalid {
                key: "score.algorithms",
                value: "[]".into(),
                problem: "is empty (expected at least one of flexplore, itemknn, popular, explore)"
                    .into(),
            });
        }
        let ev = &self.evaluate;
        let mut ks = Vec::new();
        for &k in &ev.ks {
            ks.push(positive("evaluate.ks", k, 10_000)?);
        }
        ks.sort_unstable();
        ks.dedup();
        if ks.is_empty() {
            return Err(ConfigError::Invalid {
                key: "evaluate.ks",
                value: "[]".into(),
                problem: "is empty (expected cut-offs such as [10, 20, 50])".into(),
            });
        }
        let evaluate = EvaluateSettings {
            enabled: ev.enabled,
            holdout_percent: positive("evaluate.holdout_percent", ev.holdout_percent, 99)? as u32,
            seed: u64::try_from(ev.seed).map_err(|_| ConfigError::Invalid {
                key: "evaluate.seed",
                value: ev.seed.to_string(),
                problem: "is negative (expected a whole number ≥ 0)".into(),
            })?,
            ks,
        };
        let similar = SimilarSettings {
            enabled: self.similar.enabled,
            k: positive("similar.k", self.similar.k, 1000)?,
            min_common: positive("similar.min_common", self.similar.min_common, 1_000_000)? as u32,
            similarity,
            bm25_k1: k1,
            bm25_b: b,
        };
        Ok(Settings {
            storage: StorageSettings { url, endpoint },
            flickr,
            extract,
            similar,
            score: ScoreSettings {
                photo_recs_per_user: positive(
                    "score.photo_recs_per_user",
                    self.score.photo_recs_per_user,
                    10_000,
                )?,
                photographer_recs_per_user: positive(
                    "score.photographer_recs_per_user",
                    self.score.photographer_recs_per_user,
                    10_000,
                )?,
                top_neighbors_per_rec: positive(
                    "score.top_neighbors_per_rec",
                    self.score.top_neighbors_per_rec,
                    100,
                )?,
                threads: threads as usize,
                algorithms,
                itemknn_neighbors: positive(
                    "score.itemknn_neighbors",
                    self.score.itemknn_neighbors,
                    10_000,
                )?,
                explore_seed: u64::try_from(self.score.explore_seed).map_err(|_| {
                    ConfigError::Invalid {
                        key: "score.explore_seed",
                        value: self.score.explore_seed.to_string(),
                        problem: "is negative (expected a whole number ≥ 0)".into(),
                    }
                })?,
                tag_photos_per_tag: positive(
                    "score.tag_photos_per_tag",
                    self.score.tag_photos_per_tag,
                    10_000,
                )?,
            },
            evaluate,
            serve: ServeSettings {
                addr,
                poll_interval_secs: positive(
                    "serve.poll_interval_secs",
                    self.serve.poll_interval_secs,
                    86_400,
                )? as u64,
            },
            demo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_equal_local_toml_and_store_under_data() {
        let s = Settings::load_with_env(None, env(&[])).expect("defaults load");
        assert_eq!(
            s.storage.url,
            StorageUrl::Local {
                path: PathBuf::from("./data")
            }
        );
        assert_eq!(s.score.photo_recs_per_user, 100);
        assert_eq!(s.score.photographer_recs_per_user, 50);
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/local.toml");
        let from_file = Settings::load_with_env(Some(&file), env(&[])).expect("file loads");
        assert_eq!(s, from_file);
    }

    #[test]
    fn environment_overrides_a_key() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("FAVERECS__STORAGE__URL", "s3://bucket/some/prefix/"),
                ("FAVERECS__SCORE__THREADS", "2"),
            ]),
        )
        .expect("loads");
        assert_eq!(
            s.storage.url,
            StorageUrl::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(s.score.threads, 2);
    }

    #[test]
    fn unknown_key_is_named_in_the_error() {
        let err = Settings::load_with_env(None, env(&[("FAVERECS__STORAGE__URLX", "x")]))
            .expect_err("unknown key must fail");
        let msg = err.to_string();
        assert!(msg.contains("storage.urlx"), "{msg}");
        assert!(msg.contains("url"), "{msg}");
    }

    #[test]
    fn bad_storage_url_names_key_value_and_expectation() {
        let err = Settings::load_with_env(None, env(&[("FAVERECS__STORAGE__URL", "s3:/x")]))
            .expect_err("bad url must fail");
        assert_eq!(
            err.to_string(),
            "config key storage.url: \"s3:/x\" is not a supported URL (expected a plain path, file:///… or s3://bucket/prefix)"
        );
    }

    #[test]
    fn wrong_type_and_out_of_range_values_are_refused() {
        let err = Settings::load_with_env(
            None,
            env(&[("FAVERECS__SCORE__PHOTO_RECS_PER_USER", "many")]),
        )
        .expect_err("string for int");
        assert!(
            err.to_string().contains("score.photo_recs_per_user"),
            "{err}"
        );
        let err =
            Settings::load_with_env(None, env(&[("FAVERECS__SCORE__PHOTO_RECS_PER_USER", "0")]))
                .expect_err("zero");
        assert!(err.to_string().contains("from 1 to"), "{err}");
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let err = Settings::load_with_env(Some(Path::new("/nonexistent/faverecs.toml")), env(&[]))
            .expect_err("missing file");
        assert!(
            err.to_string().contains("/nonexistent/faverecs.toml"),
            "{err}"
        );
    }

    #[test]
    fn storage_url_forms() {
        assert_eq!(
            StorageUrl::parse("file:///tmp/x"),
            Ok(StorageUrl::Local {
                path: "/tmp/x".into()
            })
        );
        assert!(StorageUrl::parse("file://relative").is_err());
        assert!(StorageUrl::parse("gs://bucket").is_err());
        assert!(StorageUrl::parse("s3://").is_err());
        assert!(StorageUrl::parse("").is_err());
        assert_eq!(
            StorageUrl::parse("s3://b").map(|u| u.to_string()),
            Ok("s3://b".to_string())
        );
    }
}
