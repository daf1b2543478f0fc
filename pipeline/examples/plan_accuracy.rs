//! How close `faverecs extract --plan`'s estimate comes to the calls the run then
//! makes (issue 13, acceptance 4), on an evolving simulated community over
//! loopback HTTP: night 0 pulls everyone; on night 1 the plan is made (the same
//! `extract::plan_run` as `--plan`), then the run.
//!
//! Arguments: `PEOPLE TRACKED [BUDGET]` (default 20000 1000, no budget).

use std::sync::Arc;

use pipeline::community::generate;
use pipeline::config::{DemoSettings, Settings};
use pipeline::evolve::{evolve, night_time};
use pipeline::extract::client::{ApiKey, FlickrClient};
use pipeline::extract::sim::{SimOptions, Simulator};
use pipeline::extract::{ExtractOptions, plan_run, run_extract};
use pipeline::model::Table;
use pipeline::raw::merge_raw;
use pipeline::store::Storage;

type Error = Box<dyn std::error::Error + Send + Sync>;

const KEY: &str = "plan-accuracy-key";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let people = args.first().copied().unwrap_or(20_000) as usize;
    let tracked = args.get(1).copied().unwrap_or(1000) as usize;
    let budget = args.get(2).copied();
    let demo = DemoSettings {
        users: people,
        tracked_users: tracked,
        clusters: 12,
        seed: 42,
    };
    let started = std::time::Instant::now();
    let base = generate(&demo);
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    merge_raw(
        &storage,
        Table::TrackedUsers,
        vec![base.tracked_users.clone()],
    )
    .await?;
    let mut settings = Settings::load_with_env(None, Vec::new())?;
    settings.flickr.calls_per_hour = 100_000_000;
    settings.flickr.burst = 1000;
    settings.extract.concurrency = 16;

    for night in [0u32, 1] {
        let truth = evolve(&base, people, demo.seed, night);
        let sim = Simulator::new(&truth, SimOptions::keyed(KEY));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        settings.flickr.api_url = format!("http://{}/services/rest/", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = sim.serve(listener, std::future::pending()).await;
        });
        let options = ExtractOptions {
            budget: if night == 0 { None } else { budget },
            ..ExtractOptions::at(night_time(night))
        };
        let plan = (night == 1).then_some(plan_run(&storage, &settings, options).await?);
        let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY))?;
        let m = run_extract(&storage, &settings, &client, options).await?;
        server.abort();
        println!(
            "night {night}: {} calls, tracked fetched {}, neighbours fetched {}, deferred {}",
            m.calls,
            m.tracked.fetched,
            m.neighbors.fetched,
            m.tracked.deferred + m.neighbors.deferred
        );
        if let Some(plan) = plan {
            let mut estimate = 0;
            for l in plan.summary() {
                println!(
                    "  plan: {:<36} {:>7} users {:>8} calls {:>7} covered",
                    l.class.name(),
                    l.users,
                    l.calls,
                    l.covered
                );
                if l.class.due() {
                    estimate += l.calls;
                }
            }
            // Under a budget the run stops where the budget does.
            let estimate = budget.map_or(estimate, |b| estimate.min(b));
            println!(
                "plan estimate {estimate} calls; the run made {} ({:+.1}%)",
                m.calls,
                100.0 * (m.calls as f64 - estimate as f64) / estimate.max(1) as f64
            );
        }
    }
    println!("{:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
