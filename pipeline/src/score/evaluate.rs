//! Offline evaluation, as IMDB 2.0 measured its model on a held-out split.
//!
//! For each target user with at least two favourites, the newest
//! `evaluate.holdout_percent` of their favourites (at least one, never all) are
//! hidden: newest by `date_faved`, equal dates broken by the larger photo id
//! (Flickr ids grow with upload time). A user any of whose favourites lacks a
//! date gets a seeded random split instead: favourites ranked by a hash of
//! (seed, user id, photo id). Every algorithm then scores the remaining data
//! exactly as a real run would, and its top-k list is compared with the hidden
//! favourites. With binary relevance, for one user with hidden set H and list L:
//!
//! - precision@k = |L@k ∩ H| / k
//! - recall@k    = |L@k ∩ H| / |H|
//! - nDCG@k      = Σ_{i ≤ k, L_i ∈ H} 1/log2(i + 1) ÷ Σ_{i ≤ min(k, |H|)} 1/log2(i + 1)
//! - AP@k        = Σ_{i ≤ k, L_i ∈ H} precision@i ÷ min(k, |H|)   (MAP is its mean)
//! - hit@k       = 1 when |L@k ∩ H| > 0
//!
//! Each is averaged over the users evaluated. Catalogue coverage@k is the share of
//! the training catalogue (photos with a favourite) that appears in anyone's top k.

use std::collections::{BTreeMap, HashSet};

use arrow_array::{Array, BooleanArray};

use crate::config::EvaluateSettings;
use crate::model::columns::{FavoritesColumns, TrackedUsersColumns};
use crate::model::metrics::Metric;

use super::algorithms::{self, AlgorithmParams};
use super::error::ScoreError;
use super::flexplore::{explore_key, id_hash};
use super::params::ScoreOptions;
use super::prepare::{self, Inputs};

/// One user's scores at one cut-off: precision, recall, nDCG, AP and hit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserScores {
    /// precision@k.
    pub precision: f64,
    /// recall@k.
    pub recall: f64,
    /// nDCG@k.
    pub ndcg: f64,
    /// AP@k.
    pub ap: f64,
    /// 1 or 0.
    pub hit: f64,
}

/// Scores one ranked list against the hidden set. `relevant` holds the hidden
/// items that can be named (those still in the catalogue); `n_relevant` counts
/// them all, so a hidden photo nobody else favourited still counts against
/// recall.
pub fn user_scores(
    ranked: &[u32],
    relevant: &HashSet<u32>,
    n_relevant: usize,
    k: usize,
) -> UserScores {
    if k == 0 || n_relevant == 0 {
        return UserScores::default();
    }
    let mut hits = 0usize;
    let (mut dcg, mut ap_sum) = (0.0, 0.0);
    for (i, item) in ranked.iter().take(k).enumerate() {
        if relevant.contains(item) {
            hits += 1;
            dcg += 1.0 / ((i + 2) as f64).log2();
            ap_sum += hits as f64 / (i + 1) as f64;
        }
    }
    let ideal = k.min(n_relevant);
    let idcg: f64 = (0..ideal).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    UserScores {
        precision: hits as f64 / k as f64,
        recall: hits as f64 / n_relevant as f64,
        ndcg: dcg / idcg,
        ap: ap_sum / ideal as f64,
        hit: if hits > 0 { 1.0 } else { 0.0 },
    }
}

/// The hidden favourites and the training data.
#[derive(Debug, Clone)]
pub struct Holdout {
    /// The inputs with the hidden favourites removed.
    pub training: Inputs,
    /// User NSID → hidden photo ids, for the users evaluated.
    pub hidden: BTreeMap<String, Vec<String>>,
    /// Users split by date.
    pub temporal: usize,
    /// Users split at random.
    pub random: usize,
}

/// The NSIDs scored: the tracked users, or every favoriter with `all_users`.
fn target_ids(inputs: &Inputs, all_users: bool) -> Result<HashSet<String>, ScoreError> {
    let mut ids = HashSet::new();
    if all_users {
        for b in &inputs.favorites {
            ids.extend(
                FavoritesColumns::new(b)?
                    .user_id
                    .iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
    } else {
        for b in &inputs.tracked_users {
            ids.extend(
                TrackedUsersColumns::new(b)?
                    .user_id
                    .iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
    }
    Ok(ids)
}

/// Splits each target's favourites into training and hidden parts.
pub fn holdout(
    inputs: &Inputs,
    all_users: bool,
    settings: &EvaluateSettings,
) -> Result<Holdout, ScoreError> {
    let targets = target_ids(inputs, all_users)?;
    // user → photo → newest date seen (None when any row of it has no date).
    let mut favs: BTreeMap<&str, BTreeMap<&str, Option<i64>>> = BTreeMap::new();
    for b in &inputs.favorites {
        let cols = FavoritesColumns::new(b)?;
        let (u, p, d) = (cols.user_id, cols.photo_id, cols.date_faved);
        for i in 0..b.num_rows() {
            if u.is_null(i) || p.is_null(i) || !targets.contains(u.value(i)) {
                continue;
            }
            let date = (!d.is_null(i)).then(|| d.value(i));
            favs.entry(u.value(i))
                .or_default()
                .entry(p.value(i))
                .and_modify(|old| *old = old.zip(date).map(|(a, b)| a.max(b)))
                .or_insert(date);
        }
    }
    let mut hidden: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut hidden_pairs: HashSet<(&str, &str)> = HashSet::new();
    let (mut temporal, mut random) = (0, 0);
    for (user, photos) in &favs {
        let n = photos.len();
        if n < 2 {
            continue;
        }
        let hide = (n * settings.holdout_percent as usize / 100).clamp(1, n - 1);
        let mut order: Vec<(&str, Option<i64>)> = photos.iter().map(|(p, d)| (*p, *d)).collect();
        if order.iter().all(|(_, d)| d.is_some()) {
            temporal += 1;
            // Newest first; equal dates: the larger photo id (numeric) first.
            order.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then(b.0.len().cmp(&a.0.len()))
                    .then(b.0.cmp(a.0))
            });
        } else {
            random += 1;
            let uh = id_hash(user);
            let key = |p: &str| explore_key(settings.seed, uh, id_hash(p));
            order.sort_by(|a, b| key(b.0).total_cmp(&key(a.0)).then(a.0.cmp(b.0)));
        }
        let chosen: Vec<String> = order[..hide].iter().map(|(p, _)| p.to_string()).collect();
        for (p, _) in &order[..hide] {
            hidden_pairs.insert((*user, *p));
        }
        hidden.insert(user.to_string(), chosen);
    }
    let mut training = inputs.clone();
    training.favorites = inputs
        .favorites
        .iter()
        .map(|b| {
            let cols = FavoritesColumns::new(b)?;
            let (u, p) = (cols.user_id, cols.photo_id);
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    Some(
                        u.is_null(i)
                            || p.is_null(i)
                            || !hidden_pairs.contains(&(u.value(i), p.value(i))),
                    )
                })
                .collect();
            Ok(arrow_select::filter::filter_record_batch(b, &keep)?)
        })
        .collect::<Result<_, ScoreError>>()?;
    Ok(Holdout {
        training,
        hidden,
        temporal,
        random,
    })
}

/// Hides favourites, scores every algorithm on the rest and measures each at
/// every cut-off in `settings.ks`.
pub fn evaluate(
    inputs: &Inputs,
    options: ScoreOptions,
    params: &AlgorithmParams,
    settings: &EvaluateSettings,
    pool: &rayon::ThreadPool,
) -> Result<Vec<Metric>, ScoreError> {
    let split = holdout(inputs, options.all_users, settings)?;
    let (graph, _) = pool.install(|| prepare::prepare(&split.training, options.all_users))?;
    let max_k = settings.ks.iter().copied().max().unwrap_or(1);
    let mut p = params.clone();
    p.flexplore.photo_recs = max_k;
    let recs = pool.install(|| algorithms::recommend(&graph, &p));
    let catalogue = graph.photo_ids.len().max(1);
    let split_name = match (split.temporal, split.random) {
        (_, 0) => "temporal",
        (0, _) => "random",
        _ => "mixed",
    };
    let users: Vec<(Option<usize>, HashSet<u32>, usize)> = split
        .hidden
        .iter()
        .map(|(user, photos)| {
            let at = graph
                .user_ids
                .position(user)
                .and_then(|u| graph.targets.binary_search(&(u as u32)).ok());
            let relevant: HashSet<u32> = photos
                .iter()
                .filter_map(|p| graph.photo_ids.position(p).map(|i| i as u32))
                .collect();
            (at, relevant, photos.len())
        })
        .collect();
    let mut out = Vec::new();
    for (algorithm, lists) in &recs.photos {
        for &k in &settings.ks {
            let mut sum = UserScores::default();
            let mut shown: HashSet<u32> = HashSet::new();
            for (at, relevant, n) in &users {
                let ranked: Vec<u32> = at
                    .and_then(|i| lists.get(i))
                    .map(|l| l.iter().map(|r| r.photo).collect())
                    .unwrap_or_default();
                shown.extend(ranked.iter().take(k));
                let s = user_scores(&ranked, relevant, *n, k);
                sum.precision += s.precision;
                sum.recall += s.recall;
                sum.ndcg += s.ndcg;
                sum.ap += s.ap;
                sum.hit += s.hit;
            }
            let n = users.len().max(1) as f64;
            out.push(Metric {
                algorithm: algorithm.name().to_string(),
                k: k as i32,
                users_evaluated: users.len() as i64,
                precision: sum.precision / n,
                recall: sum.recall / n,
                ndcg: sum.ndcg / n,
                map: sum.ap / n,
                hit_rate: sum.hit / n,
                coverage: shown.len() as f64 / catalogue as f64,
                split: split_name.to_string(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};

    use super::*;
    use crate::model::Table;

    fn set(items: &[u32]) -> HashSet<u32> {
        items.iter().copied().collect()
    }

    fn inputs(rows: &[(&str, &str, Option<i64>)], tracked: &[&str]) -> Inputs {
        let s = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
        let favorites = RecordBatch::try_new(
            Table::Favorites.schema(),
            vec![
                s(rows.iter().map(|r| Some(r.0)).collect()),
                s(rows.iter().map(|r| Some(r.1)).collect()),
                s(rows.iter().map(|_| Some("9@N09")).collect()),
                Arc::new(
                    arrow_array::TimestampMicrosecondArray::from(
                        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ],
        )
        .expect("favorites");
        let tracked_users = RecordBatch::try_new(
            Table::TrackedUsers.schema(),
            vec![
                s(tracked.iter().map(|t| Some(*t)).collect()),
                s(vec![None; tracked.len()]),
                Arc::new(
                    arrow_array::TimestampMicrosecondArray::from(vec![None; tracked.len()])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .expect("tracked");
        Inputs {
            favorites: vec![favorites],
            tracked_users: vec![tracked_users],
            ..Inputs::default()
        }
    }

    #[test]
    fn the_newest_favourites_are_hidden_and_dateless_users_split_at_random() {
        let settings = EvaluateSettings {
            enabled: true,
            holdout_percent: 40,
            seed: 42,
            ks: vec![10],
        };
        // 1@N01: five dated favourites; 40 % of 5 = 2 hidden: the two newest,
        // and of the equal dates (300) the larger photo id.
        // 2@N01: undated, four favourites: 40 % of 4 = 1 hidden, chosen by seed.
        // 3@N01: one favourite: not evaluated. 4@N01 is not tracked.
        let rows = [
            ("1@N01", "10", Some(100)),
            ("1@N01", "11", Some(300)),
            ("1@N01", "9", Some(300)),
            ("1@N01", "12", Some(200)),
            ("1@N01", "13", Some(50)),
            ("2@N01", "20", None),
            ("2@N01", "21", None),
            ("2@N01", "22", Some(5)),
            ("2@N01", "23", None),
            ("3@N01", "30", Some(1)),
            ("4@N01", "40", Some(1)),
            ("4@N01", "41", Some(2)),
        ];
        let split = holdout(
            &inputs(&rows, &["1@N01", "2@N01", "3@N01"]),
            false,
            &settings,
        )
        .expect("split");
        assert_eq!(
            split.hidden["1@N01"],
            vec!["11".to_string(), "9".to_string()]
        );
        assert_eq!(split.hidden["2@N01"].len(), 1);
        assert!(!split.hidden.contains_key("3@N01") && !split.hidden.contains_key("4@N01"));
        assert_eq!((split.temporal, split.random), (1, 1));
        let kept: usize = split.training.favorites.iter().map(|b| b.num_rows()).sum();
        assert_eq!(
            kept,
            rows.len() - 3,
            "exactly the hidden rows leave training"
        );
        // The random split is a function of the seed: the same seed, the same pick;
        // across seeds, each of the four photos is picked sometimes.
        let again = holdout(
            &inputs(&rows, &["1@N01", "2@N01", "3@N01"]),
            false,
            &settings,
        )
        .expect("split");
        assert_eq!(again.hidden, split.hidden);
        let picks: HashSet<String> = (0..40)
            .map(|seed| {
                let s = EvaluateSettings {
                    seed,
                    ..settings.clone()
                };
                holdout(&inputs(&rows, &["2@N01"]), false, &s)
                    .expect("split")
                    .hidden["2@N01"][0]
                    .clone()
            })
            .collect();
        assert_eq!(picks.len(), 4, "{picks:?}");
    }

    #[test]
    fn hand_computed_metrics() {
        // L = [1, 2, 3, 4], H = {2, 4, 9}; 9 is not in the catalogue but counts.
        // k = 2: hits at position 2 only.
        //   precision = 1/2, recall = 1/3, hit = 1
        //   DCG = 1/log2(3); IDCG = 1 + 1/log2(3); nDCG = 0.630930/1.630930 = 0.386853
        //   AP = (1/2) / min(2, 3) = 0.25
        let l = [1, 2, 3, 4];
        let h = set(&[2, 4]);
        let s = user_scores(&l, &h, 3, 2);
        assert!((s.precision - 0.5).abs() < 1e-12);
        assert!((s.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.ndcg - 0.386_852_807).abs() < 1e-9, "{}", s.ndcg);
        assert!((s.ap - 0.25).abs() < 1e-12);
        assert_eq!(s.hit, 1.0);
        // k = 4: hits at 2 and 4.
        //   precision = 2/4, recall = 2/3
        //   DCG = 1/log2(3) + 1/log2(5) = 0.630930 + 0.430677 = 1.061606
        //   IDCG = 1 + 0.630930 + 0.5 = 2.130930; nDCG = 0.498190
        //   AP = (1/2 + 2/4) / min(4, 3) = 1/3
        let s = user_scores(&l, &h, 3, 4);
        assert!((s.precision - 0.5).abs() < 1e-12);
        assert!((s.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.ndcg - 0.498_189_9).abs() < 1e-6, "{}", s.ndcg);
        assert!((s.ap - 1.0 / 3.0).abs() < 1e-12);
        // A perfect list scores 1 everywhere but precision.
        let s = user_scores(&[7, 8], &set(&[7, 8]), 2, 5);
        assert!((s.ndcg - 1.0).abs() < 1e-12 && (s.ap - 1.0).abs() < 1e-12);
        assert!((s.recall - 1.0).abs() < 1e-12 && (s.precision - 0.4).abs() < 1e-12);
        // No hit: zeros; an empty list: zeros.
        assert_eq!(user_scores(&[1, 3], &h, 3, 2), UserScores::default());
        assert_eq!(user_scores(&[], &h, 3, 10), UserScores::default());
    }
}
