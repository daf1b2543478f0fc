//! The API contract, fuzzed: schemathesis (PyPI) against a live `serve` on
//! loopback, reading the OpenAPI document the server itself serves.
//!
//! schemathesis is found through `FAVERECS_SCHEMATHESIS` (which
//! `scripts/test.sh` sets after installing it into `target/fuzz-venv`), else on
//! `PATH`. A missing schemathesis fails the test with instructions; it is never
//! skipped.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use pipeline::config::DemoSettings;
use serve::AppState;

use crate::helpers::{empty_storage, score_and_publish};

/// A TOML array of strings.
fn toml_list<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = values
        .into_iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The first `n` of `values`, sorted, so the run is the same every time.
fn some<S: AsRef<str>>(values: impl IntoIterator<Item = S>, n: usize) -> BTreeSet<String> {
    values
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_against_the_served_openapi_document() {
    let exe = std::env::var("FAVERECS_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    if Command::new(&exe).arg("--version").output().is_err() {
        panic!(
            "schemathesis not found ({exe}); run scripts/test.sh, which installs it into \
             target/fuzz-venv, or set FAVERECS_SCHEMATHESIS to its path"
        );
    }

    // A community big enough that every list endpoint has real entries.
    let storage = empty_storage();
    let community = pipeline::community::generate(&DemoSettings {
        users: 400,
        tracked_users: 30,
        clusters: 5,
        seed: 3,
    });
    pipeline::community::write_community(&storage, &community)
        .await
        .unwrap();
    let run_id = score_and_publish(&storage).await;
    let state = AppState::new(storage);
    assert_eq!(state.refresh().await.unwrap(), Some(run_id));
    let snapshot = state.snapshot().unwrap();

    // Real ids, which schemathesis mixes with generated ones, so that the fuzzing
    // reaches the lists and not only the 404s.
    let users = some(snapshot.user_ids(), 40);
    let photos = some(snapshot.similar_photo_ids(), 40);
    let tags = some(snapshot.tag_names(), 40);
    let names = some(
        snapshot
            .user_ids()
            .filter_map(|u| snapshot.username(u).flatten()),
        10,
    );
    assert!(!users.is_empty() && !photos.is_empty() && !tags.is_empty());
    let config = format!(
        r#"
[dictionaries.users]
values = {users}
[dictionaries.lookups]
values = {lookups}
[dictionaries.photos]
values = {photos}
[dictionaries.tags]
values = {tags}
[dictionaries.algorithms]
values = {algorithms}

[parameters]
"path.user_id" = {{ dictionary = "users", probability = 0.7 }}
"path.photo_id" = {{ dictionary = "photos", probability = 0.7 }}
"path.tag" = {{ dictionary = "tags", probability = 0.7 }}
"query.algorithm" = {{ dictionary = "algorithms", probability = 0.7 }}
"query.q" = {{ dictionary = "lookups", probability = 0.7 }}

# Any warning (an unresolvable reference, operations that only ever answered
# 404) fails the run: it would mean the fuzzing did not reach the code.
[warnings]
fail-on = true
"#,
        users = toml_list(users.iter().map(String::as_str)),
        lookups = toml_list(users.iter().chain(names.iter()).map(String::as_str)),
        photos = toml_list(photos.iter().map(String::as_str)),
        tags = toml_list(tags.iter().map(String::as_str)),
        algorithms = toml_list(snapshot.algorithms.iter().map(String::as_str)),
    );
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("schemathesis.toml");
    std::fs::write(&config_path, config).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::run(
        listener,
        state,
        Duration::from_secs(3600),
        async {
            stopped.await.ok();
        },
    ));

    // The document is served, is OpenAPI 3.1, and lists every JSON endpoint.
    let url = format!("http://{addr}/api/openapi.json");
    let doc: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/api/users/{user_id}/photos",
        "/api/users/{user_id}/photographers",
        "/api/photos/{photo_id}/similar",
        "/api/tags/{tag}/photos",
        "/api/lookup",
        "/api/runs",
        "/api/runs/current",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains(p), "{p} is missing from the document");
    }

    // Every check schemathesis has: no 5xx, every status, content type, header
    // and body as documented, schema-valid requests accepted and invalid ones
    // refused.
    let work = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .current_dir(&work)
            .env("NO_COLOR", "1")
            .args(["--config-file"])
            .arg(&config_path)
            .args([
                "run",
                &url,
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "60",
                "--seed",
                "1",
                "--workers",
                "1",
                "--no-color",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    stop.send(()).ok();
    server.await.unwrap().unwrap();

    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("generated") || l.contains("issues found") || l.contains("Tested"))
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis reported failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("No issues found"),
        "schemathesis did not report a clean run:\n{stdout}"
    );
}
