//! The settings as written in the files, before validation: `Raw*` structs that
//! mirror the TOML (unknown keys are refused), and their checks into
//! [`Settings`].

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::ConfigError;
use super::settings::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    storage: RawStorage,
    flickr: RawFlickr,
    extract: RawExtract,
    score: RawScore,
    similar: RawSimilar,
    evaluate: RawEvaluate,
    serve: RawServe,
    retention: RawRetention,
    lock: RawLock,
    demo: RawDemo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_runs: i64,
    keep_days: i64,
    stray_grace_secs: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    lease_secs: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    url: String,
    endpoint: String,
    raw_buckets: i64,
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
    max_calls: i64,
    min_refresh_hours: i64,
    max_refresh_hours: i64,
    tracked_max_refresh_hours: i64,
    order: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScore {
    photo_recs_per_user: i64,
    fallback_below: i64,
    photographer_recs_per_user: i64,
    top_neighbors_per_rec: i64,
    threads: i64,
    algorithms: Vec<String>,
    itemknn_neighbors: i64,
    explore_seed: i64,
    tag_photos_per_tag: i64,
    shard_targets_by: String,
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
    on_bad_run: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemo {
    users: i64,
    tracked_users: i64,
    clusters: i64,
    seed: i64,
}

/// The value of `choices` named `value` (trimmed), or an error listing them.
fn choice<T: Copy>(
    key: &'static str,
    value: &str,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let value = value.trim();
    match choices.iter().find(|(name, _)| *name == value) {
        Some(&(_, chosen)) => Ok(chosen),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(ConfigError::Invalid {
                key,
                value: value.chars().take(64).collect(),
                problem: format!("is not a choice (expected {})", names.join(" or ")),
            })
        }
    }
}

fn positive(key: &'static str, value: i64, max: i64) -> Result<usize, ConfigError> {
    whole(key, value, 1, max)
}

/// `value` as a count, if it lies in `min..=max` (both ≥ 0).
fn whole(key: &'static str, value: i64, min: i64, max: i64) -> Result<usize, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            key,
            value: value.to_string(),
            problem: format!("is out of range (expected a whole number from {min} to {max})"),
        });
    }
    Ok(value as usize)
}

impl RawSettings {
    pub fn validate(self) -> Result<Settings, ConfigError> {
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
        let raw_buckets = positive(
            "storage.raw_buckets",
            self.storage.raw_buckets,
            i64::from(MAX_RAW_BUCKETS),
        )? as u32;
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
            min_refresh_hours: positive("extract.min_refresh_hours", e.min_refresh_hours, 100_000)?
                as u64,
            max_refresh_hours: positive("extract.max_refresh_hours", e.max_refresh_hours, 100_000)?
                as u64,
            tracked_max_refresh_hours: positive(
                "extract.tracked_max_refresh_hours",
                e.tracked_max_refresh_hours,
                100_000,
            )? as u64,
            order: match e.order.trim() {
                "priority" => Order::Priority,
                "staleness" => Order::Staleness,
                other => {
                    return Err(ConfigError::Invalid {
                        key: "extract.order",
                        value: other.chars().take(64).collect(),
                        problem: "is not an order (expected priority or staleness)".into(),
                    });
                }
            },
            max_calls: match e.max_calls {
                0 => None,
                n if (1..=100_000_000).contains(&n) => Some(n as u64),
                n => {
                    return Err(ConfigError::Invalid {
                        key: "extract.max_calls",
                        value: n.to_string(),
                        problem:
                            "is out of range (expected 0 for no budget, or 1 to 100000000 calls)"
                                .into(),
                    });
                }
            },
        };
        if extract.min_refresh_hours > extract.max_refresh_hours {
            return Err(ConfigError::Invalid {
                key: "extract.min_refresh_hours",
                value: extract.min_refresh_hours.to_string(),
                problem: format!(
                    "is above extract.max_refresh_hours ({})",
                    extract.max_refresh_hours
                ),
            });
        }
        let similarity = crate::model::Similarity::parse(self.similar.similarity.trim())
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
            let a = crate::model::Algorithm::parse(name.trim()).ok_or_else(|| {
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
            storage: StorageSettings {
                url,
                endpoint,
                raw_buckets,
            },
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
                // 0 writes no tag lists (an empty `tag_photos`).
                tag_photos_per_tag: whole(
                    "score.tag_photos_per_tag",
                    self.score.tag_photos_per_tag,
                    0,
                    10_000,
                )?,
                fallback_below: whole(
                    "score.fallback_below",
                    self.score.fallback_below,
                    0,
                    10_000,
                )?,
                shard_targets_by: choice(
                    "score.shard_targets_by",
                    &self.score.shard_targets_by,
                    &[
                        ("neighbourhood", ShardTargetsBy::Neighbourhood),
                        ("nsid", ShardTargetsBy::Nsid),
                    ],
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
                on_bad_run: choice(
                    "serve.on_bad_run",
                    &self.serve.on_bad_run,
                    &[
                        ("previous", OnBadRun::Previous),
                        ("unavailable", OnBadRun::Unavailable),
                    ],
                )?,
            },
            retention: RetentionSettings {
                keep_runs: positive("retention.keep_runs", self.retention.keep_runs, 10_000)?,
                keep_days: positive("retention.keep_days", self.retention.keep_days, 36_500)?
                    as u64,
                stray_grace_secs: positive(
                    "retention.stray_grace_secs",
                    self.retention.stray_grace_secs,
                    30 * 86_400,
                )? as u64,
            },
            lock: LockSettings {
                lease_secs: positive("lock.lease_secs", self.lock.lease_secs, 86_400)? as u64,
            },
            demo,
        })
    }
}
