//! `faverecs nightly` and the run lock, through the binary: two nights against
//! the Flickr API simulator, and two nights started together (one runs, the
//! other names the holder), a killed holder's lock taken over once its lease ran
//! out, on a local directory and on moto's S3.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{SIM_KEY, Sim, extract_env, faverecs, moto, ok, track_demo_users};

fn spawn(dir: &Path, env: &[(&str, String)], args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_faverecs"))
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of `faverecs runs`: (run id, status, current).
fn runs(dir: &Path, env: &[(&str, String)]) -> Vec<(String, String, bool)> {
    ok(&faverecs(dir, env, &["runs"]))
        .lines()
        .filter_map(|l| {
            let current = l.starts_with('*');
            let mut words = l[1..].split_whitespace();
            let id = words.next()?.to_string();
            let status = words.next()?.to_string();
            Some((id, status, current))
        })
        .collect()
}

#[test]
fn two_nights_against_the_simulator_publish_two_runs_and_gc_keeps_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = Sim::start(d, 0);
    let env = extract_env(&sim, SIM_KEY);
    track_demo_users(d, &env);

    let first = ok(&faverecs(d, &env, &["nightly"]));
    assert!(first.contains("nightly succeeded"), "{first}");
    assert!(
        !d.join("data/locks/run.json").exists(),
        "the lock is released"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let second = ok(&faverecs(d, &env, &["nightly"]));
    assert!(second.contains("nightly succeeded"), "{second}");

    let listed = runs(d, &env);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.iter().all(|(_, s, _)| s == "succeeded"),
        "{listed:?}"
    );
    assert!(
        !listed[0].2 && listed[1].2,
        "the second night's run is current"
    );
    // The second night's gc kept the first run: it was replaced as the
    // published run moments ago, and it is one of the newest succeeded runs.
    assert!(
        second.contains(&format!("keep          {}", listed[0].0)),
        "{second}"
    );
    let dry = ok(&faverecs(d, &env, &["gc", "--dry-run"]));
    assert!(
        dry.contains(&format!("keep          {}  published", listed[1].0)),
        "{dry}"
    );
    assert!(!dry.contains("would remove"), "{dry}");
}

/// A holder killed in the middle of its extract: the next night is refused
/// while the lease runs, and takes the lock over (logging it) once it has run
/// out. Then two nights at once: exactly one runs; the other exits 75 naming
/// the holder.
fn check_the_lock(dir: &Path, mut env: Vec<(&'static str, String)>) {
    let sim = Sim::start(dir, 100);
    env.extend(extract_env(&sim, SIM_KEY));
    env.push(("FAVERECS__LOCK__LEASE_SECS", "3".into()));
    track_demo_users(dir, &env);

    // The first night pulls every user through a slow simulator: it is still
    // extracting when it is killed.
    let mut holder = spawn(dir, &env, &["nightly"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the holder finished before it could be killed"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let refused = faverecs(dir, &env, &["nightly"]);
    let text = stderr(&refused);
    assert_eq!(refused.status.code(), Some(75), "{text}");
    assert!(
        text.contains("another run holds the lock") && text.contains("`faverecs nightly` (pid"),
        "{text}"
    );
    assert!(text.contains("stage lock failed"), "{text}");
    std::thread::sleep(Duration::from_secs(4));
    let taken = faverecs(dir, &env, &["nightly"]);
    let text = stderr(&taken);
    assert!(taken.status.success(), "{text}");
    assert!(text.contains("taking over the run lock"), "{text}");

    let a = spawn(dir, &env, &["nightly"]);
    let b = spawn(dir, &env, &["nightly"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(75)),
        "exit codes {codes:?}\n{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if a.status.code() == Some(75) { &a } else { &b };
    assert!(
        stderr(loser).contains("another run holds the lock"),
        "{}",
        stderr(loser)
    );
}

#[test]
fn one_nightly_at_a_time_and_a_dead_holders_lock_is_taken_over_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    check_the_lock(dir.path(), Vec::new());
}

#[test]
fn one_nightly_at_a_time_and_a_dead_holders_lock_is_taken_over_on_s3() {
    let moto = moto::Moto::start();
    moto.create_bucket("nights");
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("FAVERECS__STORAGE__URL", "s3://nights/data".to_string()),
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    check_the_lock(dir.path(), env);
}
