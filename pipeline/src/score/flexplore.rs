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

/// Per-worker scratch space, reused across users.
struct Scratch {
    stamp: u32,
    /// `user_stamp[v] == stamp` ⇔ v ∈ N(u) for the current user.
    user_stamp: Vec<u32>,
    common: Vec<u32>,
    nscore: Vec<f64>,
    /// `photo_stamp[p] == stamp` ⇔ acc[p] holds this user's sum.
    photo_stamp: Vec<u32>,
    acc: Vec<f64>,
    /// `excluded[p] == stamp` ⇔ p may not be recommended to this user.
    excluded: Vec<u32>,
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
    /// `selected[p] == stamp` ⇔ p made this user's top list, at `position[p]`.
    selected: Vec<u32>,
    position: Vec<u32>,
}

impl Scratch {
    fn new(users: usize, photos: usize) -> Self {
        Self {
            stamp: 0,
            user_stamp: vec![0; users],
            common: vec![0; users],
            nscore: vec![0.0; users],
            photo_stamp: vec![0; photos],
            acc: vec![0.0; photos],
            excluded: vec![0; photos],
            blocked: vec![0; users],
            dismissed: vec![0; users],
            touched: Vec::new(),
            neighbors: Vec::new(),
            pairs: Vec::new(),
            selected: vec![0; photos],
            position: vec![0; photos],
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
            user: graph.user_ids.iter().map(|i| id_hash(i)).collect(),
            photo: graph.photo_ids.iter().map(|i| id_hash(i)).collect(),
        }
    }
}

/// FNV-1a of an id string: stable across runs, platforms and versions.
pub fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
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
        for v in [
            &mut s.user_stamp,
            &mut s.photo_stamp,
            &mut s.excluded,
            &mut s.blocked,
            &mut s.dismissed,
            &mut s.selected,
        ] {
            v.fill(0);
        }
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

    // 2. common(u, n): walk the favoriters of each of u's photos.
    for &p in my_favs {
        for &v in g.favoriters.row(p) {
            if s.user_stamp[v as usize] == stamp {
                s.common[v as usize] += 1;
            }
        }
    }

    // 3. Neighbor scores.
    for &n in &s.neighbors {
        let total = g.favorites.row(n).len() as u32;
        s.nscore[n as usize] = neighbor_score(s.common[n as usize], total);
    }

    // 4. Exclusions.
    for &p in my_favs {
        s.excluded[p as usize] = stamp;
    }
    for &p in g.dismissed_photos.row(u) {
        s.excluded[p as usize] = stamp;
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
            if s.photo_stamp[pi] != stamp {
                s.photo_stamp[pi] = stamp;
                s.acc[pi] = 0.0;
                s.touched.push(p);
            }
            s.acc[pi] += score;
            s.pairs.push((p, n));
        }
    }
    let candidates: Vec<(f64, u32)> = s
        .touched
        .iter()
        .filter(|&&p| {
            let o = g.owner[p as usize];
            s.excluded[p as usize] != stamp
                && o != u
                && (o == NO_OWNER || s.dismissed[o as usize] != stamp)
                && s.acc[p as usize] > 0.0
        })
        .map(|&p| (s.acc[p as usize], p))
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
        if s.selected[p as usize] != stamp {
            s.selected[p as usize] = stamp;
            s.position[p as usize] = selected as u32;
            selected += 1;
        }
    }
    let mut contributors: Vec<Vec<(f64, u32)>> = vec![Vec::new(); selected];
    for &(p, n) in &s.pairs {
        if s.selected[p as usize] == stamp {
            contributors[s.position[p as usize] as usize].push((s.nscore[n as usize], n));
        }
    }
    let neighbor_counts: Vec<u32> = contributors.iter().map(|c| c.len() as u32).collect();
    for c in &mut contributors {
        top_k(c, params.top_neighbors, |&x| x);
    }
    let rec = |&(score, p): &(f64, u32)| {
        let at = s.position[p as usize] as usize;
        PhotoRec {
            photo: p,
            score,
            neighbor_count: neighbor_counts[at],
            top_neighbors: contributors[at].iter().map(|&(_, v)| v).collect(),
            similar_to: Vec::new(),
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

    #[test]
    fn top_k_orders_by_score_then_id() {
        let mut v = vec![(1.0, 5), (2.0, 9), (1.0, 3), (2.0, 1), (0.5, 0)];
        top_k(&mut v, 3, |&x| x);
        assert_eq!(v, vec![(2.0, 1), (2.0, 9), (1.0, 3)]);
    }
}
