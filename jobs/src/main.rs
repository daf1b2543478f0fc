//! `faverecs`: the command-line front end.
//!
//! Thin by design: parse the arguments, load the settings, start logging, and call
//! one library function per subcommand. `main` only turns `run()`'s result into an
//! exit code.

mod cli;
mod commands;
mod emf;
mod progress;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pipeline::store::Storage;

use cli::{Cli, Command};

/// The allocator. Scoring makes millions of short-lived allocations (per-user lists,
/// Arrow builders, Parquet pages) across threads; glibc's malloc spent a tenth of a
/// score run in page faults and `munmap` returning memory it then asked for again.
/// See docs/performance.md for the measured difference.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` and `mi_option_purge_delay`
/// (`mimalloc.h`; 4 and 15 in both the v2 and v3 sources `libmimalloc-sys`
/// builds, which name them only in the header).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Every command commits mimalloc's arenas as it uses them, not up front.
/// On Linux mimalloc commits its first arena (1 GiB, reserved at the first
/// allocation) whole by default, and memory freed in it stayed resident.
/// Measured on the 8M-favourite community (2026-12-02, docs/performance.md):
/// the unsharded score of Flexplore and explore peaked at 166–167 MiB instead
/// of 221–228 MiB, a users shard of 4 at 77–78 MiB instead of 113–123 MiB,
/// with times within the noise.
///
/// The option must be set before that first allocation, so this runs from
/// the executable's initialisers, before `main`, and reads the environment
/// without allocating: `MIMALLOC_ARENA_EAGER_COMMIT` set there wins.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ARENAS_ON_USE: extern "C" fn() = {
    extern "C" fn commit_arenas_on_use() {
        unsafe extern "C" {
            fn getenv(name: *const std::ffi::c_char) -> *const std::ffi::c_char;
        }
        // SAFETY: `getenv` reads a NUL-terminated name and returns a pointer
        // it owns or null, which is only compared; `mi_option_set` stores an
        // integer. Neither allocates, and no other thread runs yet.
        unsafe {
            if getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
                libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
            }
        }
    }
    commit_arenas_on_use
};

/// Batch commands return memory they freed to the OS at once instead of after
/// mimalloc's default 10 ms: their peaks are made of large short-lived
/// buffers (decoded Parquet pages, per-bucket reads) freed on other threads.
/// Measured on the 8M-favourite community: peak RSS of a Flexplore-only score
/// 1.27 GB → 1.15 GB reading everything, 595 MB → 405 MB reading the
/// neighbourhood, with times within the noise (docs/performance.md). `serve` keeps the default,
/// and `MIMALLOC_PURGE_DELAY` in the environment wins.
#[allow(unsafe_code)]
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an integer option; mimalloc reads it on each purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// Batch commands' async workers take back, whenever one goes to sleep or
/// wakes, the memory other threads freed into its pages. The raw tables'
/// objects are decoded on every worker (`store::parquet::decoding`) and freed
/// later on one task; mimalloc returns a page freed from another thread to
/// the OS only once the thread that owns it collects it, which a parked worker
/// does not do by itself.
#[allow(unsafe_code)]
fn collect_freed_memory() {
    // SAFETY: collects the calling thread's own heap; no arguments to uphold.
    unsafe { libmimalloc_sys::mi_collect(false) };
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        purge_freed_memory_at_once();
    }
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
            eprintln!("error: {}", message(&e));
            exit_code(&e)
        }
    }
}

/// 1 for most failures; for `nightly`, the failed stage's code (and what to do
/// next); 75 (EX_TEMPFAIL) whenever another run holds the run lock.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    if let Some(n) = e.downcast_ref::<pipeline::nightly::NightlyError>() {
        eprintln!(
            "nightly: stage {} failed; {}",
            n.stage.name(),
            n.stage.advice()
        );
        return ExitCode::from(n.stage.exit_code());
    }
    if let Some(pipeline::lock::LockError::Held { .. }) = e.downcast_ref() {
        return ExitCode::from(pipeline::nightly::Stage::Lock.exit_code());
    }
    ExitCode::FAILURE
}

/// `faverecs runs | head` closes stdout early, and Rust's `println!` panics
/// on the broken pipe. Exit quietly with the shell's code for SIGPIPE (141)
/// instead, as other command-line tools do; other panics are reported as usual.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// The error and its causes, each stated once: a cause whose text the message
/// already holds (a library error that quotes its source) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if !matches!(cli.command, Command::Serve { .. }) {
        runtime
            .on_thread_park(collect_freed_memory)
            .on_thread_unpark(collect_freed_memory);
    }
    let runtime = runtime.build().context("cannot start the async runtime")?;
    // The health check needs neither settings nor storage.
    if let Command::Probe { url } = &cli.command {
        return runtime.block_on(commands::probe(url));
    }
    let settings = commands::load_settings(cli.config.as_deref())?;
    runtime.block_on(async move {
        let storage = Storage::open(&settings.storage)?;
        let s = &settings;
        match cli.command {
            Command::Import { what } => commands::import(&storage, what).await,
            Command::Score {
                all_users,
                threads,
                step,
                shard,
                run_id,
                finish,
            } => {
                let settings = commands::with_threads(s, threads);
                let run_id = run_id
                    .map(|text| {
                        pipeline::runs::sharded_run_id(&text).ok_or_else(|| {
                            anyhow::anyhow!(
                                "--run-id {:?} is neither a run id (e.g. 20261130T020000Z-00aa01) nor an RFC 3339 time",
                                pipeline::text::capped(&text, 64)
                            )
                        })
                    })
                    .transpose()?;
                match (finish, step, run_id) {
                    (true, _, Some(run_id)) => commands::finish(&storage, &settings, &run_id).await,
                    (false, Some(step), Some(run_id)) => {
                        let shard = match shard {
                            Some(shard) => shard,
                            None => cli::batch_array_shard()?.unwrap_or((0, 1)),
                        };
                        commands::score_shard(&storage, &settings, &run_id, step, shard, all_users)
                            .await
                    }
                    (false, None, None) => commands::score(&storage, &settings, all_users).await,
                    _ => anyhow::bail!(
                        "--run-id (or FAVERECS_RUN_ID) names a sharded run: give --step users|photos for a shard, or --finish"
                    ),
                }
            }
            Command::Evaluate { all_users, threads } => {
                commands::evaluate(&storage, &commands::with_threads(s, threads), all_users).await
            }
            Command::Sql {
                query,
                run_id,
                out,
                max_rows,
            } => commands::sql(&storage, &query, run_id.as_deref(), out, max_rows).await,
            Command::Publish { run_id } => commands::publish_run(&storage, run_id.as_deref()).await,
            Command::Runs => commands::runs(&storage).await,
            Command::Probe { url } => commands::probe(&url).await,
            Command::Gc { dry_run } => commands::gc(&storage, s, dry_run).await,
            Command::Raw { what } => commands::raw(&storage, s, what).await,
            Command::Nightly {
                all_users,
                threads,
                budget,
                new_users,
            } => {
                let settings = commands::with_threads(s, threads);
                let extract = pipeline::extract::ExtractOptions {
                    budget: budget.or(new_users.then_some(commands::NEW_USERS_BUDGET)),
                    only_new: new_users,
                    ..pipeline::extract::ExtractOptions::at(chrono::Utc::now())
                };
                commands::nightly(&storage, &settings, extract, all_users).await
            }
            Command::Serve { addr } => {
                commands::serve(storage, s, addr.unwrap_or(s.serve.addr), None).await
            }
            Command::Synth { night } => commands::synth(&storage, s, night).await,
            Command::Demo { addr, no_serve } => {
                commands::demo(storage, s, addr.unwrap_or(s.serve.addr), no_serve).await
            }
            Command::Extract {
                shard,
                phase,
                fold_only,
                budget,
                plan,
            } => {
                let shard = match shard {
                    Some(shard) => Some(shard),
                    None => cli::batch_array_shard()?,
                };
                let options = pipeline::extract::ExtractOptions {
                    shard,
                    phase,
                    budget,
                    ..pipeline::extract::ExtractOptions::at(chrono::Utc::now())
                };
                if plan {
                    commands::extract_plan(&storage, s, options).await
                } else {
                    commands::extract(&storage, s, options, fold_only).await
                }
            }
            Command::Tables { json } => commands::tables(json),
            Command::Users { what } => commands::users(&storage, s, what).await,
            Command::FlickrSim {
                addr,
                night,
                api_key,
                fault_rate,
                fault_seed,
                latency_ms,
                stall_ms,
            } => {
                let options =
                    commands::sim_options(api_key, fault_rate, fault_seed, latency_ms, stall_ms);
                commands::flickr_sim(s, addr, night, options).await
            }
        }
    })
}
