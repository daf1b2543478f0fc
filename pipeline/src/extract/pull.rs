//! Pulling users from the API: one user at a time into a pending object, and a
//! phase's users with bounded concurrency.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::config::Settings;
use crate::store::Storage;

use super::client::{FlickrClient, FlickrError};
use super::error::ExtractError;
use super::plan::{Decision, Planned};
use super::progress::{PhaseProgress, Progress};
use super::state::{Outcome, Phase, UserCounts, UserPull, UserState, pending_path};

/// What happened to one user.
enum Step {
    Resumed,
    Fresh,
    Backoff,
    Pulled(Outcome),
    Failed(String),
    /// The budget could not cover the pull: the user keeps their stored rows
    /// and, staler than anyone pulled tonight, comes first the next night.
    Deferred,
}

/// What every pull of a run shares.
pub struct Ctx<'a> {
    /// Where pending pulls are written.
    pub storage: &'a Storage,
    /// The API client (and its rate limiter, shared by every pull).
    pub client: &'a FlickrClient,
    /// Freshness, full-refresh and concurrency settings.
    pub settings: &'a Settings,
    /// Every user's `extract_state` row as the run started.
    pub state: &'a HashMap<String, UserState>,
    /// Users an interrupted run already finished (their pending objects exist).
    pub done: &'a BTreeSet<(Phase, String)>,
    /// "Now", from the run's options.
    pub now: DateTime<Utc>,
}

/// Pulls one user (unless resumed, fresh, backing off or past the budget) and
/// stores the result as a pending object.
async fn pull_user(
    ctx: &Ctx<'_>,
    phase: Phase,
    planned: Planned,
) -> Result<(String, Step), ExtractError> {
    let user = planned.user;
    if ctx.done.contains(&(phase, user.clone())) {
        return Ok((user, Step::Resumed));
    }
    let (full, min_fave_date) = match planned.decision {
        Decision::Backoff => return Ok((user, Step::Backoff)),
        Decision::Fresh => return Ok((user, Step::Fresh)),
        Decision::Pull {
            full,
            min_fave_date,
        } => (full, min_fave_date),
    };
    let classify = |e: FlickrError| -> Result<Result<Outcome, String>, ExtractError> {
        match e {
            FlickrError::NotFound { .. } => Ok(Ok(Outcome::NotFound)),
            FlickrError::Deleted { .. } => Ok(Ok(Outcome::Deleted)),
            FlickrError::InvalidKey | FlickrError::MissingKey | FlickrError::Client(_) => {
                Err(e.into())
            }
            other => Ok(Err(other.to_string())),
        }
    };
    let mut pull = UserPull {
        user_id: user.clone(),
        phase,
        outcome: Outcome::Ok,
        full,
        pulled_at: ctx.now,
        favorites: Vec::new(),
        contacts: None,
        first_page: false,
        total: None,
    };
    let newest_held = ctx.state.get(&user).and_then(|s| s.newest_date_faved);
    match favorites(ctx, &user, full, min_fave_date, newest_held).await {
        Ok((f, total, first_page)) => {
            pull.favorites = f;
            pull.total = total;
            pull.first_page = first_page;
        }
        Err(FlickrError::BudgetSpent { .. }) => return Ok((user, Step::Deferred)),
        Err(e) => match classify(e)? {
            Ok(outcome) => pull.outcome = outcome,
            Err(msg) => return Ok((user, Step::Failed(msg))),
        },
    }
    // Contacts change rarely and only feed the photographer-rec exclusions, so they
    // are pulled with the full list and kept between full pulls.
    if phase == Phase::Tracked && full && pull.outcome == Outcome::Ok {
        match ctx.client.contacts(&user).await {
            Ok(c) => pull.contacts = Some(c),
            Err(FlickrError::BudgetSpent { .. }) => return Ok((user, Step::Deferred)),
            Err(e) => match classify(e)? {
                Ok(outcome) => pull.outcome = outcome,
                Err(msg) => return Ok((user, Step::Failed(msg))),
            },
        }
    }
    ctx.storage
        .put_json(&pending_path(phase, &user), &pull)
        .await?;
    Ok((user, Step::Pulled(pull.outcome)))
}

/// A user's favourites for one pull: the whole list for a full pull; else the
/// first page (the newest, and Flickr's `total`), or, when that whole page is
/// newer than anything held and more pages follow, every favourite since the
/// newest held. Returns the favourites, the total, and whether they are the
/// first page.
async fn favorites(
    ctx: &Ctx<'_>,
    user: &str,
    full: bool,
    min_fave_date: Option<i64>,
    newest_held: Option<i64>,
) -> Result<(Vec<super::client::Fave>, Option<i64>, bool), FlickrError> {
    if full {
        let (f, total, _) = ctx.client.favorites_paged(user, None, u32::MAX).await?;
        return Ok((f, total, false));
    }
    let (page, total, pages) = ctx.client.favorites_first_page(user).await?;
    let all_new = !page.is_empty()
        && page.iter().all(|f| {
            f.date_faved
                .is_some_and(|d| Some(d.saturating_mul(1_000_000)) > newest_held)
        });
    if all_new && pages > 1 {
        let f = ctx.client.favorites(user, min_fave_date).await?;
        return Ok((f, total, false));
    }
    Ok((page, total, true))
}

/// Pulls every user of one phase in the planner's order, `extract.concurrency`
/// at a time (so the users started first are the ones the budget reaches),
/// counting what happened to each and reporting progress as users finish.
pub async fn run_phase(
    ctx: &Ctx<'_>,
    phase: Phase,
    users: Vec<Planned>,
    counts: &mut UserCounts,
    failures: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<(), ExtractError> {
    let total = users.len();
    let mut seen = 0usize;
    progress.start(phase, total);
    // Who the budget reaches is decided here, in the planner's order, from each
    // pull's estimated cost: the same state and budget defer the same users,
    // however the pulls then interleave. (A pull that costs more than its
    // estimate is still stopped by the client's hard cap.)
    let mut left = ctx.client.budget_left();
    let users: Vec<(Planned, bool)> = users
        .into_iter()
        .map(|p| {
            let pulls = matches!(p.decision, Decision::Pull { .. })
                && !ctx.done.contains(&(phase, p.user.clone()));
            let admitted = match (&mut left, pulls) {
                (Some(l), true) if *l < p.cost => false,
                (Some(l), true) => {
                    *l -= p.cost;
                    true
                }
                _ => true,
            };
            (p, admitted)
        })
        .collect();
    let mut results = futures::stream::iter(users)
        .map(|(u, admitted)| async move {
            if admitted {
                pull_user(ctx, phase, u).await
            } else if u.class.defers() {
                Ok((u.user, Step::Deferred))
            } else {
                // Not due at this budget (stretched): not deferred.
                Ok((u.user, Step::Fresh))
            }
        })
        .buffer_unordered(ctx.settings.extract.concurrency);
    while let Some((user, s)) = results.try_next().await? {
        seen += 1;
        match s {
            Step::Resumed => counts.resumed += 1,
            Step::Fresh => counts.skipped_fresh += 1,
            Step::Backoff => counts.skipped_backoff += 1,
            Step::Pulled(Outcome::NotFound) => counts.not_found += 1,
            Step::Pulled(Outcome::Deleted) => counts.deleted += 1,
            Step::Pulled(_) => counts.fetched += 1,
            Step::Deferred => counts.deferred += 1,
            Step::Failed(msg) => {
                counts.failed += 1;
                tracing::warn!(%user, error = %msg, "user failed after retries");
                if failures.len() < 20 {
                    failures.push(format!("{user}: {msg}"));
                }
            }
        }
        progress.user_done(PhaseProgress {
            phase,
            done: seen,
            total,
            calls: ctx.client.stats.calls(),
            retries: ctx.client.stats.retries().values().sum(),
        });
    }
    progress.finish(phase);
    Ok(())
}
