//! Which users shard of a sharded run scores which target.
//!
//! A users shard that needs only its targets' neighbourhood
//! ([`super::load::neighbourhood_suffices`], with no `popular` and no
//! fallbacks) reads the favourites of its targets and of their neighbours.
//! Neighbours are shared: on the 8M-favourite community, with targets
//! assigned by a hash of their NSID (`score.shard_targets_by = "nsid"`, the
//! default), the largest of 4 shards read 41 % of what one unsharded run
//! reads (`bench/shard_reads.py`). With `"neighbourhood"`, targets that
//! share neighbours go to the same shard instead ([`plan`]): every shard
//! reads every target's favourites (8 % of the unsharded read there), makes
//! the same assignment from them, then reads the neighbours of its own
//! targets only. There the largest shard read 32 %, and peaked 4 MiB lower
//! (69–70 MiB against 72–73), but each shard took 0.12 s longer
//! (docs/scaling.md).
//!
//! The assignment depends on the data, so two shards that read different
//! raw tables (a fold between them) could score a target twice or not at
//! all. Each shard's record therefore names its assignment ([`Share::name`],
//! with a digest of the whole plan), and a run whose users shards name
//! different ones is refused (`crate::runs::complete_step`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::shard::{FNV_OFFSET, fnv1a, shard_of};
use crate::store::IdSet;

/// The targets a users shard scores.
#[derive(Debug, Clone)]
pub enum Share {
    /// Those whose NSID hashes to shard `shard` of `shards`
    /// ([`crate::shard::shard_of`]).
    Nsid {
        /// This shard.
        shard: u32,
        /// The step's shard count.
        shards: u32,
    },
    /// Those a [`plan`] gave this shard.
    Neighbourhood {
        /// This shard's targets.
        targets: Arc<IdSet>,
        /// The plan's digest ([`Plan::digest`]).
        digest: String,
    },
}

impl Share {
    /// Whether this shard scores `nsid`.
    pub fn scores(&self, nsid: &str) -> bool {
        match self {
            Share::Nsid { shard, shards } => shard_of(nsid, *shards) == *shard,
            Share::Neighbourhood { targets, .. } => targets.contains(nsid),
        }
    }

    /// The assignment, as the shard record names it: `nsid`, or
    /// `neighbourhood <digest>`. Every users shard of a run must name the same.
    pub fn name(&self) -> String {
        match self {
            Share::Nsid { .. } => "nsid".to_string(),
            Share::Neighbourhood { digest, .. } => format!("neighbourhood {digest}"),
        }
    }
}

/// Targets assigned to shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The shard of each target, in the order given to [`plan`].
    pub shard: Vec<u32>,
    /// FNV-1a-64 of the shard count and every (target, shard), 16 hex digits:
    /// equal plans have equal digests.
    pub digest: String,
}

/// Refinement passes at most, and the slack of the balance they keep: a
/// shard's weight may exceed the mean by 1/50.
const PASSES: usize = 8;
const SLACK: u64 = 50;

/// Assigns `targets` (NSIDs, ascending and distinct) to `shards` shards so
/// that targets sharing neighbours share a shard, from `named`: (target,
/// neighbour) pairs, such as a favourite's user and its photo's owner, in any
/// order, repeats allowed; pairs of other users are ignored.
///
/// A target's reach is itself and its neighbours, and a user weighs as many
/// as the reaches that hold them: what the targets' favourites tell of how
/// much reading them is shared (a neighbour's own favourites are not known
/// before they are read). A shard's weight is the weight of the union of its
/// targets' reaches. Targets are placed heaviest reach first (NSID ascending
/// on ties), each on the shard whose weight it makes least (then the lower
/// shard). Then, up to 8 passes in the same order, each target is taken out
/// and put back on the shard its reach grows least, among the shards it
/// would not take past 1/50 over the mean weight (ties: the lighter, then the
/// lower shard), until a pass moves none. On the 8M community this takes the
/// largest of 4 shards' read from 41 % of the unsharded run's to 32 %
/// (the shard records' `rows_in`). Moving one target at a time, it can
/// leave groups of targets with the same neighbours interleaved over the
/// shards when every shard already holds those neighbours.
///
/// Deterministic: the same targets and pairs, in any order, give the same plan.
pub fn plan<'a>(
    targets: &[&'a str],
    named: impl IntoIterator<Item = (&'a str, &'a str)>,
    shards: u32,
) -> Plan {
    let n = shards.max(1) as usize;
    let target_index = |id: &str| targets.binary_search(&id).ok();
    let mut pairs: Vec<(u32, &str)> = named
        .into_iter()
        .filter_map(|(t, u)| Some((target_index(t)? as u32, u)))
        .collect();
    // Every user a reach holds, as dense ids in NSID order.
    let mut users: Vec<&str> = targets
        .iter()
        .copied()
        .chain(pairs.iter().map(|p| p.1))
        .collect();
    users.sort_unstable();
    users.dedup();
    let user_id: HashMap<&str, u32> = users.iter().zip(0u32..).map(|(&u, i)| (u, i)).collect();
    let mut reach: Vec<Vec<u32>> = targets.iter().map(|t| vec![user_id[t]]).collect();
    pairs.sort_unstable();
    pairs.dedup();
    for (t, u) in pairs {
        reach[t as usize].push(user_id[u]);
    }
    let mut weight = vec![0u64; users.len()];
    for r in &mut reach {
        r.sort_unstable();
        r.dedup();
        for &u in r.iter() {
            weight[u as usize] += 1;
        }
    }
    let size = |t: usize| reach[t].iter().map(|&u| weight[u as usize]).sum::<u64>();
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&t| (std::cmp::Reverse(size(t)), t));

    let mut state = Shards {
        holders: vec![Vec::new(); users.len()],
        load: vec![0; n],
        weight,
    };
    let mut shard = vec![0u32; targets.len()];
    for &t in &order {
        let grows = state.growth(&reach[t]);
        let s = (0..n)
            .min_by_key(|&s| (state.load[s] + grows[s], s))
            .unwrap_or(0);
        state.add(&reach[t], s as u32);
        shard[t] = s as u32;
    }
    for _ in 0..PASSES {
        let mut moved = false;
        for &t in &order {
            let from = shard[t];
            state.remove(&reach[t], from);
            let total: u64 = state.load.iter().sum();
            let grows = state.growth(&reach[t]);
            let cap = (total + total / SLACK) / n as u64;
            let to = (0..n)
                .filter(|&s| state.load[s] + grows[s] <= cap)
                .min_by_key(|&s| (grows[s], state.load[s], s))
                .or_else(|| (0..n).min_by_key(|&s| (state.load[s] + grows[s], s)))
                .unwrap_or(0) as u32;
            state.add(&reach[t], to);
            shard[t] = to;
            moved |= to != from;
        }
        if !moved {
            break;
        }
    }
    let mut h = fnv1a(FNV_OFFSET, &shards.to_le_bytes());
    for (t, s) in targets.iter().zip(&shard) {
        h = fnv1a(h, t.as_bytes());
        h = fnv1a(h, &[0]);
        h = fnv1a(h, &s.to_le_bytes());
    }
    Plan {
        shard,
        digest: format!("{h:016x}"),
    }
}

/// The shards' unions of reaches: for each user, the shards holding them and
/// how many of the shard's targets' reaches do; for each shard, its weight.
struct Shards {
    holders: Vec<Vec<(u32, u32)>>,
    load: Vec<u64>,
    weight: Vec<u64>,
}

impl Shards {
    /// How much each shard's weight would grow with `reach`.
    fn growth(&self, reach: &[u32]) -> Vec<u64> {
        let total: u64 = reach.iter().map(|&u| self.weight[u as usize]).sum();
        let mut grows = vec![total; self.load.len()];
        for &u in reach {
            for &(s, _) in &self.holders[u as usize] {
                grows[s as usize] -= self.weight[u as usize];
            }
        }
        grows
    }

    fn add(&mut self, reach: &[u32], shard: u32) {
        for &u in reach {
            let held = &mut self.holders[u as usize];
            match held.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, count)) => *count += 1,
                None => {
                    held.push((shard, 1));
                    self.load[shard as usize] += self.weight[u as usize];
                }
            }
        }
    }

    fn remove(&mut self, reach: &[u32], shard: u32) {
        for &u in reach {
            let held = &mut self.holders[u as usize];
            if let Some(at) = held.iter().position(|(s, _)| *s == shard) {
                held[at].1 -= 1;
                if held[at].1 == 0 {
                    held.swap_remove(at);
                    self.load[shard as usize] -= self.weight[u as usize];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four groups of targets, each group favouriting only its own
    /// photographers, and one photographer everyone favourites.
    fn groups() -> (Vec<String>, Vec<(String, String)>) {
        let mut targets = Vec::new();
        let mut named = Vec::new();
        for g in 0..4 {
            for i in 0..25 {
                let t = format!("{}{:02}@N01", g + 1, i);
                for p in 0..6 {
                    named.push((t.clone(), format!("9{g}{p}@N02")));
                }
                named.push((t.clone(), "999@N03".to_string()));
                targets.push(t);
            }
        }
        targets.sort();
        (targets, named)
    }

    fn plan_of(targets: &[String], named: &[(String, String)], n: u32) -> Plan {
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        plan(
            &targets,
            named.iter().map(|(t, u)| (t.as_str(), u.as_str())),
            n,
        )
    }

    /// On the synthetic community (taste clusters, popular photographers),
    /// the largest shard of a plan reads fewer favourites than the largest
    /// shard of the NSID hash, as `bench/shard_reads.py` finds at 8M.
    #[test]
    fn a_plan_makes_the_largest_shard_read_less_than_the_nsid_hash() {
        use crate::model::columns::{FavoritesColumns, TrackedUsersColumns};
        let community = crate::community::generate(&crate::config::DemoSettings {
            users: 6_000,
            tracked_users: 200,
            clusters: 12,
            seed: 11,
        });
        let favorites = FavoritesColumns::new(&community.favorites).expect("favorites");
        let rows: Vec<(&str, &str)> = favorites
            .user_id
            .iter()
            .zip(favorites.owner_id.iter())
            .filter_map(|(u, o)| Some((u?, o?)))
            .collect();
        let mut per_user: HashMap<&str, u64> = HashMap::new();
        for &(u, _) in &rows {
            *per_user.entry(u).or_default() += 1;
        }
        let tracked = TrackedUsersColumns::new(&community.tracked_users).expect("tracked");
        let mut targets: Vec<&str> = tracked.user_id.iter().flatten().collect();
        targets.sort_unstable();
        targets.dedup();
        let mut reach: HashMap<&str, Vec<&str>> = targets.iter().map(|&t| (t, vec![t])).collect();
        for &(u, o) in &rows {
            if let Some(r) = reach.get_mut(u) {
                r.push(o);
            }
        }
        // The favourites the largest shard reads: those of its targets and
        // their neighbours.
        let largest = |shard: &dyn Fn(usize) -> u32, n: u32| {
            let mut read = vec![std::collections::HashSet::new(); n as usize];
            for (i, t) in targets.iter().enumerate() {
                read[shard(i) as usize].extend(reach[t].iter().copied());
            }
            read.iter()
                .map(|r| {
                    r.iter()
                        .map(|u| per_user.get(u).copied().unwrap_or(0))
                        .sum::<u64>()
                })
                .max()
                .unwrap_or(0)
        };
        for n in [2, 4] {
            let p = plan(&targets, rows.iter().copied(), n);
            let planned = largest(&|i| p.shard[i], n);
            let hashed = largest(&|i| shard_of(targets[i], n), n);
            assert!(planned < hashed, "N = {n}: plan {planned}, hash {hashed}");
            let used: std::collections::BTreeSet<u32> = p.shard.iter().copied().collect();
            assert_eq!(used.len(), n as usize, "N = {n}: {:?}", p.shard);
        }
    }

    #[test]
    fn the_plan_depends_on_the_pairs_not_their_order() {
        let (targets, mut named) = groups();
        let a = plan_of(&targets, &named, 3);
        named.reverse();
        named.extend(named.clone());
        named.push(("not a target".into(), "900@N02".into()));
        let b = plan_of(&targets, &named, 3);
        assert_eq!(a, b);
        // Another pair changes the digest only if it changes the plan; one
        // target fewer always does.
        let fewer = plan_of(&targets[1..], &named, 3);
        assert_ne!(a.digest, fewer.digest);
        assert_ne!(a.digest, plan_of(&targets, &named, 4).digest);
    }

    #[test]
    fn every_target_gets_a_shard_with_any_count() {
        let (targets, named) = groups();
        for n in [1, 2, 7, 150] {
            let p = plan_of(&targets, &named, n);
            assert!(p.shard.iter().all(|&s| s < n), "{n}: {:?}", p.shard);
        }
        assert!(plan_of(&targets, &named, 1).shard.iter().all(|&s| s == 0));
        // Targets with no pairs are spread by their own weight.
        let alone: Vec<String> = (0..8).map(|i| format!("{i}@N01")).collect();
        let p = plan_of(&alone, &[], 4);
        let mut per = [0; 4];
        for &s in &p.shard {
            per[s as usize] += 1;
        }
        assert_eq!(per, [2, 2, 2, 2]);
        assert_eq!(plan_of(&[], &[], 4).shard, Vec::<u32>::new());
    }

    #[test]
    fn a_share_scores_its_targets_and_names_its_assignment() {
        let hashed = Share::Nsid {
            shard: shard_of("1@N01", 3),
            shards: 3,
        };
        assert!(hashed.scores("1@N01"));
        assert_eq!(hashed.name(), "nsid");
        let planned = Share::Neighbourhood {
            targets: Arc::new(IdSet::new(["1@N01"])),
            digest: "00000000000000ff".into(),
        };
        assert!(planned.scores("1@N01") && !planned.scores("2@N01"));
        assert_eq!(planned.name(), "neighbourhood 00000000000000ff");
    }
}
