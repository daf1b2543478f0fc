//! A score run split over processes (issue 14): three users shards and three
//! photos shards run as separate `faverecs` processes in shuffled order, one
//! of each killed by SIGKILL mid-write (strace) and rerun, then `--finish`,
//! give exactly the rows of one unsharded `faverecs score` on the demo
//! community, table by table (compared by DuckDB). Until every shard has
//! succeeded, `--finish` and `publish` refuse the run and name the missing
//! shard.
//!
//! The same flow runs twice: with the default algorithms (itemknn needs two
//! hops, so every shard reads every favourite), and with Flexplore and explore
//! alone, where each users shard reads only its own targets' neighbourhood and
//! says so in its record; there the targets are assigned to shards by
//! neighbourhood, and every users shard's record names the same plan.

use std::path::Path;

use super::kill::{debris, run_killed};
use super::{failed, faverecs, ok};

const RUN: &str = "20261130T020000Z-00aa01";

/// Settings of the second case: Flexplore and explore only, no fallbacks
/// (which would rank every target's neighbourhood), and no similar photos or
/// evaluation, so that of the photos step only shard 0 has work (the tag
/// lists, at their default length, from a scan of the favourites' ids, as
/// the unsharded run makes them) and the others read nothing; and targets
/// assigned to users shards by neighbourhood. That a neighbourhood read
/// equals a whole read is `pipeline/tests/neighbourhood`'s test.
const NEIGHBOURHOOD: [(&str, &str); 5] = [
    ("FAVERECS__SCORE__ALGORITHMS", r#"["flexplore","explore"]"#),
    ("FAVERECS__SCORE__FALLBACK_BELOW", "0"),
    ("FAVERECS__SIMILAR__ENABLED", "false"),
    ("FAVERECS__EVALUATE__ENABLED", "false"),
    ("FAVERECS__SCORE__SHARD_TARGETS_BY", "neighbourhood"),
];

fn env(dir: &Path, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (
            "FAVERECS__STORAGE__URL",
            dir.join("data").display().to_string(),
        ),
        // The finish step evaluates too: its `metrics` must match. (So the
        // unsharded run reads every favourite.)
        ("FAVERECS__EVALUATE__ENABLED", "true".to_string()),
    ];
    env.extend(extra.iter().map(|&(k, v)| (k, v.to_string())));
    env
}

fn shard(dir: &Path, extra: &[(&'static str, &str)], step: &str, i: u32, n: u32) -> String {
    ok(&faverecs(
        dir,
        &env(dir, extra),
        &[
            "score",
            "--run-id",
            RUN,
            "--step",
            step,
            "--shard",
            &format!("{i}/{n}"),
        ],
    ))
}

/// Runs shard `i` of `step` killed at its first rename (strace counts per
/// thread, and the uploads run on several, so only the first is a fixed
/// point): its parts are encoded and written to temporary files, none is in
/// place, and its record is not stored. Checks that it was killed.
fn shard_killed(dir: &Path, step: &str, i: u32, n: u32) {
    let shard = format!("{i}/{n}");
    let args = ["score", "--run-id", RUN, "--step", step, "--shard", &shard];
    // run_killed sets the storage; evaluation is off, which a shard ignores.
    assert!(
        run_killed(dir, &args, "rename,renameat,renameat2", 1),
        "{step} shard {shard} finished without a rename"
    );
}

#[test]
fn three_shards_in_shuffled_order_with_one_killed_equal_one_process() {
    sharded_run_equals_one_process(&[]);
}

#[test]
fn users_shards_reading_only_their_neighbourhood_equal_one_process_reading_everything() {
    sharded_run_equals_one_process(&NEIGHBOURHOOD);
}

/// The record of shard `i` of `n` of `step`.
fn record(dir: &Path, step: &str, i: u32, n: u32) -> serde_json::Value {
    let record = dir.join(format!(
        "data/runs/{RUN}/shards/{step}-{i:04}-of-{n:04}.json"
    ));
    serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap()
}

/// Whether a shard's record has a note starting with `start`.
fn noted(record: &serde_json::Value, start: &str) -> bool {
    // A record without notes leaves the field out.
    let notes = record["notes"].as_array().cloned().unwrap_or_default();
    notes.iter().any(|n| n.as_str().unwrap().starts_with(start))
}

/// The favourite rows each users shard read, from its record, if it says it
/// read only its targets' neighbourhood.
fn neighbourhood_rows(dir: &Path, i: u32, n: u32) -> Option<u64> {
    let record = record(dir, "users", i, n);
    noted(&record, "read only the neighbourhood")
        .then(|| record["rows_in"]["favorites"].as_u64().unwrap())
}

/// The assignment of targets to shards a users shard's record names.
fn assignment(dir: &Path, i: u32, n: u32) -> String {
    record(dir, "users", i, n)["assignment"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether photos shard `i` of `n` says it read nothing.
fn photos_idle(dir: &Path, i: u32, n: u32) -> bool {
    let record = record(dir, "photos", i, n);
    noted(&record, "similar photos are off")
        && record["rows_in"]["favorites"].as_u64().unwrap_or(0) == 0
        && record["rows_in"]["favorites_scanned"].is_null()
}

/// The favourite rows photos shard `i` of `n` scanned for the tag lists, if
/// it says it made them from a scan rather than a graph.
fn photos_scanned(dir: &Path, i: u32, n: u32) -> Option<u64> {
    let record = record(dir, "photos", i, n);
    noted(
        &record,
        "similar photos are off: this shard made the tag lists from a scan",
    )
    .then(|| record["rows_in"]["favorites_scanned"].as_u64().unwrap())
}

fn sharded_run_equals_one_process(extra: &[(&'static str, &str)]) {
    let env = |dir: &Path| env(dir, extra);
    let shard = |dir: &Path, step: &str, i: u32, n: u32| shard(dir, extra, step, i, n);
    let python = std::env::var("FAVERECS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("FAVERECS_TEST_PYTHON is not set: run scripts/test.sh, which installs duckdb into target/test-venv")
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&faverecs(dir, &env(dir), &["synth"]));
    let out = ok(&faverecs(dir, &env(dir), &["score"]));
    let whole = out
        .split_whitespace()
        .nth(1)
        .expect("score prints `run ID succeeded`")
        .to_string();

    // Users shards 2, then 0 killed mid-write, then 1.
    shard(dir, "users", 2, 3);
    shard_killed(dir, "users", 0, 3);
    shard(dir, "users", 1, 3);
    let err = failed(&faverecs(
        dir,
        &env(dir),
        &["score", "--finish", "--run-id", RUN],
    ));
    assert!(
        err.contains("shard 0/3 of the users step has not succeeded"),
        "{err}"
    );
    let err = failed(&faverecs(dir, &env(dir), &["publish", "--run", RUN]));
    assert!(
        err.contains("shard 0/3 of the users step has not succeeded"),
        "{err}"
    );
    // Files a shard killed later would leave in place: a part beyond what the
    // rerun writes, and one of an abandoned attempt with another shard count.
    // Neither may survive into the run.
    let recs = dir.join(format!("data/runs/{RUN}/photo_recs"));
    let some_part = std::fs::read_dir(&recs)
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("part-users-0002of0003")
        })
        .expect("shard 2's photo_recs part")
        .path();
    std::fs::copy(&some_part, recs.join("part-users-0000of0003-00009.parquet")).unwrap();
    std::fs::copy(&some_part, recs.join("part-users-0003of0004-00000.parquet")).unwrap();
    shard(dir, "users", 0, 3);
    assert!(!recs.join("part-users-0000of0003-00009.parquet").exists());

    // The photos step needs every users shard, which it now has.
    shard(dir, "photos", 1, 3);
    shard_killed(dir, "photos", 2, 3);
    let err = failed(&faverecs(dir, &env(dir), &["publish", "--run", RUN]));
    assert!(
        err.contains("shards 0/3, 2/3 of the photos step have not succeeded"),
        "{err}"
    );
    shard(dir, "photos", 0, 3);
    shard(dir, "photos", 2, 3);
    let out = ok(&faverecs(
        dir,
        &env(dir),
        &["score", "--finish", "--run-id", RUN],
    ));
    assert!(out.contains("succeeded (6 shards)"), "{out}");
    assert!(!recs.join("part-users-0003of0004-00000.parquet").exists());
    // The killed shards' temporary files are gone too.
    let left = debris(&dir.join(format!("data/runs/{RUN}")));
    assert!(left.is_empty(), "{left:?}");
    ok(&faverecs(dir, &env(dir), &["publish", "--run", RUN]));

    let read: Vec<Option<u64>> = (0..3).map(|i| neighbourhood_rows(dir, i, 3)).collect();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("data/runs/{whole}/manifest.json"))).unwrap(),
    )
    .unwrap();
    let rows_in = &manifest["rows_in"];
    // Reading only its targets' neighbourhood, the unsharded run scans every
    // favourite's ids for its tag lists.
    let scanned = rows_in["favorites_scanned"].as_u64();
    let total = scanned.or(rows_in["favorites"].as_u64()).unwrap();
    let assignments: Vec<String> = (0..3).map(|i| assignment(dir, i, 3)).collect();
    if extra.is_empty() {
        assert_eq!(scanned, None, "the unsharded run read every favourite");
        assert_eq!(read, [None, None, None], "itemknn needs every favourite");
        assert_eq!(assignments, ["nsid", "nsid", "nsid"]);
    } else {
        for rows in &read {
            let rows = rows.expect("a users shard read only its neighbourhood");
            assert!(rows > 0 && rows < total, "read {rows} of {total}");
        }
        // Planned by neighbourhood, the same plan in each.
        assert!(
            assignments[0].starts_with("neighbourhood ")
                && assignments.iter().all(|a| *a == assignments[0]),
            "{assignments:?}"
        );
    }
    // Without similar photos only photos shard 0 reads: it scans every
    // favourite's ids for the tag lists, as the unsharded run did.
    let idle: Vec<bool> = (0..3).map(|i| photos_idle(dir, i, 3)).collect();
    let scans: Vec<Option<u64>> = (0..3).map(|i| photos_scanned(dir, i, 3)).collect();
    if extra.is_empty() {
        assert_eq!(idle, [false, false, false]);
        assert_eq!(scans, [None, None, None]);
    } else {
        assert_eq!(idle, [false, true, true]);
        assert!(rows_in["favorites"].as_u64().unwrap() < total);
        assert_eq!(scans, [Some(total), None, None]);
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/compare_rows.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(dir.join("data"))
        .arg(&whole)
        .arg(RUN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("EQUAL"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in [
        "photo_recs",
        "similar_photos",
        "photos",
        "metrics",
        "first_recommended",
    ] {
        assert!(
            stdout.contains(&format!("{table}: ")),
            "{table} compared: {stdout}"
        );
    }
    if extra.is_empty() {
        // Evaluation ran: the metrics table is not empty.
        assert!(!stdout.contains("metrics: 0 vs"), "{stdout}");
    } else {
        let line = |table: &str| {
            stdout
                .lines()
                .find(|l| l.starts_with(&format!("{table}: ")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            !line("photo_recs").starts_with("photo_recs: 0 vs"),
            "{stdout}"
        );
        assert!(!line("photos").starts_with("photos: 0 vs"), "{stdout}");
        assert!(
            line("similar_photos").starts_with("similar_photos: 0 vs 0"),
            "{stdout}"
        );
        // Photos shard 0 wrote the tag lists.
        let tags = line("tag_photos");
        assert!(
            tags.starts_with("tag_photos: ") && !tags.starts_with("tag_photos: 0 vs"),
            "{stdout}"
        );
    }
}
