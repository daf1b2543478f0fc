//! Kill anywhere (`import`, `publish`, `score`, `gc`, and the fold of `extract`): the
//! binary killed by SIGKILL exactly at its k-th file rename, unlink or close
//! (`strace -e inject=…:signal=KILL:when=k`), for every k the command
//! reaches, then the invariants checked: stored tables hold the old content or
//! the new, never a mix; `CURRENT` names a run that loads; a rerun converges to
//! the uninterrupted result; and the rerun leaves no temporary or lock file.
//!
//! `scripts/test.sh` installs strace; without it these tests fail and say so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The syscalls a kill point is put on: every rename (a put becoming visible),
/// every unlink (a lock released, a pending object deleted, a run removed), and
/// every close (a file just written, before it is renamed into place).
const SYSCALLS: [&str; 3] = ["rename,renameat,renameat2", "unlink,unlinkat", "close"];

/// Kill points tried at most per syscall set, so a runaway count cannot hang CI.
const MAX_POINTS: usize = 80;

/// The run lock's lease here: a killed `score` or `gc` leaves the lock behind,
/// and the rerun takes it over once this has run out (see [`wait_for_lease`]).
const LEASE_SECS: &str = "1";

/// Waits out the lease of a lock a killed command left.
fn wait_for_lease(dir: &Path) {
    if dir.join("data/locks/run.json").exists() {
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
}

fn strace() -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("strace");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "strace is not installed: run scripts/test.sh, which installs it (apt-get install strace)"
    );
}

/// Runs `faverecs args` in `dir` (storage `dir/data`), killed at the k-th call
/// of `syscalls`. True when the kill happened, false when the command finished
/// first (k is past its last such call); panics if it failed otherwise.
pub(crate) fn run_killed(dir: &Path, args: &[&str], syscalls: &str, k: usize) -> bool {
    let out = Command::new(strace())
        .args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscalls}"))
        .arg("-e")
        .arg(format!("inject={syscalls}:signal=KILL:when={k}"))
        .arg(env!("CARGO_BIN_EXE_faverecs"))
        .args(args)
        .current_dir(dir)
        .env("FAVERECS__STORAGE__URL", dir.join("data"))
        .env("FAVERECS__LOCK__LEASE_SECS", LEASE_SECS)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("strace runs");
    if out.status.success() {
        return false;
    }
    use std::os::unix::process::ExitStatusExt;
    let killed = out.status.signal() == Some(9) || out.status.code() == Some(137);
    assert!(
        killed,
        "{args:?} at {syscalls} #{k} failed without being killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn faverecs(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_faverecs"))
        .args(args)
        .current_dir(dir)
        .env("FAVERECS__STORAGE__URL", dir.join("data"))
        .env("FAVERECS__LOCK__LEASE_SECS", LEASE_SECS)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("faverecs runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows in a Parquet file, from its footer (our own reader is not used).
fn parquet_rows(path: &Path) -> i64 {
    let file = std::fs::File::open(path).expect("file");
    let reader = parquet::file::reader::SerializedFileReader::new(file).expect("parquet");
    parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .num_rows()
}

/// Each user's favourited photo ids, from the current generation's buckets.
fn favorites_by_user(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    use parquet::file::reader::FileReader;
    use parquet::record::RowAccessor;
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in super::raw_bucket_files(dir, "favorites") {
        let file = std::fs::File::open(f).expect("file");
        let reader = parquet::file::reader::SerializedFileReader::new(file).expect("parquet");
        for row in reader.get_row_iter(None).expect("rows") {
            let row = row.expect("row");
            out.entry(row.get_string(0).expect("user_id").clone())
                .or_default()
                .insert(row.get_string(1).expect("photo_id").clone());
        }
    }
    out
}

/// Rows of a bucketed raw table: the sum over its current generation's buckets.
fn raw_rows(dir: &Path, table: &str) -> i64 {
    super::raw_bucket_files(dir, table)
        .iter()
        .map(|f| parquet_rows(f))
        .sum()
}

/// Every file under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Temporary (`…#n`) and lock (`….lock`) files anywhere under `dir`.
pub(crate) fn debris(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|name| name.contains('#') || name.ends_with(".lock"))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            // Modification times too: gc judges temporary files by age.
            std::fs::copy(e.path(), &target).unwrap();
            let modified = e.metadata().unwrap().modified().unwrap();
            std::fs::File::options()
                .write(true)
                .open(&target)
                .unwrap()
                .set_modified(modified)
                .unwrap();
        }
    }
}

fn favorites_csv(path: &Path, user: &str, rows: usize) {
    let mut text = String::from("user_id,photo_id,owner_id\n");
    for i in 0..rows {
        text.push_str(&format!("{user},{},5@N05\n", 2_000_000 + i));
    }
    std::fs::write(path, text).unwrap();
}

/// Kills `args` at every kill point from a copy of `template`, checking
/// `after_kill` after each and `after_rerun` once the same command has been run
/// again without a kill (after the lease of a lock the kill left); then no
/// temporary or lock file may be left. Returns the number of kill points reached.
fn kill_everywhere(
    template: &Path,
    args: &[&str],
    after_kill: impl Fn(&Path),
    after_rerun: impl Fn(&Path, &str),
) -> usize {
    let mut points = 0;
    for syscalls in SYSCALLS {
        let before = points;
        for k in 1..=MAX_POINTS {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template, dir.path());
            if !run_killed(dir.path(), args, syscalls, k) {
                break;
            }
            points += 1;
            after_kill(dir.path());
            wait_for_lease(dir.path());
            let printed = faverecs(dir.path(), args);
            after_rerun(dir.path(), &printed);
            let left = debris(&dir.path().join("data"));
            assert!(
                left.is_empty(),
                "{args:?} killed at {syscalls} #{k}, then rerun, left {left:?}"
            );
        }
        println!("{args:?}: {} kill points at {syscalls}", points - before);
    }
    points
}

#[test]
fn import_killed_at_any_rename_or_unlink_keeps_the_old_or_the_new_table() {
    // Arrange: a stored table of 1 000 rows and a file of 500 new ones.
    let template = tempfile::tempdir().unwrap();
    let t = template.path();
    favorites_csv(&t.join("old.csv"), "1@N01", 1000);
    favorites_csv(&t.join("new.csv"), "2@N01", 500);
    faverecs(t, &["import", "favorites", "old.csv"]);
    let points = kill_everywhere(
        t,
        &["import", "favorites", "new.csv"],
        |d| {
            let rows = raw_rows(d, "favorites");
            assert!(rows == 1000 || rows == 1500, "a mixed table: {rows} rows");
        },
        |d, _| assert_eq!(raw_rows(d, "favorites"), 1500),
    );
    println!("import: {points} kill points");
    assert!(points >= 1, "the import reached no kill point");
}

#[test]
fn publish_killed_at_any_rename_or_unlink_leaves_current_on_a_run_that_loads() {
    // Arrange: two succeeded runs, the first published.
    let template = tempfile::tempdir().unwrap();
    let t = template.path();
    favorites_csv(&t.join("f.csv"), "1@N01", 50);
    std::fs::write(t.join("tracked.csv"), "user_id\n1@N01\n").unwrap();
    faverecs(t, &["import", "favorites", "f.csv"]);
    faverecs(t, &["import", "tracked", "tracked.csv"]);
    let first = run_id(&faverecs(t, &["score"]));
    faverecs(t, &["publish", "--run", &first]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = run_id(&faverecs(t, &["score"]));
    let current = |d: &Path| {
        let text = std::fs::read_to_string(d.join("data/CURRENT")).expect("CURRENT");
        let v: serde_json::Value = serde_json::from_str(&text).expect("CURRENT parses");
        v["run_id"].as_str().expect("run_id").to_string()
    };

    let points = kill_everywhere(
        t,
        &["publish", "--run", &second],
        |d| {
            let c = current(d);
            assert!(c == first || c == second, "CURRENT names {c}");
            // The run it names passes publish's own checks.
            faverecs(d, &["publish", "--run", &c]);
        },
        |d, _| assert_eq!(current(d), second),
    );
    println!("publish: {points} kill points");
    assert!(points >= 1, "publish reached no kill point");
}

#[test]
fn score_killed_at_any_rename_or_unlink_never_touches_current_and_reruns_the_same() {
    // Arrange: the example community, a published run, and the bytes of an
    // uninterrupted run's photo_recs.
    let template = tempfile::tempdir().unwrap();
    let t = template.path();
    std::fs::write(
        t.join("favorites.csv"),
        "user_id,photo_id,owner_id\n1@N01,10,2@N01\n1@N01,11,3@N01\n2@N01,11,3@N01\n\
         2@N01,21,3@N01\n2@N01,30,4@N01\n3@N01,10,2@N01\n3@N01,11,3@N01\n3@N01,20,2@N01\n\
         3@N01,30,4@N01\n3@N01,40,1@N01\n4@N01,10,2@N01\n",
    )
    .unwrap();
    std::fs::write(t.join("tracked.csv"), "user_id\n1@N01\n").unwrap();
    faverecs(t, &["import", "favorites", "favorites.csv"]);
    faverecs(t, &["import", "tracked", "tracked.csv"]);
    let published = run_id(&faverecs(t, &["score"]));
    faverecs(t, &["publish", "--run", &published]);
    let clean = {
        let d = tempfile::tempdir().unwrap();
        copy_dir(t, d.path());
        let run = run_id(&faverecs(d.path(), &["score"]));
        std::fs::read(
            d.path()
                .join(format!("data/runs/{run}/photo_recs/part-00000.parquet")),
        )
        .unwrap()
    };
    let current = |d: &Path| std::fs::read_to_string(d.join("data/CURRENT")).unwrap();
    let before = current(t);

    // A killed score leaves temporary files in its own run folder, which no later
    // writer touches (the rerun is a new run): `faverecs gc` removes them with
    // the abandoned run. They are counted before the gc; after it, none is left.
    let left_in_killed_runs = std::cell::Cell::new(0);
    let points = kill_everywhere(
        t,
        &["score"],
        |d| {
            assert_eq!(current(d), before, "a killed score never touches CURRENT");
            // `runs` still lists every run.
            faverecs(d, &["runs"]);
        },
        |d, printed| {
            // The rerun succeeded with the uninterrupted run's bytes.
            let newest = run_id(printed);
            let bytes =
                std::fs::read(d.join(format!("data/runs/{newest}/photo_recs/part-00000.parquet")))
                    .unwrap();
            assert_eq!(bytes, clean, "the rerun's photo_recs");
            assert!(
                debris(&d.join(format!("data/runs/{newest}"))).is_empty(),
                "the rerun's own folder is clean"
            );
            // gc removes the killed runs (abandoned: their lock's lease ran
            // out) with their temporary files.
            let left_before = debris(&d.join("data")).len();
            left_in_killed_runs.set(left_in_killed_runs.get() + left_before);
            let gc = faverecs(d, &["gc"]);
            assert!(
                debris(&d.join("data")).is_empty(),
                "gc left debris: {:?}\n{gc}",
                debris(&d.join("data"))
            );
            if left_before > 0 {
                assert!(gc.contains("abandoned"), "{gc}");
            }
            let listed = faverecs(d, &["runs"]);
            assert!(!listed.contains("abandoned"), "{listed}");
        },
    );
    let left_in_killed_runs = left_in_killed_runs.get();
    println!(
        "score: {points} kill points; {left_in_killed_runs} temporary files left in killed runs' folders (all removed by gc)"
    );
    assert!(points >= 1, "score reached no kill point");
}

fn run_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a run id")
        .to_string()
}

#[test]
fn a_fold_killed_at_any_rename_or_unlink_folds_to_the_same_tables_when_rerun() {
    // Arrange: favourites of someone else already stored (so the fold rewrites
    // an existing table), then the tracked users pulled from the simulator but
    // not folded; and the tables an uninterrupted fold writes.
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = super::Sim::start(sim_dir.path(), 0);
    let env = super::extract_env(&sim, super::SIM_KEY);
    let template = tempfile::tempdir().unwrap();
    let t = template.path();
    super::track_demo_users(t, &[]);
    favorites_csv(&t.join("other.csv"), "99@N09", 100);
    faverecs(t, &["import", "favorites", "other.csv"]);
    super::ok(&super::faverecs(
        t,
        &env,
        &["extract", "--phase", "tracked"],
    ));
    let tables = ["favorites", "contacts"];
    let bytes = |d: &Path| -> Vec<Vec<Vec<u8>>> {
        tables
            .iter()
            .map(|t| super::raw_table_bytes(d, t))
            .collect()
    };
    let old = favorites_by_user(t);
    let (clean, folded) = {
        let d = tempfile::tempdir().unwrap();
        copy_dir(t, d.path());
        faverecs(d.path(), &["extract", "--fold-only"]);
        (bytes(d.path()), favorites_by_user(d.path()))
    };
    assert_ne!(old, folded);

    let points = kill_everywhere(
        t,
        &["extract", "--fold-only"],
        |d| {
            // The fold rewrites one bucket per put: each user's favourites are
            // all old or all folded, never a mix.
            let now = favorites_by_user(d);
            let users: BTreeSet<&String> = old.keys().chain(folded.keys()).collect();
            for u in users {
                assert!(
                    now.get(u) == old.get(u) || now.get(u) == folded.get(u),
                    "{u}'s favourites are neither the old nor the folded ones"
                );
            }
        },
        |d, _| {
            assert_eq!(
                bytes(d),
                clean,
                "the rerun folds to the uninterrupted tables"
            );
            let pending = d.join("data/extract/pending");
            assert!(
                std::fs::read_dir(&pending).map_or(true, |mut e| e
                    .all(|e| e.map(|e| e.path().is_dir()).unwrap_or(false))),
                "no pending user is left"
            );
        },
    );
    println!("fold: {points} kill points");
    assert!(points >= 1, "the fold reached no kill point");
}

#[test]
fn gc_killed_at_any_rename_or_unlink_keeps_the_published_run_and_a_rerun_finishes() {
    // Arrange: a published run, two runs abandoned by killed scores (with their
    // temporary files), and an old temporary file beside a raw table.
    let template = tempfile::tempdir().unwrap();
    let t = template.path();
    favorites_csv(&t.join("f.csv"), "1@N01", 50);
    std::fs::write(t.join("tracked.csv"), "user_id\n1@N01\n").unwrap();
    faverecs(t, &["import", "favorites", "f.csv"]);
    faverecs(t, &["import", "tracked", "tracked.csv"]);
    let published = run_id(&faverecs(t, &["score"]));
    faverecs(t, &["publish", "--run", &published]);
    // Two runs abandoned by killed scores: with the tracked users' table a
    // FIFO, each score takes the lock, writes its manifest and blocks opening
    // the table, and is killed then. (A kill at a fixed syscall count is not
    // a fixed point: strace counts per thread.)
    let tracked = t.join("data/raw/tracked_users/data.parquet");
    let saved = t.join("tracked_users.parquet");
    std::fs::rename(&tracked, &saved).unwrap();
    let made = Command::new("mkfifo")
        .arg(&tracked)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    let manifests = |d: &Path| {
        files(&d.join("data/runs"))
            .iter()
            .filter(|f| f.ends_with("/manifest.json"))
            .count()
    };
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let before = manifests(t);
        let mut child = Command::new(env!("CARGO_BIN_EXE_faverecs"))
            .arg("score")
            .current_dir(t)
            .env("FAVERECS__STORAGE__URL", t.join("data"))
            .env("FAVERECS__LOCK__LEASE_SECS", LEASE_SECS)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("faverecs starts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while manifests(t) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "score wrote no manifest in 60 s"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "score ended before it was killed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        wait_for_lease(t);
    }
    std::fs::remove_file(&tracked).unwrap();
    std::fs::rename(&saved, &tracked).unwrap();
    let stray = t.join("data/raw/favorites/bucket=0000/data.parquet#9");
    std::fs::write(&stray, b"x").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stray)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    let before = faverecs(t, &["runs"]);
    assert_eq!(before.matches("abandoned").count(), 2, "{before}");
    let current = |d: &Path| std::fs::read_to_string(d.join("data/CURRENT")).unwrap();
    let pointer = current(t);

    let points = kill_everywhere(
        t,
        &["gc"],
        |d| {
            assert_eq!(current(d), pointer, "gc never touches CURRENT");
            // The published run still passes publish's checks.
            faverecs(d, &["publish", "--run", &published]);
        },
        |d, _| {
            let listed = faverecs(d, &["runs"]);
            assert!(!listed.contains("abandoned"), "{listed}");
            assert!(listed.contains(&published), "{listed}");
            assert!(
                !d.join("data/raw/favorites/bucket=0000/data.parquet#9")
                    .exists()
            );
        },
    );
    println!("gc: {points} kill points");
    assert!(points >= 2, "gc reached {points} kill points");
}
