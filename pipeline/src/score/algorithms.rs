//! The per-user photo-rec algorithms, run side by side as Rec-a-Sketch showed them.
//!
//! - `flexplore` — the original photo-recommender's neighbor scoring ([`flexplore`]);
//! - `itemknn` — a user's score for a photo is the sum of its similarity to the
//!   photos the user favourited, over each favourite's K most similar photos (the
//!   item-item scheme of the `implicit` library; K is `score.itemknn_neighbors`,
//!   the measure is `similar.similarity`);
//! - `popular` — the photos favourited by the most members of the tracked users'
//!   neighborhood (every neighbor of every target), the same list for everyone;
//! - `explore` — a seeded random sample of the user's candidate photos (see
//!   [`flexplore`]).
//!
//! Every algorithm applies Flexplore's exclusions (the user's favourites, the
//! user's own photos, dismissed photos, photos by dismissed users), drops
//! zero scores, keeps `score.photo_recs_per_user`, and ranks by score descending,
//! then photo id ascending.

use rayon::prelude::*;

use super::flexplore::{self, Params, PhotoRec, PhotographerRec, top_k};
use super::prepare::{Graph, NO_OWNER};
use super::similar::{self, SimilarParams, SimilarRow};
pub use crate::model::Algorithm;

/// Everything the algorithms need.
#[derive(Debug, Clone, PartialEq)]
pub struct AlgorithmParams {
    /// The algorithms to run, in display order.
    pub algorithms: Vec<Algorithm>,
    /// Flexplore's (and every list's) sizes; `explore_seed` is the explore seed.
    pub flexplore: Params,
    /// `itemknn`'s neighbours: `k` is the neighbours kept per favourite.
    pub itemknn: SimilarParams,
}

/// One photo's nearest photos, looked up by photo.
#[derive(Debug, Clone, Default)]
pub struct NeighborRows {
    /// The photos that have rows, ascending.
    pub sources: Vec<u32>,
    /// Their rows, ranked.
    pub rows: Vec<Vec<SimilarRow>>,
    /// Photo → index into `rows`, or `u32::MAX`.
    index: Vec<u32>,
}

impl NeighborRows {
    /// Wraps computed rows.
    pub fn new(photos: usize, sources: Vec<u32>, rows: Vec<Vec<SimilarRow>>) -> Self {
        let mut index = vec![u32::MAX; photos];
        for (i, &p) in sources.iter().enumerate() {
            index[p as usize] = i as u32;
        }
        Self {
            sources,
            rows,
            index,
        }
    }

    /// The rows of `photo` (empty when it has none).
    pub fn of(&self, photo: u32) -> &[SimilarRow] {
        match self.index[photo as usize] {
            u32::MAX => &[],
            i => &self.rows[i as usize],
        }
    }
}

/// The output of every algorithm, each list aligned with `graph.targets`.
#[derive(Debug, Clone, Default)]
pub struct Recommendations {
    /// Photo recs per algorithm, in display order.
    pub photos: Vec<(Algorithm, Vec<Vec<PhotoRec>>)>,
    /// Photographer recs (Flexplore).
    pub photographers: Vec<Vec<PhotographerRec>>,
    /// The neighbour rows `itemknn` used (sources = the targets' favourites).
    pub knn: Option<NeighborRows>,
}

/// True when `p` may not be recommended to `u`: a favourite, the user's own
/// photo, a dismissed photo, or a photo by a dismissed user. Rows are sorted.
fn excluded(g: &Graph, u: u32, p: u32) -> bool {
    let o = g.owner[p as usize];
    o == u
        || g.favorites.row(u).binary_search(&p).is_ok()
        || g.dismissed_photos.row(u).binary_search(&p).is_ok()
        || (o != NO_OWNER && g.dismissed_users.row(u).binary_search(&o).is_ok())
}

/// Runs every configured algorithm on the current Rayon pool.
pub fn recommend(graph: &Graph, params: &AlgorithmParams) -> Recommendations {
    let has = |a: Algorithm| params.algorithms.contains(&a);
    let mut fx_params = params.flexplore;
    if !has(Algorithm::Explore) {
        fx_params.explore_seed = None;
    }
    // Without owners there are no neighbours: Flexplore, explore and
    // photographer recs are skipped (empty), and fallbacks too, since the
    // list they would fill is not made.
    let owners = graph.has_owners();
    let mut fx = if owners {
        flexplore::score_all(graph, fx_params)
    } else {
        graph
            .targets
            .iter()
            .map(|&user| flexplore::UserRecs {
                user,
                photos: Vec::new(),
                photographers: Vec::new(),
                explore: Vec::new(),
            })
            .collect()
    };
    let knn = has(Algorithm::ItemKnn).then(|| {
        let sources = target_favorites(graph);
        let rows = similar::similar_photos(graph, &sources, params.itemknn);
        NeighborRows::new(graph.photo_ids.len(), sources, rows)
    });
    if owners && params.flexplore.fallback_below > 0 {
        let popular_lists = popular(graph, params.flexplore);
        let mut lists: Vec<Vec<PhotoRec>> = fx
            .iter_mut()
            .map(|r| std::mem::take(&mut r.photos))
            .collect();
        fill_with_fallbacks(&mut lists, &popular_lists, params.flexplore);
        for (r, l) in fx.iter_mut().zip(lists) {
            r.photos = l;
        }
    }
    let mut photos = Vec::new();
    for &a in &params.algorithms {
        let lists = match a {
            Algorithm::Flexplore => fx
                .iter_mut()
                .map(|r| std::mem::take(&mut r.photos))
                .collect(),
            Algorithm::Explore => fx
                .iter_mut()
                .map(|r| std::mem::take(&mut r.explore))
                .collect(),
            Algorithm::ItemKnn => match &knn {
                Some(rows) => itemknn(graph, rows, params.flexplore),
                None => Vec::new(),
            },
            Algorithm::Popular => popular(graph, params.flexplore),
        };
        photos.push((a, lists));
    }
    Recommendations {
        photos,
        photographers: fx.into_iter().map(|r| r.photographers).collect(),
        knn,
    }
}

/// The photos the targets favourited, ascending and distinct.
pub fn target_favorites(graph: &Graph) -> Vec<u32> {
    similar::sources(graph, std::iter::empty())
}

struct KnnScratch {
    stamp: Vec<u32>,
    acc: Vec<f64>,
    touched: Vec<u32>,
    /// (candidate, favourite, similarity) for every contribution.
    pairs: Vec<(u32, u32, f64)>,
    generation: u32,
}

/// `itemknn` for every target, aligned with `graph.targets`.
pub fn itemknn(graph: &Graph, rows: &NeighborRows, params: Params) -> Vec<Vec<PhotoRec>> {
    let photos = graph.photo_ids.len();
    graph
        .targets
        .par_iter()
        .with_min_len(16)
        .map_init(
            || KnnScratch {
                stamp: vec![0; photos],
                acc: vec![0.0; photos],
                touched: Vec::new(),
                pairs: Vec::new(),
                generation: 0,
            },
            |s, &u| {
                s.generation = s.generation.wrapping_add(1);
                if s.generation == 0 {
                    s.stamp.fill(0);
                    s.generation = 1;
                }
                let gen_ = s.generation;
                s.touched.clear();
                s.pairs.clear();
                // Favourites ascending, each favourite's rows in rank order: a fixed
                // order for the sums.
                for &p in graph.favorites.row(u) {
                    for r in rows.of(p) {
                        let q = r.photo as usize;
                        if s.stamp[q] != gen_ {
                            s.stamp[q] = gen_;
                            s.acc[q] = 0.0;
                            s.touched.push(r.photo);
                        }
                        s.acc[q] += r.score;
                        s.pairs.push((r.photo, p, r.score));
                    }
                }
                let mut ranked: Vec<(f64, u32)> = s
                    .touched
                    .iter()
                    .filter(|&&q| s.acc[q as usize] > 0.0 && !excluded(graph, u, q))
                    .map(|&q| (s.acc[q as usize], q))
                    .collect();
                top_k(&mut ranked, params.photo_recs, |&x| x);
                // Reuse the stamp array to mark the selected photos' positions.
                s.generation = s.generation.wrapping_add(1);
                if s.generation == 0 {
                    s.stamp.fill(0);
                    s.generation = 1;
                }
                let sel = s.generation;
                for (i, &(_, q)) in ranked.iter().enumerate() {
                    s.stamp[q as usize] = sel;
                    s.acc[q as usize] = i as f64;
                }
                let mut because: Vec<Vec<(f64, u32)>> = vec![Vec::new(); ranked.len()];
                for &(q, p, score) in &s.pairs {
                    if s.stamp[q as usize] == sel {
                        because[s.acc[q as usize] as usize].push((score, p));
                    }
                }
                ranked
                    .into_iter()
                    .zip(because)
                    .map(|((score, q), mut because)| {
                        let neighbor_count = because.len() as u32;
                        top_k(&mut because, params.top_neighbors, |&x| x);
                        PhotoRec {
                            photo: q,
                            score,
                            neighbor_count,
                            top_neighbors: Vec::new(),
                            similar_to: because.into_iter().map(|(_, p)| p).collect(),
                            fallback: false,
                        }
                    })
                    .collect()
            },
        )
        .collect()
}

/// `popular` for every target, aligned with `graph.targets`. A photo's score is
/// how many members of the neighborhood (the union of every target's neighbors)
/// favourited it; every user is a member when that neighbourhood is empty.
pub fn popular(graph: &Graph, params: Params) -> Vec<Vec<PhotoRec>> {
    let users = graph.user_ids.len();
    let mut member = vec![false; users];
    for &t in &graph.community {
        for &p in graph.favorites.row(t) {
            let o = graph.owner[p as usize];
            if o != NO_OWNER && o != t {
                member[o as usize] = true;
            }
        }
    }
    // No neighbourhood at all (no favourite has a known owner): every user
    // counts, so the list is global popularity.
    if !member.contains(&true) {
        member.fill(true);
    }
    let mut count = vec![0u32; graph.photo_ids.len()];
    for v in (0..users as u32).filter(|&v| member[v as usize]) {
        for &p in graph.favorites.row(v) {
            count[p as usize] += 1;
        }
    }
    let mut ranked: Vec<(f64, u32)> = count
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c > 0)
        .map(|(p, &c)| (f64::from(c), p as u32))
        .collect();
    let all = ranked.len();
    top_k(&mut ranked, all, |&x| x);
    graph
        .targets
        .par_iter()
        .with_min_len(16)
        .map(|&u| {
            ranked
                .iter()
                .filter(|&&(_, p)| !excluded(graph, u, p))
                .take(params.photo_recs)
                .map(|&(score, p)| PhotoRec {
                    photo: p,
                    score,
                    neighbor_count: count[p as usize],
                    top_neighbors: Vec::new(),
                    similar_to: Vec::new(),
                    fallback: false,
                })
                .collect()
        })
        .collect()
}

/// Fills every Flexplore list shorter than `params.fallback_below` with the
/// `popular` list's photos it lacks, marked as fallbacks, up to
/// `params.photo_recs`: a user with too few favourites for neighbours of their
/// own still gets a list, which says what it is.
fn fill_with_fallbacks(
    lists: &mut [Vec<PhotoRec>],
    popular_lists: &[Vec<PhotoRec>],
    params: Params,
) {
    for (list, popular) in lists.iter_mut().zip(popular_lists) {
        if list.len() >= params.fallback_below {
            continue;
        }
        let held: std::collections::HashSet<u32> = list.iter().map(|r| r.photo).collect();
        let room = params.photo_recs.saturating_sub(list.len());
        list.extend(
            popular
                .iter()
                .filter(|r| !held.contains(&r.photo))
                .take(room)
                .map(|r| PhotoRec {
                    fallback: true,
                    ..r.clone()
                }),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::score::prepare::Csr;
    use crate::score::similar::{Bm25, Similarity};

    /// A graph where photo p is owned by user p % users.
    fn graph(favs: &[(u32, u32)], dismissed: &[(u32, u32)], users: usize, photos: usize) -> Graph {
        let favorites = Csr::from_pairs(users, favs.to_vec());
        let favoriters = favorites.transpose(photos);
        Graph {
            user_ids: (0..users).map(|u| format!("{}@N01", 100 + u)).collect(),
            photo_ids: (0..photos).map(|p| (1000 + p).to_string()).collect(),
            favorites,
            favoriters,
            owner: (0..photos).map(|p| (p % users) as u32).collect(),
            contacts: Csr::from_pairs(users, vec![]),
            dismissed_photos: Csr::from_pairs(users, dismissed.to_vec()),
            dismissed_users: Csr::from_pairs(users, vec![]),
            targets: (0..users as u32).collect(),
            community: (0..users as u32).collect(),
        }
    }

    fn params(keep: usize) -> AlgorithmParams {
        AlgorithmParams {
            algorithms: Algorithm::ALL.to_vec(),
            flexplore: Params {
                photo_recs: keep,
                photographer_recs: keep,
                top_neighbors: 2,
                explore_seed: Some(7),
                fallback_below: 0,
            },
            itemknn: SimilarParams {
                k: 4,
                min_common: 1,
                similarity: Similarity::Cosine,
                bm25: Bm25::default(),
            },
        }
    }

    #[test]
    fn hand_computed_itemknn_and_popular() {
        // Users 0..3 own photos p % 3. F(0) = {3}, F(1) = {3, 4}, F(2) = {3, 4, 5}.
        // U(3) = {0,1,2}, U(4) = {1,2}, U(5) = {2}.
        // cosine(3,4) = 2/sqrt(6), cosine(3,5) = 1/sqrt(3), cosine(4,5) = 1/sqrt(2).
        // itemknn for user 0 (F = {3}): photo 4 scores 2/sqrt(6); photo 5 is
        // owned by user 2 and scores 1/sqrt(3); photo 3 is a favourite (excluded).
        let favs = [(0, 3), (1, 3), (1, 4), (2, 3), (2, 4), (2, 5)];
        let g = graph(&favs, &[], 3, 6);
        let recs = recommend(&g, &params(10));
        let knn = &recs.photos[1];
        assert_eq!(knn.0, Algorithm::ItemKnn);
        let u0: Vec<(u32, f64)> = knn.1[0].iter().map(|r| (r.photo, r.score)).collect();
        assert_eq!(u0.len(), 2);
        assert_eq!(u0[0].0, 4);
        assert!((u0[0].1 - 2.0 / 6f64.sqrt()).abs() < 1e-12);
        assert_eq!(u0[1].0, 5);
        assert!((u0[1].1 - 1.0 / 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(knn.1[0][0].similar_to, vec![3]);
        // User 1 owns photo 4, so only photo 5 remains: sim(3,5) + sim(4,5).
        let u1 = &knn.1[1];
        assert_eq!(u1.len(), 1);
        assert!((u1[0].score - (1.0 / 3f64.sqrt() + 1.0 / 2f64.sqrt())).abs() < 1e-12);
        assert_eq!(u1[0].neighbor_count, 2);
        assert_eq!(u1[0].similar_to, vec![4, 3]);

        // Neighborhood: owners of the targets' favourites other than themselves:
        // user 0 (photo 3 owner) for users 1 and 2, user 1 (photo 4) for user 2,
        // user 2 (photo 5) — nobody but 2 favourited 5, and 2 owns it. So {0, 1}.
        // Counts: photo 3 by {0,1} = 2, photo 4 by {1} = 1.
        let pop = &recs.photos[2];
        assert_eq!(pop.0, Algorithm::Popular);
        // User 2 favourited 3 and 4: nothing left.
        assert!(pop.1[2].is_empty());
        // User 0 owns 3 and favourited it; 4 remains with score 1.
        assert_eq!(
            pop.1[0]
                .iter()
                .map(|r| (r.photo, r.score))
                .collect::<Vec<_>>(),
            vec![(4, 1.0)]
        );
    }

    #[test]
    fn explore_is_a_sample_of_the_flexplore_candidates_and_is_seeded() {
        let favs: Vec<(u32, u32)> = (0..8u32)
            .flat_map(|u| {
                (0..40u32)
                    .filter(move |p| ((u * 40 + p).wrapping_mul(2_654_435_761) >> 16) % 5 < 2)
                    .map(move |p| (u, p))
            })
            .collect();
        let g = graph(&favs, &[], 8, 40);
        let mut p = params(5);
        let all = recommend(&g, &params(1000));
        let a = recommend(&g, &p);
        p.flexplore.explore_seed = Some(8);
        let b = recommend(&g, &p);
        let explore = |r: &Recommendations| r.photos[3].1.clone();
        assert_eq!(a.photos[3].0, Algorithm::Explore);
        let mut differs = false;
        for (i, list) in explore(&a).iter().enumerate() {
            let candidates: BTreeSet<u32> = all.photos[0].1[i].iter().map(|r| r.photo).collect();
            assert!(list.len() <= 5);
            assert_eq!(list.len(), candidates.len().min(5));
            for r in list {
                assert!(
                    candidates.contains(&r.photo),
                    "explore picked a non-candidate"
                );
                assert!(r.score > 0.0 && r.score <= 1.0);
            }
            differs |= list != &explore(&b)[i];
        }
        assert!(
            all.photos[0].1.iter().any(|l| l.len() > 5),
            "the community leaves more candidates than the sample takes"
        );
        assert!(differs, "another seed draws another sample");
        assert_eq!(explore(&a), explore(&recommend(&g, &params(5))));
    }

    /// itemknn straight from the definition: Σ over the user's favourites f of
    /// sim(f, q) when q is among f's K nearest.
    fn naive_itemknn(g: &Graph, p: &AlgorithmParams, u: u32) -> Vec<(u32, f64)> {
        let all: Vec<u32> = (0..g.photo_ids.len() as u32).collect();
        let rows = similar::similar_photos(g, &all, p.itemknn);
        let mut acc: BTreeMap<u32, f64> = BTreeMap::new();
        for &f in g.favorites.row(u) {
            for r in &rows[f as usize] {
                *acc.entry(r.photo).or_default() += r.score;
            }
        }
        let mut out: Vec<(u32, f64)> = acc
            .into_iter()
            .filter(|&(q, s)| s > 0.0 && !excluded(g, u, q))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(p.flexplore.photo_recs);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

        #[test]
        fn itemknn_equals_naive_and_ignores_threads(
            favs in proptest::collection::vec((0u32..10, 0u32..30), 1..120),
            dismissed in proptest::collection::vec((0u32..10, 0u32..30), 0..10),
            keep in 1usize..8,
        ) {
            let g = graph(&favs, &dismissed, 10, 30);
            let p = params(keep);
            let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool").install(|| recommend(&g, &p));
            let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool").install(|| recommend(&g, &p));
            prop_assert_eq!(&one.photos, &two.photos);
            for (i, &u) in g.targets.iter().enumerate() {
                let want = naive_itemknn(&g, &p, u);
                let got = &one.photos[1].1[i];
                prop_assert_eq!(got.len(), want.len());
                for (a, b) in got.iter().zip(&want) {
                    prop_assert!((a.score - b.1).abs() < 1e-9);
                }
                for list in one.photos.iter().map(|(_, l)| &l[i]) {
                    for r in list {
                        prop_assert!(!excluded(&g, u, r.photo));
                        prop_assert!(r.score > 0.0);
                    }
                    prop_assert!(list.windows(2).all(|w| w[0].score > w[1].score
                        || (w[0].score == w[1].score && w[0].photo < w[1].photo)));
                }
            }
        }
    }
}
