//! The Flexplore kernel: per-user neighbor scoring on the integer graph.
//!
//! For a user u (see `shared/reference.md`):
//!
//! - neighbors N(u) = owners of the photos u favourited, minus u;
//! - score(n) = 150 · sqrt(common(u,n) / (total(n) + 250)), where common is
//!   |F(u) ∩ F(n)| and total is |F(n)|; a neighbor with nothing in common scores 0;
//! - a photo scores the sum of score(n) over the neighbors who favourited it.
//!
//! Photo recs exclude u's favourites, u's own photos, dismissed photos and photos
//! by dismissed users. Photographer recs are the neighbors themselves, excluding
//! contacts and dismissed users. Zero scores are dropped. Ties break by score
//! descending, then id ascending (integer order is string order, see `prepare`).
//!
//! The same pass yields `explore`, Art Snob's serendipity list: a seeded random
//! sample of the user's candidate photos (everything a scoring neighbor
//! favourited, after the same exclusions), drawn by ranking the candidates on a
//! hash of (seed, user id, photo id). The hash is of the id strings, so the sample
//! does not depend on the integer ids, the thread count or the shard count.
//!
//! Users are independent, so Rayon scores them in parallel; each worker owns dense
//! scratch arrays (one slot per user and per photo) reset by generation stamps
//! rather than by clearing. Within one user the arithmetic runs in a fixed order
//! (neighbors ascending, photos ascending), so results do not depend on the thread
//! count or on the input order.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::prepare::{Graph, NO_OWNER};

/// The constant in front of the square root.
pub const SCALE: f64 = 150.0;
/// The damping added to a neighbor's total favourites.
pub const DAMPING: f64 = 250.0;

/// Kernel parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Photo recs kept per user.
    pub photo_recs: usize,
    /// Photographer recs kept per user.
    pub photographer_recs: usize,
    /// Neighbors listed per photo rec.
    pub top_neighbors: usize,
    /// Seed of the `explore` sample; `None` skips it.
    pub explore_seed: Option<u64>,
    /// Flexplore lists shorter than this are filled with popular photos
    /// marked as fallbacks (0: never).
    pub fallback_below: usize,
}

/// One recommended photo.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoRec {
    /// Photo id (integer).
    pub photo: u32,
    /// Sum of the scores of the neighbors who favourited it.
    pub score: f64,
    /// How many scoring neighbors favourited it.
    pub neighbor_count: u32,
    /// The best contributing neighbors, best first.
    pub top_neighbors: Vec<u32>,
    /// For `itemknn`: the user's favourites it is most similar to, best first.
    /// Empty for the other algorithms.
    pub similar_to: Vec<u32>,
    /// Not the user's own recommendation: a popular photo filling a list the
    /// user has too little data for.
    pub fallback: bool,
}

/// One recommended photographer.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotographerRec {
    /// The photographer (a neighbor).
    pub photographer: u32,
    /// score(n).
    pub score: f64,
    /// |F(u) ∩ F(n)|.
    pub common: u32,
    /// |F(n)|.
    pub total: u32,
}

/// A user's lists, ranked.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecs {
    /// The user.
    pub user: u32,
    /// Photo recs, rank 1 first.
    pub photos: Vec<PhotoRec>,
    /// Photographer recs, rank 1 first.
    pub photographers: Vec<PhotographerRec>,
    /// The `explore` sample, rank 1 first (empty without a seed).
    pub explore: Vec<PhotoRec>,
}

/// The neighbor score, exactly as the original photo-recommender computed it.
#[inline]
pub fn neighbor_score(common: u32, total: u32) -> f64 {
    if common == 0 {
        return 0.0;
    }
    SCALE * (f64::from(common) / (f64::from(total) + DAMPING)).sqrt()
}

/// Score descending, then id ascending.
#[inline]
fn rank_order(a: (f64, u32), b: (f64, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Keeps the best `k` of `items` in rank order.
pub fn top_k<T>(items: &mut Vec<T>, k: usize, key: impl Fn(&T) -> (f64, u32)) {
    let cmp = |a: &T, b: &T| rank_order(key(a), key(b));
    if items.len() > k {
        if k == 0 {
            items.clear();
            return;
        }
        items.select_nth_unstable_by(k - 1, cmp);
        items.truncate(k);
    }
    items.sort_unstable_by(cmp);
}

/// One photo's scratch. The fields a user's pass touches together share one
/// slot: a user touches about a thousand photos scattered over the whole
/// catalogue, so each photo costs a cache miss, and separate arrays cost one per
/// array.
#[derive(Debug, Clone, Copy, Default)]
struct PhotoSlot {
    /// `== stamp` ⇔ `acc` holds this user's sum.
    seen: u32,
    /// `== stamp` ⇔ the photo may not be recommended to this user; u's own
    /// favourites are marked first, which the common-favourites walk relies on.
    excluded: u32,
    /// `== stamp` ⇔ the photo made one of this user's lists, at `position`.
    selected: u32,
    /// Index of the photo among the user's selected photos.
    position: u32,
    /// Sum of the scores of the neighbors who favourited the photo.
    acc: f64,
}

/// Per-worker scratch space, reused across users.
struct Scratch {
    stamp: u32,
    /// `user_stamp[v] == stamp` ⇔ v ∈ N(u) for the current user.
    user_stamp: Vec<u32>,
    common: Vec<u32>,
    nscore: Vec<f64>,
    /// Per photo, packed (see [`PhotoSlot`]).
    photos: Vec<PhotoSlot>,
    /// `blocked[v] == stamp` ⇔ v is a contact or dismissed (photographer recs) …
    blocked: Vec<u32>,
    /// … and `dismissed[v] == stamp` ⇔ v is dismissed (photo recs).
    dismissed: Vec<u32>,
    touched: Vec<u32>,
    neighbors: Vec<u32>,
    /// (photo, neighbor) for every favourite of a scoring neighbor: the
    /// contributions, kept so each recommended photo's contributors are found
    /// without scanning all of its favoriters.
    pairs: Vec<(u32, u32)>,
}

impl Scratch {
    fn new(users: usize, photos: usize) -> Self {
        Self {
            stamp: 0,
            user_stamp: vec![0; users],
            common: vec![0; users],
            nscore: vec![0.0; users],
            photos: vec![PhotoSlot::default(); photos],
            blocked: vec![0; users],
            dismissed: vec![0; users],
            touched: Vec::new(),
            neighbors: Vec::new(),
            pairs: Vec::new(),
        }
    }
}

/// Scores every target of the graph on the current Rayon pool. The output is in
/// target order (ascending user id).
pub fn score_all(graph: &Graph, params: Params) -> Vec<UserRecs> {
    let users = graph.user_ids.len();
    let photos = graph.photo_ids.len();
    let hashes = params.explore_seed.map(|_| IdHashes::new(graph));
    let hashes = hashes.as_ref();
    graph
        .targets
        .par_iter()
        .with_min_len(16)
        .map_init(
            || Scratch::new(users, photos),
            |scratch, &u| score_user(graph, params, hashes, scratch, u),
        )
        .collect()
}

/// Stable hashes of every user and photo id string, for the `explore` draw.
pub struct IdHashes {
    /// Per user.
    pub user: Vec<u64>,
    /// Per photo.
    pub photo: Vec<u64>,
}

impl IdHashes {
    /// Hashes the graph's ids.
    pub fn new(graph: &Graph) -> Self {
        IdHashes {
            user: graph.user_ids.iter().map(id_hash).collect(),
            photo: graph.photo_ids.iter().map(id_hash).collect(),
        }
    }
}

/// FNV-1a of an id string: stable across runs, platforms and versions.
pub fn id_hash(id: &str) -> u64 {
    crate::shard::fnv1a(crate::shard::FNV_OFFSET, id.as_bytes())
}

/// SplitMix64's finaliser: spreads the bits of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `explore` draw of a (user, photo) pair under `seed`: uniform in (0, 1].
/// Candidates are ranked by it, so the top N are a uniform sample of N.
pub fn explore_key(seed: u64, user_hash: u64, photo_hash: u64) -> f64 {
    let h = mix(seed ^ mix(user_hash ^ mix(photo_hash)));
    ((h >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
}

/// How [`count_common`] finds |F(u) ∩ F(n)| for every neighbor n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommonWalk {
    /// Walk the favoriters of each of u's photos, counting the neighbors among
    /// them: Σ |favoriters(p)| over p ∈ F(u) steps, dominated by popular photos.
    Favoriters,
    /// Walk each neighbor's favourites, counting u's (marked) photos among them:
    /// Σ |F(n)| over n ∈ N(u) steps, dominated by prolific favoriters.
    Neighbors,
}

impl CommonWalk {
    /// The walk with fewer steps for this user (two sums over CSR offsets). On the
    /// 1.15M-favourite benchmark community the neighbors walk is 3.7× shorter in
    /// total; on data with a few enormous favourite lists the other can win.
    fn cheaper(g: &Graph, my_favs: &[u32], neighbors: &[u32]) -> Self {
        let favoriters: usize = my_favs.iter().map(|&p| g.favoriters.row(p).len()).sum();
        let favorites: usize = neighbors.iter().map(|&n| g.favorites.row(n).len()).sum();
        if favorites <= favoriters {
            CommonWalk::Neighbors
        } else {
            CommonWalk::Favoriters
        }
    }
}

/// Fills `s.common[n]` for every neighbor n of the current user. Needs
/// `s.user_stamp` marking the neighbors (with `s.common` zeroed) and
/// `s.photos[p].excluded` marking the user's favourites.
fn count_common(g: &Graph, s: &mut Scratch, my_favs: &[u32], walk: CommonWalk) {
    let stamp = s.stamp;
    match walk {
        CommonWalk::Favoriters => {
            for &p in my_favs {
                for &v in g.favoriters.row(p) {
                    if s.user_stamp[v as usize] == stamp {
                        s.common[v as usize] += 1;
                    }
                }
            }
        }
        CommonWalk::Neighbors => {
            for &n in &s.neighbors {
                s.common[n as usize] = g
                    .favorites
                    .row(n)
                    .iter()
                    .filter(|&&p| s.photos[p as usize].excluded == stamp)
                    .count() as u32;
            }
        }
    }
}

fn score_user(
    g: &Graph,
    params: Params,
    hashes: Option<&IdHashes>,
    s: &mut Scratch,
    u: u32,
) -> UserRecs {
    s.stamp = s.stamp.wrapping_add(1);
    if s.stamp == 0 {
        // Wrapped after 2^32 users: clear once so stale stamps cannot match.
        for v in [&mut s.user_stamp, &mut s.blocked, &mut s.dismissed] {
            v.fill(0);
        }
        s.photos.fill(PhotoSlot::default());
        s.stamp = 1;
    }
    let stamp = s.stamp;
    let my_favs = g.favorites.row(u);

    // 1. Neighbors: distinct owners of u's favourites, u excluded.
    s.neighbors.clear();
    for &p in my_favs {
        let o = g.owner[p as usize];
        if o != NO_OWNER && o != u && s.user_stamp[o as usize] != stamp {
            s.user_stamp[o as usize] = stamp;
            s.common[o as usize] = 0;
            s.nscore[o as usize] = 0.0;
            s.neighbors.push(o);
        }
    }
    s.neighbors.sort_unstable();

    // 2. common(u, n) = |F(u) ∩ F(n)|, by the cheaper walk (both count exactly).
    //    u's favourites are marked first: the neighbors walk needs the marks, and
    //    they are the first of u's exclusions anyway.
    for &p in my_favs {
        s.photos[p as usize].excluded = stamp;
    }
    count_common(g, s, my_favs, CommonWalk::cheaper(g, my_favs, &s.neighbors));

    // 3. Neighbor scores.
    for &n in &s.neighbors {
        let total = g.favorites.row(n).len() as u32;
        s.nscore[n as usize] = neighbor_score(s.common[n as usize], total);
    }

    // 4. The other exclusions.
    for &p in g.dismissed_photos.row(u) {
        s.photos[p as usize].excluded = stamp;
    }
    for &v in g.dismissed_users.row(u) {
        s.dismissed[v as usize] = stamp;
        s.blocked[v as usize] = stamp;
    }
    for &v in g.contacts.row(u) {
        s.blocked[v as usize] = stamp;
    }

    // 5. Photo candidates: sum the scores of the neighbors who favourited each one.
    s.touched.clear();
    s.pairs.clear();
    for &n in &s.neighbors {
        let score = s.nscore[n as usize];
        if score <= 0.0 {
            continue;
        }
        for &p in g.favorites.row(n) {
            let pi = p as usize;
            let slot = &mut s.photos[pi];
            if slot.seen != stamp {
                slot.seen = stamp;
                slot.acc = 0.0;
                s.touched.push(p);
            }
            slot.acc += score;
            s.pairs.push((p, n));
        }
    }
    let candidates: Vec<(f64, u32)> = s
        .touched
        .iter()
        .filter(|&&p| {
            let o = g.owner[p as usize];
            let slot = &s.photos[p as usize];
            slot.excluded != stamp
                && o != u
                && (o == NO_OWNER || s.dismissed[o as usize] != stamp)
                && slot.acc > 0.0
        })
        .map(|&p| (s.photos[p as usize].acc, p))
        .collect();
    let mut explore: Vec<(f64, u32)> = match (params.explore_seed, hashes) {
        (Some(seed), Some(h)) => candidates
            .iter()
            .map(|&(_, p)| {
                (
                    explore_key(seed, h.user[u as usize], h.photo[p as usize]),
                    p,
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    top_k(&mut explore, params.photo_recs, |&x| x);
    let mut photo_recs = candidates;
    top_k(&mut photo_recs, params.photo_recs, |&x| x);

    // Contributors of each selected photo (either list), from the recorded
    // contributions.
    let mut selected = 0usize;
    for &(_, p) in photo_recs.iter().chain(&explore) {
        let slot = &mut s.photos[p as usize];
        if slot.selected != stamp {
            slot.selected = stamp;
            slot.position = selected as u32;
            selected += 1;
        }
    }
    let mut contributors: Vec<Vec<(f64, u32)>> = vec![Vec::new(); selected];
    for &(p, n) in &s.pairs {
        let slot = &s.photos[p as usize];
        if slot.selected == stamp {
            contributors[slot.position as usize].push((s.nscore[n as usize], n));
        }
    }
    let neighbor_counts: Vec<u32> = contributors.iter().map(|c| c.len() as u32).collect();
    for c in &mut contributors {
        top_k(c, params.top_neighbors, |&x| x);
    }
    let rec = |&(score, p): &(f64, u32)| {
        let at = s.photos[p as usize].position as usize;
        PhotoRec {
            photo: p,
            score,
            neighbor_count: neighbor_counts[at],
            top_neighbors: contributors[at].iter().map(|&(_, v)| v).collect(),
            similar_to: Vec::new(),
            fallback: false,
        }
    };
    let photos = photo_recs.iter().map(rec).collect();
    let explore = explore.iter().map(rec).collect();

    // 6. Photographer recs: the scoring neighbors, minus contacts and dismissed.
    let mut photographers: Vec<PhotographerRec> = s
        .neighbors
        .iter()
        .filter(|&&n| s.nscore[n as usize] > 0.0 && s.blocked[n as usize] != stamp)
        .map(|&n| PhotographerRec {
            photographer: n,
            score: s.nscore[n as usize],
            common: s.common[n as usize],
            total: g.favorites.row(n).len() as u32,
        })
        .collect();
    top_k(&mut photographers, params.photographer_recs, |r| {
        (r.score, r.photographer)
    });

    UserRecs {
        user: u,
        photos,
        photographers,
        explore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbor_score_matches_the_formula() {
        assert_eq!(neighbor_score(0, 10), 0.0);
        // 150 * sqrt(50 / (250 + 250)) = 150 * sqrt(0.1)
        assert!((neighbor_score(50, 250) - 150.0 * 0.1f64.sqrt()).abs() < 1e-12);
    }

    proptest::proptest! {
        /// Both ways of counting common favourites give the same counts, and the
        /// counts equal a set intersection.
        #[test]
        fn both_common_walks_count_the_intersection(
            favs in proptest::collection::vec((0u32..12, 0u32..30), 1..200),
            owners in proptest::collection::vec(0u32..12, 30),
        ) {
            use crate::score::prepare::Csr;
            let favorites = Csr::from_pairs(12, favs);
            let graph = Graph {
                user_ids: (0..12).map(|i| format!("{i:02}@N00")).collect(),
                photo_ids: (0..30).map(|i| format!("{i:03}")).collect(),
                favoriters: favorites.transpose(30),
                favorites,
                owner: owners,
                ..Graph::default()
            };
            for u in 0..12u32 {
                let mine = graph.favorites.row(u);
                let mut neighbors: Vec<u32> = mine
                    .iter()
                    .map(|&p| graph.owner[p as usize])
                    .filter(|&o| o != u)
                    .collect();
                neighbors.sort_unstable();
                neighbors.dedup();
                let expected: Vec<u32> = neighbors
                    .iter()
                    .map(|&n| graph.favorites.row(n).iter().filter(|p| mine.contains(p)).count() as u32)
                    .collect();
                for walk in [CommonWalk::Favoriters, CommonWalk::Neighbors] {
                    let mut s = Scratch::new(12, 30);
                    s.stamp = 1;
                    for &p in mine {
                        s.photos[p as usize].excluded = 1;
                    }
                    for &n in &neighbors {
                        s.user_stamp[n as usize] = 1;
                    }
                    s.neighbors = neighbors.clone();
                    count_common(&graph, &mut s, mine, walk);
                    let counts: Vec<u32> = neighbors.iter().map(|&n| s.common[n as usize]).collect();
                    proptest::prop_assert_eq!(&counts, &expected, "walk {:?}", walk);
                }
            }
        }
    }

    #[test]
    fn top_k_orders_by_score_then_id() {
        let mut v = vec![(1.0, 5), (2.0, 9), (1.0, 3), (2.0, 1), (0.5, 0)];
        top_k(&mut v, 3, |&x| x);
        assert_eq!(v, vec![(2.0, 1), (2.0, 9), (1.0, 3)]);
    }
}
