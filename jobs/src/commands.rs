//! One function per subcommand: each calls one library function and prints what
//! it did.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pipeline::community::{Community, generate, write_community};
use pipeline::config::Settings;
use pipeline::extract::client::{ApiKey, FlickrClient};
use pipeline::extract::sim::{SimOptions, Simulator};
use pipeline::extract::{ExtractOptions, fold, run_extract_with, users};
use pipeline::gc::{GcPlan, run_gc};
use pipeline::import::{ImportKind, import_file};
use pipeline::lock::RunLock;
use pipeline::model::Table;
use pipeline::nightly::run_nightly;
use pipeline::runs::{PointerState, RunStatus, list_runs, new_run_id, pointer_state, publish};
use pipeline::score::{ScoreOptions, run_evaluation, run_score};
use pipeline::store::Storage;

use crate::cli::{ImportWhat, RawWhat, UsersWhat};
use crate::emf::Emf;
use crate::progress::Bar;

/// `faverecs import …`.
pub async fn import(storage: &Storage, what: ImportWhat) -> anyhow::Result<()> {
    let (kind, file) = match what {
        ImportWhat::Favorites { file } => (ImportKind::Favorites, file),
        ImportWhat::Tracked { file } => (ImportKind::Tracked, file),
        ImportWhat::Contacts { file } => (ImportKind::Contacts, file),
        ImportWhat::Dismissals { file } => (ImportKind::Dismissals, file),
        ImportWhat::Photos { file } => (ImportKind::Photos, file),
    };
    let r = import_file(storage, kind, &file).await?;
    println!(
        "imported {} rows into {} ({} rows before, {} after removing duplicates)",
        r.rows_read, r.table, r.rows_before, r.rows_after
    );
    Ok(())
}

/// Takes the run lock for `command` and names a new run in it.
async fn lock_new_run(
    storage: &Storage,
    settings: &Settings,
    command: &str,
) -> anyhow::Result<(RunLock, String)> {
    let lease = Duration::from_secs(settings.lock.lease_secs);
    let lock = RunLock::acquire(storage, command, lease).await?;
    let run_id = new_run_id(chrono::Utc::now());
    if let Err(e) = lock.set_run(&run_id).await {
        release(lock).await;
        return Err(e.into());
    }
    Ok((lock, run_id))
}

/// Releases the run lock; a failure only delays the next run by the lease.
async fn release(lock: RunLock) {
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the run lock; its lease will run out");
    }
}

/// `faverecs score`, under the run lock.
pub async fn score(storage: &Storage, settings: &Settings, all_users: bool) -> anyhow::Result<()> {
    let (lock, run_id) = lock_new_run(storage, settings, "score").await?;
    let options = ScoreOptions {
        all_users,
        run_id: Some(run_id),
    };
    let started = std::time::Instant::now();
    let result = run_score(storage, settings, options).await;
    release(lock).await;
    let m = result?;
    Emf::stage("score")
        .count(
            "PhotoRecs",
            m.rows_out.get("photo_recs").copied().unwrap_or(0),
        )
        .count("RowsOut", m.rows_out.values().sum())
        .seconds(started.elapsed())
        .emit();
    println!("run {} {}", m.run_id, m.status);
    for (table, rows) in &m.rows_out {
        println!("  {table}: {rows} rows");
    }
    println!("publish it with: faverecs publish --run {}", m.run_id);
    Ok(())
}

/// `faverecs score --step STEP --shard i/N --run-id RUN`: one shard of a
/// sharded run. It takes no run lock: the orchestrator runs one sharded run at
/// a time.
pub async fn score_shard(
    storage: &Storage,
    settings: &Settings,
    run_id: &str,
    step: pipeline::runs::ShardStep,
    shard: (u32, u32),
    all_users: bool,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let r = pipeline::score::sharded::run_shard(storage, settings, run_id, step, shard, all_users)
        .await?;
    Emf::stage("score")
        .count("RowsOut", r.rows_out.values().sum())
        .seconds(started.elapsed())
        .emit();
    println!(
        "run {run_id}: {} shard {}/{} succeeded",
        step.name(),
        r.shard,
        r.shards
    );
    for (table, rows) in &r.rows_out {
        println!("  {table}: {rows} rows");
    }
    Ok(())
}

/// `faverecs score --finish --run-id RUN`.
pub async fn finish(storage: &Storage, settings: &Settings, run_id: &str) -> anyhow::Result<()> {
    let m = pipeline::score::sharded::finish(storage, settings, run_id).await?;
    println!("run {} {} ({} shards)", m.run_id, m.status, m.shards.len());
    for (table, rows) in &m.rows_out {
        println!("  {table}: {rows} rows");
    }
    println!("publish it with: faverecs publish --run {}", m.run_id);
    Ok(())
}

/// `faverecs evaluate`.
pub async fn evaluate(
    storage: &Storage,
    settings: &Settings,
    all_users: bool,
) -> anyhow::Result<()> {
    let (lock, run_id) = lock_new_run(storage, settings, "evaluate").await?;
    let options = ScoreOptions {
        all_users,
        run_id: Some(run_id),
    };
    let result = run_evaluation(storage, settings, options).await;
    release(lock).await;
    let (m, metrics) = result?;
    println!(
        "run {} {}: held out the newest {}% of each tracked user's favourites",
        m.run_id, m.status, settings.evaluate.holdout_percent
    );
    print!(
        "{}",
        pipeline::sql::render_batches(&metrics, Table::Metrics, usize::MAX)?
    );
    println!("publish it with: faverecs publish --run {}", m.run_id);
    Ok(())
}

/// `faverecs sql`.
pub async fn sql(
    storage: &Storage,
    query: &str,
    run_id: Option<&str>,
    out: Option<PathBuf>,
    max_rows: usize,
) -> anyhow::Result<()> {
    let (run, mut df) = pipeline::sql::query(storage, run_id, query).await?;
    match out {
        Some(path) => {
            pipeline::sql::write(&mut df, &path)?;
            println!(
                "wrote {} rows from run {run} to {}",
                df.height(),
                path.display()
            );
        }
        None => print!("{}", pipeline::sql::render(&df, max_rows)),
    }
    Ok(())
}

/// `faverecs publish`.
pub async fn publish_run(storage: &Storage, run_id: Option<&str>) -> anyhow::Result<()> {
    let p = publish(storage, run_id).await?;
    println!("published run {}", p.run_id);
    Emf::stage("publish").count("Published", 1).emit();
    Ok(())
}

/// `faverecs raw status` and `faverecs raw rebucket` (under the run lock).
pub async fn raw(storage: &Storage, settings: &Settings, what: RawWhat) -> anyhow::Result<()> {
    use pipeline::raw::{RawLayout, Rebucketed, raw_layout_of, rebucket};
    let tables = [Table::Favorites, Table::Contacts, Table::Dismissals];
    match what {
        RawWhat::Status => {
            for table in tables {
                match raw_layout_of(storage, table).await? {
                    RawLayout::Absent => println!("{:<11} not written", table.name()),
                    RawLayout::SingleFile { rows } => println!(
                        "{:<11} one file (raw/{}/data.parquet), {rows} rows; the next write, or `faverecs raw rebucket`, moves it into {} buckets",
                        table.name(),
                        table.name(),
                        storage.raw_buckets()
                    ),
                    RawLayout::Buckets { layout, rows } => {
                        let note = if layout.buckets == storage.raw_buckets() {
                            String::new()
                        } else {
                            format!(
                                "; storage.raw_buckets is {}: `faverecs raw rebucket` changes it",
                                storage.raw_buckets()
                            )
                        };
                        println!(
                            "{:<11} {} buckets, generation {}, {rows} rows{note}",
                            table.name(),
                            layout.buckets,
                            layout.generation
                        )
                    }
                }
            }
            Ok(())
        }
        RawWhat::Rebucket => {
            let lease = Duration::from_secs(settings.lock.lease_secs);
            let lock = RunLock::acquire(storage, "raw rebucket", lease).await?;
            let mut result = Ok(());
            for table in tables {
                if let Err(e) = lock.check() {
                    result = Err(anyhow::Error::from(e));
                    break;
                }
                match rebucket(storage, table).await {
                    Ok(Rebucketed::Absent) => println!("{:<11} not written", table.name()),
                    Ok(Rebucketed::Kept { buckets }) => {
                        println!("{:<11} already in {buckets} buckets", table.name())
                    }
                    Ok(Rebucketed::Rewritten { from, to, rows }) => println!(
                        "{:<11} rewritten from {} into {to} buckets ({rows} rows)",
                        table.name(),
                        from.map_or("one file".to_string(), |n| format!("{n} buckets"))
                    ),
                    Err(e) => {
                        result = Err(e.into());
                        break;
                    }
                }
            }
            release(lock).await;
            result
        }
    }
}

/// `faverecs gc`: under the run lock, unless it only lists (`--dry-run`).
pub async fn gc(storage: &Storage, settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    let lock = if dry_run {
        None
    } else {
        let lease = Duration::from_secs(settings.lock.lease_secs);
        Some(RunLock::acquire(storage, "gc", lease).await?)
    };
    let started = std::time::Instant::now();
    let result = run_gc(storage, settings, dry_run).await;
    if let Some(lock) = lock {
        release(lock).await;
    }
    let (plan, report) = result?;
    print_gc(&plan, dry_run);
    if !dry_run {
        println!(
            "removed {} runs ({} objects in all)",
            report.runs, report.objects
        );
        Emf::stage("gc")
            .count("RunsRemoved", report.runs as u64)
            .count("ObjectsRemoved", report.objects as u64)
            .seconds(started.elapsed())
            .emit();
    }
    Ok(())
}

fn print_gc(plan: &GcPlan, dry_run: bool) {
    let verb = if dry_run { "would remove" } else { "removed" };
    for (run_id, why) in &plan.keep {
        println!("  keep          {run_id}  {why}");
    }
    for (run_id, why, status) in &plan.remove {
        println!("  {verb:<13} {run_id}  {status}; {why}");
    }
    for p in &plan.extract_manifests {
        println!("  {verb:<13} {p}  (extract manifest past retention)");
    }
    for p in &plan.raw_stale {
        println!("  {verb:<13} {p}  (raw table file no reader uses)");
    }
    for f in &plan.stray {
        println!("  {verb:<13} {}  (temporary file)", f.display());
    }
    if plan.pending > 0 {
        println!(
            "  {} pending extract pulls are left for the next fold",
            plan.pending
        );
    }
}

/// The default budget of `nightly --new-users`: 7.5 minutes at Flickr's 3600
/// calls an hour, so a new user's recommendations are published within about
/// ten minutes of `users add`.
pub const NEW_USERS_BUDGET: u64 = 450;

/// `faverecs nightly`: extract → score → publish → gc under the run lock.
pub async fn nightly(
    storage: &Storage,
    settings: &Settings,
    extract: ExtractOptions,
    all_users: bool,
) -> anyhow::Result<()> {
    let client = FlickrClient::new(&settings.flickr, ApiKey::from_env()?)?;
    let progress = Bar::for_stderr();
    let options = ScoreOptions {
        all_users,
        run_id: None,
    };
    let started = std::time::Instant::now();
    let r = match run_nightly(
        storage,
        settings,
        &client,
        extract,
        options,
        progress.as_ref(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            Emf::stage("nightly").count("Failed", 1).emit();
            return Err(e.into());
        }
    };
    let e = &r.extract;
    extract_metrics(e).emit();
    Emf::stage("nightly")
        .count(
            "PhotoRecs",
            r.run.rows_out.get("photo_recs").copied().unwrap_or(0),
        )
        .count("Published", 1)
        .count("Failed", 0)
        .count("RunsRemoved", r.gc.1.runs as u64)
        .seconds(started.elapsed())
        .emit();
    println!(
        "extract {}: {} calls{}; tracked fetched {}, neighbours fetched {}, failed {}, deferred {}",
        e.run_id,
        e.calls,
        e.budget
            .map(|b| format!(" of a budget of {b}"))
            .unwrap_or_default(),
        e.tracked.fetched,
        e.neighbors.fetched,
        e.tracked.failed + e.neighbors.failed,
        e.tracked.deferred + e.neighbors.deferred
    );
    println!(
        "score   {}: {} photo recs",
        r.run.run_id,
        r.run.rows_out.get("photo_recs").copied().unwrap_or(0)
    );
    println!("publish {}: current", r.published.run_id);
    print_gc(&r.gc.0, false);
    println!(
        "gc: removed {} runs ({} objects)",
        r.gc.1.runs, r.gc.1.objects
    );
    println!("nightly succeeded");
    Ok(())
}

/// `faverecs tables [--json]`: the table contract.
pub fn tables(json: bool) -> anyhow::Result<()> {
    let all: Vec<serde_json::Value> = Table::ALL
        .iter()
        .map(|t| {
            let columns: Vec<serde_json::Value> = t
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name(),
                        "type": pipeline::model::type_name(f.data_type()),
                        "nullable": f.is_nullable(),
                    })
                })
                .collect();
            serde_json::json!({
                "table": t.name(),
                "raw": Table::RAW.contains(t),
                "run": Table::RUN.contains(t),
                "columns": columns,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for t in &all {
        println!("{}", t["table"].as_str().unwrap_or_default());
        for c in t["columns"].as_array().into_iter().flatten() {
            println!(
                "  {:<22} {}{}",
                c["name"].as_str().unwrap_or_default(),
                c["type"].as_str().unwrap_or_default(),
                if c["nullable"] == true {
                    ""
                } else {
                    " not null"
                }
            );
        }
    }
    Ok(())
}

/// `faverecs probe`: a health check without curl.
pub async fn probe(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    anyhow::ensure!(
        resp.status().is_success(),
        "{url} answered {}",
        resp.status()
    );
    println!("{url}: {}", resp.status());
    Ok(())
}

/// An extract's metrics: calls, retries, users fetched and failed, rows.
fn extract_metrics(m: &pipeline::extract::ExtractManifest) -> Emf {
    Emf::stage("extract")
        .count("Calls", m.calls)
        .count("Retries", m.retries.values().sum())
        .count(
            "FetchedUsers",
            (m.tracked.fetched + m.neighbors.fetched) as u64,
        )
        .count(
            "FailedUsers",
            (m.tracked.failed + m.neighbors.failed) as u64,
        )
        .count("Rows", m.rows_written.values().sum())
}

/// `faverecs runs`.
pub async fn runs(storage: &Storage) -> anyhow::Result<()> {
    let runs = list_runs(storage).await?;
    if let PointerState::Garbage(reason) = pointer_state(storage).await? {
        println!(
            "CURRENT is unreadable ({reason}); publish a run to replace it: faverecs publish --run <id>"
        );
    }
    if runs.is_empty() {
        println!("no runs yet; create one with `faverecs score`");
    }
    for r in runs {
        let mark = if r.current { "*" } else { " " };
        match r.manifest.clone().filter(|_| !r.abandoned) {
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
            None => println!("{mark} {}  {}", r.run_id, r.status_text()),
        }
    }
    Ok(())
}

/// The demo community on `night` of its evolution.
fn community_on(settings: &Settings, night: u32) -> Community {
    let base = generate(&settings.demo);
    if night == 0 {
        return base;
    }
    pipeline::evolve::evolve(&base, settings.demo.users, settings.demo.seed, night)
}

/// `faverecs synth`.
pub async fn synth(storage: &Storage, settings: &Settings, night: u32) -> anyhow::Result<()> {
    for r in write_community(storage, &community_on(settings, night)).await? {
        println!("{}: {} rows", r.table, r.rows_after);
    }
    Ok(())
}

/// `faverecs demo`.
pub async fn demo(
    storage: Storage,
    settings: &Settings,
    addr: SocketAddr,
    no_serve: bool,
) -> anyhow::Result<()> {
    let report = pipeline::demo::run_demo(&storage, settings).await?;
    let e = &report.extract;
    println!(
        "extracted from the simulator: {} tracked users and {} neighbours in {} API calls",
        e.tracked.fetched, e.neighbors.fetched, e.calls
    );
    println!(
        "scored and published run {} into {}",
        report.run.run_id,
        storage.url()
    );
    if !no_serve {
        serve(storage, settings, addr, Some(&report.community)).await?;
    }
    Ok(())
}

/// `faverecs extract`.
pub async fn extract(
    storage: &Storage,
    settings: &Settings,
    options: ExtractOptions,
    fold_only: bool,
) -> anyhow::Result<()> {
    if fold_only {
        let rows = fold(storage, settings, options.now).await?;
        println!("folded: {rows:?}");
        return Ok(());
    }
    let client = FlickrClient::new(&settings.flickr, ApiKey::from_env()?)?;
    let progress = Bar::for_stderr();
    let started = std::time::Instant::now();
    let m = run_extract_with(storage, settings, &client, options, progress.as_ref()).await?;
    extract_metrics(&m).seconds(started.elapsed()).emit();
    println!(
        "extract {} {}: {} calls{}; tracked fetched {} skipped {}; neighbours fetched {} skipped {}; failed {}; deferred {}",
        m.run_id,
        m.status,
        m.calls,
        m.budget
            .map(|b| format!(" of a budget of {b}"))
            .unwrap_or_default(),
        m.tracked.fetched,
        m.tracked.skipped_fresh + m.tracked.skipped_backoff,
        m.neighbors.fetched,
        m.neighbors.skipped_fresh + m.neighbors.skipped_backoff,
        m.tracked.failed + m.neighbors.failed,
        m.tracked.deferred + m.neighbors.deferred
    );
    if let Some(a) = &m.data_age_hours {
        println!(
            "  data age (hours): neighbours p50 {:.1} p90 {:.1} (weighted by influence); tracked p50 {:.1} p90 {:.1}",
            a.neighbors_p50, a.neighbors_p90, a.tracked_p50, a.tracked_p90
        );
    }
    for (table, rows) in &m.rows_written {
        println!("  {table}: {rows} rows");
    }
    Ok(())
}

/// `faverecs extract --plan`: what a run would do, without calling Flickr.
pub async fn extract_plan(
    storage: &Storage,
    settings: &Settings,
    options: ExtractOptions,
) -> anyhow::Result<()> {
    let plan = pipeline::extract::plan_run(storage, settings, options).await?;
    let lines = plan.summary();
    let per_hour = f64::from(settings.flickr.calls_per_hour.max(1));
    println!("{:<34} {:>9} {:>10} {:>9}", "", "users", "calls", "covered");
    let (mut calls, mut covered, mut due) = (0u64, 0usize, 0usize);
    for l in &lines {
        println!(
            "{:<34} {:>9} {:>10} {:>9}",
            l.class.name(),
            l.users,
            l.calls,
            if l.class.due() {
                l.covered.to_string()
            } else {
                "-".into()
            }
        );
        if l.class.due() {
            calls += l.calls;
            covered += l.covered;
            due += l.users;
        }
    }
    println!(
        "due: {due} users, about {calls} calls: {:.1} h at {} calls/h",
        calls as f64 / per_hour,
        settings.flickr.calls_per_hour
    );
    match plan.budget {
        Some(b) => println!(
            "budget {b} calls ({:.1} h): covers {covered} of {due} due users; {} deferred to the next run",
            b as f64 / per_hour,
            due - covered
        ),
        None => println!("no budget (extract.max_calls = 0): every due user is pulled"),
    }
    println!(
        "neighbours that new tracked users bring are not known before their pull, and incremental pulls that find more than a page cost more: the run may differ"
    );
    Ok(())
}

/// `faverecs users …`.
pub async fn users(storage: &Storage, settings: &Settings, what: UsersWhat) -> anyhow::Result<()> {
    match what {
        UsersWhat::Add { who } => {
            let client = FlickrClient::new(&settings.flickr, ApiKey::from_env()?)?;
            let person = users::resolve(&client, &who).await?;
            users::add(storage, &person, chrono::Utc::now()).await?;
            println!(
                "tracking {} ({})",
                person.nsid,
                person.username.as_deref().unwrap_or("no username")
            );
        }
        UsersWhat::List => {
            for u in users::list(storage).await? {
                println!("{u}");
            }
        }
        UsersWhat::Remove { nsid } => {
            if users::remove(storage, &nsid).await? {
                println!("stopped tracking {nsid}");
            } else {
                anyhow::bail!("{nsid} is not a tracked user (see `faverecs users list`)");
            }
        }
    }
    Ok(())
}

/// `faverecs flickr-sim`.
pub async fn flickr_sim(
    settings: &Settings,
    addr: SocketAddr,
    night: u32,
    options: SimOptions,
) -> anyhow::Result<()> {
    let sim = Simulator::new(&community_on(settings, night), options);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (pass --addr)"))?;
    println!(
        "flickr-sim on http://{}/services/rest/",
        listener.local_addr()?
    );
    sim.serve(listener, serve::shutdown_signal())
        .await
        .context("the simulator failed")
}

/// The simulator's options from the command line.
pub fn sim_options(
    api_key: String,
    fault_rate: f64,
    fault_seed: u64,
    latency_ms: u64,
    stall_ms: u64,
) -> SimOptions {
    SimOptions {
        api_key,
        fault_rate: fault_rate.clamp(0.0, 1.0),
        seed: fault_seed,
        latency: Duration::from_millis(latency_ms),
        stall: Duration::from_millis(stall_ms),
    }
}

/// `faverecs serve` (and the end of `faverecs demo`): serves until SIGTERM or
/// Ctrl-C.
pub async fn serve(
    storage: Storage,
    settings: &Settings,
    addr: SocketAddr,
    community: Option<&Community>,
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
    serve::run(
        listener,
        serve::AppState::new(storage).with_on_bad_run(settings.serve.on_bad_run),
        Duration::from_secs(settings.serve.poll_interval_secs),
        serve::shutdown_signal(),
    )
    .await
    .context("the HTTP server failed")
}

/// The settings, with `--threads` applied.
pub fn with_threads(settings: &Settings, threads: Option<usize>) -> Settings {
    let mut settings = settings.clone();
    if let Some(t) = threads {
        settings.score.threads = t;
    }
    settings
}

/// Loads the settings (`--config`, then the environment).
pub fn load_settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    Ok(Settings::load(config)?)
}
