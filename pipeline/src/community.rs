//! A deterministic synthetic Flickr-like community, for the demo, the tests and the
//! benchmarks.
//!
//! Shape, chosen to resemble what the original photo-recommender saw:
//!
//! - taste clusters: each person has one, and 85% of their favourites are photos of
//!   that cluster;
//! - skewed activity: favourites per person follow a Pareto law (most people have a
//!   few dozen, some hit the 1000 cap the seed app used);
//! - photographers who also favourite: 60% of people upload photos, and some
//!   photographers are far more popular than others (another Pareto law);
//! - contacts: people follow photographers of their own cluster.
//!
//! The same [`DemoSettings`] (including the seed) always give the same tables.

use std::collections::HashSet;

use arrow_array::RecordBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::DemoSettings;
use crate::model::Table;
use crate::model::arrow::{string_array as strings, timestamp_array as times};
use crate::model::columns::TrackedUsersColumns;
use crate::raw::{MergeReport, RawTableError, merge_raw};
use crate::store::Storage;

/// The generated raw tables, in the contract's schemas.
#[derive(Debug, Clone)]
pub struct Community {
    /// `favorites`.
    pub favorites: RecordBatch,
    /// `photos`.
    pub photos: RecordBatch,
    /// `contacts`.
    pub contacts: RecordBatch,
    /// `tracked_users`.
    pub tracked_users: RecordBatch,
}

const THEMES: [&str; 16] = [
    "macro",
    "street",
    "landscape",
    "birds",
    "portrait",
    "architecture",
    "astro",
    "film",
    "night",
    "flowers",
    "ocean",
    "mountains",
    "rain",
    "markets",
    "trains",
    "winter",
];
const ADJECTIVES: [&str; 12] = [
    "Quiet", "Golden", "Blue", "Early", "Lost", "Small", "Bright", "Last", "Hidden", "Silver",
    "Wild", "Old",
];
const NOUNS: [&str; 12] = [
    "light", "harbour", "morning", "corner", "window", "path", "garden", "bridge", "shadow",
    "field", "river", "door",
];
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ra", "sen", "tor", "vi", "el", "na", "bo", "ju", "de", "fa", "qui", "zo",
    "an",
];

/// The NSID of synthetic person `i`: unique, and shaped like a real one.
pub fn person_id(i: usize) -> String {
    format!("{}@N0{}", 20_000_000 + i * 7, i % 8)
}

fn person_name(rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(2..4);
    let mut s: String = (0..n)
        .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
        .collect();
    if let Some(first) = s.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    s
}

/// Pareto-distributed whole number ≥ `min`, capped at `cap`.
fn pareto(rng: &mut ChaCha8Rng, min: f64, alpha: f64, cap: usize) -> usize {
    let u: f64 = rng.random::<f64>().max(1e-12);
    ((min / u.powf(1.0 / alpha)) as usize).clamp(min as usize, cap)
}

/// Picks an index by cumulative weight.
fn pick(rng: &mut ChaCha8Rng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len().saturating_sub(1))
}

/// Generates the community.
pub fn generate(settings: &DemoSettings) -> Community {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let n = settings.users;
    let clusters = settings.clusters.max(1);
    let cluster: Vec<usize> = (0..n).map(|_| rng.random_range(0..clusters)).collect();
    let names: Vec<String> = (0..n).map(|_| person_name(&mut rng)).collect();

    // Photos: (owner, weight), grouped per cluster with cumulative weights.
    let mut photo_owner = Vec::new();
    let mut photo_title = Vec::new();
    let mut photo_tags = Vec::new();
    let mut photo_upload = Vec::new();
    let mut by_cluster: Vec<(Vec<u32>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); clusters];
    for person in 0..n {
        if rng.random::<f64>() >= 0.6 {
            continue;
        }
        let fame = pareto(&mut rng, 1.0, 1.1, 1000) as f64;
        let count = pareto(&mut rng, 3.0, 1.3, 300);
        let theme = THEMES[cluster[person] % THEMES.len()];
        for _ in 0..count {
            let id = photo_owner.len() as u32;
            photo_owner.push(person);
            photo_title.push(format!(
                "{} {}",
                ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
                NOUNS[rng.random_range(0..NOUNS.len())]
            ));
            photo_tags.push(format!(
                "{theme} {}",
                NOUNS[rng.random_range(0..NOUNS.len())]
            ));
            photo_upload.push(1_500_000_000 + rng.random_range(0..200_000_000i64));
            let weight = fame * (0.2 + rng.random::<f64>());
            let (ids, cum) = &mut by_cluster[cluster[person]];
            let last = cum.last().copied().unwrap_or(0.0);
            ids.push(id);
            cum.push(last + weight);
        }
    }
    let nonempty: Vec<usize> = (0..clusters)
        .filter(|&c| !by_cluster[c].0.is_empty())
        .collect();

    // Favourites.
    let mut fav_user = Vec::new();
    let mut fav_photo = Vec::new();
    let mut fav_date = Vec::new();
    let mut fav_count = vec![0usize; n];
    let mut seen = HashSet::new();
    for person in 0..n {
        if nonempty.is_empty() {
            break;
        }
        let want = pareto(&mut rng, 8.0, 1.15, 1000);
        seen.clear();
        let mut tries = 0;
        while seen.len() < want && tries < want * 4 {
            tries += 1;
            let c = if rng.random::<f64>() < 0.85 && !by_cluster[cluster[person]].0.is_empty() {
                cluster[person]
            } else {
                nonempty[rng.random_range(0..nonempty.len())]
            };
            let (ids, cum) = &by_cluster[c];
            let photo = ids[pick(&mut rng, cum)];
            if photo_owner[photo as usize] == person || !seen.insert(photo) {
                continue;
            }
            fav_user.push(person);
            fav_photo.push(photo);
            fav_date.push(1_600_000_000 + rng.random_range(0..150_000_000i64));
        }
        fav_count[person] = seen.len();
    }

    // Contacts: a few photographers of one's own cluster.
    let mut contact_pairs = Vec::new();
    for person in 0..n {
        let (ids, cum) = &by_cluster[cluster[person]];
        if ids.is_empty() {
            continue;
        }
        let k = rng.random_range(0..12);
        let mut mine = HashSet::new();
        for _ in 0..k {
            let owner = photo_owner[ids[pick(&mut rng, cum)] as usize];
            if owner != person && mine.insert(owner) {
                contact_pairs.push((person, owner));
            }
        }
    }

    // Tracked users: the first people with at least 20 favourites.
    let tracked: Vec<usize> = (0..n)
        .filter(|&p| fav_count[p] >= 20)
        .take(settings.tracked_users)
        .collect();

    let photo_id = |p: u32| (50_000_000_000u64 + u64::from(p) * 13).to_string();
    let favorites = RecordBatch::try_new(
        Table::Favorites.schema(),
        vec![
            strings(fav_user.iter().map(|&u| Some(person_id(u))).collect()),
            strings(fav_photo.iter().map(|&p| Some(photo_id(p))).collect()),
            strings(
                fav_photo
                    .iter()
                    .map(|&p| Some(person_id(photo_owner[p as usize])))
                    .collect(),
            ),
            times(fav_date.iter().map(|&d| Some(d * 1_000_000)).collect()),
        ],
    );
    let photo_count = photo_owner.len();
    let photos = RecordBatch::try_new(
        Table::Photos.schema(),
        vec![
            strings((0..photo_count as u32).map(|p| Some(photo_id(p))).collect()),
            strings(photo_owner.iter().map(|&o| Some(person_id(o))).collect()),
            strings(
                photo_owner
                    .iter()
                    .map(|&o| Some(names[o].clone()))
                    .collect(),
            ),
            strings(photo_title.into_iter().map(Some).collect()),
            // No server or secret: these photos do not exist on Flickr, so pages show
            // placeholders rather than broken images.
            strings(vec![None; photo_count]),
            strings(vec![None; photo_count]),
            strings(photo_tags.into_iter().map(Some).collect()),
            times(photo_upload.iter().map(|&d| Some(d * 1_000_000)).collect()),
        ],
    );
    let contacts = RecordBatch::try_new(
        Table::Contacts.schema(),
        vec![
            strings(
                contact_pairs
                    .iter()
                    .map(|&(a, _)| Some(person_id(a)))
                    .collect(),
            ),
            strings(
                contact_pairs
                    .iter()
                    .map(|&(_, b)| Some(person_id(b)))
                    .collect(),
            ),
        ],
    );
    let tracked_users = RecordBatch::try_new(
        Table::TrackedUsers.schema(),
        vec![
            strings(tracked.iter().map(|&u| Some(person_id(u))).collect()),
            strings(
                tracked
                    .iter()
                    .map(|&u| Some(names[u].to_lowercase()))
                    .collect(),
            ),
            times(vec![Some(1_700_000_000_000_000); tracked.len()]),
        ],
    );
    // The schemas above are the contract's own, so building cannot fail; a failure
    // here is a bug in this function.
    #[allow(clippy::expect_used)]
    Community {
        favorites: favorites.expect("favorites matches its schema"),
        photos: photos.expect("photos matches its schema"),
        contacts: contacts.expect("contacts matches its schema"),
        tracked_users: tracked_users.expect("tracked_users matches its schema"),
    }
}

impl Community {
    /// The tracked users' NSIDs, in table order.
    pub fn tracked_ids(&self) -> Vec<String> {
        TrackedUsersColumns::new(&self.tracked_users)
            .map(|c| c.user_id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .flatten()
            .map(str::to_string)
            .collect()
    }
}

/// Writes the community into the raw tables (merging, like an import).
pub async fn write_community(
    storage: &Storage,
    community: &Community,
) -> Result<Vec<MergeReport>, RawTableError> {
    let mut reports = Vec::new();
    for (table, batch) in [
        (Table::Favorites, &community.favorites),
        (Table::Photos, &community.photos),
        (Table::Contacts, &community.contacts),
        (Table::TrackedUsers, &community.tracked_users),
    ] {
        reports.push(merge_raw(storage, table, vec![batch.clone()]).await?);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_community_other_seed_other_community() {
        let s = DemoSettings {
            users: 300,
            tracked_users: 10,
            clusters: 4,
            seed: 1,
        };
        let a = generate(&s);
        let b = generate(&s);
        assert_eq!(a.favorites, b.favorites);
        assert_eq!(a.tracked_users.num_rows(), 10);
        let c = generate(&DemoSettings { seed: 2, ..s });
        assert_ne!(a.favorites, c.favorites);
    }
}
