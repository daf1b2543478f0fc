//! End-to-end tests of the `faverecs` binary: import → score → publish → serve over
//! real HTTP on port 0, on a local directory and on an `s3://` URL against moto,
//! plus the error messages an operator sees.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../pipeline/tests/support/moto.rs"]
mod moto;

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

impl Server {
    fn start(dir: &Path, env: &[(&str, String)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_faverecs"))
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .args(["serve", "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
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
    assert!(
        out.contains("succeeded") && out.contains("photo_recs: 3 rows"),
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
    let score = v["items"][0]["score"].as_f64().unwrap();
    assert!(
        (score - (150.0 * (1.0f64 / 253.0).sqrt() + 150.0 * (2.0f64 / 255.0).sqrt())).abs() < 1e-9
    );
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
    assert!(dir.path().join("data/raw/favorites/data.parquet").exists());
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
