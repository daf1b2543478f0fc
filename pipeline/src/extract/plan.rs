//! Who is pulled tonight, in which order, and at what cost: the planner behind
//! the call budget (`extract.max_calls`, `--budget`) and `faverecs extract --plan`.
//!
//! A user is *due* unless they were pulled within their refresh interval, less
//! an hour for the drift of a nightly run's start (fresh), or are backing off
//! after a not-found/deleted answer. The interval adapts ([`next_interval`]): it
//! starts at `extract.refresh_after_hours`, grows by half after a pull that
//! found nothing new and halves after one that found 10 or more, within
//! `extract.min_refresh_hours` and `extract.max_refresh_hours`; a tracked user
//! is due at least every `extract.tracked_max_refresh_hours` (by default the
//! same bound), which an operator may lower since a tracked user's own
//! favourites shape their lists the most and their pull costs one call. A due user's pull
//! is full (their whole list, which catches deletions) when they were never pulled
//! or their last full pull is older than `extract.full_refresh_after_days`, else
//! incremental: the first page of their list (the newest favourites) and
//! Flickr's `total`, which shows new favourites and deletions among the newest
//! at once; a `total` that disagrees with what the fold expects schedules a full
//! pull for the next run.
//!
//! The order, the same for the same state (ties broken by NSID):
//!
//! 1. newly tracked users (cold start): never pulled, or tracked since their
//!    last pull (as someone's neighbour); pulled whole, however fresh;
//! 2. the other due tracked users, stalest first;
//! 3. neighbours of cold-start tracked users, most influential first;
//! 4. overdue neighbours: never pulled, or due for more than one
//!    `extract.refresh_after_hours` (an earlier run's budget deferred them), so
//!    deferred users come first the next night;
//! 5. the other due neighbours;
//! 6. under a budget, neighbours due by their own interval but not by the one
//!    the budget allows them ([`stretched_intervals`]: the calls left after the
//!    tracked users and the new users' neighbours, divided by the square-root
//!    rule): pulled with the calls left over, and not deferred.
//!
//! Within 4 to 6 neighbours go by expected value: influence × staleness (hours
//! since their last pull) ÷ their refresh interval (which adapts to how often
//! they change, so it stands for their rate of change) ÷ calls the pull costs;
//! in 6, times staleness again. Under a budget, "due" and "overdue" are judged
//! against the stretched interval.
//!
//! A neighbour's *influence* is their Flexplore neighbour score as a share of
//! each tracked user's sum of neighbour scores, summed over the tracked users
//! whose neighbour they are and scaled by the mean sum (so it stays on the
//! scale of one score): every tracked user's lists count the same, as they do
//! in the freshness measure, and a neighbour of a user with few neighbours
//! counts for more than one of a user with many. The scores are computed by the
//! planner from the favourites held exactly as `score` computes them
//! (favourites in common with the tracked user, and the neighbour's total): the
//! scores the last run used, updated by what was folded since, and counting
//! contacts and neighbours past `score.photographer_recs_per_user`, which
//! `photographer_recs` leaves out. A
//! neighbour with no favourites held counts [`prior_influence`] (the score of
//! one favourite in common and none held) per tracked favourite of their
//! photos; every neighbour counts at least half the score of one favourite in
//! common out of a thousand, so one sharing nothing yet is still pulled now and
//! then. A neighbour never pulled has the staleness prior of twice
//! `extract.full_refresh_after_days`, so new neighbours come before any
//! merely-due one of the same influence.
//!
//! Costs are estimates: an incremental pull is one call (a page of the newest
//! favourites); a full pull is one call per `flickr.per_page` favourites held (at
//! least one, at most `flickr.max_calls_per_user`), plus one for a tracked user's
//! contacts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::config::Settings;

use super::state::{Outcome, Phase, UserState, micros};

/// Where a user stands tonight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// A tracked user never pulled.
    ColdStart,
    /// A tracked user due again.
    TrackedDue,
    /// A neighbour of a cold-start tracked user.
    NewUsersNeighbor,
    /// A neighbour due for more than one refresh interval: never pulled, or
    /// deferred by an earlier run's budget.
    NeighborOverdue,
    /// Another due neighbour.
    NeighborDue,
    /// Due by their own interval, but the budget stretched it (see
    /// [`stretched_intervals`]): pulled only with calls left over, in value
    /// order, and not deferred when the budget runs out.
    NeighborStretched,
    /// Pulled recently enough: not pulled.
    Fresh,
    /// Not found or deleted recently: not pulled until the back-off ends.
    Backoff,
}

impl Class {
    /// Its name in `--plan` and logs.
    pub fn name(self) -> &'static str {
        match self {
            Class::ColdStart => "new tracked users",
            Class::TrackedDue => "tracked users due",
            Class::NewUsersNeighbor => "neighbours of new tracked users",
            Class::NeighborOverdue => "neighbours overdue (new or deferred)",
            Class::NeighborDue => "neighbours due",
            Class::NeighborStretched => "neighbours not yet due at this budget (calls left over)",
            Class::Fresh => "fresh (not pulled)",
            Class::Backoff => "backing off (not pulled)",
        }
    }

    /// Whether the class is pulled (within the budget).
    pub fn due(self) -> bool {
        !matches!(self, Class::Fresh | Class::Backoff)
    }

    /// Whether a user of the class the budget does not reach is deferred (and
    /// comes first the next night): every pulled class but
    /// [`Class::NeighborStretched`], whose users were not due at this budget.
    pub fn defers(self) -> bool {
        self.due() && self != Class::NeighborStretched
    }
}

/// What to do with one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not found or deleted recently.
    Backoff,
    /// Pulled recently enough.
    Fresh,
    /// Pull: the whole list, or favourites since `min_fave_date` (seconds).
    Pull {
        /// Whether the whole list is pulled.
        full: bool,
        /// For an incremental pull, the newest favourite held.
        min_fave_date: Option<i64>,
    },
}

/// A user is due once their refresh interval less this many hours has passed:
/// a nightly run starts at about the same time each night, a little earlier
/// or later, and one pulled every 24 hours must not be skipped on a night its
/// run started a few seconds earlier than the last.
const DUE_SLACK_HOURS: f64 = 1.0;

/// Whether and how `st`, a user of `phase`, is pulled at `now`.
pub fn decide(st: &UserState, phase: Phase, settings: &Settings, now: DateTime<Utc>) -> Decision {
    decide_within(st, interval_for(st, phase, settings), settings, now)
}

/// [`decide`], with `interval` (hours) as the user's refresh interval.
fn decide_within(
    st: &UserState,
    interval: f64,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Decision {
    let now = micros(now);
    if st.next_attempt_at.is_some_and(|t| t > now) {
        return Decision::Backoff;
    }
    let refresh = ((interval - DUE_SLACK_HOURS).max(0.0) * 3.6e9) as i64;
    // A fold that found the list changed beyond its first page cleared
    // last_full_pull_at: that user is due for a full pull, however fresh.
    let full_requested = st.last_full_pull_at.is_none() && st.last_pulled_at.is_some();
    if st.outcome == Some(Outcome::Ok)
        && !full_requested
        && st
            .last_pulled_at
            .is_some_and(|t| t.saturating_add(refresh) > now)
    {
        return Decision::Fresh;
    }
    let full_after = Duration::days(settings.extract.full_refresh_after_days as i64)
        .num_microseconds()
        .unwrap_or(i64::MAX);
    let full = st.newest_date_faved.is_none()
        || st
            .last_full_pull_at
            .is_none_or(|t| t.saturating_add(full_after) <= now);
    Decision::Pull {
        full,
        min_fave_date: if full {
            None
        } else {
            st.newest_date_faved.map(|m| m / 1_000_000)
        },
    }
}

/// A user's refresh interval in hours: their adaptive one, or
/// `extract.refresh_after_hours` until they have one.
pub fn interval_hours(st: &UserState, settings: &Settings) -> f64 {
    st.refresh_hours
        .unwrap_or(settings.extract.refresh_after_hours as f64)
}

/// The interval that makes `st` due: their own ([`interval_hours`]), at most
/// `extract.tracked_max_refresh_hours` for a tracked user.
pub fn interval_for(st: &UserState, phase: Phase, settings: &Settings) -> f64 {
    let own = interval_hours(st, settings);
    match phase {
        Phase::Tracked => own.min(settings.extract.tracked_max_refresh_hours as f64),
        Phase::Neighbor => own,
    }
}

/// The next refresh interval after a pull that found `new` favourites newer
/// than those held: no new ones lengthen it by half, 10 or more halve it,
/// within `extract.min_refresh_hours` and `extract.max_refresh_hours`.
pub fn next_interval(current: f64, new: usize, settings: &Settings) -> f64 {
    let next = match new {
        0 => current * 1.5,
        n if n >= 10 => current / 2.0,
        _ => current,
    };
    next.clamp(
        settings.extract.min_refresh_hours as f64,
        settings.extract.max_refresh_hours as f64,
    )
}

/// The influence of a neighbour with no favourites held, per tracked
/// favourite of their photos: the neighbour score of one favourite in common
/// and none held.
pub fn prior_influence() -> f64 {
    crate::score::flexplore::neighbor_score(1, 0)
}

/// The least influence a neighbour counts for (one favourite in common out of
/// a thousand, halved), so a neighbour sharing nothing yet is still pulled
/// now and then.
fn floor_influence() -> f64 {
    crate::score::flexplore::neighbor_score(1, 1000) / 2.0
}

/// The estimated calls of one pull (see the module docs).
pub fn cost(phase: Phase, full: bool, held: usize, settings: &Settings) -> u64 {
    if !full {
        return 1;
    }
    let per_page = settings.flickr.per_page.clamp(1, 500) as usize;
    let pages = held
        .div_ceil(per_page)
        .clamp(1, settings.flickr.max_calls_per_user as usize);
    pages as u64 + u64::from(phase == Phase::Tracked)
}

/// One user in tonight's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The user.
    pub user: String,
    /// Their class.
    pub class: Class,
    /// What the pull does.
    pub decision: Decision,
    /// Whether their pull is full.
    pub full: bool,
    /// Estimated calls.
    pub cost: u64,
    /// The expected value that orders neighbours (0 for tracked users).
    pub value: f64,
}

/// What the planner knows of the stored data.
#[derive(Debug, Default)]
pub struct Known<'a> {
    /// Every user's `extract_state` row.
    pub state: Option<&'a HashMap<String, UserState>>,
    /// Favourites held per user.
    pub held: HashMap<String, usize>,
    /// Per neighbour, their influence on the tracked users' recommendations
    /// (see the module docs).
    pub influence: HashMap<String, f64>,
    /// When each tracked user was added (`tracked_users.added_at`, µs).
    pub tracked_since: HashMap<String, i64>,
}

impl Known<'_> {
    fn state(&self, user: &str) -> UserState {
        self.state
            .and_then(|s| s.get(user))
            .cloned()
            .unwrap_or_default()
    }
}

fn planned(
    user: &str,
    phase: Phase,
    known: &Known<'_>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> (Planned, UserState) {
    let st = known.state(user);
    // Newly tracked: never pulled, or tracked since their last pull (as a
    // neighbour, which pulls no contacts). Pulled whole, fresh or not.
    let cold = phase == Phase::Tracked
        && st.last_pulled_at.is_none_or(|pulled| {
            known
                .tracked_since
                .get(user)
                .is_some_and(|&since| since > pulled)
        });
    let mut decision = decide(&st, phase, settings, now);
    if cold && decision != Decision::Backoff {
        decision = Decision::Pull {
            full: true,
            min_fave_date: None,
        };
    }
    let (class, full) = match decision {
        Decision::Backoff => (Class::Backoff, false),
        Decision::Fresh => (Class::Fresh, false),
        Decision::Pull { full, .. } => (
            match phase {
                Phase::Tracked if cold => Class::ColdStart,
                Phase::Tracked => Class::TrackedDue,
                Phase::Neighbor => Class::NeighborDue,
            },
            full,
        ),
    };
    let held = known.held.get(user).copied().unwrap_or(0);
    (
        Planned {
            user: user.to_string(),
            class,
            decision,
            full,
            cost: cost(phase, full, held, settings),
            value: 0.0,
        },
        st,
    )
}

/// The tracked users in tonight's order: cold start, then due by staleness
/// (never-pulled first, then oldest pull), then the ones not pulled.
pub fn order_tracked(
    tracked: &[String],
    known: &Known<'_>,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    let mut out: Vec<(Planned, i64)> = tracked
        .iter()
        .map(|u| {
            let (p, st) = planned(u, Phase::Tracked, known, settings, now);
            (p, st.last_pulled_at.unwrap_or(i64::MIN))
        })
        .collect();
    out.sort_by(|(a, ta), (b, tb)| (a.class, *ta, &a.user).cmp(&(b.class, *tb, &b.user)));
    out.into_iter().map(|(p, _)| p).collect()
}

/// The neighbours in tonight's order: those of cold-start tracked users by
/// influence, then the other due ones by expected value, then, under a budget,
/// the ones it stretched ([`stretched_intervals`]), then the ones not pulled.
/// `budget` is the run's calls left after the tracked users.
pub fn order_neighbors(
    neighbors: &[String],
    of_new_users: &HashSet<String>,
    known: &Known<'_>,
    settings: &Settings,
    now: DateTime<Utc>,
    budget: Option<u64>,
) -> Vec<Planned> {
    let prior_hours = 2.0 * 24.0 * settings.extract.full_refresh_after_days as f64;
    let cadence = settings.extract.refresh_after_hours as f64;
    let now_us = micros(now);
    let staleness_only = settings.extract.order == crate::config::Order::Staleness;
    // In NSID order, so that the budget's division below sums in the same order
    // whatever order the caller listed them in.
    let mut users: Vec<&String> = neighbors.iter().collect();
    users.sort();
    users.dedup();
    let mut rows: Vec<(Planned, UserState, f64)> = users
        .into_iter()
        .map(|u| {
            let (mut p, st) = planned(u, Phase::Neighbor, known, settings, now);
            if !staleness_only && p.class == Class::NeighborDue && of_new_users.contains(u) {
                p.class = Class::NewUsersNeighbor;
            }
            let influence = known
                .influence
                .get(u)
                .copied()
                .unwrap_or(0.0)
                .max(floor_influence());
            (p, st, influence)
        })
        .collect();
    // The budget is divided among the neighbours the planner schedules: not
    // new users' neighbours (they come first, whatever it costs) nor ones
    // backing off.
    let first: u64 = rows
        .iter()
        .filter(|(p, _, _)| p.class == Class::NewUsersNeighbor)
        .map(|(p, _, _)| p.cost)
        .sum();
    let scheduled = |p: &Planned| !matches!(p.class, Class::NewUsersNeighbor | Class::Backoff);
    let rates: Vec<Rate> = rows
        .iter()
        .filter(|(p, _, _)| scheduled(p))
        .map(|(p, st, influence)| Rate {
            interval: interval_hours(st, settings),
            influence: *influence,
            cost: p.cost,
        })
        .collect();
    let calls = budget
        .filter(|_| !staleness_only)
        .map(|b| b.saturating_sub(first));
    let mut stretched = stretched_intervals(&rates, calls, cadence).into_iter();
    for (p, st, influence) in &mut rows {
        let interval = if scheduled(p) {
            stretched.next().unwrap_or(f64::INFINITY)
        } else {
            interval_hours(st, settings)
        };
        let staleness = st
            .last_pulled_at
            .map_or(prior_hours, |t| (now_us - t).max(0) as f64 / 3.6e9);
        if staleness_only {
            p.value = st
                .last_pulled_at
                .map_or(f64::MAX, |t| (now_us - t).max(0) as f64);
            continue;
        }
        if p.class == Class::NewUsersNeighbor {
            p.value = *influence;
            continue;
        }
        // Expected change: hours since the last pull over the user's own
        // refresh interval, which adapts to how often they change.
        let rate = 1.0 / interval_hours(st, settings).max(1.0);
        p.value = *influence * staleness * rate / p.cost.max(1) as f64;
        if p.class != Class::NeighborDue {
            continue;
        }
        if decide_within(st, interval, settings, now) == Decision::Fresh {
            // Due by their own interval, not by the one the budget allows:
            // pulled with calls left over, the furthest into their stretched
            // interval first (the value times staleness: the index of the
            // square-root rule the division follows).
            p.class = Class::NeighborStretched;
            p.value *= staleness;
        } else if st.last_pulled_at.is_none() || staleness + DUE_SLACK_HOURS >= interval + cadence {
            // Due for more than one run's cadence: never pulled, or deferred
            // by an earlier run's budget.
            p.class = Class::NeighborOverdue;
        }
    }
    let mut out: Vec<Planned> = rows.into_iter().map(|(p, _, _)| p).collect();
    out.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then(b.value.total_cmp(&a.value))
            .then_with(|| a.user.cmp(&b.user))
    });
    out
}

/// One neighbour, for dividing a budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Their own refresh interval (hours).
    pub interval: f64,
    /// Their influence.
    pub influence: f64,
    /// Calls a pull costs.
    pub cost: u64,
}

/// Each neighbour's refresh interval (hours) under a budget of `calls` a run,
/// with a run every `cadence` hours (`extract.refresh_after_hours`).
///
/// Without a budget, or with one that covers every neighbour at their own
/// interval, the intervals are their own. Otherwise the budget is divided the
/// way the square-root rule of refresh scheduling divides it (Cho and
/// Garcia-Molina): neighbour *i* is pulled at a rate, in pulls per run,
/// proportional to the square root of their influence times their rate of
/// change (1 ÷ their own interval), never more than once a run or more often
/// than their own interval, and the rates sum, weighted by each pull's calls,
/// to the budget. Their interval is `cadence` ÷ that rate. This minimises the
/// influence-weighted count of favourites missed between pulls, so a budget
/// goes to the neighbours who move the lists, without leaving the many small
/// ones unpulled for ever.
pub fn stretched_intervals(rates: &[Rate], calls: Option<u64>, cadence: f64) -> Vec<f64> {
    let own: Vec<f64> = rates.iter().map(|r| r.interval).collect();
    let Some(calls) = calls else {
        return own;
    };
    let cap = |r: &Rate| (cadence / r.interval.max(1e-9)).min(1.0);
    let weight = |r: &Rate| (r.influence.max(0.0) / r.interval.max(1e-9)).sqrt();
    let spend = |k: f64| -> f64 {
        rates
            .iter()
            .map(|r| cap(r).min(k * weight(r)) * r.cost as f64)
            .sum()
    };
    let budget = calls as f64;
    let all: f64 = rates.iter().map(|r| cap(r) * r.cost as f64).sum();
    if all <= budget {
        return own;
    }
    // The largest k whose spend fits the budget, by bisection: spend grows
    // with k, from 0 to `all`.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while spend(hi) < budget && hi < 1e300 {
        hi *= 2.0;
    }
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if spend(mid) <= budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    rates
        .iter()
        .zip(own)
        .map(|(r, own)| {
            let rate = cap(r).min(lo * weight(r));
            if rate > 0.0 {
                (cadence / rate).max(own)
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// Weighted percentile (`q` in 0..=1) of `(value, weight)` pairs; `None` when
/// the weights sum to 0.
pub fn weighted_percentile(mut pairs: Vec<(f64, f64)>, q: f64) -> Option<f64> {
    pairs.retain(|(_, w)| *w > 0.0);
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return None;
    }
    let mut seen = 0.0;
    for (v, w) in &pairs {
        seen += w;
        if seen >= q * total {
            return Some(*v);
        }
    }
    pairs.last().map(|(v, _)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::load_with_env(None, Vec::new()).expect("defaults")
    }

    fn at(hours_ago: i64, now: DateTime<Utc>) -> Option<i64> {
        Some(micros(now - Duration::hours(hours_ago)))
    }

    #[test]
    fn cold_start_first_then_stalest_and_the_order_is_stable() {
        let s = settings();
        let now: DateTime<Utc> = "2026-11-30T02:00:00Z".parse().expect("time");
        let mut state = HashMap::new();
        for (u, h) in [("1@N01", 30), ("2@N01", 100), ("3@N01", 1)] {
            state.insert(
                u.to_string(),
                UserState {
                    last_pulled_at: at(h, now),
                    last_full_pull_at: at(h, now),
                    newest_date_faved: Some(1),
                    outcome: Some(Outcome::Ok),
                    next_attempt_at: None,
                    ..UserState::default()
                },
            );
        }
        let known = Known {
            state: Some(&state),
            ..Known::default()
        };
        let tracked: Vec<String> = ["3@N01", "9@N01", "1@N01", "2@N01"]
            .map(String::from)
            .to_vec();
        let order = order_tracked(&tracked, &known, &s, now);
        let users: Vec<(&str, Class)> = order.iter().map(|p| (p.user.as_str(), p.class)).collect();
        assert_eq!(
            users,
            [
                ("9@N01", Class::ColdStart),
                ("2@N01", Class::TrackedDue),
                ("1@N01", Class::TrackedDue),
                ("3@N01", Class::Fresh)
            ]
        );
        let mut reversed = tracked.clone();
        reversed.reverse();
        assert_eq!(order_tracked(&reversed, &known, &s, now), order);
        // Tracked since their last pull (pulled as a neighbour an hour ago):
        // a cold start, pulled whole although fresh.
        state.insert(
            "5@N01".to_string(),
            UserState {
                last_pulled_at: at(1, now),
                last_full_pull_at: at(1, now),
                newest_date_faved: Some(1),
                outcome: Some(Outcome::Ok),
                next_attempt_at: None,
                ..UserState::default()
            },
        );
        let known = Known {
            state: Some(&state),
            tracked_since: [("5@N01".to_string(), micros(now))].into(),
            ..Known::default()
        };
        let order = order_tracked(&["5@N01".to_string()], &known, &s, now);
        assert_eq!(order[0].class, Class::ColdStart);
        assert!(order[0].full);
    }

    #[test]
    fn neighbours_go_by_influence_times_staleness_over_cost() {
        let s = settings();
        let now: DateTime<Utc> = "2026-11-30T02:00:00Z".parse().expect("time");
        let mut state = HashMap::new();
        let pulled = |h| UserState {
            last_pulled_at: at(h, now),
            last_full_pull_at: at(h, now),
            newest_date_faved: Some(1),
            outcome: Some(Outcome::Ok),
            next_attempt_at: None,
            ..UserState::default()
        };
        state.insert("a@N01".to_string(), pulled(48));
        state.insert("b@N01".to_string(), pulled(30));
        state.insert("c@N01".to_string(), pulled(30));
        let known = Known {
            state: Some(&state),
            held: HashMap::new(),
            influence: [
                ("a@N01", 1.0),
                ("b@N01", 10.0),
                ("c@N01", 1.0),
                ("n@N01", 1.0),
                ("x@N01", 1.0),
            ]
            .into_iter()
            .map(|(u, i)| (u.to_string(), i))
            .collect(),
            ..Known::default()
        };
        let neighbors: Vec<String> = ["a@N01", "b@N01", "c@N01", "n@N01", "x@N01"]
            .map(String::from)
            .to_vec();
        let of_new: HashSet<String> = ["x@N01".to_string()].into();
        let order = order_neighbors(&neighbors, &of_new, &known, &s, now, None);
        let users: Vec<&str> = order.iter().map(|p| p.user.as_str()).collect();
        // x: a new user's neighbour; then overdue: a (1 × 48 h: due for two
        // refresh intervals) and n (never pulled: prior 14 days, a 1-call full
        // pull); then due: b (10 × 30 h) before c (1 × 30 h).
        assert_eq!(users, ["x@N01", "n@N01", "a@N01", "b@N01", "c@N01"]);
        assert_eq!(order[1].class, Class::NeighborOverdue);
        assert_eq!(order[3].class, Class::NeighborDue);
    }

    #[test]
    fn a_budget_stretches_intervals_by_the_square_root_of_influence_times_change() {
        let r = |interval: f64, influence: f64| Rate {
            interval,
            influence,
            cost: 1,
        };
        // Four neighbours due every run (24 h); influence 100, 25, 4, 1.
        let rates = [r(24.0, 100.0), r(24.0, 25.0), r(24.0, 4.0), r(24.0, 1.0)];
        // No budget, or one that covers them all: their own intervals.
        assert_eq!(stretched_intervals(&rates, None, 24.0), [24.0; 4]);
        assert_eq!(stretched_intervals(&rates, Some(4), 24.0), [24.0; 4]);
        // Two calls a run: rates in proportion to sqrt(influence), 10:5:2:1,
        // the first capped at one pull a run and the rest sharing what is left.
        let got = stretched_intervals(&rates, Some(2), 24.0);
        assert!((got[0] - 24.0).abs() < 1e-6, "{got:?}");
        let spent: f64 = got.iter().map(|i| 24.0 / i).sum();
        assert!((spent - 2.0).abs() < 1e-6, "{got:?}");
        assert!((got[2] / got[1] - 2.5).abs() < 1e-6, "{got:?}");
        assert!((got[3] / got[2] - 2.0).abs() < 1e-6, "{got:?}");
        // A quiet neighbour (a week's interval) is never pulled more often
        // than their interval, however influential; a costly pull counts its
        // calls. Nothing at all: never due.
        let quiet = [
            r(168.0, 10_000.0),
            Rate {
                cost: 3,
                ..r(24.0, 1.0)
            },
        ];
        let got = stretched_intervals(&quiet, Some(1), 24.0);
        assert!(got[0] >= 168.0, "{got:?}");
        let spent = 24.0 / got[0] + 3.0 * 24.0 / got[1];
        assert!((spent - 1.0).abs() < 1e-6, "{got:?}");
        assert!(
            stretched_intervals(&rates, Some(0), 24.0)
                .iter()
                .all(|i| i.is_infinite())
        );
    }

    #[test]
    fn under_a_budget_influential_neighbours_stay_due_and_the_rest_wait_for_calls_left_over() {
        let s = settings();
        let now: DateTime<Utc> = "2026-11-30T02:00:00Z".parse().expect("time");
        let pulled = UserState {
            last_pulled_at: at(24, now),
            last_full_pull_at: at(24, now),
            newest_date_faved: Some(1),
            outcome: Some(Outcome::Ok),
            next_attempt_at: None,
            ..UserState::default()
        };
        let names: Vec<String> = (1..=20).map(|i| format!("{i}@N01")).collect();
        let state: HashMap<String, UserState> =
            names.iter().map(|u| (u.clone(), pulled.clone())).collect();
        // Influence falls with the number: 1@N01 the most.
        let known = Known {
            state: Some(&state),
            influence: names
                .iter()
                .enumerate()
                .map(|(i, u)| (u.clone(), 100.0 * prior_influence() / (1 + i * i) as f64))
                .collect(),
            ..Known::default()
        };
        let none = HashSet::new();
        let all = order_neighbors(&names, &none, &known, &s, now, None);
        assert!(all.iter().all(|p| p.class == Class::NeighborDue));
        let tight = order_neighbors(&names, &none, &known, &s, now, Some(5));
        let due: Vec<&str> = tight
            .iter()
            .filter(|p| p.class.defers())
            .map(|p| p.user.as_str())
            .collect();
        assert!(!due.is_empty() && due.len() <= 5, "{tight:?}");
        assert_eq!(due[0], "1@N01");
        // The rest wait for calls left over, still in value order; the order
        // does not depend on how the neighbours were listed.
        let rest: Vec<&Planned> = tight.iter().filter(|p| !p.class.defers()).collect();
        assert!(rest.iter().all(|p| p.class == Class::NeighborStretched));
        assert_eq!(rest.len() + due.len(), 20);
        assert!(rest.windows(2).all(|w| w[0].value >= w[1].value));
        let mut reversed = names.clone();
        reversed.reverse();
        assert_eq!(
            order_neighbors(&reversed, &none, &known, &s, now, Some(5)),
            tight
        );
    }

    #[test]
    fn a_full_pull_costs_a_call_per_page_held_within_the_cap() {
        let s = settings();
        assert_eq!(cost(Phase::Neighbor, false, 5000, &s), 1);
        assert_eq!(cost(Phase::Neighbor, true, 0, &s), 1);
        let pages = s.flickr.max_calls_per_user as u64;
        assert_eq!(cost(Phase::Neighbor, true, 1_000_000, &s), pages);
        assert_eq!(cost(Phase::Tracked, true, 1_000_000, &s), pages + 1);
    }

    #[test]
    fn a_tracked_user_is_due_daily_and_a_run_that_starts_a_little_early_still_pulls() {
        let mut s = settings();
        assert_eq!(
            s.extract.tracked_max_refresh_hours,
            s.extract.max_refresh_hours
        );
        s.extract.tracked_max_refresh_hours = 24;
        let now: DateTime<Utc> = "2026-11-30T02:00:00Z".parse().expect("time");
        let pulled = |ago: Duration, hours: f64| UserState {
            last_pulled_at: Some(micros(now - ago)),
            last_full_pull_at: Some(micros(now - ago)),
            newest_date_faved: Some(1),
            outcome: Some(Outcome::Ok),
            next_attempt_at: None,
            refresh_hours: Some(hours),
            ..UserState::default()
        };
        let incremental = Decision::Pull {
            full: false,
            min_fave_date: Some(0),
        };
        // Unchanged for a week (the longest interval): a tracked user is due
        // a day after their pull, a neighbour is not.
        let quiet = pulled(Duration::hours(24), 168.0);
        assert_eq!(decide(&quiet, Phase::Tracked, &s, now), incremental);
        assert_eq!(decide(&quiet, Phase::Neighbor, &s, now), Decision::Fresh);
        // A week after: due, and (a week since the whole list) pulled whole.
        assert_eq!(
            decide(&quiet, Phase::Neighbor, &s, now + Duration::hours(144)),
            Decision::Pull {
                full: true,
                min_fave_date: None
            }
        );
        // Last night's run started 40 s later than tonight's: still due.
        let daily = pulled(Duration::hours(24) - Duration::seconds(40), 24.0);
        assert_eq!(decide(&daily, Phase::Neighbor, &s, now), incremental);
        // Pulled this evening: fresh.
        let evening = pulled(Duration::hours(20), 24.0);
        assert_eq!(decide(&evening, Phase::Tracked, &s, now), Decision::Fresh);
    }

    #[test]
    fn weighted_percentiles() {
        let pairs = vec![(1.0, 1.0), (2.0, 1.0), (10.0, 8.0)];
        assert_eq!(weighted_percentile(pairs.clone(), 0.5), Some(10.0));
        assert_eq!(weighted_percentile(pairs.clone(), 0.1), Some(1.0));
        assert_eq!(weighted_percentile(vec![], 0.5), None);
    }
}
