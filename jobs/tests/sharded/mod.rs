//! A score run split over processes (issue 14): three users shards and three
//! photos shards run as separate `faverecs` processes in shuffled order, one
//! of each killed by SIGKILL mid-write (strace) and rerun, then `--finish`,
//! give exactly the rows of one unsharded `faverecs score` on the demo
//! community, table by table (compared by DuckDB). Until every shard has
//! succeeded, `--finish` and `publish` refuse the run and name the missing
//! shard.

use std::path::Path;

use super::kill::{debris, run_killed};
use super::{failed, faverecs, ok};

const RUN: &str = "20261130T020000Z-00aa01";

fn env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "FAVERECS__STORAGE__URL",
            dir.join("data").display().to_string(),
        ),
        // The finish step evaluates too: its `metrics` must match.
        ("FAVERECS__EVALUATE__ENABLED", "true".to_string()),
    ]
}

fn shard(dir: &Path, step: &str, i: u32, n: u32) -> String {
    ok(&faverecs(
        dir,
        &env(dir),
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
    // Evaluation ran: the metrics table is not empty.
    assert!(!stdout.contains("metrics: 0 vs"), "{stdout}");
}
