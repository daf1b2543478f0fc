//! Extract: favourites and contacts from the Flickr API into the raw tables.
//!
//! Phase 1 pulls the favourites and contacts of every tracked user; phase 2 pulls
//! the favourites of their neighbours (the owners of the tracked users' favourites),
//! each user at most once per run. Both phases are "a list of users in, rows out",
//! so they can be sharded by a stable hash of the NSID.
//!
//! Resumability: each finished user is written as one object,
//! `extract/pending/<phase>/<nsid>.json`, in one atomic put. A run killed at any
//! point leaves only whole users behind; the same command resumes, skipping users
//! whose object exists. At the end, every pending user is folded into the raw tables
//! (each rewritten in one atomic put) and the pending objects are deleted. Folding is
//! idempotent, so a kill during it is also safe: the next run folds again.
//!
//! Freshness and deletions: a user pulled within `extract.refresh_after_hours` is
//! skipped and keeps their stored rows. Otherwise the pull is incremental
//! (`min_fave_date` = newest favourite held; the answer is added to the stored set)
//! unless the last full pull is older than `extract.full_refresh_after_days`, in
//! which case the whole list is pulled and replaces the stored set, which is how
//! deleted favourites disappear. A tracked user's contacts are pulled with each full
//! pull and kept in between.

pub mod client;
pub mod error;
pub mod fold;
pub mod plan;
pub mod progress;
pub mod pull;
pub mod sim;
pub mod state;
pub mod users;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use object_store::path::Path;

use crate::config::Settings;
use crate::model::arrow::str_at;
use crate::model::columns::FavoritesColumns;
use crate::model::{Table, is_nsid};
use crate::runs::RunStatus;
use crate::store::Storage;

use client::FlickrClient;
pub use error::ExtractError;
pub use fold::fold;
pub use progress::{LogProgress, PhaseProgress, Progress};
use pull::{Ctx, run_phase};
pub use state::{
    DataAge, ExtractManifest, ExtractOptions, MANIFEST_DIR, Outcome, PENDING_DIR, Phase,
    UserCounts, UserPull, UserState, read_pending, read_state, shard_of, tracked_users,
};

/// What the planner needs from the stored favourites, in two passes: how many
/// each user holds, and each neighbour's influence (see [`plan`]): their
/// Flexplore neighbour score, computed from the favourites held exactly as
/// `score` computes it (favourites in common, and the neighbour's total), as a
/// share of each tracked user's sum of scores, summed over the tracked users
/// and scaled by the mean sum. A neighbour with no favourites held scores
/// [`plan::prior_influence`] for each of the tracked user's favourites of their
/// photos.
async fn known_from_storage(
    storage: &Storage,
    tracked: &BTreeSet<&String>,
) -> Result<plan::Known<'static>, ExtractError> {
    use std::collections::HashMap;
    let mut known = plan::Known::default();
    let batches = storage
        .read_raw(Table::Favorites)
        .await?
        .unwrap_or_default();
    // Pass 1: totals; per tracked user, their neighbours (with how many of
    // their photos they favourited) and who favourited each photo.
    let tracked_ix: HashMap<&str, usize> = tracked
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i))
        .collect();
    let mut neighbors_of: Vec<HashMap<String, u32>> = vec![HashMap::new(); tracked.len()];
    let mut faved_by: HashMap<String, Vec<usize>> = HashMap::new();
    for b in &batches {
        let c = FavoritesColumns::new(b)?;
        for i in 0..b.num_rows() {
            let Some(u) = str_at(c.user_id, i) else {
                continue;
            };
            *known.held.entry(u.to_string()).or_insert(0) += 1;
            if let Some(&t) = tracked_ix.get(u) {
                if let Some(o) = str_at(c.owner_id, i) {
                    *neighbors_of[t].entry(o.to_string()).or_insert(0) += 1;
                }
                if let Some(p) = str_at(c.photo_id, i) {
                    faved_by.entry(p.to_string()).or_default().push(t);
                }
            }
        }
    }
    // Pass 2: favourites in common between each tracked user and each of
    // their neighbours.
    let mut common: HashMap<(usize, &str), u32> = HashMap::new();
    for b in &batches {
        let c = FavoritesColumns::new(b)?;
        for i in 0..b.num_rows() {
            let (Some(x), Some(p)) = (str_at(c.user_id, i), str_at(c.photo_id, i)) else {
                continue;
            };
            for &t in faved_by.get(p).map_or(&[][..], Vec::as_slice) {
                if neighbors_of[t].contains_key(x) {
                    *common.entry((t, x)).or_insert(0) += 1;
                }
            }
        }
    }
    // Each tracked user's neighbour scores, then their sum (the user's
    // recommendation mass).
    let scores: Vec<Vec<(&String, f64)>> = neighbors_of
        .iter()
        .enumerate()
        .map(|(t, ns)| {
            ns.iter()
                .map(|(n, &of_theirs)| {
                    let score = match known.held.get(n).copied().unwrap_or(0) {
                        0 => plan::prior_influence() * f64::from(of_theirs),
                        held => crate::score::flexplore::neighbor_score(
                            common.get(&(t, n.as_str())).copied().unwrap_or(0),
                            u32::try_from(held).unwrap_or(u32::MAX),
                        ),
                    };
                    (n, score)
                })
                .collect()
        })
        .collect();
    let mass: Vec<f64> = scores
        .iter()
        .map(|ns| ns.iter().map(|(_, s)| s).sum())
        .collect();
    let with_mass: Vec<f64> = mass.iter().copied().filter(|m| *m > 0.0).collect();
    let mean_mass = with_mass.iter().sum::<f64>() / with_mass.len().max(1) as f64;
    for (t, ns) in scores.iter().enumerate() {
        // Every tracked user's lists count the same (the mean overlap does):
        // a neighbour's score counts as its share of the user's mass, scaled
        // by the mean mass so that influences stay on the scale of one score.
        let weight = if mass[t] > 0.0 {
            mean_mass / mass[t]
        } else {
            1.0
        };
        for (n, score) in ns {
            *known.influence.entry((*n).clone()).or_insert(0.0) += score * weight;
        }
    }
    Ok(known)
}

/// The age of the data behind the recommendations once this run's pulls are
/// folded: hours since each user's last pull (0 for users pulled now; the
/// planner's prior for users never pulled), p50 and p90, neighbours weighted by
/// influence.
async fn data_age(
    storage: &Storage,
    settings: &Settings,
    state: &std::collections::HashMap<String, UserState>,
    known: &plan::Known<'_>,
    tracked: &[String],
    neighbors: &[String],
    now: chrono::DateTime<Utc>,
) -> Result<DataAge, ExtractError> {
    let pulled: BTreeSet<String> = read_pending(storage)
        .await?
        .into_iter()
        .map(|p| p.user_id)
        .collect();
    let prior = 2.0 * 24.0 * settings.extract.full_refresh_after_days as f64;
    let now_us = state::micros(now);
    let age = |u: &String| {
        if pulled.contains(u) {
            return 0.0;
        }
        state
            .get(u)
            .and_then(|s| s.last_pulled_at)
            .map_or(prior, |t| (now_us - t).max(0) as f64 / 3.6e9)
    };
    let weighted: Vec<(f64, f64)> = neighbors
        .iter()
        .map(|n| (age(n), known.influence.get(n).copied().unwrap_or(1.0)))
        .collect();
    let flat: Vec<(f64, f64)> = tracked.iter().map(|u| (age(u), 1.0)).collect();
    let pct =
        |pairs: &Vec<(f64, f64)>, q| plan::weighted_percentile(pairs.clone(), q).unwrap_or(0.0);
    Ok(DataAge {
        neighbors_p50: pct(&weighted, 0.5),
        neighbors_p90: pct(&weighted, 0.9),
        tracked_p50: pct(&flat, 0.5),
        tracked_p90: pct(&flat, 0.9),
    })
}

/// What a run would do, from the stored data, without calling Flickr
/// (`faverecs extract --plan`). Neighbours a cold-start tracked user brings are
/// not known before their pull, so the plan counts only stored ones.
#[derive(Debug)]
pub struct RunPlan {
    /// Tracked users in the run's order.
    pub tracked: Vec<plan::Planned>,
    /// Neighbours in the run's order.
    pub neighbors: Vec<plan::Planned>,
    /// The budget, if any.
    pub budget: Option<u64>,
}

/// One line of a plan's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassLine {
    /// The class.
    pub class: plan::Class,
    /// Users in it.
    pub users: usize,
    /// Their estimated calls.
    pub calls: u64,
    /// Users the budget covers (all, without a budget).
    pub covered: usize,
}

impl RunPlan {
    /// Per class, in priority order: users, calls, and how many the budget
    /// covers when the run walks them in order.
    pub fn summary(&self) -> Vec<ClassLine> {
        let mut left = self.budget.unwrap_or(u64::MAX);
        let mut lines: Vec<ClassLine> = Vec::new();
        for p in self.tracked.iter().chain(&self.neighbors) {
            let line = match lines.iter_mut().find(|l| l.class == p.class) {
                Some(l) => l,
                None => {
                    lines.push(ClassLine {
                        class: p.class,
                        users: 0,
                        calls: 0,
                        covered: 0,
                    });
                    lines.last_mut().expect("just pushed")
                }
            };
            line.users += 1;
            if p.class.due() {
                line.calls += p.cost;
                if left >= p.cost {
                    left -= p.cost;
                    line.covered += 1;
                }
            }
        }
        lines.sort_by_key(|l| l.class);
        lines
    }
}

/// Plans a run (see [`RunPlan`]).
pub async fn plan_run(
    storage: &Storage,
    settings: &Settings,
    options: ExtractOptions,
) -> Result<RunPlan, ExtractError> {
    let in_shard = |u: &String| options.shard.is_none_or(|(i, n)| shard_of(u, n) == i);
    let tracked = tracked_users(storage).await?;
    if tracked.is_empty() {
        return Err(ExtractError::NoTrackedUsers);
    }
    let state = read_state(storage).await?;
    let tracked_set: BTreeSet<&String> = tracked.iter().collect();
    let mut known = known_from_storage(storage, &tracked_set).await?;
    known.state = Some(&state);
    known.tracked_since = state::tracked_since(storage).await?;
    let mine: Vec<String> = tracked.iter().filter(|u| in_shard(u)).cloned().collect();
    let neighbors: Vec<String> = known
        .influence
        .keys()
        .filter(|n| is_nsid(n) && !tracked_set.contains(n) && in_shard(n))
        .cloned()
        .collect();
    let budget = options.budget.or(settings.extract.max_calls);
    let tracked = plan::order_tracked(&mine, &known, settings, options.now);
    // What the tracked users leave the neighbours, as the run admits them.
    let left = budget.map(|mut left| {
        for p in tracked.iter().filter(|p| p.class.due()) {
            if left >= p.cost {
                left -= p.cost;
            }
        }
        left
    });
    Ok(RunPlan {
        neighbors: plan::order_neighbors(
            &neighbors,
            &std::collections::HashSet::new(),
            &known,
            settings,
            options.now,
            left,
        ),
        tracked,
        budget,
    })
}

/// Runs the extract stage and writes its manifest.
pub async fn run_extract(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
) -> Result<ExtractManifest, ExtractError> {
    run_extract_with(storage, settings, client, options, &LogProgress).await
}

/// [`run_extract`], reporting each phase's progress to `progress`.
pub async fn run_extract_with(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
    progress: &dyn Progress,
) -> Result<ExtractManifest, ExtractError> {
    let started = Utc::now();
    let run_id = crate::runs::new_run_id(started);
    let mut manifest = ExtractManifest {
        run_id: run_id.clone(),
        status: RunStatus::Running,
        started_at: started,
        finished_at: started,
        shard: options.shard.map(|(i, n)| format!("{i}/{n}")),
        calls: 0,
        retries: BTreeMap::new(),
        tracked: UserCounts::default(),
        neighbors: UserCounts::default(),
        rows_written: BTreeMap::new(),
        failures: Vec::new(),
        budget: None,
        data_age_hours: None,
        error: None,
    };
    let result = extract_into(storage, settings, client, options, &mut manifest, progress).await;
    manifest.finished_at = Utc::now();
    manifest.calls = client.stats.calls();
    manifest.retries = client.stats.retries();
    manifest.status = if result.is_ok() {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    if let Err(e) = &result {
        manifest.error = Some(e.to_string());
    }
    storage
        .put_json(
            &Path::from(format!("{MANIFEST_DIR}/{run_id}.json")),
            &manifest,
        )
        .await?;
    result.map(|()| manifest)
}

async fn extract_into(
    storage: &Storage,
    settings: &Settings,
    client: &FlickrClient,
    options: ExtractOptions,
    manifest: &mut ExtractManifest,
    progress: &dyn Progress,
) -> Result<(), ExtractError> {
    let in_shard = |u: &String| options.shard.is_none_or(|(i, n)| shard_of(u, n) == i);
    let tracked = tracked_users(storage).await?;
    if tracked.is_empty() {
        return Err(ExtractError::NoTrackedUsers);
    }
    let budget = options.budget.or(settings.extract.max_calls);
    client.set_budget(budget);
    manifest.budget = budget;
    let state = read_state(storage).await?;
    let pending = read_pending(storage).await?;
    let done: BTreeSet<(Phase, String)> = pending
        .iter()
        .map(|p| (p.phase, p.user_id.clone()))
        .collect();
    let ctx = Ctx {
        storage,
        client,
        settings,
        state: &state,
        done: &done,
        now: options.now,
    };
    let mut failures = Vec::new();
    let runs = |p: Phase| options.phase.is_none_or(|only| only == p);
    let tracked_set: BTreeSet<&String> = tracked.iter().collect();
    let mut known = known_from_storage(storage, &tracked_set).await?;
    known.state = Some(&state);
    known.tracked_since = state::tracked_since(storage).await?;
    let mine: Vec<String> = tracked.iter().filter(|u| in_shard(u)).cloned().collect();
    let mut tracked_plan = plan::order_tracked(&mine, &known, settings, options.now);
    if options.only_new {
        tracked_plan.retain(|p| p.class == plan::Class::ColdStart);
    }
    let cold: BTreeSet<String> = tracked_plan
        .iter()
        .filter(|p| p.class == plan::Class::ColdStart)
        .map(|p| p.user.clone())
        .collect();
    if runs(Phase::Tracked) {
        run_phase(
            &ctx,
            Phase::Tracked,
            tracked_plan,
            &mut manifest.tracked,
            &mut failures,
            progress,
        )
        .await?;
    }

    // Neighbours: owners of the tracked users' favourites, stored or just pulled.
    let mut neighbors: BTreeSet<String> = known.influence.keys().cloned().collect();
    let mut of_new_users = std::collections::HashSet::new();
    for p in read_pending(storage).await? {
        if p.phase == Phase::Tracked {
            let new_user = cold.contains(&p.user_id);
            for f in p.favorites {
                *known.influence.entry(f.owner_id.clone()).or_insert(0.0) +=
                    plan::prior_influence();
                if new_user {
                    of_new_users.insert(f.owner_id.clone());
                }
                neighbors.insert(f.owner_id);
            }
        }
    }
    let neighbors: Vec<String> = neighbors
        .into_iter()
        .filter(|n| is_nsid(n) && !tracked_set.contains(n) && in_shard(n))
        .collect();
    let mut neighbor_plan = plan::order_neighbors(
        &neighbors,
        &of_new_users,
        &known,
        settings,
        options.now,
        client.budget_left(),
    );
    if options.only_new {
        neighbor_plan.retain(|p| p.class == plan::Class::NewUsersNeighbor);
    }
    if runs(Phase::Neighbor) {
        run_phase(
            &ctx,
            Phase::Neighbor,
            neighbor_plan,
            &mut manifest.neighbors,
            &mut failures,
            progress,
        )
        .await?;
    }
    manifest.data_age_hours = Some(
        data_age(
            storage,
            settings,
            &state,
            &known,
            &mine,
            &neighbors,
            options.now,
        )
        .await?,
    );
    manifest.failures = failures.clone();

    let attempted: usize = [&manifest.tracked, &manifest.neighbors]
        .iter()
        .map(|c| c.fetched + c.not_found + c.deleted + c.failed)
        .sum();
    let failed = manifest.tracked.failed + manifest.neighbors.failed;
    if attempted > 0 {
        let percent = 100.0 * failed as f64 / attempted as f64;
        if percent >= f64::from(settings.extract.max_failed_percent) {
            return Err(ExtractError::TooManyFailures {
                failed,
                attempted,
                percent,
                limit: settings.extract.max_failed_percent,
                examples: failures
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    if options.shard.is_some() || options.phase.is_some() {
        tracing::info!(
            "phase/shard done; fold with `faverecs extract --fold-only` once every shard has finished"
        );
        return Ok(());
    }
    manifest.rows_written = fold(storage, settings, options.now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{RecordBatch, StringArray, TimestampMicrosecondArray};

    use super::*;
    use crate::score::flexplore::neighbor_score;

    #[tokio::test]
    async fn influence_is_the_flexplore_neighbour_score_as_a_share_of_each_tracked_users_summed() {
        // (user, photo, owner)
        let rows = [
            ("1@N01", "p1", "2@N01"),
            ("1@N01", "p2", "2@N01"),
            ("1@N01", "p3", "3@N01"),
            ("1@N01", "p4", "5@N01"),
            ("4@N01", "p3", "3@N01"),
            ("2@N01", "p3", "3@N01"),
            ("2@N01", "p9", "9@N01"),
            ("3@N01", "p1", "2@N01"),
            ("3@N01", "p2", "2@N01"),
            ("3@N01", "p5", "9@N01"),
            ("6@N01", "p9", "9@N01"),
        ];
        let col = |k: usize| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| [r.0, r.1, r.2][k]),
            )) as _
        };
        let batch = RecordBatch::try_new(
            Table::Favorites.schema(),
            vec![
                col(0),
                col(1),
                col(2),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![None; rows.len()]).with_timezone("UTC"),
                ),
            ],
        )
        .expect("favorites");
        let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "mem");
        crate::raw::merge_raw(&storage, Table::Favorites, vec![batch])
            .await
            .expect("stored");
        let (t1, t2, t3) = (
            "1@N01".to_string(),
            "4@N01".to_string(),
            "6@N01".to_string(),
        );
        let tracked: BTreeSet<&String> = [&t1, &t2, &t3].into();
        let known = known_from_storage(&storage, &tracked).await.expect("known");
        // 2@N01 holds 2 favourites, 1 in common with 1@N01 (p3); 3@N01 holds
        // 3, 2 in common with 1@N01 (p1, p2) and none with 4@N01; 5@N01 holds
        // none, and 1@N01 favourited one of their photos; so does 9@N01, and
        // 6@N01 favourited one of theirs. Each score counts as its share of
        // the tracked user's sum (4@N01's is 0), times the mean sum.
        let one = neighbor_score(1, 2) + neighbor_score(2, 3) + plan::prior_influence();
        let six = plan::prior_influence();
        let mean = (one + six) / 2.0;
        let expected = [
            ("2@N01", neighbor_score(1, 2) * mean / one),
            ("3@N01", neighbor_score(2, 3) * mean / one),
            ("5@N01", plan::prior_influence() * mean / one),
            ("9@N01", mean),
        ];
        assert_eq!(
            known.influence.len(),
            expected.len(),
            "{:?}",
            known.influence
        );
        for (n, score) in expected {
            let got = known.influence[n];
            assert!((got - score).abs() < 1e-12, "{n}: {got} != {score}");
        }
        assert_eq!(known.held["3@N01"], 3);
    }
}
