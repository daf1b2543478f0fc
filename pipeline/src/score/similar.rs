//! Similar photos: item-to-item neighbours by co-favourites, precomputed per photo
//! as Rec-a-Sketch precomputed its rows.
//!
//! For photos p and q, with U(x) the users who favourited x and
//! co(p,q) = |U(p) ∩ U(q)|:
//!
//! - `cosine`  = co / sqrt(|U(p)| · |U(q)|)
//! - `jaccard` = co / (|U(p)| + |U(q)| − co)
//! - `bm25`    = c(p) · c(q) · Σ_{u ∈ U(p) ∩ U(q)} idf(u)², the weighting the
//!   `implicit` library's `BM25Recommender` uses (binary favourites):
//!   c(x) = (K1 + 1) / (K1 · ((1 − B) + B · |U(x)| / avg|U|) + 1) and
//!   idf(u) = ln(N) − ln(1 + |F(u)|), with N the number of favourited photos and
//!   avg|U| the mean favoriters per photo.
//!
//! Only pairs with co ≥ `min_common` count. Each source photo keeps its top K by
//! score descending, then photo id ascending. The work is sparse: a source photo
//! touches only the photos its favoriters also favourited, so the cost grows with
//! co-occurrences, not with photos². Sources are scored in parallel with one dense
//! accumulator per worker, and the arithmetic for one source runs in a fixed order,
//! so results do not depend on the thread count.

use super::prepare::Graph;
use rayon::prelude::*;

pub use crate::model::Similarity;

impl Similarity {
    /// The score of a pair from its co-occurrence and the two degrees, for the
    /// measures that need nothing else (`bm25` is scored by [`Bm25Weights`]).
    #[inline]
    pub fn score(self, common: u32, deg_p: u32, deg_q: u32) -> f64 {
        let c = f64::from(common);
        match self {
            Similarity::Cosine | Similarity::Bm25 => {
                c / (f64::from(deg_p) * f64::from(deg_q)).sqrt()
            }
            Similarity::Jaccard => c / (f64::from(deg_p) + f64::from(deg_q) - c),
        }
    }
}

/// BM25's K1 and B.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    /// Term-frequency saturation.
    pub k1: f64,
    /// Length normalisation, 0 to 1.
    pub b: f64,
}

impl Default for Bm25 {
    /// `implicit`'s `BM25Recommender` defaults.
    fn default() -> Self {
        Bm25 { k1: 1.2, b: 0.75 }
    }
}

/// The per-photo and per-user factors of BM25 similarity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bm25Weights {
    /// c(x) per photo.
    pub photo: Vec<f64>,
    /// idf(u)² per user.
    pub idf2: Vec<f64>,
}

impl Bm25Weights {
    /// Computes the weights of a graph.
    pub fn new(graph: &Graph, bm25: Bm25) -> Self {
        let photos = graph.photo_ids.len();
        let n = (0..photos as u32)
            .filter(|&p| !graph.favoriters.row(p).is_empty())
            .count()
            .max(1) as f64;
        let avg = graph.favoriters.values.len() as f64 / n;
        let photo = (0..photos as u32)
            .map(|p| {
                let len = graph.favoriters.row(p).len() as f64;
                let norm = (1.0 - bm25.b) + bm25.b * len / avg;
                (bm25.k1 + 1.0) / (bm25.k1 * norm + 1.0)
            })
            .collect();
        let idf2 = (0..graph.user_ids.len() as u32)
            .map(|u| {
                let idf = n.ln() - (graph.favorites.row(u).len() as f64).ln_1p();
                idf * idf
            })
            .collect();
        Bm25Weights { photo, idf2 }
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
    /// K1 and B, used by `bm25` only.
    pub bm25: Bm25,
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
    let bm25 =
        (params.similarity == Similarity::Bm25).then(|| Bm25Weights::new(graph, params.bm25));
    // 1/sqrt(|U(x)|) per photo, so cosine is two multiplications per candidate.
    let inv_norm: Vec<f64> = if params.similarity == Similarity::Cosine {
        (0..photos as u32)
            .map(|q| 1.0 / (graph.favoriters.row(q).len().max(1) as f64).sqrt())
            .collect()
    } else {
        Vec::new()
    };
    let ctx = Context {
        graph,
        bm25: bm25.as_ref(),
        inv_norm: &inv_norm,
        params,
    };
    sources
        .par_iter()
        .with_min_len(64)
        .map_init(
            || Scratch {
                slot: vec![0u64; photos],
                weight: if bm25.is_some() {
                    vec![0.0; photos]
                } else {
                    Vec::new()
                },
                touched: Vec::new(),
                best: std::collections::BinaryHeap::new(),
                generation: 0,
            },
            |s, &p| top_similar(&ctx, s, p),
        )
        .collect()
}

/// What every source's computation reads.
struct Context<'a> {
    graph: &'a Graph,
    bm25: Option<&'a Bm25Weights>,
    inv_norm: &'a [f64],
    params: SimilarParams,
}

/// A candidate, ordered by rank: greater is better (score descending, then photo
/// id ascending), so a min-heap of `Reverse<Ranked>` keeps the K best with the
/// worst on top.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ranked(SimilarRow);

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .score
            .total_cmp(&other.0.score)
            .then(other.0.photo.cmp(&self.0.photo))
    }
}

/// Per-worker scratch of the similar-photos kernel.
struct Scratch {
    /// Per photo: the generation in the high 32 bits, the co-favourite count in
    /// the low 32 — one array, so the inner loop touches one cache line per photo.
    slot: Vec<u64>,
    /// Σ idf(u)² over shared users, for `bm25`.
    weight: Vec<f64>,
    touched: Vec<u32>,
    best: std::collections::BinaryHeap<std::cmp::Reverse<Ranked>>,
    generation: u32,
}

fn top_similar(ctx: &Context<'_>, s: &mut Scratch, p: u32) -> Vec<SimilarRow> {
    let (graph, params) = (ctx.graph, ctx.params);
    if params.k == 0 {
        return Vec::new();
    }
    s.generation = s.generation.wrapping_add(1);
    if s.generation == 0 {
        s.slot.fill(0);
        s.generation = 1;
    }
    let g = u64::from(s.generation) << 32;
    s.touched.clear();
    // Favoriters ascending, then their photos ascending: a fixed order, so the
    // floating-point sums do not depend on the thread count.
    for &v in graph.favoriters.row(p) {
        let idf2 = ctx.bm25.map_or(0.0, |w| w.idf2[v as usize]);
        for &q in graph.favorites.row(v) {
            let qi = q as usize;
            let e = &mut s.slot[qi];
            if *e & !0xffff_ffff != g {
                *e = g;
                s.touched.push(q);
                if ctx.bm25.is_some() {
                    s.weight[qi] = 0.0;
                }
            }
            *e += 1;
            if ctx.bm25.is_some() {
                s.weight[qi] += idf2;
            }
        }
    }
    let deg_p = graph.favoriters.row(p).len() as u32;
    let min_common = params.min_common.max(1);
    s.best.clear();
    for &q in &s.touched {
        let common = (s.slot[q as usize] & 0xffff_ffff) as u32;
        if q == p || common < min_common {
            continue;
        }
        let score = match (ctx.bm25, params.similarity) {
            (Some(w), _) => w.photo[p as usize] * w.photo[q as usize] * s.weight[q as usize],
            (None, Similarity::Cosine) => {
                f64::from(common) * ctx.inv_norm[p as usize] * ctx.inv_norm[q as usize]
            }
            (None, m) => m.score(common, deg_p, graph.favoriters.row(q).len() as u32),
        };
        let cand = Ranked(SimilarRow {
            photo: q,
            score,
            common,
        });
        if s.best.len() < params.k {
            s.best.push(std::cmp::Reverse(cand));
        } else if let Some(mut worst) = s.best.peek_mut()
            && cand > worst.0
        {
            *worst = std::cmp::Reverse(cand);
        }
    }
    let mut rows: Vec<SimilarRow> = s.best.drain().map(|r| r.0.0).collect();
    rows.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.photo.cmp(&b.photo)));
    rows
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
            community: (0..users as u32).collect(),
        }
    }

    const BM25: Bm25 = Bm25 { k1: 1.2, b: 0.75 };

    /// Straight from the definitions, with sets: every candidate, ranked.
    fn naive(
        favs: &[(u32, u32)],
        photos: usize,
        p: u32,
        params: SimilarParams,
    ) -> Vec<(u32, f64, u32)> {
        let mut by_photo: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        let mut by_user: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for &(u, q) in favs {
            by_photo.entry(q).or_default().insert(u);
            by_user.entry(u).or_default().insert(q);
        }
        // BM25 straight from implicit's bm25_weight over the photo × user matrix.
        let n = by_photo.len() as f64;
        let avg = favs.iter().collect::<BTreeSet<_>>().len() as f64 / n;
        let c = |x: &BTreeSet<u32>| {
            let norm = (1.0 - params.bm25.b) + params.bm25.b * x.len() as f64 / avg;
            (params.bm25.k1 + 1.0) / (params.bm25.k1 * norm + 1.0)
        };
        let idf = |u: u32| n.ln() - (1.0 + by_user[&u].len() as f64).ln();
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
                    // implicit: Σ_u w(p,u)·w(q,u), w(x,u) = c(x)·idf(u).
                    Similarity::Bm25 => up
                        .intersection(uq)
                        .map(|&u| (c(up) * idf(u)) * (c(uq) * idf(u)))
                        .sum(),
                };
                Some((q, s, co as u32))
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
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
            bm25: BM25,
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

    #[test]
    fn hand_computed_bm25() {
        // Photos 0..3, users 0..3. U(0) = {0,1}, U(1) = {0,1}, U(2) = {1}.
        // N = 3 photos, avg|U| = 5/3. F(0) = {0,1}, F(1) = {0,1,2}.
        // idf(0) = ln 3 − ln 3 = 0, idf(1) = ln 3 − ln 4.
        // c(0) = c(1) = 2.2 / (1.2 · (0.25 + 0.75 · 2 / (5/3)) + 1) = 2.2 / 2.38.
        // bm25(0,1) = c(0) · c(1) · (idf(0)² + idf(1)²) = (2.2/2.38)² · ln(3/4)².
        // c(2) = 2.2 / (1.2 · (0.25 + 0.75 · 1 / (5/3)) + 1) = 2.2 / 1.84, so
        // bm25(0,2) = c(0) · c(2) · idf(1)² ranks first: the rarer photo weighs more.
        let favs = [(0, 0), (1, 0), (0, 1), (1, 1), (1, 2)];
        let g = graph(&favs, 2, 3);
        let p = SimilarParams {
            k: 5,
            min_common: 1,
            similarity: Similarity::Bm25,
            bm25: BM25,
        };
        let rows = &similar_photos(&g, &[0], p)[0];
        let want1 = (2.2f64 / 2.38).powi(2) * (0.75f64).ln().powi(2);
        let want2 = (2.2f64 / 2.38) * (2.2 / 1.84) * (0.75f64).ln().powi(2);
        assert_eq!((rows[0].photo, rows[0].common), (2, 1));
        assert!(
            (rows[0].score - want2).abs() < 1e-12,
            "{} vs {want2}",
            rows[0].score
        );
        assert_eq!((rows[1].photo, rows[1].common), (1, 2));
        assert!((rows[1].score - want1).abs() < 1e-12);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

        #[test]
        fn kernel_equals_naive_and_ignores_threads_and_order(
            favs in proptest::collection::vec((0u32..12, 0u32..25), 1..150),
            k in 1usize..8,
            min_common in 1u32..3,
            measure in 0usize..3,
            k1 in 0.5f64..150.0,
            b in 0.0f64..1.0,
        ) {
            let params = SimilarParams {
                k,
                min_common,
                similarity: [Similarity::Cosine, Similarity::Jaccard, Similarity::Bm25][measure],
                bm25: Bm25 { k1, b },
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
                let all = naive(&favs, 25, p, params);
                let want = &all[..all.len().min(k)];
                let got = &one[p as usize];
                prop_assert_eq!(got.len(), want.len(), "photo {}", p);
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    // Each row's score and co-favourites equal the reference's for
                    // that photo, and the ranked scores agree position by position.
                    let r = all.iter().find(|r| r.0 == g.photo).expect("kernel row is a candidate");
                    prop_assert!((g.score - r.1).abs() < 1e-9);
                    prop_assert_eq!(g.common, r.2);
                    prop_assert!((g.score - w.1).abs() < 1e-9);
                    // Where the reference has no near-tie, the photo is the same too.
                    let near = |j: usize| all.get(j).is_some_and(|o| (o.1 - w.1).abs() < 1e-9);
                    if !near(i + 1) && (i == 0 || !near(i - 1)) {
                        prop_assert_eq!(g.photo, w.0);
                    }
                }
            }
        }
    }
}
