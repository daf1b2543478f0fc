//! Two `faverecs serve` replicas on one storage (issue 15, item 4): both switch
//! to a new publish within one poll interval (plus the time to load it), and
//! answer identical bodies and ETags for the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Server, faverecs, ok, write_inputs};

/// The poll interval the replicas run with.
const POLL_SECS: u64 = 2;

/// The served run's id, from `/api/runs/current`.
async fn current_run(base: &str) -> Option<String> {
    let resp = reqwest::get(format!("{base}/api/runs/current"))
        .await
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    let v: serde_json::Value = resp.json().await.ok()?;
    v["manifest"]["run_id"].as_str().map(String::from)
}

/// Status, ETag and body of `path` on a replica.
async fn answer(base: &str, path: &str) -> (u16, String, String) {
    let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, etag, resp.text().await.unwrap())
}

/// Both replicas answer every path alike: same status, ETag and body, 200 and
/// on `run_id` for the JSON ones.
async fn alike(a: &Server, b: &Server, run_id: &str) {
    for path in [
        "/api/users/1@N01/photos",
        "/api/users/1@N01/photos?algorithm=popular",
        "/api/users/1@N01/photographers",
        "/api/runs",
        "/users/1@N01",
        "/",
    ] {
        let (sa, ea, ba) = answer(&a.base, path).await;
        let (sb, eb, bb) = answer(&b.base, path).await;
        assert_eq!(sa, 200, "{path} on the first replica: {ba}");
        assert_eq!(
            (sa, &ea, &ba),
            (sb, &eb, &bb),
            "{path} differs between the replicas"
        );
        if path.contains("users/1@N01") {
            assert!(!ea.is_empty(), "{path} carries an ETag");
        }
        if path.starts_with("/api/users/1@N01") {
            assert!(ba.contains(run_id), "{path} is not on run {run_id}: {ba}");
        }
    }
}

fn score_and_publish(dir: &Path, env: &[(&str, String)]) -> String {
    ok(&faverecs(dir, env, &["score"]));
    let out = ok(&faverecs(dir, env, &["publish"]));
    out.strip_prefix("published run ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected publish output: {out}"))
        .to_string()
}

#[tokio::test]
async fn two_replicas_switch_to_a_new_publish_within_one_poll_interval_and_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let env = vec![("FAVERECS__SERVE__POLL_INTERVAL_SECS", POLL_SECS.to_string())];
    write_inputs(dir);
    ok(&faverecs(
        dir,
        &env,
        &["import", "favorites", "favorites.csv"],
    ));
    ok(&faverecs(dir, &env, &["import", "tracked", "tracked.csv"]));
    ok(&faverecs(
        dir,
        &env,
        &["import", "contacts", "contacts.csv"],
    ));
    let first = score_and_publish(dir, &env);
    let a = Server::start(dir, &env);
    let b = Server::start(dir, &env);
    assert_eq!(current_run(&a.base).await.as_deref(), Some(first.as_str()));
    assert_eq!(current_run(&b.base).await.as_deref(), Some(first.as_str()));
    alike(&a, &b, &first).await;

    // Run ids are stamped to the second.
    std::thread::sleep(Duration::from_millis(1100));
    let second = score_and_publish(dir, &env);
    assert_ne!(first, second);
    let published = Instant::now();
    let mut switched = [None, None];
    while switched.iter().any(Option::is_none) && published.elapsed() < Duration::from_secs(30) {
        for (i, server) in [&a, &b].into_iter().enumerate() {
            if switched[i].is_none() && current_run(&server.base).await.as_deref() == Some(&second)
            {
                switched[i] = Some(published.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One poll interval, plus a second for loading the run and for this
    // loop's own polling on a busy machine.
    let bound = Duration::from_secs(POLL_SECS + 1);
    for (i, t) in switched.iter().enumerate() {
        let t = t.unwrap_or_else(|| panic!("replica {i} never switched to {second}"));
        assert!(
            t <= bound,
            "replica {i} switched after {t:?} (bound {bound:?})"
        );
    }
    alike(&a, &b, &second).await;
    a.stop();
    b.stop();
}
