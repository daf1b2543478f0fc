//! End-to-end tests of the `faverecs` binary: import → score → publish → serve over
//! real HTTP on port 0, on a local directory and on an `s3://` URL against moto,
//! plus the error messages an operator sees.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../pipeline/tests/support/moto.rs"]
mod moto;

mod kill;
mod nightly;
mod replicas;
mod sharded;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn faverecs(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faverecs"))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("faverecs runs")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "faverecs failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected exit code 1: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// mimalloc commits its arenas as they are used (`main.rs`): the option is set
/// before mimalloc's first allocation, and `MIMALLOC_ARENA_EAGER_COMMIT` in the
/// environment wins. mimalloc's verbose start-up lists its options.
#[test]
fn the_allocator_commits_its_arenas_as_they_are_used_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let option = |extra: Option<(&str, String)>| {
        let mut env = vec![("MIMALLOC_VERBOSE", "1".to_string())];
        env.extend(extra);
        let out = faverecs(dir.path(), &env, &["--version"]);
        ok(&out);
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.starts_with("option 'arena_eager_commit'"))
            .map(|l| l.trim().to_string())
    };
    assert_eq!(
        option(None).as_deref(),
        Some("option 'arena_eager_commit': 0")
    );
    assert_eq!(
        option(Some(("MIMALLOC_ARENA_EAGER_COMMIT", "2".into()))).as_deref(),
        Some("option 'arena_eager_commit': 2")
    );
}

/// The binary's relative relocations are packed (jobs/build.rs): its dynamic
/// section has a DT_RELR table, and what is left as 24-byte RELA entries (4.4 MB
/// unpacked) is small. `readelf` comes with the C toolchain the build needs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_packs_its_relative_relocations() {
    let out = Command::new("readelf")
        .args(["--dynamic", env!("CARGO_BIN_EXE_faverecs")])
        .output()
        .expect("readelf runs");
    ok(&out);
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(
        dynamic.lines().any(|l| l.contains("(RELR)")),
        "no DT_RELR entry:\n{dynamic}"
    );
    let rela_bytes: u64 = dynamic
        .lines()
        .find(|l| l.contains("(RELASZ)"))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(0);
    assert!(
        rela_bytes < 64 * 1024,
        "{rela_bytes} bytes of RELA relocations:\n{dynamic}"
    );
}

/// The hand-computed example of the score tests, as CSV: user 1@N01 gets photos
/// 30, 20, 21 in that order; 2@N01 is a contact so only 3@N01 remains as a
/// photographer rec.
fn write_inputs(dir: &Path) {
    std::fs::write(
        dir.join("favorites.csv"),
        "user_id,photo_id,owner_id,date_faved\n\
         1@N01,10,2@N01,1639261222\n1@N01,11,3@N01,2021-12-11T22:20:22Z\n\
         2@N01,11,3@N01,\n2@N01,21,3@N01,\n2@N01,30,4@N01,\n\
         3@N01,10,2@N01,\n3@N01,11,3@N01,\n3@N01,20,2@N01,\n3@N01,30,4@N01,\n3@N01,40,1@N01,\n\
         4@N01,10,2@N01,\n1@N01,10,2@N01,1639261222\n",
    )
    .unwrap();
    std::fs::write(dir.join("tracked.csv"), "user_id,username\n1@N01,alice\n").unwrap();
    std::fs::write(
        dir.join("contacts.csv"),
        "user_id,contact_id\n1@N01,2@N01\n",
    )
    .unwrap();
}

struct Server {
    child: Child,
    base: String,
}

/// Starts `faverecs <args>` and returns it with the first line it prints (its
/// listening address).
fn spawn_reading_first_line(dir: &Path, env: &[(&str, String)], args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faverecs"))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

impl Server {
    fn start(dir: &Path, env: &[(&str, String)]) -> Server {
        let (child, line) = spawn_reading_first_line(dir, env, &["serve", "--addr", "127.0.0.1:0"]);
        let base = line
            .strip_prefix("serving on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, base }
    }

    /// SIGTERM, and the server must exit cleanly (graceful shutdown).
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status} after SIGTERM");
    }
}

/// A failed test must not leave its server running (it would also hold the
/// test's output pipe open).
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn end_to_end(dir: &Path, env: &[(&str, String)]) {
    write_inputs(dir);
    let out = ok(&faverecs(
        dir,
        env,
        &["import", "favorites", "favorites.csv"],
    ));
    assert!(
        out.contains("imported 12 rows into favorites (0 rows before, 11 after"),
        "{out}"
    );
    ok(&faverecs(dir, env, &["import", "tracked", "tracked.csv"]));
    ok(&faverecs(dir, env, &["import", "contacts", "contacts.csv"]));
    let out = ok(&faverecs(dir, env, &["score"]));
    // Three Flexplore recs for the one tracked user, and as many from each of the
    // other three algorithms (the data leaves each exactly three candidates).
    assert!(
        out.contains("succeeded") && out.contains("photo_recs: 12 rows"),
        "{out}"
    );
    // Nothing is served before a publish: the server starts but is not ready.
    let server = Server::start(dir, env);
    let resp = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    server.stop();

    let out = ok(&faverecs(dir, env, &["publish"]));
    assert!(out.starts_with("published run "), "{out}");
    let runs = ok(&faverecs(dir, env, &["runs"]));
    assert!(
        runs.starts_with("* ") && runs.contains("succeeded"),
        "{runs}"
    );

    let server = Server::start(dir, env);
    let (status, v) = get_json(&format!("{}/api/users/1@N01/photos", server.base)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["photo_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["30", "20", "21"]);
    assert_eq!(v["algorithm"], "flexplore");
    let score = v["items"][0]["score"].as_f64().unwrap();
    assert!(
        (score - (150.0 * (1.0f64 / 253.0).sqrt() + 150.0 * (2.0f64 / 255.0).sqrt())).abs() < 1e-9
    );
    for algorithm in ["itemknn", "popular", "explore"] {
        let (status, v) = get_json(&format!(
            "{}/api/users/1@N01/photos?algorithm={algorithm}",
            server.base
        ))
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["algorithm"], algorithm);
        assert_eq!(v["items"].as_array().unwrap().len(), 3, "{v}");
    }
    let (status, v) = get_json(&format!("{}/api/users/1@N01/photographers", server.base)).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        1,
        "the contact 2@N01 is excluded: {v}"
    );
    assert_eq!(v["items"][0]["photographer_id"], "3@N01");
    let (status, v) = get_json(&format!("{}/api/users/9@N09/photos", server.base)).await;
    assert_eq!(status, 404);
    assert!(v["error"].as_str().unwrap().contains("9@N09"));
    let (status, _) = get_json(&format!("{}/api/users/not-an-id/photos", server.base)).await;
    assert_eq!(status, 400);
    let page = reqwest::get(format!("{}/users/1@N01", server.base))
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("https://www.flickr.com/photos/4@N01/30"),
        "{html}"
    );
    server.stop();
}

#[tokio::test]
async fn import_score_publish_serve_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    end_to_end(dir.path(), &[]).await;
    assert!(
        dir.path().join("data/CURRENT").exists(),
        "default storage is ./data"
    );
    assert!(dir.path().join("data/raw/favorites/_layout.json").exists());
    assert!(!raw_bucket_files(dir.path(), "favorites").is_empty());
}

#[tokio::test]
async fn import_score_publish_serve_on_s3() {
    let moto = moto::Moto::start();
    moto.create_bucket("faverecs-e2e");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "FAVERECS__STORAGE__URL",
            "s3://faverecs-e2e/nightly/v1".to_string(),
        ),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    end_to_end(dir.path(), &env).await;
    assert!(
        !dir.path().join("data").exists(),
        "nothing was written locally"
    );
}

#[test]
fn a_bad_config_key_names_the_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let err = failed(&faverecs(
        dir.path(),
        &[("FAVERECS__STORAGE__URLX", "x".into())],
        &["runs"],
    ));
    assert!(err.contains("storage.urlx"), "{err}");
    assert!(err.contains("FAVERECS__STORAGE__URLX"), "{err}");
    let err = failed(&faverecs(
        dir.path(),
        &[("FAVERECS__STORAGE__URL", "s3:/x".into())],
        &["runs"],
    ));
    assert!(
        err.contains("config key storage.url: \"s3:/x\" is not a supported URL"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "[score]\nphoto_recs_per_user = \"lots\"\n",
    )
    .unwrap();
    let err = failed(&faverecs(
        dir.path(),
        &[],
        &["--config", "bad.toml", "runs"],
    ));
    assert!(err.contains("score.photo_recs_per_user"), "{err}");
    let err = failed(&faverecs(
        dir.path(),
        &[],
        &["--config", "missing.toml", "runs"],
    ));
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn raw_status_and_rebucket_report_and_change_the_bucket_count() {
    // Arrange: favourites of three users imported in the default 64 buckets.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (i, user) in ["1@N01", "2@N01", "3@N01"].iter().enumerate() {
        favorites_csv(&d.join(format!("f{i}.csv")), user, 10 + i);
        ok(&faverecs(
            d,
            &[],
            &["import", "favorites", &format!("f{i}.csv")],
        ));
    }
    let status = ok(&faverecs(d, &[], &["raw", "status"]));
    assert!(
        status.contains("favorites   64 buckets, generation g"),
        "{status}"
    );
    assert!(status.contains(", 33 rows"), "{status}");
    assert!(status.contains("contacts    not written"), "{status}");

    // Act: another count configured, then rebucket (twice).
    let eight = [("FAVERECS__STORAGE__RAW_BUCKETS", "8".to_string())];
    let status = ok(&faverecs(d, &eight, &["raw", "status"]));
    let first = ok(&faverecs(d, &eight, &["raw", "rebucket"]));
    let again = ok(&faverecs(d, &eight, &["raw", "rebucket"]));

    // Assert: the stored count is reported, then changed, with every row kept.
    assert!(
        status.contains("storage.raw_buckets is 8: `faverecs raw rebucket` changes it"),
        "{status}"
    );
    assert!(
        first.contains("favorites   rewritten from 64 buckets into 8 buckets (33 rows)"),
        "{first}"
    );
    assert!(
        again.contains("favorites   already in 8 buckets"),
        "{again}"
    );
    assert_eq!(raw_bucket_files(d, "favorites").len(), 8);
    let status = ok(&faverecs(d, &eight, &["raw", "status"]));
    assert!(
        status.contains("favorites   8 buckets, generation g"),
        "{status}"
    );
    assert!(status.contains(", 33 rows"), "{status}");
    let bad = failed(&faverecs(
        d,
        &[("FAVERECS__STORAGE__RAW_BUCKETS", "0".to_string())],
        &["raw", "status"],
    ));
    assert!(bad.contains("storage.raw_buckets"), "{bad}");
}

#[test]
fn bad_import_files_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("no_photo.csv"), "user_id,owner_id\n1@N01,2@N01\n").unwrap();
    std::fs::write(d.join("empty.csv"), "user_id,photo_id\n").unwrap();
    std::fs::write(
        d.join("typo.csv"),
        "user_id,photo_id,date_faved\n1@N01,10,1639261222\n1@N01,11,last tuesday\n",
    )
    .unwrap();
    std::fs::write(d.join("broken.parquet"), "PAR1 but then nothing").unwrap();
    let err = failed(&faverecs(d, &[], &["import", "favorites", "no_photo.csv"]));
    assert!(err.contains("required column photo_id is missing"), "{err}");
    let err = failed(&faverecs(d, &[], &["import", "favorites", "empty.csv"]));
    assert!(err.contains("no data rows"), "{err}");
    let err = failed(&faverecs(d, &[], &["import", "favorites", "typo.csv"]));
    assert!(
        err.contains("line 3: date_faved: \"last tuesday\" is not a time"),
        "{err}"
    );
    let err = failed(&faverecs(
        d,
        &[],
        &["import", "favorites", "broken.parquet"],
    ));
    assert!(err.contains("not Parquet"), "{err}");
    let err = failed(&faverecs(d, &[], &["import", "favorites", "absent.csv"]));
    assert!(err.contains("absent.csv: cannot read"), "{err}");
    assert!(
        !d.join("data/raw/favorites").exists(),
        "a refused import writes nothing"
    );
    let err = failed(&faverecs(d, &[], &["score"]));
    assert!(err.contains("faverecs import favorites"), "{err}");
    let err = failed(&faverecs(d, &[], &["publish", "--run", "nope"]));
    assert!(err.contains("run nope does not exist"), "{err}");
}

// ---- extract through the binary -------------------------------------------------

const SIM_KEY: &str = "right-key-5f1c0e";

/// Env for a small simulated community: the simulator and the extractor both build
/// it from the demo settings.
fn community_env() -> Vec<(&'static str, String)> {
    vec![
        ("FAVERECS__DEMO__USERS", "300".into()),
        ("FAVERECS__DEMO__TRACKED_USERS", "8".into()),
    ]
}

struct Sim {
    child: Child,
    url: String,
}

impl Sim {
    fn start(dir: &Path, latency_ms: u64) -> Sim {
        let mut env = community_env();
        env.push(("FLICKR_API_KEY", SIM_KEY.to_string()));
        let latency = latency_ms.to_string();
        let (child, line) = spawn_reading_first_line(
            dir,
            &env,
            &[
                "flickr-sim",
                "--addr",
                "127.0.0.1:0",
                "--latency-ms",
                &latency,
            ],
        );
        let url = line
            .strip_prefix("flickr-sim on ")
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_string();
        Sim { child, url }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn extract_env(sim: &Sim, key: &str) -> Vec<(&'static str, String)> {
    let mut env = community_env();
    env.extend([
        ("FLICKR_API_KEY", key.to_string()),
        ("FAVERECS__FLICKR__API_URL", sim.url.clone()),
        ("FAVERECS__FLICKR__CALLS_PER_HOUR", "1000000".into()),
        ("FAVERECS__FLICKR__BURST", "100".into()),
        ("FAVERECS__FLICKR__PER_PAGE", "50".into()),
        ("FAVERECS__FLICKR__MAX_CALLS_PER_USER", "40".into()),
    ]);
    env
}

/// Tracks the small community's users (a `tracked.csv` imported with `env`).
fn track_demo_users(dir: &Path, env: &[(&str, String)]) {
    let c = pipeline::community::generate(&pipeline::config::DemoSettings {
        users: 300,
        tracked_users: 8,
        clusters: 12,
        seed: 42,
    });
    let csv: String = std::iter::once("user_id".to_string())
        .chain(c.tracked_ids())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("tracked.csv"), csv + "\n").unwrap();
    ok(&faverecs(dir, env, &["import", "tracked", "tracked.csv"]));
}

#[test]
fn an_extract_killed_at_any_point_resumes_to_the_same_tables() {
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(sim_dir.path(), 20);
    let env = extract_env(&sim, SIM_KEY);

    let whole = tempfile::tempdir().unwrap();
    track_demo_users(whole.path(), &[]);
    let out = ok(&faverecs(whole.path(), &env, &["extract"]));
    assert!(out.contains("succeeded"), "{out}");

    let killed = tempfile::tempdir().unwrap();
    track_demo_users(killed.path(), &[]);
    // Kill points are chosen by progress, not by time: after 3, 15 and 40 users
    // are finished (the pending objects are counted), so the test does not depend
    // on how busy the machine is.
    let pending = killed.path().join("data/extract/pending");
    let mut kills = 0;
    for finished_users in [3usize, 15, 40] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_faverecs"))
            .current_dir(killed.path())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .arg("extract")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let finished = walk(&pending)
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .count();
            if finished >= finished_users {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "extract made no progress"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
    }
    assert_eq!(kills, 3, "the extract was interrupted three times");
    let out = ok(&faverecs(killed.path(), &env, &["extract"]));
    assert!(out.contains("succeeded"), "{out}");
    // Only finished users are pending objects (`*.json`). A SIGKILL during a local
    // write can leave object_store's staging file (`name#N`) behind; object_store
    // never lists those, so they do not count as pending work.
    let left: Vec<_> = walk(&pending)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(left.is_empty(), "pending work was folded: {left:?}");
    for table in ["favorites", "photos", "contacts"] {
        let (a, b) = (
            raw_table_bytes(whole.path(), table),
            raw_table_bytes(killed.path(), table),
        );
        assert!(
            a == b,
            "{table} differs between the whole run and the killed-and-resumed one"
        );
    }
}

#[test]
fn a_wrong_key_ends_the_run_fast_and_no_key_is_ever_logged() {
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(sim_dir.path(), 0);
    let dir = tempfile::tempdir().unwrap();
    track_demo_users(dir.path(), &[]);

    let wrong = "wrong-key-9a8b7c6d5e";
    let mut env = extract_env(&sim, wrong);
    env.push(("RUST_LOG", "debug".into()));
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_faverecs"))
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("extract")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid API key") && stderr.contains("FLICKR_API_KEY"),
        "{stderr}"
    );

    // A successful run at debug level, with retries, also never shows the key.
    let mut env = extract_env(&sim, SIM_KEY);
    env.push(("RUST_LOG", "debug".into()));
    let good = Command::new(env!("CARGO_BIN_EXE_faverecs"))
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("extract")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let mut everything = String::new();
    for o in [&out, &good] {
        everything.push_str(&String::from_utf8_lossy(&o.stdout));
        everything.push_str(&String::from_utf8_lossy(&o.stderr));
    }
    for entry in walk(&dir.path().join("data")) {
        if entry.extension().is_some_and(|e| e == "json") {
            everything.push_str(&std::fs::read_to_string(&entry).unwrap());
        }
    }
    assert!(everything.len() > 1000, "there were logs to search");
    assert!(!everything.contains(wrong), "the wrong key leaked");
    assert!(!everything.contains(SIM_KEY), "the key leaked");

    // Without a key, the message says where it comes from.
    let mut env = extract_env(&sim, "");
    env.retain(|(k, _)| *k != "FLICKR_API_KEY");
    let err = failed(&faverecs(dir.path(), &env, &["extract"]));
    assert!(err.contains("FLICKR_API_KEY is not set"), "{err}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn the_demo_runs_the_simulator_and_the_real_extractor() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FAVERECS__DEMO__USERS", "400".to_string()),
        ("FAVERECS__DEMO__TRACKED_USERS", "6".to_string()),
    ];
    let out = ok(&faverecs(dir.path(), &env, &["demo", "--no-serve"]));
    assert!(
        out.contains("extracted from the simulator: 6 tracked users"),
        "{out}"
    );
    assert!(out.contains("scored and published run"), "{out}");
    assert!(
        dir.path()
            .join("data/raw/extract_state/data.parquet")
            .exists()
    );
}

#[test]
fn every_table_opens_in_pyarrow_and_duckdb_with_the_documented_types() {
    let python = std::env::var("FAVERECS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("FAVERECS_TEST_PYTHON is not set: run scripts/test.sh, which installs pyarrow and duckdb into target/test-venv")
    });
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FAVERECS__DEMO__USERS", "500".to_string()),
        ("FAVERECS__DEMO__TRACKED_USERS", "6".to_string()),
    ];
    ok(&faverecs(dir.path(), &env, &["demo", "--no-serve"]));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_tables.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in [
        "favorites",
        "run/photo_recs",
        "run/photographer_recs",
        "run/similar_photos",
        "run/first_recommended",
        "run/tag_photos",
        "run/metrics",
        "extract_state",
    ] {
        assert!(
            stdout.contains(&format!("\"{table}\"")),
            "{table} was checked: {stdout}"
        );
    }
}

#[test]
fn evaluate_prints_every_algorithm_and_sql_joins_recs_with_photos() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FAVERECS__DEMO__USERS", "600".to_string()),
        ("FAVERECS__DEMO__TRACKED_USERS", "12".to_string()),
    ];
    ok(&faverecs(dir.path(), &env, &["demo", "--no-serve"]));
    let out = ok(&faverecs(dir.path(), &env, &["evaluate"]));
    for algorithm in ["flexplore", "itemknn", "popular", "explore"] {
        for k in ["10", "20", "50"] {
            let row = out
                .lines()
                .find(|l| l.contains(&format!(" {algorithm} ")) && l.contains(&format!(" {k} ")))
                .unwrap_or_else(|| panic!("no {algorithm}@{k} row in:\n{out}"));
            assert!(row.contains("temporal"), "{row}");
        }
    }
    assert!(out.contains("12 rows"), "{out}");

    // The published (demo) run: count the recs, then join them with photos.
    let count = |query: &str| -> u64 {
        let out = ok(&faverecs(dir.path(), &env, &["sql", query]));
        out.lines()
            .filter_map(|l| l.trim_matches(|c| c == '│' || c == ' ').parse::<u64>().ok())
            .next()
            .unwrap_or_else(|| panic!("no number in:\n{out}"))
    };
    let recs = count("SELECT count(*) AS n FROM photo_recs");
    let joined =
        count("SELECT count(*) AS n FROM photo_recs r JOIN photos p ON r.photo_id = p.photo_id");
    assert!(recs > 0);
    assert_eq!(
        joined, recs,
        "every recommended photo has its metadata in the run"
    );
    let csv = dir.path().join("top.csv");
    let out = ok(&faverecs(
        dir.path(),
        &env,
        &[
            "sql",
            "SELECT r.user_id, r.algorithm, r.rank, p.title, p.owner_name FROM photo_recs r \
             JOIN photos p ON r.photo_id = p.photo_id WHERE r.rank = 1 ORDER BY r.user_id, r.algorithm",
            "--out",
            csv.to_str().unwrap(),
        ],
    ));
    assert!(
        out.starts_with("wrote 48 rows"),
        "12 users x 4 algorithms: {out}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("user_id,algorithm,rank,title,owner_name")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 48);
    assert!(rows.iter().all(|r| r.contains(",1,")), "{text}");
    // A bad query names the problem and the tables.
    let err = failed(&faverecs(dir.path(), &env, &["sql", "SELECT * FROM nope"]));
    assert!(err.contains("nope") && err.contains("photo_recs"), "{err}");
    let err = failed(&faverecs(
        dir.path(),
        &env,
        &["sql", "SELECT 1", "--out", "x.txt"],
    ));
    assert!(err.contains(".csv or .parquet"), "{err}");
    let err = failed(&faverecs(
        dir.path(),
        &env,
        &["sql", "SELECT 1", "--run", "20990101T000000Z-000000"],
    ));
    assert!(err.contains("20990101T000000Z-000000"), "{err}");
    let err = failed(&faverecs(
        dir.path(),
        &env,
        &["sql", "SELECT 1", "--run", "../../etc"],
    ));
    assert!(err.contains("../../etc"), "{err}");
}

/// Writes a favourites CSV of `rows` distinct rows for user `user`.
/// The files of a bucketed raw table's current generation, in bucket order
/// (`data/raw/<table>/bucket=NNNN/<generation>.parquet`).
fn raw_bucket_files(dir: &Path, table: &str) -> Vec<std::path::PathBuf> {
    let root = dir.join(format!("data/raw/{table}"));
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("_layout.json")).unwrap()).unwrap();
    let generation = layout["generation"].as_str().unwrap();
    (0..layout["buckets"].as_u64().unwrap())
        .map(|b| root.join(format!("bucket={b:04}/{generation}.parquet")))
        .collect()
}

/// A raw table's stored bytes: every bucket's in bucket order for a bucketed
/// table (whose file names differ between stores holding equal rows), else
/// its one file's.
fn raw_table_bytes(dir: &Path, table: &str) -> Vec<Vec<u8>> {
    let single = dir.join(format!("data/raw/{table}/data.parquet"));
    let files = if single.exists() {
        vec![single]
    } else {
        raw_bucket_files(dir, table)
    };
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn favorites_csv(path: &Path, user: &str, rows: usize) {
    let mut text = String::from("user_id,photo_id,owner_id\n");
    for i in 0..rows {
        text.push_str(&format!("{user},{},{}\n", 1_000_000 + i, "5@N05"));
    }
    std::fs::write(path, text).unwrap();
}

/// Both processes' rows are stored, or one says it lost the race: never a
/// silent loss. Checked on a local directory and on moto's S3.
fn check_concurrent_imports(dir: &Path, env: &[(&str, String)]) {
    let rows = 20_000;
    favorites_csv(&dir.join("a.csv"), "1@N01", rows);
    favorites_csv(&dir.join("b.csv"), "2@N01", rows);
    let spawn = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_faverecs"))
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .args(["import", "favorites", file])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a.csv"), spawn("b.csv"));
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut expected = 0;
    for out in &outs {
        if out.status.success() {
            expected += rows;
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("run it again"),
                "a failure must say it lost the race: {err}"
            );
        }
    }
    assert!(expected > 0, "at least one import lands: {outs:?}");
    // A third import reports how many rows it found stored.
    favorites_csv(&dir.join("c.csv"), "3@N01", 1);
    let out = ok(&faverecs(dir, env, &["import", "favorites", "c.csv"]));
    assert!(
        out.contains(&format!("({expected} rows before, {} after", expected + 1)),
        "expected {expected} rows stored: {out}"
    );
}

#[test]
fn two_concurrent_imports_into_one_table_lose_no_rows_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "FAVERECS__STORAGE__URL",
        dir.path().join("data").display().to_string(),
    )];
    check_concurrent_imports(dir.path(), &env);
}

#[test]
fn two_concurrent_imports_into_one_table_lose_no_rows_on_s3() {
    let moto = moto::Moto::start();
    moto.create_bucket("races");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FAVERECS__STORAGE__URL", "s3://races/data".to_string()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    check_concurrent_imports(dir.path(), &env);
}

#[test]
fn an_error_states_each_cause_once() {
    // A raw table that is not Parquet: the library's message quotes the Parquet
    // error, which is also its source; the binary must not print it twice.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data/raw/favorites")).unwrap();
    std::fs::write(
        d.join("data/raw/favorites/data.parquet"),
        "PAR1 then garbage PAR1",
    )
    .unwrap();
    let err = failed(&faverecs(d, &[], &["score"]));
    assert!(err.contains("raw/favorites/data.parquet"), "{err}");
    let parts: Vec<&str> = err.trim().split(": ").filter(|p| p.len() > 12).collect();
    for p in &parts {
        assert_eq!(err.matches(p).count(), 1, "{p:?} repeats in: {err}");
    }
}
