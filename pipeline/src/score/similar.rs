//! Similar photos: item-to-item neighbours by co-favourites, precomputed per photo
//! as Rec-a-Sketch precomputed its rows.
//!
//! For photos p and q, with U(x) the users who favourited x and
//! co(p,q) = |U(p) ∩ U(q)|:
//!
//! - `cosine`  = co / sqrt(|U(p)| · |U(q)|)
//! - `jaccard` = co / (|U(p)| + |U(q)| − co)
//!
//! Only pairs with co ≥ `min_common` count. Each source photo keeps its top K by
//! score descending, then photo id ascending. The work is sparse: a source photo
//! touches only the photos its favoriters also favourited, so the cost grows with
//! co-occurrences, not with photos². Sources are scored in parallel with one dense
//! accumulator per worker, and the arithmetic for one source runs in a fixed order,
//! so results do not depend on the thread count.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::prepare::Graph;

/// The similarity measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// Binary cosine.
    Cosine,
    /// Jaccard index.
    Jaccard,
}

impl Similarity {
    /// The name written in the `algorithm` column.
    pub fn name(self) -> &'static str {
        match self {
            Similarity::Cosine => "cosine",
            Similarity::Jaccard => "jaccard",
        }
    }

    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cosine" => Some(Similarity::Cosine),
            "jaccard" => Some(Similarity::Jaccard),
            _ => None,
        }
    }

    /// The score of a pair from its co-occurrence and the two degrees.
    #[inline]
    pub fn score(self, common: u32, deg_p: u32, deg_q: u32) -> f64 {
        let c = f64::from(common);
        match self {
            Similarity::Cosine => c / (f64::from(deg_p) * f64::from(deg_q)).sqrt(),
            Similarity::Jaccard => c / (f64::from(deg_p) + f64::from(deg_q) - c),
        }
    }
}

/// Parameters of the similar-photos kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimilarParams {
    /// Rows kept per photo.
    pub k: usize,
    /// Least co-favourites for a pair to count.
    pub min_common: u32,
    /// The measure.
    pub similarity: Similarity,
}

/// One similar photo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimilarRow {
    /// The similar photo.
    pub photo: u32,
    /// Its score.
    pub score: f64,
    /// Co-favourites.
    pub common: u32,
}

/// Top-K similar photos of each source, in source order.
pub fn similar_photos(
    graph: &Graph,
    sources: &[u32],
    params: SimilarParams,
) -> Vec<Vec<SimilarRow>> {
    let photos = graph.photo_ids.len();
    sources
        .par_iter()
        .with_min_len(64)
        .map_init(
            || {
                (
                    vec![0u32; photos],
                    vec![0u32; photos],
                    Vec::<u32>::new(),
                    0u32,
                )
            },
            |(stamp, co, touched, gen_), &p| {
                *gen_ = gen_.wrapping_add(1);
                if *gen_ == 0 {
                    stamp.fill(0);
                    *gen_ = 1;
                }
                let g = *gen_;
                touched.clear();
                for &v in graph.favoriters.row(p) {
                    for &q in graph.favorites.row(v) {
                        if q == p {
                            continue;
                        }
                        let qi = q as usize;
                        if stamp[qi] != g {
                            stamp[qi] = g;
                            co[qi] = 0;
                            touched.push(q);
                        }
                        co[qi] += 1;
                    }
                }
                let deg_p = graph.favoriters.row(p).len() as u32;
                let mut rows: Vec<SimilarRow> = touched
                    .iter()
                    .filter(|&&q| co[q as usize] >= params.min_common.max(1))
                    .map(|&q| {
                        let common = co[q as usize];
                        let deg_q = graph.favoriters.row(q).len() as u32;
                        SimilarRow {
                            photo: q,
                            score: params.similarity.score(common, deg_p, deg_q),
                            common,
                        }
                    })
                    .collect();
                let cmp = |a: &SimilarRow, b: &SimilarRow| {
                    b.score.total_cmp(&a.score).then(a.photo.cmp(&b.photo))
                };
                if rows.len() > params.k && params.k > 0 {
                    rows.select_nth_unstable_by(params.k - 1, cmp);
                    rows.truncate(params.k);
                }
                if params.k == 0 {
                    rows.clear();
                }
                rows.sort_unstable_by(cmp);
                rows
            },
        )
        .collect()
}

/// The photos that get similar-photo rows: those the targets favourited and those
/// recommended to them, ascending.
pub fn sources(graph: &Graph, recommended: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut mark = vec![false; graph.photo_ids.len()];
    for &u in &graph.targets {
        for &p in graph.favorites.row(u) {
            mark[p as usize] = true;
        }
    }
    for p in recommended {
        mark[p as usize] = true;
    }
    (0..mark.len() as u32)
        .filter(|&p| mark[p as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;
    use crate::score::prepare::Csr;

    fn graph(favs: &[(u32, u32)], users: usize, photos: usize) -> Graph {
        let favorites = Csr::from_pairs(users, favs.to_vec());
        let favoriters = favorites.transpose(photos);
        Graph {
            user_ids: (0..users).map(|u| format!("{u}@N01")).collect(),
            photo_ids: (0..photos).map(|p| p.to_string()).collect(),
            favorites,
            favoriters,
            owner: vec![0; photos],
            contacts: Csr::from_pairs(users, vec![]),
            dismissed_photos: Csr::from_pairs(users, vec![]),
            dismissed_users: Csr::from_pairs(users, vec![]),
            targets: (0..users as u32).collect(),
        }
    }

    /// Straight from the definitions, with sets.
    fn naive(
        favs: &[(u32, u32)],
        photos: usize,
        p: u32,
        params: SimilarParams,
    ) -> Vec<(u32, f64, u32)> {
        let mut by_photo: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for &(u, q) in favs {
            by_photo.entry(q).or_default().insert(u);
        }
        let empty = BTreeSet::new();
        let up = by_photo.get(&p).unwrap_or(&empty);
        let mut rows: Vec<(u32, f64, u32)> = (0..photos as u32)
            .filter(|&q| q != p)
            .filter_map(|q| {
                let uq = by_photo.get(&q).unwrap_or(&empty);
                let co = up.intersection(uq).count() as f64;
                if co < f64::from(params.min_common.max(1)) {
                    return None;
                }
                let s = match params.similarity {
                    Similarity::Cosine => co / ((up.len() * uq.len()) as f64).sqrt(),
                    Similarity::Jaccard => co / (up.len() as f64 + uq.len() as f64 - co),
                };
                Some((q, s, co as u32))
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        rows.truncate(params.k);
        rows
    }

    #[test]
    fn hand_computed_cosine_and_jaccard() {
        // U(0) = {0,1,2}, U(1) = {0,1}, U(2) = {2}
        // cosine(0,1) = 2/sqrt(3·2) = 0.8165, cosine(0,2) = 1/sqrt(3) = 0.5774
        // jaccard(0,1) = 2/(3+2−2) = 0.6667, jaccard(0,2) = 1/3
        let favs = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 2)];
        let g = graph(&favs, 3, 3);
        let p = SimilarParams {
            k: 5,
            min_common: 1,
            similarity: Similarity::Cosine,
        };
        let rows = &similar_photos(&g, &[0], p)[0];
        assert_eq!(rows.iter().map(|r| r.photo).collect::<Vec<_>>(), vec![1, 2]);
        assert!((rows[0].score - 2.0 / 6f64.sqrt()).abs() < 1e-12);
        assert!((rows[1].score - 1.0 / 3f64.sqrt()).abs() < 1e-12);
        let j = SimilarParams {
            similarity: Similarity::Jaccard,
            ..p
        };
        let rows = &similar_photos(&g, &[0], j)[0];
        assert!((rows[0].score - 2.0 / 3.0).abs() < 1e-12);
        assert!((rows[1].score - 1.0 / 3.0).abs() < 1e-12);
        let strict = SimilarParams { min_common: 2, ..p };
        assert_eq!(similar_photos(&g, &[0], strict)[0].len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

        #[test]
        fn kernel_equals_naive_and_ignores_threads_and_order(
            favs in proptest::collection::vec((0u32..12, 0u32..25), 1..150),
            k in 1usize..8,
            min_common in 1u32..3,
            jaccard in any::<bool>(),
        ) {
            let params = SimilarParams {
                k,
                min_common,
                similarity: if jaccard { Similarity::Jaccard } else { Similarity::Cosine },
            };
            let g = graph(&favs, 12, 25);
            let all: Vec<u32> = (0..25).collect();
            let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool").install(|| similar_photos(&g, &all, params));
            let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("pool").install(|| similar_photos(&g, &all, params));
            prop_assert_eq!(&one, &two);
            let mut reversed = favs.clone();
            reversed.reverse();
            let g2 = graph(&reversed, 12, 25);
            prop_assert_eq!(&one, &similar_photos(&g2, &all, params));
            for p in 0..25u32 {
                let want = naive(&favs, 25, p, params);
                let got = &one[p as usize];
                prop_assert_eq!(got.len(), want.len(), "photo {}", p);
                for (g, w) in got.iter().zip(&want) {
                    prop_assert_eq!((g.photo, g.common), (w.0, w.2));
                    prop_assert!((g.score - w.1).abs() < 1e-9);
                }
            }
        }
    }
}
