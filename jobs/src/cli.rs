//! The command line: clap's structs, mirroring the flags, and the parsers of the
//! values clap cannot check by itself (`--shard`, `--phase`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use pipeline::extract::Phase;
use pipeline::runs::ShardStep;

/// Photo recommendations from Flickr favourites, as a batch pipeline.
#[derive(Debug, Parser)]
#[command(name = "faverecs", version, about)]
pub struct Cli {
    /// A TOML config file layered over the built-in defaults (config/local.toml).
    /// Keys can also be set as FAVERECS__SECTION__KEY environment variables.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a CSV or Parquet file into a raw table (duplicates are removed).
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Score the tracked users (or every favoriter) into a new, unpublished run.
    ///
    /// Split over processes (AWS Batch array jobs), the same run is made by
    /// `--step users` for every shard, then `--step photos` for every shard,
    /// then `--finish`, all with one run id; see docs/scaling.md.
    Score {
        /// Score every user with a favourite, not just the tracked users.
        #[arg(long)]
        all_users: bool,
        /// Scoring threads (overrides score.threads; 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Run one step of a sharded run: `users` (the per-user lists), then,
        /// once every users shard succeeded, `photos` (similar photos and tag
        /// photos). Needs --run-id.
        #[arg(long, value_parser = parse_step, requires = "run_id")]
        step: Option<ShardStep>,
        /// This process's shard of the step, `i/N`. Without it, an AWS Batch
        /// array child reads AWS_BATCH_JOB_ARRAY_INDEX of
        /// AWS_BATCH_JOB_ARRAY_SIZE, and any other process is shard 0/1.
        #[arg(long, value_name = "i/N", value_parser = parse_shard, requires = "step")]
        shard: Option<(u32, u32)>,
        /// The sharded run's id, the same for every shard and for --finish: a
        /// run id (`YYYYMMDDTHHMMSSZ-xxxxxx`), or the time the run started in
        /// RFC 3339 (Step Functions' `$$.Execution.StartTime`), from which
        /// the id is made the same way every time.
        #[arg(long, value_name = "ID", env = "FAVERECS_RUN_ID")]
        run_id: Option<String>,
        /// Finish the sharded run --run-id names: check that every shard of
        /// both steps succeeded, write its remaining tables and its manifest.
        #[arg(long, requires = "run_id", conflicts_with_all = ["step", "shard", "all_users"])]
        finish: bool,
    },
    /// Score into a new run with the offline evaluation: hide the newest favourites
    /// of each tracked user, score every algorithm on the rest, write and print the
    /// `metrics` table. The run is not published.
    Evaluate {
        /// Evaluate every user with a favourite, not just the tracked users.
        #[arg(long)]
        all_users: bool,
        /// Scoring threads (overrides score.threads; 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run Polars SQL over a run's tables (photo_recs, photos, favorites, …) and
    /// print the result, or write it with --out.
    Sql {
        /// The query, e.g. "SELECT algorithm, count(*) FROM photo_recs GROUP BY algorithm".
        query: String,
        /// The run to query (default: the published run).
        #[arg(long = "run", value_name = "ID")]
        run_id: Option<String>,
        /// Write every row to this file instead; .csv or .parquet picks the format.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Rows printed at most.
        #[arg(long, default_value_t = 50)]
        max_rows: usize,
    },
    /// Make a run current in one atomic step (default: the newest succeeded run).
    /// Publishing an older run is the rollback.
    Publish {
        /// The run id to publish.
        #[arg(long = "run", value_name = "ID")]
        run_id: Option<String>,
    },
    /// List the runs with their status.
    Runs,
    /// The storage layout of the large raw tables (favorites, contacts,
    /// dismissals): hash buckets by user (docs/data-model.md).
    Raw {
        #[command(subcommand)]
        what: RawWhat,
    },
    /// Retention: remove old, failed and abandoned runs and stray temporary
    /// files (rules in docs/operations.md). Never the published run.
    Gc {
        /// List what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The night for cron, under the run lock: extract (and fold) → score →
    /// publish → gc. The exit code names the stage that failed: 75 another run
    /// holds the lock, 10 extract, 11 score, 12 publish, 13 gc.
    Nightly {
        /// Score every user with a favourite, not just the tracked users.
        #[arg(long)]
        all_users: bool,
        /// The extract's budget of API calls (overrides extract.max_calls).
        #[arg(long, value_name = "CALLS")]
        budget: Option<u64>,
        /// Only the newly tracked users (after `faverecs users add`) and their
        /// most influential neighbours, then score and publish: recommendations
        /// for a new user in minutes. Its budget defaults to 450 calls (7.5
        /// minutes at 3600 calls/h).
        #[arg(long)]
        new_users: bool,
        /// Scoring threads (overrides score.threads; 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Serve the published run over HTTP.
    Serve {
        /// Listen address (overrides serve.addr).
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Print the table contract: every table, its columns and their types
    /// (what docs/data-model.md documents and the Glue tables mirror).
    Tables {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when `url` answers 2xx within 3 s, 1 otherwise: the container
    /// image's HEALTHCHECK (`faverecs probe http://127.0.0.1:8080/readyz`), so
    /// the image needs no curl.
    Probe {
        /// The URL to GET.
        #[arg(default_value = "http://127.0.0.1:8080/readyz")]
        url: String,
    },
    /// Offline demo: generate the synthetic community, import, score, publish, serve.
    Demo {
        /// Listen address (overrides serve.addr).
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// Stop after publishing instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// Write the synthetic community (demo.* settings) into the raw tables only.
    Synth {
        /// The community as it stands on this night of its evolution (the
        /// simulator's truth for `flickr-sim --night`; 0: as generated).
        #[arg(long, default_value_t = 0)]
        night: u32,
    },
    /// Pull favourites and contacts of the tracked users and their neighbours from
    /// the Flickr API (key in FLICKR_API_KEY). Resumable: rerun the same command.
    Extract {
        /// Process only this shard of users, `i/N`; fold later with --fold-only.
        /// Without it, an AWS Batch array child reads its shard from
        /// AWS_BATCH_JOB_ARRAY_INDEX and AWS_BATCH_JOB_ARRAY_SIZE.
        #[arg(long, value_name = "i/N", value_parser = parse_shard)]
        shard: Option<(u32, u32)>,
        /// Run one phase only: `tracked`, then (after every shard) `neighbors`.
        #[arg(long, value_name = "PHASE", value_parser = parse_phase)]
        phase: Option<Phase>,
        /// Only fold finished users into the tables (after all shards ran).
        #[arg(long)]
        fold_only: bool,
        /// The run's budget of API calls (overrides extract.max_calls): users
        /// are pulled in priority order until it is spent; the rest are
        /// deferred to the next run.
        #[arg(long, value_name = "CALLS")]
        budget: Option<u64>,
        /// Print what the run would do (users due by class, the calls and hours
        /// they need, what the budget covers) without calling Flickr.
        #[arg(long, conflicts_with = "fold_only")]
        plan: bool,
    },
    /// Manage the tracked users.
    Users {
        #[command(subcommand)]
        what: UsersWhat,
    },
    /// Run the Flickr API simulator over the synthetic community.
    FlickrSim {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8099")]
        addr: SocketAddr,
        /// Serve the community as it stands on this night of its evolution
        /// (users add, remove and join; see pipeline::evolve).
        #[arg(long, default_value_t = 0)]
        night: u32,
        /// The API key it accepts.
        #[arg(
            long,
            env = "FLICKR_API_KEY",
            hide_env_values = true,
            default_value = "sim-key"
        )]
        api_key: String,
        /// Share of requests answered with an injected fault (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Seed of the fault generator.
        #[arg(long, default_value_t = 1)]
        fault_seed: u64,
        /// Milliseconds added to every response.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// How long a "timeout" fault stalls, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        stall_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersWhat {
    /// Track a user, given a photostream or profile URL, an NSID or a username.
    Add { who: String },
    /// List the tracked users.
    List,
    /// Stop tracking a user.
    Remove { nsid: String },
}

#[derive(Debug, Subcommand)]
pub enum ImportWhat {
    /// Columns user_id, photo_id; optional owner_id, date_faved (unix s or RFC 3339).
    Favorites { file: PathBuf },
    /// Column user_id; optional username, added_at.
    Tracked { file: PathBuf },
    /// Columns user_id, contact_id.
    Contacts { file: PathBuf },
    /// Column user_id and one of photo_id or dismissed_user_id per row.
    Dismissals { file: PathBuf },
    /// Columns photo_id, owner_id; optional owner_name, title, server, secret, tags, date_upload.
    Photos { file: PathBuf },
}

/// `faverecs raw …`.
#[derive(Debug, Subcommand)]
pub enum RawWhat {
    /// Print each large raw table's layout: its bucket count, generation and rows.
    Status,
    /// Rewrite each large raw table in storage.raw_buckets buckets, and migrate
    /// one still in a single file. Takes the run lock; run it while no import
    /// or extract runs.
    Rebucket,
}

/// Parses `--phase`: `tracked` or `neighbors`.
fn parse_phase(text: &str) -> Result<Phase, String> {
    match text {
        "tracked" => Ok(Phase::Tracked),
        "neighbors" | "neighbours" => Ok(Phase::Neighbor),
        other => Err(format!(
            "{other:?} is not a phase (expected tracked or neighbors)"
        )),
    }
}

/// The shard of an AWS Batch array child: `AWS_BATCH_JOB_ARRAY_INDEX` (set by
/// Batch) of `AWS_BATCH_JOB_ARRAY_SIZE` (set by the state machine, which knows
/// the size). Neither set: not an array job, so every user (None).
pub fn batch_array_shard() -> anyhow::Result<Option<(u32, u32)>> {
    array_shard(
        std::env::var("AWS_BATCH_JOB_ARRAY_INDEX").ok(),
        std::env::var("AWS_BATCH_JOB_ARRAY_SIZE").ok(),
    )
}

fn array_shard(index: Option<String>, size: Option<String>) -> anyhow::Result<Option<(u32, u32)>> {
    match (index, size) {
        (None, None) => Ok(None),
        (Some(i), Some(n)) => parse_shard(&format!("{i}/{n}")).map(Some).map_err(|e| {
            anyhow::anyhow!("AWS_BATCH_JOB_ARRAY_INDEX/AWS_BATCH_JOB_ARRAY_SIZE: {e}")
        }),
        (Some(_), None) => anyhow::bail!(
            "AWS_BATCH_JOB_ARRAY_INDEX is set but AWS_BATCH_JOB_ARRAY_SIZE is not: the job definition or the state machine must set the array size"
        ),
        (None, Some(n)) if n.trim() == "1" => Ok(None),
        (None, Some(n)) => anyhow::bail!(
            "AWS_BATCH_JOB_ARRAY_SIZE is {n:?} but AWS_BATCH_JOB_ARRAY_INDEX is not set: this is not an array child"
        ),
    }
}

/// Parses `--step`.
fn parse_step(text: &str) -> Result<ShardStep, String> {
    ShardStep::ALL
        .into_iter()
        .find(|s| s.name() == text.trim())
        .ok_or_else(|| format!("{text:?} is not a step (expected users or photos)"))
}

/// Parses `--shard`: `i/N` with 0 ≤ i < N.
fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{text:?} is not i/N with 0 ≤ i < N (e.g. --shard 0/4)");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_and_phase_values_are_checked() {
        assert_eq!(parse_shard("1/4"), Ok((1, 4)));
        assert_eq!(parse_shard(" 0 / 2 "), Ok((0, 2)));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2"] {
            let err = parse_shard(bad).expect_err(bad);
            assert!(err.contains("is not i/N"), "{err}");
        }
        assert_eq!(parse_phase("tracked"), Ok(Phase::Tracked));
        let some = |s: &str| Some(s.to_string());
        assert_eq!(array_shard(None, None).expect("no array"), None);
        assert_eq!(
            array_shard(some("2"), some("4")).expect("child 2 of 4"),
            Some((2, 4))
        );
        assert_eq!(array_shard(None, some("1")).expect("size 1"), None);
        for (i, n) in [
            (some("4"), some("4")),
            (some("x"), some("2")),
            (some("0"), None),
            (None, some("3")),
        ] {
            assert!(array_shard(i.clone(), n.clone()).is_err(), "{i:?}/{n:?}");
        }
        assert_eq!(parse_phase("neighbours"), Ok(Phase::Neighbor));
        assert!(parse_phase("all").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
