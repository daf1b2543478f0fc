//! Exactness tests: a hand-computed example, a naive reference on random inputs,
//! and invariance to thread count and input order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use proptest::prelude::*;

use super::*;
use crate::model::columns::{PhotoRecsColumns, PhotographerRecsColumns};
use crate::score::compute::pool;
use crate::score::output::{Names, photo_recs_chunk, photographer_recs_batch};
use crate::score::parts::{part_ranges, split_rows};
use crate::store::ParquetEncoder;

/// Prepares and scores in memory with the run's own stages and row builders:
/// raw batches in, `photo_recs` and `photographer_recs` out.
fn compute(
    inputs: &Inputs,
    options: ScoreOptions,
    params: &AlgorithmParams,
    threads: usize,
) -> Result<(RecordBatch, RecordBatch, PrepareStats), ScoreError> {
    let pool = pool(threads)?;
    let (graph, stats) = pool.install(|| prepare::prepare(inputs, options.all_users))?;
    let recs = pool.install(|| algorithms::recommend(&graph, params));
    let names = Names::new(&graph);
    Ok((
        photo_recs_chunk(&graph, &names, &recs, 0..graph.targets.len())?,
        photographer_recs_batch(&names, &graph.targets, &recs.photographers)?,
        stats,
    ))
}

const A: &str = "1@N01";
const B: &str = "2@N01";
const C: &str = "3@N01";
const D: &str = "4@N01";

fn strings(v: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn favorites(rows: &[(&str, &str, Option<&str>)]) -> RecordBatch {
    RecordBatch::try_new(
        Table::Favorites.schema(),
        vec![
            strings(rows.iter().map(|r| Some(r.0)).collect()),
            strings(rows.iter().map(|r| Some(r.1)).collect()),
            strings(rows.iter().map(|r| r.2).collect()),
            Arc::new(TimestampMicrosecondArray::from(vec![None; rows.len()]).with_timezone("UTC")),
        ],
    )
    .expect("favorites batch")
}

fn tracked(users: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        Table::TrackedUsers.schema(),
        vec![
            strings(users.iter().map(|u| Some(*u)).collect()),
            strings(vec![None; users.len()]),
            Arc::new(TimestampMicrosecondArray::from(vec![None; users.len()]).with_timezone("UTC")),
        ],
    )
    .expect("tracked batch")
}

fn contacts(rows: &[(&str, &str)]) -> RecordBatch {
    RecordBatch::try_new(
        Table::Contacts.schema(),
        vec![
            strings(rows.iter().map(|r| Some(r.0)).collect()),
            strings(rows.iter().map(|r| Some(r.1)).collect()),
        ],
    )
    .expect("contacts batch")
}

fn dismissals(rows: &[(&str, Option<&str>, Option<&str>)]) -> RecordBatch {
    RecordBatch::try_new(
        Table::Dismissals.schema(),
        vec![
            strings(rows.iter().map(|r| Some(r.0)).collect()),
            strings(rows.iter().map(|r| r.1).collect()),
            strings(rows.iter().map(|r| r.2).collect()),
        ],
    )
    .expect("dismissals batch")
}

const PARAMS: Params = Params {
    explore_seed: None,
    fallback_below: 0,
    photo_recs: 100,
    photographer_recs: 50,
    top_neighbors: 3,
};

/// Flexplore alone, so `photo_recs` holds its rows only.
fn only(params: Params) -> AlgorithmParams {
    AlgorithmParams {
        algorithms: vec![Algorithm::Flexplore],
        flexplore: params,
        itemknn: crate::score::similar::SimilarParams {
            k: 20,
            min_common: 1,
            similarity: crate::score::similar::Similarity::Cosine,
            bm25: crate::score::similar::Bm25::default(),
        },
    }
}

/// (user, photo, score, top_neighbors) per photo_recs row.
type PhotoRow = (String, i32, String, f64, Vec<String>);

fn photo_rows(batch: &RecordBatch) -> Vec<PhotoRow> {
    let c = PhotoRecsColumns::new(batch).expect("photo_recs columns");
    let (user, rank, photo, score, top) = (c.user_id, c.rank, c.photo_id, c.score, c.top_neighbors);
    (0..batch.num_rows())
        .map(|i| {
            let t = top.value(i);
            let t = t.as_string::<i32>();
            (
                user.value(i).to_string(),
                rank.value(i),
                photo.value(i).to_string(),
                score.value(i),
                t.iter().flatten().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// (user, rank, photographer, score, common, total).
type PhotographerRow = (String, i32, String, f64, i64, i64);

fn photographer_rows(batch: &RecordBatch) -> Vec<PhotographerRow> {
    let c = PhotographerRecsColumns::new(batch).expect("photographer_recs columns");
    let (user, rank, who, score) = (c.user_id, c.rank, c.photographer_id, c.score);
    let (common, total) = (c.common_favorites, c.total_favorites);
    (0..batch.num_rows())
        .map(|i| {
            (
                user.value(i).to_string(),
                rank.value(i),
                who.value(i).to_string(),
                score.value(i),
                common.value(i),
                total.value(i),
            )
        })
        .collect()
}

/// The example community.
///
/// Owners: photos 10, 20 by B; 11, 21 by C; 12, 30 by D; 40 by A.
/// F(A) = {10, 11}              → N(A) = {owner(10), owner(11)} = {B, C}
/// F(B) = {11, 21, 30}          → common(A,B) = |{11}| = 1,     total(B) = 3
/// F(C) = {10, 11, 20, 30, 40}  → common(A,C) = |{10, 11}| = 2, total(C) = 5
/// F(D) = {10}                  (D is no neighbor of A: A favourited no photo of D's)
///
/// score(B) = 150·sqrt(1 / (3 + 250)) = 150·sqrt(1/253) = 9.430419201928972
/// score(C) = 150·sqrt(2 / (5 + 250)) = 150·sqrt(2/255) = 13.28422328310143
///
/// Candidates (photos favourited by B or C):
///   10, 11 — already A's favourites, excluded
///   40     — A's own photo, excluded
///   30     — favourited by B and C: 9.430419… + 13.284223… = 22.714642485030403
///   20     — favourited by C:       13.28422328310143
///   21     — favourited by B:       9.430419201928972
fn example() -> Inputs {
    Inputs {
        favorites: vec![favorites(&[
            (A, "10", Some(B)),
            (A, "11", Some(C)),
            (B, "11", Some(C)),
            (B, "21", Some(C)),
            (B, "30", Some(D)),
            (C, "10", Some(B)),
            (C, "11", Some(C)),
            (C, "20", Some(B)),
            (C, "30", Some(D)),
            (C, "40", Some(A)),
            (D, "10", Some(B)),
        ])],
        tracked_users: vec![tracked(&[A])],
        ..Inputs::default()
    }
}

#[test]
fn hand_computed_example_matches_the_formula() {
    let (photos, photographers, _) =
        compute(&example(), ScoreOptions::default(), &only(PARAMS), 1).expect("scores");
    let b = 150.0 * (1.0f64 / 253.0).sqrt();
    let c = 150.0 * (2.0f64 / 255.0).sqrt();
    assert!((b - 9.430419201928972).abs() < 1e-12);
    assert!((c - 13.28422328310143).abs() < 1e-12);
    let rows = photo_rows(&photos);
    let got: Vec<(&str, i32, &str)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1, r.2.as_str()))
        .collect();
    assert_eq!(got, vec![(A, 1, "30"), (A, 2, "20"), (A, 3, "21")]);
    assert!((rows[0].3 - 22.714642485030403).abs() < 1e-9);
    assert!((rows[1].3 - c).abs() < 1e-12);
    assert!((rows[2].3 - b).abs() < 1e-12);
    // Photo 30 is explained by C (the better neighbor) then B.
    assert_eq!(rows[0].4, vec![C.to_string(), B.to_string()]);
    let owners = PhotoRecsColumns::new(&photos).expect("columns").owner_id;
    assert_eq!(owners.value(0), D);

    let ph = photographer_rows(&photographers);
    assert_eq!(
        ph.iter()
            .map(|r| (r.1, r.2.as_str(), r.4, r.5))
            .collect::<Vec<_>>(),
        vec![(1, C, 2, 5), (2, B, 1, 3)]
    );
    assert!((ph[0].3 - c).abs() < 1e-12);
}

#[test]
fn contacts_and_dismissals_are_excluded() {
    let mut inputs = example();
    inputs.contacts = vec![contacts(&[(A, B)])];
    inputs.dismissals = vec![dismissals(&[(A, Some("20"), None), (A, None, Some(D))])];
    let (photos, photographers, _) =
        compute(&inputs, ScoreOptions::default(), &only(PARAMS), 1).expect("scores");
    // 20 is dismissed; 30 belongs to the dismissed D. Only 21 remains.
    let rows = photo_rows(&photos);
    assert_eq!(
        rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
        vec!["21"]
    );
    // B is a contact: photographer recs keep only C. Contacts still count as
    // neighbors for photo scores (21's score is B's).
    let ph = photographer_rows(&photographers);
    assert_eq!(ph.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(), vec![C]);
    assert!((rows[0].3 - 150.0 * (1.0f64 / 253.0).sqrt()).abs() < 1e-12);
}

#[test]
fn owners_can_come_from_the_photos_table() {
    let mut inputs = example();
    // Drop the owner of photo 30 from favorites; the photos table supplies it.
    let rows: Vec<(&str, &str, Option<&str>)> = vec![
        (A, "10", Some(B)),
        (A, "11", Some(C)),
        (B, "11", Some(C)),
        (B, "21", Some(C)),
        (B, "30", None),
        (C, "10", Some(B)),
        (C, "11", Some(C)),
        (C, "20", Some(B)),
        (C, "30", None),
        (C, "40", Some(A)),
        (D, "10", Some(B)),
    ];
    inputs.favorites = vec![favorites(&rows)];
    let photos = RecordBatch::try_new(
        Table::Photos.schema(),
        vec![
            strings(vec![Some("30")]),
            strings(vec![Some(D)]),
            strings(vec![Some("Dee")]),
            strings(vec![Some("Harbour")]),
            strings(vec![None]),
            strings(vec![None]),
            strings(vec![None]),
            Arc::new(TimestampMicrosecondArray::from(vec![None]).with_timezone("UTC")),
        ],
    )
    .expect("photos");
    inputs.photos = vec![photos];
    let (out, _, stats) =
        compute(&inputs, ScoreOptions::default(), &only(PARAMS), 1).expect("scores");
    assert_eq!(stats.favorites_without_owner, 0);
    let owners = PhotoRecsColumns::new(&out).expect("columns").owner_id;
    assert_eq!(owners.value(0), D);
}

#[test]
fn without_owners_flexplore_is_skipped_and_itemknn_and_global_popular_still_run() {
    // A and B share photo 10, A and C photo 11, B and C photo 12; no owners.
    let inputs = Inputs {
        favorites: vec![favorites(&[
            (A, "10", None),
            (A, "11", None),
            (B, "10", None),
            (B, "12", None),
            (C, "11", None),
            (C, "12", None),
        ])],
        tracked_users: vec![tracked(&[A])],
        ..Inputs::default()
    };
    let params = AlgorithmParams {
        algorithms: vec![
            Algorithm::Flexplore,
            Algorithm::Explore,
            Algorithm::ItemKnn,
            Algorithm::Popular,
        ],
        ..only(PARAMS)
    };
    let (recs, photographers, _) =
        compute(&inputs, ScoreOptions::default(), &params, 1).expect("scores without owners");
    let c = PhotoRecsColumns::new(&recs).expect("photo_recs columns");
    let rows: BTreeSet<(String, String)> = (0..recs.num_rows())
        .map(|i| {
            (
                c.algorithm.value(i).to_string(),
                c.photo_id.value(i).to_string(),
            )
        })
        .collect();
    // Photo 12 is the one A has not favourited: itemknn finds it through 10 and
    // 11, and popular counts every user (there is no neighbourhood).
    assert_eq!(
        rows,
        BTreeSet::from([
            ("itemknn".to_string(), "12".to_string()),
            ("popular".to_string(), "12".to_string()),
        ])
    );
    assert_eq!(photographers.num_rows(), 0);

    let no_tracked = Inputs {
        tracked_users: vec![],
        ..example()
    };
    let err =
        compute(&no_tracked, ScoreOptions::default(), &only(PARAMS), 1).expect_err("no targets");
    assert!(err.to_string().contains("--all-users"), "{err}");
}

/// A per-user implementation written straight from the reference text, with
/// ordered maps and no integer ids.
fn naive(
    favs: &[(String, String, Option<String>)],
    targets: &BTreeSet<String>,
    contacts: &[(String, String)],
    dismissed: &[(String, Option<String>, Option<String>)],
    params: Params,
) -> (Vec<PhotoRow>, Vec<PhotographerRow>) {
    let mut f: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (u, p, o) in favs {
        f.entry(u).or_default().insert(p);
        if let Some(o) = o {
            let e = owner.entry(p).or_insert(o);
            if o.as_str() < *e {
                *e = o;
            }
        }
    }
    let empty = BTreeSet::new();
    let (mut photo_out, mut photographer_out) = (Vec::new(), Vec::new());
    for u in targets {
        let fu = f.get(u.as_str()).unwrap_or(&empty);
        let neighbors: BTreeSet<&str> = fu
            .iter()
            .filter_map(|p| owner.get(p).copied())
            .filter(|o| *o != u)
            .collect();
        let mut nscore: BTreeMap<&str, (f64, usize, usize)> = BTreeMap::new();
        for n in &neighbors {
            let fnb = f.get(n).unwrap_or(&empty);
            let common = fu.intersection(fnb).count();
            let total = fnb.len();
            let score = if common == 0 {
                0.0
            } else {
                150.0 * (common as f64 / (total as f64 + 250.0)).sqrt()
            };
            nscore.insert(n, (score, common, total));
        }
        let my_contacts: BTreeSet<&str> = contacts
            .iter()
            .filter(|c| &c.0 == u)
            .map(|c| c.1.as_str())
            .collect();
        let dis_photos: BTreeSet<&str> = dismissed
            .iter()
            .filter(|d| &d.0 == u)
            .filter_map(|d| d.1.as_deref())
            .collect();
        let dis_users: BTreeSet<&str> = dismissed
            .iter()
            .filter(|d| &d.0 == u)
            .filter_map(|d| d.2.as_deref())
            .collect();
        let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
        for (n, (s, _, _)) in &nscore {
            if *s <= 0.0 {
                continue;
            }
            for p in f.get(n).unwrap_or(&empty) {
                *sums.entry(p).or_insert(0.0) += s;
            }
        }
        let mut ranked: Vec<(&str, f64)> = sums
            .into_iter()
            .filter(|(p, s)| {
                let o = owner.get(p).copied();
                *s > 0.0
                    && !fu.contains(p)
                    && !dis_photos.contains(p)
                    && o != Some(u.as_str())
                    && !o.is_some_and(|o| dis_users.contains(o))
            })
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        ranked.truncate(params.photo_recs);
        for (i, (p, s)) in ranked.into_iter().enumerate() {
            let mut contributors: Vec<(&str, f64)> = nscore
                .iter()
                .filter(|(n, (s, _, _))| *s > 0.0 && f.get(*n).is_some_and(|fnb| fnb.contains(p)))
                .map(|(n, (s, _, _))| (*n, *s))
                .collect();
            contributors.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            contributors.truncate(params.top_neighbors);
            photo_out.push((
                u.clone(),
                i as i32 + 1,
                p.to_string(),
                s,
                contributors.into_iter().map(|c| c.0.to_string()).collect(),
            ));
        }
        let mut people: Vec<(&str, (f64, usize, usize))> = nscore
            .into_iter()
            .filter(|(n, (s, _, _))| *s > 0.0 && !my_contacts.contains(n) && !dis_users.contains(n))
            .collect();
        people.sort_by(|a, b| b.1.0.total_cmp(&a.1.0).then(a.0.cmp(b.0)));
        people.truncate(params.photographer_recs);
        for (i, (n, (s, c, t))) in people.into_iter().enumerate() {
            photographer_out.push((
                u.clone(),
                i as i32 + 1,
                n.to_string(),
                s,
                c as i64,
                t as i64,
            ));
        }
    }
    (photo_out, photographer_out)
}

fn nsid(i: usize) -> String {
    format!("{}@N0{}", 100 + i, i % 3)
}

prop_compose! {
    fn community()(
        favs in proptest::collection::vec((0usize..14, 0usize..40, 0usize..10), 1..220),
        tracked in proptest::collection::btree_set(0usize..14, 1..6),
        contacts in proptest::collection::vec((0usize..14, 0usize..14), 0..20),
        dismissed in proptest::collection::vec((0usize..14, 0usize..40, any::<bool>()), 0..10),
        top in 1usize..6,
        keep in 1usize..12,
    ) -> (Vec<(String, String, Option<String>)>, BTreeSet<String>, Vec<(String, String)>, Vec<(String, Option<String>, Option<String>)>, Params) {
        // A photo's owner is a function of the photo (p % 14), and is sometimes
        // missing from a row (roll == 0), as happens with imported data.
        let favs = favs.into_iter().map(|(u, p, roll)| {
            (nsid(u), (1000 + p).to_string(), (roll != 0).then(|| nsid(p % 14)))
        }).collect();
        let tracked = tracked.into_iter().map(nsid).collect();
        let contacts = contacts.into_iter().map(|(a, b)| (nsid(a), nsid(b))).collect();
        let dismissed = dismissed.into_iter().map(|(u, x, is_photo)| {
            if is_photo { (nsid(u), Some((1000 + x).to_string()), None) } else { (nsid(u), None, Some(nsid(x % 14))) }
        }).collect();
        (favs, tracked, contacts, dismissed, Params { photo_recs: keep, photographer_recs: keep, top_neighbors: top, explore_seed: None, fallback_below: 0 })
    }
}

fn to_inputs(
    favs: &[(String, String, Option<String>)],
    targets: &BTreeSet<String>,
    cs: &[(String, String)],
    ds: &[(String, Option<String>, Option<String>)],
) -> Inputs {
    Inputs {
        favorites: vec![favorites(
            &favs
                .iter()
                .map(|(u, p, o)| (u.as_str(), p.as_str(), o.as_deref()))
                .collect::<Vec<_>>(),
        )],
        tracked_users: vec![tracked(
            &targets.iter().map(String::as_str).collect::<Vec<_>>(),
        )],
        contacts: vec![contacts(
            &cs.iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect::<Vec<_>>(),
        )],
        dismissals: vec![dismissals(
            &ds.iter()
                .map(|(u, p, d)| (u.as_str(), p.as_deref(), d.as_deref()))
                .collect::<Vec<_>>(),
        )],
        photos: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn kernel_equals_naive_reference((favs, targets, cs, ds, params) in community()) {
        // Rows whose owner is missing everywhere still count; if every owner is
        // missing the stage refuses to run, which the naive version cannot express.
        prop_assume!(favs.iter().any(|f| f.2.is_some()));
        let inputs = to_inputs(&favs, &targets, &cs, &ds);
        let (photos, photographers, _) = compute(&inputs, ScoreOptions::default(), &only(params), 2).expect("scores");
        let (want_photos, want_people) = naive(&favs, &targets, &cs, &ds, params);
        let got = photo_rows(&photos);
        prop_assert_eq!(got.len(), want_photos.len());
        for (g, w) in got.iter().zip(&want_photos) {
            prop_assert_eq!((&g.0, g.1, &g.2, &g.4), (&w.0, w.1, &w.2, &w.4));
            prop_assert!((g.3 - w.3).abs() < 1e-9, "score {} vs {}", g.3, w.3);
            prop_assert!(g.3.is_finite() && g.3 > 0.0);
        }
        let got = photographer_rows(&photographers);
        prop_assert_eq!(got.len(), want_people.len());
        for (g, w) in got.iter().zip(&want_people) {
            prop_assert_eq!((&g.0, g.1, &g.2, g.4, g.5), (&w.0, w.1, &w.2, w.4, w.5));
            prop_assert!((g.3 - w.3).abs() < 1e-9);
        }
    }
}

#[test]
fn results_are_identical_for_one_and_two_threads_and_shuffled_input() {
    let demo = crate::config::DemoSettings {
        users: 600,
        tracked_users: 60,
        clusters: 6,
        seed: 7,
    };
    let community = crate::community::generate(&demo);
    let inputs = Inputs {
        favorites: vec![community.favorites.clone()],
        photos: vec![community.photos.clone()],
        contacts: vec![community.contacts.clone()],
        tracked_users: vec![community.tracked_users.clone()],
        dismissals: vec![],
    };
    let one = compute(&inputs, ScoreOptions::default(), &only(PARAMS), 1).expect("1 thread");
    let two = compute(&inputs, ScoreOptions::default(), &only(PARAMS), 2).expect("2 threads");
    assert!(
        one.0.num_rows() > 1000,
        "the community should produce many recs"
    );
    assert_eq!(one.0, two.0);
    assert_eq!(one.1, two.1);

    // Reverse-and-interleave the favourites rows and split them over two batches.
    let n = community.favorites.num_rows();
    let order: Vec<u32> = (1..n as u32)
        .step_by(2)
        .rev()
        .chain((0..n as u32).step_by(2))
        .collect();
    assert_eq!(order.len(), n);
    let idx = arrow_array::UInt32Array::from(order);
    let shuffled = arrow_select::take::take_record_batch(&community.favorites, &idx).expect("take");
    let half = shuffled.num_rows() / 2;
    let shuffled_inputs = Inputs {
        favorites: vec![
            shuffled.slice(half, shuffled.num_rows() - half),
            shuffled.slice(0, half),
        ],
        ..inputs.clone()
    };
    let three =
        compute(&shuffled_inputs, ScoreOptions::default(), &only(PARAMS), 2).expect("shuffled");
    assert_eq!(one.0, three.0);
    assert_eq!(one.1, three.1);
}

#[test]
fn output_parts_have_a_fixed_row_count() {
    let a = favorites(&[(A, "1", None), (A, "2", None), (A, "3", None)]);
    let b = favorites(&[(B, "4", None), (B, "5", None)]);
    let parts = split_rows(&[a, b], 2);
    let sizes: Vec<usize> = parts
        .iter()
        .map(|p| p.iter().map(|b| b.num_rows()).sum())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(photo_rows_count(&parts), 5);
    assert_eq!(
        split_rows(&[], 2).len(),
        1,
        "an empty table still gets one (empty) file"
    );
}

fn photo_rows_count(parts: &[Vec<RecordBatch>]) -> usize {
    parts.iter().flatten().map(|b| b.num_rows()).sum()
}

#[test]
fn part_ranges_keep_items_whole_and_cover_every_item_in_order() {
    // Items of 3, 0, 4, 1, 2 rows; parts close once they reach 4 rows.
    let parts = part_ranges([3, 0, 4, 1, 2].into_iter(), 4);
    assert_eq!(parts, vec![0..3, 3..5]);
    // A part never splits an item, even one larger than the target.
    assert_eq!(part_ranges([9, 1].into_iter(), 4), vec![0..1, 1..2]);
    assert_eq!(
        part_ranges(std::iter::empty(), 4),
        vec![0..0],
        "no items still gets one (empty) file"
    );
}

#[test]
fn unsorted_duplicated_favourites_encode_in_string_order() {
    // Rows out of order, one (user, photo) pair three times with different
    // owners; "9@N01" and "10@N01" sort as strings, not numbers.
    let fav = favorites(&[
        ("9@N01", "p2", Some("10@N01")),
        ("10@N01", "p1", Some("9@N01")),
        ("9@N01", "p1", Some("9@N01")),
        ("10@N01", "p1", None),
        ("10@N01", "p1", Some("11@N01")),
    ]);
    let inputs = Inputs {
        favorites: vec![fav.slice(3, 2), fav.slice(0, 3)],
        tracked_users: vec![tracked(&["9@N01"])],
        ..Inputs::default()
    };
    let (graph, stats) = prepare::prepare(&inputs, false).expect("prepare");
    assert_eq!(
        graph.user_ids.iter().collect::<Vec<_>>(),
        ["10@N01", "11@N01", "9@N01"]
    );
    assert_eq!(graph.photo_ids.iter().collect::<Vec<_>>(), ["p1", "p2"]);
    assert_eq!(stats.favorites, 3, "duplicates removed");
    assert_eq!(graph.favorites.row(0), &[0]);
    assert_eq!(graph.favorites.row(2), &[0, 1]);
    assert_eq!(graph.favoriters.row(0), &[0, 2]);
    // p1's owners disagree (9, 11): the smallest id, "11@N01" = 1, wins.
    assert_eq!(graph.owner, vec![1, 0]);
    assert_eq!(graph.targets, vec![2]);
}

#[test]
fn encoded_parts_round_trip_with_statistics_on_top_level_columns_only() {
    use parquet::file::reader::FileReader;
    let (photos, _, _) =
        compute(&example(), ScoreOptions::default(), &only(PARAMS), 1).expect("scores");
    let path = object_store::path::Path::from("runs/r/photo_recs/part-00000.parquet");
    let mut encoder = ParquetEncoder::new(&path, Table::PhotoRecs).expect("encoder");
    // Two batches into one file, as a part is written a few users at a time.
    encoder.write(&photos.slice(0, 1)).expect("first batch");
    encoder
        .write(&photos.slice(1, photos.num_rows() - 1))
        .expect("second batch");
    let (bytes, rows) = encoder.finish().expect("finish");
    assert_eq!(rows, photos.num_rows() as u64);

    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(bytes.clone()).expect("read");
    let row_group = reader.metadata().row_group(0);
    for c in row_group.columns() {
        assert!(matches!(
            c.compression(),
            parquet::basic::Compression::ZSTD(_)
        ));
        let in_list = c.column_path().parts().len() > 1;
        assert_eq!(
            c.statistics().is_some(),
            !in_list,
            "column {}: statistics on top-level columns only",
            c.column_path()
        );
    }
    let back: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1024)
            .expect("arrow reader")
            .collect::<Result<_, _>>()
            .expect("batches");
    let back =
        arrow_select::concat::concat_batches(&Table::PhotoRecs.schema(), &back).expect("concat");
    assert_eq!(back, photos);

    // A batch of another table is refused with the table named.
    let wrong = favorites(&[(A, "1", None)]);
    let err = ParquetEncoder::new(&path, Table::PhotoRecs)
        .expect("encoder")
        .write(&wrong)
        .expect_err("wrong schema");
    assert!(err.to_string().contains("photo_recs"), "{err}");
}
