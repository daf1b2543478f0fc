//! The freshness benchmark behind `bench/freshness.sh` (issue 13): night after
//! night against the evolving simulator (`pipeline::evolve`), over real HTTP on
//! loopback with the same client as production, each strategy extracts, scores
//! Flexplore, publishes, and is compared with the *oracle*: the same scoring run
//! on the simulator's truth for that night, as the public API can show it (the
//! simulator's restricted photos, which no listing shows, left out; each user's
//! newest `flickr.max_favorites_per_user` kept, as the fold keeps them). The
//! overlap with Flexplore on the complete truth is printed beside it.
//!
//! Strategies:
//! - `refetch`: the seed's refetch-everything (every user, whole list, every night);
//! - `round-robin@B`: stalest first (`extract.order = "staleness"`), budget B;
//! - `priority@B`: the planner (`extract.order = "priority"`, adaptive
//!   intervals, first-page pulls), budget B;
//!
//! with B at 25 % and 10 % of the calls refetch-everything made the same night.
//! Night 0 seeds every strategy with a whole pull and is not scored. The nights
//! run one at a time (one truth and one simulator in memory), every strategy
//! against the same simulator.
//!
//! Arguments: `USERS TRACKED NIGHTS` (default 3000 100 14). Prints the
//! community's size, one line per strategy and night (calls, mean overlap@20
//! and @100 with the oracle), then the means over nights 2..NIGHTS.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::BooleanArray;
use arrow_select::filter::filter_record_batch;

use pipeline::community::{Community, generate, write_community};
use pipeline::config::{DemoSettings, Order, Settings};
use pipeline::evolve::{evolve, night_time};
use pipeline::extract::client::{ApiKey, FlickrClient};
use pipeline::extract::sim::{SimOptions, Simulator, is_restricted};
use pipeline::extract::{ExtractOptions, run_extract};
use pipeline::model::arrow::time_at;
use pipeline::model::columns::{FavoritesColumns, PhotoRecsColumns};
use pipeline::model::{Algorithm, Table, run_table_dir};
use pipeline::raw::merge_raw;
use pipeline::score::{ScoreOptions, run_score};
use pipeline::store::Storage;

type Lists = HashMap<String, Vec<String>>;
/// One strategy's night: calls, overlap@20, overlap@100, and overlap@100 with
/// the complete truth's oracle.
type Night = (u64, f64, f64, f64);
type Error = Box<dyn std::error::Error + Send + Sync>;

const KEY: &str = "freshness-bench-key";

fn memory() -> Storage {
    Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory")
}

/// The defaults, with `FAVERECS__…` overrides from the environment (to try
/// another setting without a rebuild), then the benchmark's own.
fn base_settings() -> Result<Settings, Error> {
    let mut s = Settings::load_with_env(None, std::env::vars())?;
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

/// The truth as the public API can show it, held as the fold holds it: the
/// simulator's restricted photos (never listed without authentication) left
/// out, and each user's newest `flickr.max_favorites_per_user` kept (ties by
/// photo id, as the listing orders them).
fn visible(truth: &Community, settings: &Settings) -> Result<Community, Error> {
    let c = FavoritesColumns::new(&truth.favorites)?;
    let mut by_user: HashMap<&str, Vec<(i64, &str, usize)>> = HashMap::new();
    for i in 0..truth.favorites.num_rows() {
        let photo = c.photo_id.value(i);
        if !is_restricted(photo) {
            let date = time_at(c.date_faved, i).unwrap_or(0);
            by_user
                .entry(c.user_id.value(i))
                .or_default()
                .push((date, photo, i));
        }
    }
    let mut keep = vec![false; truth.favorites.num_rows()];
    for rows in by_user.values_mut() {
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        for (_, _, i) in rows.iter().take(settings.flickr.max_favorites_per_user) {
            keep[*i] = true;
        }
    }
    let favorites = filter_record_batch(&truth.favorites, &BooleanArray::from(keep))?;
    Ok(Community {
        favorites,
        ..truth.clone()
    })
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
    /// Share of refetch-everything's calls the same night (`None`: no budget).
    share: Option<u64>,
    storage: Storage,
    /// Per night from 1 on.
    nights: Vec<Night>,
}

impl Strategy {
    fn new(name: String, settings: Settings, share: Option<u64>) -> Self {
        Self {
            name,
            settings,
            share,
            storage: memory(),
            nights: Vec::new(),
        }
    }

    /// Night `k`: extract from the simulator at `url` within `budget`, score,
    /// publish (the next night's planner reads the published run), and
    /// compare with the oracles; returns the calls made.
    async fn night(
        &mut self,
        k: u32,
        url: &str,
        budget: Option<u64>,
        oracle: &Lists,
        complete: &Lists,
    ) -> Result<u64, Error> {
        let mut settings = self.settings.clone();
        settings.flickr.api_url = url.to_string();
        let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY))?;
        let options = ExtractOptions {
            budget,
            ..ExtractOptions::at(night_time(k))
        };
        if k > 0 && budget.is_some() && std::env::var_os("FRESHNESS_PLAN").is_some() {
            print_plan(&self.name, k, &self.storage, &settings, options).await?;
        }
        let m = run_extract(&self.storage, &settings, &client, options).await?;
        let run = run_score(&self.storage, &settings, ScoreOptions::default()).await?;
        pipeline::runs::publish(&self.storage, Some(&run.run_id)).await?;
        if k > 0 {
            let ours = lists(&self.storage, &run.run_id).await?;
            let (o20, o100, c100) = (
                overlap(&ours, oracle, 20),
                overlap(&ours, oracle, 100),
                overlap(&ours, complete, 100),
            );
            println!(
                "{:<20} night {k:>2}: {:>7} calls  overlap@20 {o20:.3}  overlap@100 {o100:.3}  (complete truth {c100:.3})",
                self.name, m.calls
            );
            self.nights.push((m.calls, o20, o100, c100));
        }
        Ok(m.calls)
    }
}

/// With `FRESHNESS_PLAN` set: per class, the users due, their calls, and how
/// many the budget covers (full pulls among them), as `extract --plan` counts
/// them (neighbours a cold start brings are not known before the run).
async fn print_plan(
    name: &str,
    k: u32,
    storage: &Storage,
    settings: &Settings,
    options: ExtractOptions,
) -> Result<(), Error> {
    let plan = pipeline::extract::plan_run(storage, settings, options).await?;
    let mut left = plan.budget.unwrap_or(u64::MAX);
    let mut full: HashMap<&str, (usize, u64)> = HashMap::new();
    for p in plan.tracked.iter().chain(&plan.neighbors) {
        if p.class.due() && left >= p.cost {
            left -= p.cost;
            if p.full {
                let e = full.entry(p.class.name()).or_default();
                e.0 += 1;
                e.1 += p.cost;
            }
        }
    }
    for l in plan.summary() {
        let (f, fc) = full.get(l.class.name()).copied().unwrap_or_default();
        println!(
            "{name:<20} night {k:>2} plan: {:<38} {:>6} users {:>7} calls {:>6} covered ({f} full, {fc} calls)",
            l.class.name(),
            l.users,
            l.calls,
            l.covered
        );
    }
    Ok(())
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
    let neighbors = {
        let tracked: BTreeSet<String> = base.tracked_ids().into_iter().collect();
        let c = FavoritesColumns::new(&base.favorites)?;
        (0..base.favorites.num_rows())
            .filter(|&i| tracked.contains(c.user_id.value(i)))
            .map(|i| c.owner_id.value(i).to_string())
            .filter(|o| !tracked.contains(o))
            .collect::<BTreeSet<_>>()
            .len()
    };
    println!(
        "community: {users} people, {tracked} tracked, {neighbors} neighbours, {} favourites on night 0",
        base.favorites.num_rows(),
    );
    let base_settings = base_settings()?;

    let mut refetch = base_settings.clone();
    refetch.extract.refresh_after_hours = 1;
    refetch.extract.min_refresh_hours = 1;
    refetch.extract.max_refresh_hours = 1;
    refetch.extract.full_refresh_after_days = 1;
    let mut rr = base_settings.clone();
    rr.extract.order = Order::Staleness;
    rr.extract.min_refresh_hours = rr.extract.refresh_after_hours;
    rr.extract.max_refresh_hours = rr.extract.refresh_after_hours;
    let mut strategies = vec![Strategy::new("refetch".into(), refetch, None)];
    for share in [25u64, 10] {
        strategies.push(Strategy::new(
            format!("round-robin@{share}%"),
            rr.clone(),
            Some(share),
        ));
        strategies.push(Strategy::new(
            format!("priority@{share}%"),
            base_settings.clone(),
            Some(share),
        ));
    }
    // `FRESHNESS_ONLY=priority` runs only the strategies whose name starts so
    // (and refetch-everything, which sets the budgets).
    if let Ok(only) = std::env::var("FRESHNESS_ONLY") {
        strategies.retain(|s| s.share.is_none() || s.name.starts_with(&only));
    }
    for s in &strategies {
        merge_raw(
            &s.storage,
            Table::TrackedUsers,
            vec![base.tracked_users.clone()],
        )
        .await?;
    }
    // Night by night, one truth at a time: the oracles (Flexplore on the truth
    // the public API can show, and on the complete truth for refetch's
    // ceiling), then every strategy against one simulator of that truth, each
    // budgeted at its share of what refetch-everything called that night.
    for k in 0..=nights {
        let truth = evolve(&base, users, demo.seed, k);
        let oracle_lists = oracle(&visible(&truth, &base_settings)?, &base_settings).await?;
        let complete = oracle(&truth, &base_settings).await?;
        let (sim, url) = serve(&truth).await?;
        let mut refetch_calls = 0;
        for s in strategies.iter_mut() {
            let budget = match s.share {
                Some(share) if k > 0 => Some((refetch_calls * share).div_ceil(100)),
                _ => None,
            };
            let calls = s.night(k, &url, budget, &oracle_lists, &complete).await?;
            if s.share.is_none() {
                refetch_calls = calls;
            }
        }
        sim.abort();
        println!(
            "night {k}: {} favourites in the truth, {:.0} s so far",
            truth.favorites.num_rows(),
            started.elapsed().as_secs_f64()
        );
    }
    let per_night = mean(strategies[0].nights.iter().map(|r| r.0 as f64));
    let results: Vec<(String, Vec<Night>)> =
        strategies.into_iter().map(|s| (s.name, s.nights)).collect();
    println!("\nmeans over nights 2..{nights} (refetch made {per_night:.0} calls a night):");
    println!(
        "{:<20} {:>10} {:>12} {:>13} {:>24}",
        "strategy", "calls", "overlap@20", "overlap@100", "@100 vs complete truth"
    );
    for (name, r) in &results {
        let from2 = || r.iter().skip(1);
        println!(
            "{name:<20} {:>10.0} {:>12.3} {:>13.3} {:>24.3}",
            mean(from2().map(|x| x.0 as f64)),
            mean(from2().map(|x| x.1)),
            mean(from2().map(|x| x.2)),
            mean(from2().map(|x| x.3))
        );
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
