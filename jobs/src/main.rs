//! `faverecs`: the command-line front end.
//!
//! Thin by design: parse the arguments, load the settings, start logging, and call
//! one library function per subcommand. `main` only turns `run()`'s result into an
//! exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipeline::config::Settings;
use pipeline::extract::client::{ApiKey, FlickrClient};
use pipeline::extract::{ExtractOptions, fold, parse_phase, parse_shard, run_extract, users};
use pipeline::import::{ImportKind, import_file};
use pipeline::model::Table;
use pipeline::runs::{RunStatus, list_runs, publish};
use pipeline::score::{ScoreOptions, run_score};
use pipeline::store::Storage;

/// The allocator. Scoring makes millions of short-lived allocations (per-user lists,
/// Arrow builders, Parquet pages) across threads; glibc's malloc spent a tenth of a
/// score run in page faults and `munmap` returning memory it then asked for again.
/// See docs/performance.md for the measured difference.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Photo recommendations from Flickr favourites, as a batch pipeline.
#[derive(Debug, Parser)]
#[command(name = "faverecs", version, about)]
struct Cli {
    /// A TOML config file layered over the built-in defaults (config/local.toml).
    /// Keys can also be set as FAVERECS__SECTION__KEY environment variables.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load a CSV or Parquet file into a raw table (duplicates are removed).
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Score the tracked users (or every favoriter) into a new, unpublished run.
    Score {
        /// Score every user with a favourite, not just the tracked users.
        #[arg(long)]
        all_users: bool,
        /// Scoring threads (overrides score.threads; 0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
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
    /// Serve the published run over HTTP.
    Serve {
        /// Listen address (overrides serve.addr).
        #[arg(long)]
        addr: Option<SocketAddr>,
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
    Synth,
    /// Pull favourites and contacts of the tracked users and their neighbours from
    /// the Flickr API (key in FLICKR_API_KEY). Resumable: rerun the same command.
    Extract {
        /// Process only this shard of users, `i/N`; fold later with --fold-only.
        #[arg(long, value_name = "i/N")]
        shard: Option<String>,
        /// Run one phase only: `tracked`, then (after every shard) `neighbors`.
        #[arg(long, value_name = "PHASE")]
        phase: Option<String>,
        /// Only fold finished users into the tables (after all shards ran).
        #[arg(long)]
        fold_only: bool,
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
enum UsersWhat {
    /// Track a user, given a photostream or profile URL, an NSID or a username.
    Add { who: String },
    /// List the tracked users.
    List,
    /// Stop tracking a user.
    Remove { nsid: String },
}

#[derive(Debug, Subcommand)]
enum ImportWhat {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let storage = Storage::open(&settings.storage)?;
        match cli.command {
            Command::Import { what } => {
                let (kind, file) = match what {
                    ImportWhat::Favorites { file } => (ImportKind::Favorites, file),
                    ImportWhat::Tracked { file } => (ImportKind::Tracked, file),
                    ImportWhat::Contacts { file } => (ImportKind::Contacts, file),
                    ImportWhat::Dismissals { file } => (ImportKind::Dismissals, file),
                    ImportWhat::Photos { file } => (ImportKind::Photos, file),
                };
                let r = import_file(&storage, kind, &file).await?;
                println!(
                    "imported {} rows into {} ({} rows before, {} after removing duplicates)",
                    r.rows_read, r.table, r.rows_before, r.rows_after
                );
            }
            Command::Score { all_users, threads } => {
                if let Some(t) = threads {
                    settings.score.threads = t;
                }
                let m = run_score(&storage, &settings, ScoreOptions { all_users }).await?;
                println!("run {} {}", m.run_id, m.status);
                for (table, rows) in &m.rows_out {
                    println!("  {table}: {rows} rows");
                }
                println!("publish it with: faverecs publish --run {}", m.run_id);
            }
            Command::Evaluate { all_users, threads } => {
                if let Some(t) = threads {
                    settings.score.threads = t;
                }
                settings.evaluate.enabled = true;
                let m = run_score(&storage, &settings, ScoreOptions { all_users }).await?;
                let dir = pipeline::model::run_table_dir(&m.run_id, Table::Metrics);
                let batches = storage.read_table_dir(&dir, Table::Metrics).await?;
                let df = pipeline::frame::batches_to_frame(&batches, &Table::Metrics.schema())?;
                println!(
                    "run {} {}: held out the newest {}% of each tracked user's favourites",
                    m.run_id, m.status, settings.evaluate.holdout_percent
                );
                print!("{}", pipeline::sql::render(&df, usize::MAX));
                println!("publish it with: faverecs publish --run {}", m.run_id);
            }
            Command::Sql { query, run_id, out, max_rows } => {
                let (run, mut df) = pipeline::sql::query(&storage, run_id.as_deref(), &query).await?;
                match out {
                    Some(path) => {
                        pipeline::sql::write(&mut df, &path)?;
                        println!("wrote {} rows from run {run} to {}", df.height(), path.display());
                    }
                    None => print!("{}", pipeline::sql::render(&df, max_rows)),
                }
            }
            Command::Publish { run_id } => {
                let p = publish(&storage, run_id.as_deref()).await?;
                println!("published run {}", p.run_id);
            }
            Command::Runs => print_runs(&storage).await?,
            Command::Serve { addr } => {
                serve_forever(
                    storage,
                    addr.unwrap_or(settings.serve.addr),
                    &settings,
                    None,
                )
                .await?;
            }
            Command::Synth => {
                for r in pipeline::demo::write_community(
                    &storage,
                    &pipeline::demo::generate(&settings.demo),
                )
                .await?
                {
                    println!("{}: {} rows", r.table, r.rows_after);
                }
            }
            Command::Demo { addr, no_serve } => {
                let report = pipeline::demo::run_demo(&storage, &settings).await?;
                let e = &report.extract;
                println!(
                    "extracted from the simulator: {} tracked users and {} neighbours in {} API calls",
                    e.tracked.fetched, e.neighbors.fetched, e.calls
                );
                println!("scored and published run {} into {}", report.run.run_id, storage.url());
                if !no_serve {
                    serve_forever(storage, addr.unwrap_or(settings.serve.addr), &settings, Some(&report.community)).await?;
                }
            }
            Command::Extract { shard, phase, fold_only } => {
                if fold_only {
                    let rows = fold(&storage, &settings, chrono::Utc::now()).await?;
                    println!("folded: {rows:?}");
                    return Ok(());
                }
                let shard = shard.as_deref().map(parse_shard).transpose()?;
                let phase = phase.as_deref().map(parse_phase).transpose()?;
                let client = FlickrClient::new(&settings.flickr, ApiKey::from_env()?)?;
                let m = run_extract(&storage, &settings, &client, ExtractOptions { now: chrono::Utc::now(), shard, phase }).await?;
                println!(
                    "extract {} {}: {} calls; tracked fetched {} skipped {}; neighbours fetched {} skipped {}; failed {}",
                    m.run_id,
                    m.status,
                    m.calls,
                    m.tracked.fetched,
                    m.tracked.skipped_fresh + m.tracked.skipped_backoff,
                    m.neighbors.fetched,
                    m.neighbors.skipped_fresh + m.neighbors.skipped_backoff,
                    m.tracked.failed + m.neighbors.failed
                );
                for (table, rows) in &m.rows_written {
                    println!("  {table}: {rows} rows");
                }
            }
            Command::Users { what } => match what {
                UsersWhat::Add { who } => {
                    let client = FlickrClient::new(&settings.flickr, ApiKey::from_env()?)?;
                    let person = users::resolve(&client, &who).await?;
                    users::add(&storage, &person, chrono::Utc::now()).await?;
                    println!("tracking {} ({})", person.nsid, person.username.as_deref().unwrap_or("no username"));
                }
                UsersWhat::List => {
                    for u in users::list(&storage).await? {
                        println!("{u}");
                    }
                }
                UsersWhat::Remove { nsid } => {
                    if users::remove(&storage, &nsid).await? {
                        println!("stopped tracking {nsid}");
                    } else {
                        anyhow::bail!("{nsid} is not a tracked user (see `faverecs users list`)");
                    }
                }
            },
            Command::FlickrSim { addr, api_key, fault_rate, fault_seed, latency_ms, stall_ms } => {
                let community = pipeline::demo::generate(&settings.demo);
                let sim = pipeline::extract::sim::Simulator::new(
                    &community,
                    pipeline::extract::sim::SimOptions {
                        api_key,
                        fault_rate: fault_rate.clamp(0.0, 1.0),
                        seed: fault_seed,
                        latency: Duration::from_millis(latency_ms),
                        stall: Duration::from_millis(stall_ms),
                    },
                );
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (pass --addr)"))?;
                println!("flickr-sim on http://{}/services/rest/", listener.local_addr()?);
                sim.serve(listener, serve::shutdown_signal())
                    .await
                    .context("the simulator failed")?;
            }
        }
        Ok(())
    })
}

async fn print_runs(storage: &Storage) -> anyhow::Result<()> {
    let runs = list_runs(storage).await?;
    if runs.is_empty() {
        println!("no runs yet; create one with `faverecs score`");
    }
    for r in runs {
        let mark = if r.current { "*" } else { " " };
        match r.manifest {
            Some(m) => {
                let recs = m.rows_out.get("photo_recs").copied().unwrap_or(0);
                let secs: f64 = m.stages.iter().map(|s| s.seconds).sum();
                let extra = match (&m.status, &m.error) {
                    (RunStatus::Failed, Some(e)) => format!("  error: {e}"),
                    _ => String::new(),
                };
                println!(
                    "{mark} {}  {:<9}  {recs:>9} photo recs  {secs:>7.2}s{extra}",
                    m.run_id,
                    m.status.to_string()
                );
            }
            None => println!("{mark} {}  incomplete (no manifest)", r.run_id),
        }
    }
    Ok(())
}

async fn serve_forever(
    storage: Storage,
    addr: SocketAddr,
    settings: &Settings,
    community: Option<&pipeline::demo::Community>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} (is another server using it? pass --addr)")
    })?;
    let local = listener.local_addr()?;
    println!("serving on http://{local}/");
    if let Some(c) = community {
        for user in c.tracked_ids().into_iter().take(3) {
            println!("  open http://{local}/users/{user}");
        }
    }
    let state = serve::AppState::new(storage);
    serve::run(
        listener,
        state,
        Duration::from_secs(settings.serve.poll_interval_secs),
        serve::shutdown_signal(),
    )
    .await
    .context("the HTTP server failed")
}
