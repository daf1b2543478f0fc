//! A published run over in-memory storage, and a request helper.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use pipeline::config::Settings;
use pipeline::model::Table;
use pipeline::raw::merge_raw;
use pipeline::runs::publish;
use pipeline::score::{ScoreOptions, run_score};
use pipeline::store::Storage;
use serve::AppState;
use tower::ServiceExt;

pub fn empty_storage() -> Storage {
    Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory")
}

pub fn strings(v: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

pub fn times(n: usize) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(vec![None; n]).with_timezone("UTC"))
}

/// The hand-computed example (user 1@N01 gets photos 30, 20, 21), with photo
/// metadata whose title and owner name carry script payloads.
pub async fn published_state() -> AppState {
    let storage = empty_storage();
    write_example(&storage).await;
    let run_id = score_and_publish(&storage).await;
    let state = AppState::new(storage);
    assert_eq!(state.refresh().await.unwrap(), Some(run_id));
    state
}

/// Scores the stored raw tables into a new run and publishes it.
pub async fn score_and_publish(storage: &Storage) -> String {
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    let run = run_score(storage, &settings, ScoreOptions::default())
        .await
        .unwrap();
    publish(storage, Some(&run.run_id)).await.unwrap();
    run.run_id
}

/// Writes the example raw tables.
pub async fn write_example(storage: &Storage) {
    let favs: [(&str, &str, &str); 11] = [
        ("1@N01", "10", "2@N01"),
        ("1@N01", "11", "3@N01"),
        ("2@N01", "11", "3@N01"),
        ("2@N01", "21", "3@N01"),
        ("2@N01", "30", "4@N01"),
        ("3@N01", "10", "2@N01"),
        ("3@N01", "11", "3@N01"),
        ("3@N01", "20", "2@N01"),
        ("3@N01", "30", "4@N01"),
        ("3@N01", "40", "1@N01"),
        ("4@N01", "10", "2@N01"),
    ];
    let favorites = RecordBatch::try_new(
        Table::Favorites.schema(),
        vec![
            strings(favs.iter().map(|f| Some(f.0)).collect()),
            strings(favs.iter().map(|f| Some(f.1)).collect()),
            strings(favs.iter().map(|f| Some(f.2)).collect()),
            times(favs.len()),
        ],
    )
    .unwrap();
    let photos = RecordBatch::try_new(
        Table::Photos.schema(),
        vec![
            strings(vec![Some("30"), Some("20")]),
            strings(vec![Some("4@N01"), Some("2@N01")]),
            strings(vec![Some("<img src=x onerror=alert(2)>"), Some("Bee")]),
            strings(vec![Some("<script>alert(1)</script>"), Some("Harbour")]),
            strings(vec![Some("65535"), Some("65535")]),
            strings(vec![Some("0a0e8bf24c"), Some("\"><script>")]),
            strings(vec![Some("sea <b>bold</b> Film"), Some("film sea")]),
            times(2),
        ],
    )
    .unwrap();
    let tracked = RecordBatch::try_new(
        Table::TrackedUsers.schema(),
        vec![
            strings(vec![Some("1@N01")]),
            strings(vec![Some("Alice")]),
            times(1),
        ],
    )
    .unwrap();
    merge_raw(storage, Table::Favorites, vec![favorites])
        .await
        .unwrap();
    merge_raw(storage, Table::Photos, vec![photos])
        .await
        .unwrap();
    merge_raw(storage, Table::TrackedUsers, vec![tracked])
        .await
        .unwrap();
}

pub async fn get(state: &AppState, uri: &str) -> (StatusCode, HeaderMap, String) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = serve::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

pub async fn get_with(
    state: &AppState,
    uri: &str,
    headers: &[(&str, &str)],
) -> axum::response::Response {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    serve::app(state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}
