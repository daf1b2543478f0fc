//! Pulling users from the API: one user at a time into a pending object, and a
//! phase's users with bounded concurrency.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::config::Settings;
use crate::store::Storage;

use super::client::{FlickrClient, FlickrError};
use super::error::ExtractError;
use super::progress::{PhaseProgress, Progress};
use super::state::{Outcome, Phase, UserCounts, UserPull, UserState, micros, pending_path};

/// What happened to one user.
enum Step {
    Resumed,
    Fresh,
    Backoff,
    Pulled(Outcome),
    Failed(String),
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

/// Pulls one user (unless resumed, fresh or backing off) and stores the result
/// as a pending object.
async fn pull_user(
    ctx: &Ctx<'_>,
    phase: Phase,
    user: String,
) -> Result<(String, Step), ExtractError> {
    if ctx.done.contains(&(phase, user.clone())) {
        return Ok((user, Step::Resumed));
    }
    let now = micros(ctx.now);
    let st = ctx.state.get(&user).cloned().unwrap_or_default();
    if st.next_attempt_at.is_some_and(|t| t > now) {
        return Ok((user, Step::Backoff));
    }
    let refresh = Duration::hours(ctx.settings.extract.refresh_after_hours as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    if st.outcome == Some(Outcome::Ok)
        && st
            .last_pulled_at
            .is_some_and(|t| t.saturating_add(refresh) > now)
    {
        return Ok((user, Step::Fresh));
    }
    let full_after = Duration::days(ctx.settings.extract.full_refresh_after_days as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    let full = st.newest_date_faved.is_none()
        || st
            .last_full_pull_at
            .is_none_or(|t| t.saturating_add(full_after) <= now);
    let min_fave_date = if full {
        None
    } else {
        st.newest_date_faved.map(|m| m / 1_000_000)
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
    };
    match ctx.client.favorites(&user, min_fave_date).await {
        Ok(f) => pull.favorites = f,
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

/// Pulls every user of one phase, `extract.concurrency` at a time, counting
/// what happened to each and reporting progress as users finish.
pub async fn run_phase(
    ctx: &Ctx<'_>,
    phase: Phase,
    users: Vec<String>,
    counts: &mut UserCounts,
    failures: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<(), ExtractError> {
    let total = users.len();
    let mut seen = 0usize;
    progress.start(phase, total);
    let mut results = futures::stream::iter(users)
        .map(|u| pull_user(ctx, phase, u))
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
