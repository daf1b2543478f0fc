//! The freshness benchmark behind `bench/freshness.sh` (issue 13): night after
//! night against the evolving simulator (`pipeline::evolve`), over real HTTP on
//! loopback with the same client as production, each strategy extracts, scores
//! Flexplore, and is compared with the *oracle*: the same scoring run on the
//! simulator's complete truth for that night.
//!
//! Strategies:
//! - `refetch`: the seed's refetch-everything (every user, whole list, every night);
//! - `round-robin@B`: stalest first (`extract.order = "staleness"`), budget B;
//! - `priority@B`: the planner (`extract.order = "priority"`, adaptive
//!   intervals, first-page pulls), budget B;
//!
//! with B at 25 % and 10 % of refetch's mean calls a night. Night 0 seeds every
//! strategy with a whole pull and is not scored.
//!
//! Arguments: `USERS TRACKED NIGHTS` (default 3000 100 14). Prints one line per
//! strategy and night (calls, mean overlap@20 and @100 with the oracle), then
//! the means over nights 2..NIGHTS.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use pipeline::community::{Community, generate, write_community};
use pipeline::config::{DemoSettings, Order, Settings};
use pipeline::evolve::{evolve, night_time};
use pipeline::extract::client::{ApiKey, FlickrClient};
use pipeline::extract::sim::{SimOptions, Simulator};
use pipeline::extract::{ExtractOptions, run_extract};
use pipeline::model::columns::PhotoRecsColumns;
use pipeline::model::{Algorithm, Table, run_table_dir};
use pipeline::raw::merge_raw;
use pipeline::score::{ScoreOptions, run_score};
use pipeline::store::Storage;

type Lists = HashMap<String, Vec<String>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

const KEY: &str = "freshness-bench-key";

fn memory() -> Storage {
    Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory")
}

fn base_settings() -> Result<Settings, Error> {
    let mut s = Settings::load_with_env(None, Vec::new())?;
    s.flickr.calls_per_hour = 100_000_000;
    s.flickr.burst = 1000;
    s.extract.concurrency = 16;
    s.score.algorithms = vec![Algorithm::Flexplore];
    s.score.photo_recs_per_user = 100;
    s.similar.enabled = false;
    s.evaluate.enabled = false;
    Ok(s)
}

/// Each tracked user's Flexplore photo recs of the run, in rank order.
async fn lists(storage: &Storage, run_id: &str) -> Result<Lists, Error> {
    let mut rows: HashMap<String, Vec<(i32, String)>> = HashMap::new();
    for b in storage
        .read_table_dir(&run_table_dir(run_id, Table::PhotoRecs), Table::PhotoRecs)
        .await?
    {
        let c = PhotoRecsColumns::new(&b)?;
        for i in 0..b.num_rows() {
            rows.entry(c.user_id.value(i).to_string())
                .or_default()
                .push((c.rank.value(i), c.photo_id.value(i).to_string()));
        }
    }
    Ok(rows
        .into_iter()
        .map(|(u, mut l)| {
            l.sort();
            (u, l.into_iter().map(|(_, p)| p).collect())
        })
        .collect())
}

/// Mean over the oracle's users of |ours@k ∩ oracle@k| / |oracle@k|.
fn overlap(ours: &Lists, oracle: &Lists, k: usize) -> f64 {
    let mut sum = 0.0;
    let mut n = 0;
    for (user, truth) in oracle {
        let truth: BTreeSet<&String> = truth.iter().take(k).collect();
        if truth.is_empty() {
            continue;
        }
        let mine: BTreeSet<&String> = ours
            .get(user)
            .map(|l| l.iter().take(k).collect())
            .unwrap_or_default();
        sum += truth.intersection(&mine).count() as f64 / truth.len() as f64;
        n += 1;
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

async fn oracle(truth: &Community, settings: &Settings) -> Result<Lists, Error> {
    let storage = memory();
    write_community(&storage, truth).await?;
    let run = run_score(&storage, settings, ScoreOptions::default()).await?;
    lists(&storage, &run.run_id).await
}

/// One night's simulator on a free loopback port; its REST URL.
async fn serve(truth: &Community) -> Result<(tokio::task::JoinHandle<()>, String), Error> {
    let sim = Simulator::new(truth, SimOptions::keyed(KEY));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/services/rest/", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = sim.serve(listener, std::future::pending()).await;
    });
    Ok((task, url))
}

struct Strategy {
    name: String,
    settings: Settings,
    budget: Option<u64>,
}

/// Runs one strategy over every night; returns (calls, overlap@20, overlap@100)
/// per night from 1 on.
async fn run(
    strategy: &Strategy,
    truths: &[Community],
    oracles: &[Lists],
) -> Result<Vec<(u64, f64, f64)>, Error> {
    let storage = memory();
    merge_raw(
        &storage,
        Table::TrackedUsers,
        vec![truths[0].tracked_users.clone()],
    )
    .await?;
    let mut out = Vec::new();
    for (k, truth) in truths.iter().enumerate() {
        let (sim, url) = serve(truth).await?;
        let mut settings = strategy.settings.clone();
        settings.flickr.api_url = url;
        let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY))?;
        let options = ExtractOptions {
            budget: if k == 0 { None } else { strategy.budget },
            ..ExtractOptions::at(night_time(k as u32))
        };
        let m = run_extract(&storage, &settings, &client, options).await?;
        sim.abort();
        let run = run_score(&storage, &settings, ScoreOptions::default()).await?;
        // Published, as a night does: the next night's planner reads its
        // photographer recs for each neighbour's influence.
        pipeline::runs::publish(&storage, Some(&run.run_id)).await?;
        if k == 0 {
            continue;
        }
        let ours = lists(&storage, &run.run_id).await?;
        let (o20, o100) = (
            overlap(&ours, &oracles[k], 20),
            overlap(&ours, &oracles[k], 100),
        );
        println!(
            "{:<20} night {k:>2}: {:>7} calls  overlap@20 {o20:.3}  overlap@100 {o100:.3}",
            strategy.name, m.calls
        );
        out.push((m.calls, o20, o100));
    }
    Ok(out)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let users = args.first().copied().unwrap_or(3000);
    let tracked = args.get(1).copied().unwrap_or(100);
    let nights = args.get(2).copied().unwrap_or(14) as u32;
    let demo = DemoSettings {
        users,
        tracked_users: tracked,
        clusters: 12,
        seed: 42,
    };
    let started = std::time::Instant::now();
    let base = generate(&demo);
    let truths: Vec<Community> = (0..=nights)
        .map(|k| evolve(&base, users, demo.seed, k))
        .collect();
    let neighbors = {
        let tracked: BTreeSet<String> = truths[0].tracked_ids().into_iter().collect();
        let c = pipeline::model::columns::FavoritesColumns::new(&truths[0].favorites)?;
        (0..truths[0].favorites.num_rows())
            .filter(|&i| tracked.contains(c.user_id.value(i)))
            .map(|i| c.owner_id.value(i).to_string())
            .filter(|o| !tracked.contains(o))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let base_settings = base_settings()?;
    let mut oracles = Vec::new();
    for t in &truths {
        oracles.push(oracle(t, &base_settings).await?);
    }
    println!(
        "community: {users} people, {tracked} tracked, {neighbors} neighbours, {} favourites on night 0, {} on night {nights}; truths and oracles in {:.0} s",
        truths[0].favorites.num_rows(),
        truths[nights as usize].favorites.num_rows(),
        started.elapsed().as_secs_f64()
    );

    let mut refetch = base_settings.clone();
    refetch.extract.refresh_after_hours = 1;
    refetch.extract.min_refresh_hours = 1;
    refetch.extract.max_refresh_hours = 1;
    refetch.extract.full_refresh_after_days = 1;
    let refetch = Strategy {
        name: "refetch".into(),
        settings: refetch,
        budget: None,
    };
    let mut results = vec![(
        "refetch".to_string(),
        run(&refetch, &truths, &oracles).await?,
    )];
    let per_night = mean(results[0].1.iter().map(|r| r.0 as f64));
    for share in [25u64, 10] {
        let budget = (per_night * share as f64 / 100.0).round() as u64;
        let mut rr = base_settings.clone();
        rr.extract.order = Order::Staleness;
        rr.extract.min_refresh_hours = rr.extract.refresh_after_hours;
        rr.extract.max_refresh_hours = rr.extract.refresh_after_hours;
        for strategy in [
            Strategy {
                name: format!("round-robin@{share}%"),
                settings: rr.clone(),
                budget: Some(budget),
            },
            Strategy {
                name: format!("priority@{share}%"),
                settings: base_settings.clone(),
                budget: Some(budget),
            },
        ] {
            let r = run(&strategy, &truths, &oracles).await?;
            results.push((strategy.name, r));
        }
    }
    println!("\nmeans over nights 2..{nights} (refetch made {per_night:.0} calls a night):");
    println!(
        "{:<20} {:>10} {:>12} {:>13}",
        "strategy", "calls", "overlap@20", "overlap@100"
    );
    for (name, r) in &results {
        let from2 = || r.iter().skip(1);
        println!(
            "{name:<20} {:>10.0} {:>12.3} {:>13.3}",
            mean(from2().map(|x| x.0 as f64)),
            mean(from2().map(|x| x.1)),
            mean(from2().map(|x| x.2))
        );
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
