//! Router tests: every endpoint through `app(state).oneshot(...)`, without a socket,
//! on a run scored from a small community whose titles and names are hostile.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod contract;
mod helpers;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serve::AppState;
use tower::ServiceExt;

use helpers::*;

#[tokio::test]
async fn healthz_is_ok_and_readyz_waits_for_a_run() {
    let state = AppState::new(empty_storage());
    let (status, _, body) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("ok"));
    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("faverecs publish"), "{body}");
    let (status, _, _) = get(&state, "/api/users/1@N01/photos").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn photos_endpoint_returns_the_ranked_list_with_paging() {
    let state = published_state().await;
    let (status, headers, body) = get(&state, "/api/users/1@N01/photos").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 3);
    let ids: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["photo_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["30", "20", "21"]);
    assert_eq!(
        v["items"][0]["top_neighbors"],
        serde_json::json!(["3@N01", "2@N01"])
    );
    assert_eq!(
        v["items"][0]["photo_url"],
        "https://www.flickr.com/photos/4@N01/30"
    );
    assert_eq!(
        v["items"][0]["thumbnail_url"],
        "https://live.staticflickr.com/65535/30_0a0e8bf24c_q.jpg"
    );

    let (_, _, body) = get(&state, "/api/users/1@N01/photos?limit=1&offset=1").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["photo_id"], "20");
    assert_eq!(v["items"][0]["rank"], 2);
}

#[tokio::test]
async fn photographers_endpoint_lists_neighbors_with_counts() {
    let state = published_state().await;
    let (status, _, body) = get(&state, "/api/users/1@N01/photographers").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows: Vec<(String, i64, i64)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["photographer_id"].as_str().unwrap().to_string(),
                i["common_favorites"].as_i64().unwrap(),
                i["total_favorites"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, vec![("3@N01".into(), 2, 5), ("2@N01".into(), 1, 3)]);
}

#[tokio::test]
async fn client_errors_are_json_4xx() {
    let state = published_state().await;
    for (uri, want) in [
        ("/api/users/abc/photos", StatusCode::BAD_REQUEST),
        ("/api/users/1@N01/photos?limit=0", StatusCode::BAD_REQUEST),
        ("/api/users/1@N01/photos?limit=101", StatusCode::BAD_REQUEST),
        ("/api/users/1@N01/photos?limit=-1", StatusCode::BAD_REQUEST),
        ("/api/users/1@N01/photos?offset=x", StatusCode::BAD_REQUEST),
        ("/api/users/99@N01/photos", StatusCode::NOT_FOUND),
        ("/api/users/99@N01/photographers", StatusCode::NOT_FOUND),
        ("/no/such/route", StatusCode::NOT_FOUND),
    ] {
        let (status, headers, body) = get(&state, uri).await;
        assert_eq!(status, want, "{uri}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{uri}: {body}"
        );
    }
    let (_, _, body) = get(&state, "/api/users/99@N01/photos").await;
    assert!(
        body.contains("no recommendations for user 99@N01"),
        "{body}"
    );
}

#[tokio::test]
async fn writes_are_refused_with_405() {
    let state = published_state().await;
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/api/users/1@N01/photos")
            .body(Body::empty())
            .unwrap();
        let resp = serve::app(state.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn user_page_shows_the_grid_and_escapes_hostile_text() {
    let state = published_state().await;
    let (status, headers, body) = get(&state, "/users/1@N01").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    // Photo 30 has a thumbnail; 20 and 21 have no secret and get a placeholder.
    assert!(body.contains("https://live.staticflickr.com/65535/30_0a0e8bf24c_q.jpg"));
    assert_eq!(body.matches("class=\"placeholder\"").count(), 2, "{body}");
    assert!(body.contains("https://www.flickr.com/photos/4@N01/30"));
    // Hostile title and owner name are inert text.
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(!body.contains("<img src=x onerror"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(
        body.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{body}"
    );
    assert!(body.contains("Favourited by 3@N01, 2@N01"));
    // A first run: every rec is new.
    assert_eq!(body.matches("class=\"new\"").count(), 3, "{body}");
    // Tabs lead to photographers and to the compare page.
    assert!(
        body.contains("href=\"/users/1@N01?tab=photographers\""),
        "{body}"
    );
    assert!(body.contains("href=\"/users/1@N01/compare\""), "{body}");
    assert!(
        body.contains("Recommended for Alice"),
        "the username is shown: {body}"
    );
}

#[tokio::test]
async fn home_lists_users_and_pages_reject_bad_input() {
    let state = published_state().await;
    let (status, _, body) = get(&state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("href=\"/users/1@N01\""), "{body}");
    let (status, _, body) = get(&state, "/users/%3Cscript%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("&lt;script&gt;"), "{body}");
    let (status, _, _) = get(&state, "/users/1@N01?page=99").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&state, "/users/5@N01").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = get(&state, "/static/style.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn hostile_inputs_never_get_a_5xx() {
    let state = published_state().await;
    let long = "9".repeat(5000);
    let mut uris: Vec<String> = vec![
        "/api/users/..%2F..%2Fetc%2Fpasswd/photos".into(),
        "/api/users/%2e%2e/photos".into(),
        "/users/..%2FCURRENT".into(),
        "/api/users/%FF%FE/photos".into(),
        "/users/%C3%28".into(),
        "/api/users/1@N01/photos?limit=99999999999999999999999".into(),
        "/api/users/1@N01/photos?limit=1e3".into(),
        "/api/users/1@N01/photos?offset=-5".into(),
        "/api/users/1@N01/photos?limit=%00".into(),
        "/api/users/1@N01/photos?limit=1&limit=2".into(),
        "/api/users/1@N01%00/photos".into(),
        "/api/users//photos".into(),
        "/api/users/@N01/photos".into(),
        "/api/users/1@N/photos".into(),
        "/users/1@N01?page=0".into(),
        "/users/1@N01?page=-1".into(),
        "/users/1@N01?page=abc".into(),
        "/static/../../Cargo.toml".into(),
        "/static/style.css/..".into(),
        format!("/api/users/{long}@N01/photos"),
        format!("/users/{long}"),
        format!("/api/users/1@N01/photos?limit={long}"),
    ];
    for c in ["<", ">", "\"", "'", "%00", "%0d%0a", "%20", "%u0000", "😀"] {
        uris.push(format!("/api/users/{c}/photos"));
        uris.push(format!("/users/1@N01{c}"));
    }
    for uri in &uris {
        let Ok(req) = Request::builder().uri(uri.as_str()).body(Body::empty()) else {
            continue; // not even a valid URI: no server would receive it
        };
        let resp = serve::app(state.clone()).oneshot(req).await.unwrap();
        let s = resp.status();
        assert!(s.is_client_error(), "{uri} → {s}");
    }
    // An undecodable query key is ignored rather than refused; it must not 5xx.
    let (status, _, _) = get(&state, "/api/users/1@N01/photos?%zz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn runs_endpoints_and_page_show_every_run_and_the_current_one() {
    let state = published_state().await;
    let (status, headers, body) = get(&state, "/api/runs/current").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let run_id = v["manifest"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(v["manifest"]["status"], "succeeded");
    assert_eq!(v["manifest"]["rows_out"]["photo_recs"], 12);
    let (status, _, body) = get(&state, "/api/runs").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["run_id"], run_id.as_str());
    assert_eq!(v[0]["current"], true);
    let (status, _, body) = get(&state, "/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(&run_id) && body.contains("current") && body.contains("recommend"),
        "{body}"
    );
}

#[tokio::test]
async fn responses_carry_an_etag_from_the_run_and_answer_304() {
    let state = published_state().await;
    let resp = get_with(&state, "/api/users/1@N01/photos", &[]).await;
    let etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
    let run_id = state.snapshot().unwrap().manifest.run_id.clone();
    assert_eq!(etag, format!("W/\"{run_id}\""));
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, max-age=60");
    let resp = get_with(
        &state,
        "/api/users/1@N01/photos",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = get_with(
        &state,
        "/users/1@N01",
        &[("if-none-match", "W/\"another-run\"")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // An error is never turned into a 304.
    let resp = get_with(
        &state,
        "/api/users/9@N09/photos",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (_, headers, _) = get(&state, "/healthz").await;
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let state = published_state().await;
    for (enc, want) in [("gzip", "gzip"), ("br", "br")] {
        let resp = get_with(&state, "/users/1@N01", &[("accept-encoding", enc)]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_ENCODING], want);
    }
    let resp = get_with(&state, "/users/1@N01", &[]).await;
    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn metrics_count_requests_by_route_with_latency_and_run_age() {
    let state = published_state().await;
    for uri in [
        "/api/users/1@N01/photos",
        "/api/users/1@N01/photos",
        "/api/users/bad/photos",
        "/../../etc/passwd",
    ] {
        get(&state, uri).await;
    }
    let (status, headers, body) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        body.contains(
            "faverecs_http_requests_total{route=\"/api/users/{user_id}/photos\",status=\"200\"} 2"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "faverecs_http_requests_total{route=\"/api/users/{user_id}/photos\",status=\"400\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains("route=\"unmatched\",status=\"404\"} 1"),
        "{body}"
    );
    assert!(
        body.contains(
            "faverecs_http_request_duration_seconds_count{route=\"/api/users/{user_id}/photos\"} 3"
        ),
        "{body}"
    );
    let run_id = state.snapshot().unwrap().manifest.run_id.clone();
    assert!(
        body.contains(&format!("faverecs_run_info{{run_id=\"{run_id}\"}} 1")),
        "{body}"
    );
    assert!(body.contains("faverecs_run_age_seconds "), "{body}");
}

#[tokio::test]
async fn lookup_finds_tracked_users_by_url_nsid_or_username() {
    let state = published_state().await;
    for q in [
        "https://www.flickr.com/photos/1@N01/",
        "https://www.flickr.com/people/1@N01/",
        "https://www.flickr.com/photos/alice/51737769056/in/faves",
        "www.flickr.com/photos/ALICE",
        "1@N01",
        "alice",
    ] {
        let uri = format!("/api/lookup?q={}", urlencode(q));
        let (status, _, body) = get(&state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["user_id"], "1@N01", "{q}");
    }
    let (status, _, body) = get(&state, "/api/lookup?q=bob").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no tracked user matches"), "{body}");
    let (status, _, _) = get(&state, "/api/lookup").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The search box redirects to the user's page.
    let resp = get_with(&state, "/lookup?q=alice", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/users/1@N01");
    let (_, _, home) = get(&state, "/").await;
    assert!(
        home.contains("action=\"/lookup\"") && home.contains("name=\"q\""),
        "{home}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_new_publish_is_swapped_in_and_a_corrupt_run_is_refused() {
    let state = published_state().await;
    let first = state.snapshot().unwrap().manifest.run_id.clone();
    // Requests keep being served while a new run is published and loaded.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = score_and_publish(&state.storage).await;
    let load = {
        let state = state.clone();
        tokio::spawn(async move { state.refresh().await })
    };
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let (status, _, body) = get(&state, "/api/users/1@N01/photos").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        seen.insert(v["run_id"].as_str().unwrap().to_string());
    }
    assert_eq!(load.await.unwrap().unwrap(), Some(second.clone()));
    assert!(seen.iter().all(|r| r == &first || r == &second), "{seen:?}");
    let (_, _, body) = get(&state, "/api/users/1@N01/photos").await;
    assert!(body.contains(&second));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["items"][0]["is_new"], false,
        "the same recs were made by the first run"
    );
    let (_, _, page) = get(&state, "/users/1@N01").await;
    assert_eq!(page.matches("class=\"new\"").count(), 0);

    // A run whose table is garbage, published anyway: loading fails, the old run serves.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let third = score_and_publish(&state.storage).await;
    let path =
        object_store::path::Path::from(format!("runs/{third}/photo_recs/part-00000.parquet"));
    state
        .storage
        .put_bytes(
            &path,
            bytes::Bytes::from_static(b"PAR1 this is not a parquet file"),
        )
        .await
        .unwrap();
    let err = state.refresh().await.unwrap_err();
    assert!(err.to_string().contains(&third), "{err}");
    let (status, _, body) = get(&state, "/api/users/1@N01/photos").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(&second), "the previous run keeps serving");
}

#[tokio::test]
async fn a_hundred_and_more_hostile_requests_get_only_4xx() {
    let state = published_state().await;
    let ids = [
        "..",
        "%2e%2e",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "%FF%FE",
        "%C3%28",
        "1@N01%00",
        "1@N01%0d%0aSet-Cookie:x",
        "<script>",
        "%3Cscript%3E",
        "'%20OR%201=1--",
        "1@N01'",
        "@N01",
        "1@N",
        "1@N001",
        "-1@N01",
        "1.5@N01",
        "%F0%9F%98%80",
        "CON",
        "~root",
    ];
    let long = "9".repeat(4000);
    let mut uris = Vec::new();
    for id in ids.iter().copied().chain([long.as_str()]) {
        for route in [
            "/api/users/{}/photos",
            "/api/users/{}/photographers",
            "/users/{}",
        ] {
            uris.push(route.replace("{}", id));
        }
    }
    for q in [
        "limit=0",
        "limit=-1",
        "limit=101",
        "limit=1e3",
        "limit=abc",
        "limit=99999999999999999999",
        "offset=-1",
        "offset=10001",
        "limit=1&limit=2",
        "limit=%00",
    ] {
        uris.push(format!("/api/users/1@N01/photos?{q}"));
        uris.push(format!("/api/users/1@N01/photographers?{q}"));
    }
    for q in ["page=0", "page=-1", "page=abc", "page=99", "page=%00"] {
        uris.push(format!("/users/1@N01?{q}"));
    }
    let long_algorithm = format!("algorithm={}", "a".repeat(1500));
    for q in [
        "algorithm=",
        "algorithm=FLEXPLORE",
        "algorithm=%00",
        "algorithm=%3Cscript%3E",
        "algorithm=..%2F..",
        "algorithm=%FF%FE",
        long_algorithm.as_str(),
    ] {
        uris.push(format!("/api/users/1@N01/photos?{q}"));
        uris.push(format!("/users/1@N01?{q}"));
    }
    uris.push("/api/users/1@N01/photographers?algorithm=itemknn".into());
    for q in ["", "q=", "q=nobody", &format!("q={}", "x".repeat(600))] {
        uris.push(format!("/api/lookup?{q}"));
    }
    for p in [
        "/static/../Cargo.toml",
        "/static/style.css/..",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/api",
        "/api/users",
        "/api/users/1@N01",
        "/users",
        "/runs/../CURRENT",
        "/CURRENT",
        "/data/raw/favorites/data.parquet",
    ] {
        uris.push(p.to_string());
    }
    let mut sent = 0;
    for uri in &uris {
        let Ok(req) = Request::builder().uri(uri.as_str()).body(Body::empty()) else {
            continue;
        };
        let resp = serve::app(state.clone()).oneshot(req).await.unwrap();
        assert!(resp.status().is_client_error(), "{uri} → {}", resp.status());
        sent += 1;
    }
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
    ] {
        for uri in [
            "/",
            "/api/users/1@N01/photos",
            "/users/1@N01",
            "/metrics",
            "/api/runs",
        ] {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::from("x"))
                .unwrap();
            let resp = serve::app(state.clone()).oneshot(req).await.unwrap();
            assert!(
                resp.status().is_client_error(),
                "{method} {uri} → {}",
                resp.status()
            );
            sent += 1;
        }
    }
    // An oversized body is refused, not read.
    let req = Request::builder()
        .method("POST")
        .uri("/api/users/1@N01/photos")
        .body(Body::from(vec![b'x'; 1 << 20]))
        .unwrap();
    assert!(
        serve::app(state.clone())
            .oneshot(req)
            .await
            .unwrap()
            .status()
            .is_client_error()
    );
    sent += 1;
    assert!(sent >= 100, "only {sent} hostile requests were sent");
}

#[tokio::test]
async fn similar_photos_api_and_photo_pages_link_photo_to_photo() {
    let state = published_state().await;
    // Photo 10 was favourited by the tracked user 1@N01, so it has similar rows.
    // U(10) = {1,3,4}@N01; 11 is co-favourited by 1 and 3: cosine 2/sqrt(3·3).
    let (status, _, body) = get(&state, "/api/photos/10/similar").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["items"][0]["photo_id"], "11");
    assert_eq!(v["items"][0]["algorithm"], "cosine");
    assert!((v["items"][0]["score"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(v["items"][0]["common_favorites"], 2);
    let (status, _, _) = get(&state, "/api/photos/10/similar?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&state, "/api/photos/abc/similar").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&state, "/api/photos/999999/similar").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The photo page of a recommended photo shows it and links its similar photos
    // to their own pages.
    let (status, _, page) = get(&state, "/photos/30").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped title: {page}"
    );
    assert!(page.contains("href=\"/photos/"), "{page}");
    assert!(
        page.contains("https://www.flickr.com/photos/4@N01/30"),
        "{page}"
    );
    let (_, _, user_page) = get(&state, "/users/1@N01").await;
    assert!(user_page.contains("href=\"/photos/30\""), "{user_page}");
    let (status, _, _) = get(&state, "/photos/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&state, "/photos/..%2F..%2Fetc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn photographers_tab_compare_page_and_algorithm_parameter() {
    let state = published_state().await;
    let (status, _, body) = get(&state, "/users/1@N01?tab=photographers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("https://www.flickr.com/photos/3@N01/")
            && body.contains("<td>2</td><td>5</td>"),
        "{body}"
    );
    let (status, _, _) = get(&state, "/users/1@N01?tab=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = get(&state, "/users/1@N01/compare").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("flexplore · photos") && body.contains("flexplore · photographers"),
        "{body}"
    );
    // Every algorithm of the run gets a column, in the run's order.
    let at = |name: &str| {
        body.find(&format!(">{name} · photos"))
            .unwrap_or_else(|| panic!("no {name} column: {body}"))
    };
    assert!(
        at("flexplore") < at("itemknn")
            && at("itemknn") < at("popular")
            && at("popular") < at("explore")
    );
    assert!(body.contains("href=\"/photos/30\""), "{body}");
    let (status, _, _) = get(&state, "/users/abc/compare").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = get(&state, "/api/users/1@N01/photos?algorithm=flexplore").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"algorithm\":\"flexplore\""), "{body}");
    let (status, _, body) = get(&state, "/api/users/1@N01/photos?algorithm=magic").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("it has: flexplore, itemknn, popular, explore"),
        "{body}"
    );
    // Photographer recs are Flexplore's only.
    let (status, _, body) = get(&state, "/api/users/1@N01/photographers?algorithm=itemknn").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = get(&state, "/api/users/1@N01/photographers?algorithm=flexplore").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Each algorithm's list: itemknn explains itself by the user's favourites.
    let (status, _, body) = get(&state, "/api/users/1@N01/photos?algorithm=itemknn").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["algorithm"], "itemknn");
    let first = &v["items"][0];
    assert!(!first["similar_to"].as_array().unwrap().is_empty(), "{v}");
    let (status, _, page) = get(&state, "/users/1@N01?algorithm=itemknn").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Similar to photos you favourited"), "{page}");
    assert!(page.contains("photos by itemknn"), "{page}");
    let (status, _, page) = get(&state, "/users/1@N01?algorithm=popular").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("people in the tracked users"), "{page}");
    let (status, _, _) = get(&state, "/users/1@N01?algorithm=%3Cscript%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_runs_page_charts_the_metrics_of_an_evaluated_run() {
    let storage = helpers::empty_storage();
    helpers::write_example(&storage).await;
    let mut settings = pipeline::config::Settings::load_with_env(None, Vec::new()).unwrap();
    settings.evaluate.enabled = true;
    let run = pipeline::score::run_score(&storage, &settings, Default::default())
        .await
        .unwrap();
    assert_eq!(run.rows_out["metrics"], 12, "4 algorithms x 3 cut-offs");
    pipeline::runs::publish(&storage, Some(&run.run_id))
        .await
        .unwrap();
    let state = serve::AppState::new(storage);
    state.refresh().await.unwrap();
    let (status, _, body) = get(&state, "/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("<svg") && body.contains("Recall at k per algorithm"),
        "{body}"
    );
    for a in ["flexplore", "itemknn", "popular", "explore"] {
        for k in [10, 20, 50] {
            assert!(
                body.contains(&format!("{a} recall@{k} = ")),
                "no bar for {a}@{k}: {body}"
            );
        }
    }
    // The unevaluated example run says so instead.
    let state = published_state().await;
    let (_, _, body) = get(&state, "/runs").await;
    assert!(body.contains("This run was not evaluated"), "{body}");
}

#[tokio::test]
async fn the_preserialised_default_page_equals_a_fresh_one() {
    let state = published_state().await;
    for list in ["photos", "photographers"] {
        let (_, _, cached) = get(&state, &format!("/api/users/1@N01/{list}")).await;
        let (_, _, fresh) = get(
            &state,
            &format!("/api/users/1@N01/{list}?algorithm=flexplore"),
        )
        .await;
        assert_eq!(cached, fresh, "{list}");
    }
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_default_page_is_answered_before_routing_exactly_as_the_router_would() {
    let state = published_state().await;
    for list in ["photos", "photographers"] {
        let uri = format!("/api/users/1@N01/{list}");
        let fast = serve::fast::answer(&state, &request(Method::GET, &uri, &[]))
            .unwrap_or_else(|| panic!("{uri} is not answered before routing"));
        let routed = serve::router(state.clone())
            .oneshot(request(Method::GET, &uri, &[]))
            .await
            .unwrap();
        assert_eq!(fast.status(), routed.status(), "{uri}");
        assert_eq!(fast.headers(), routed.headers(), "{uri}");
        let fast = axum::body::to_bytes(fast.into_body(), 1 << 20)
            .await
            .unwrap();
        let routed = axum::body::to_bytes(routed.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(!fast.is_empty());
        assert_eq!(fast, routed, "{uri}");
    }
    // Everything else is the router's.
    let etag = state.snapshot().unwrap().etag.clone().unwrap();
    let etag = etag.to_str().unwrap();
    for (method, uri, headers) in [
        (Method::HEAD, "/api/users/1@N01/photos", &[][..]),
        (Method::POST, "/api/users/1@N01/photos", &[]),
        (Method::GET, "/api/users/1@N01/photos?limit=20", &[]),
        (Method::GET, "/api/users/1@N01/photos?", &[]),
        (
            Method::GET,
            "/api/users/1@N01/photos",
            &[("if-none-match", etag)],
        ),
        (
            Method::GET,
            "/api/users/1@N01/photos",
            &[("accept-encoding", "gzip")],
        ),
        (Method::GET, "/api/users/1%40N01/photos", &[]),
        (Method::GET, "/api/users/9@N09/photos", &[]),
        (Method::GET, "/api/users/bad/photos", &[]),
        (Method::GET, "/api/users/1@N01/photos/", &[]),
        (Method::GET, "/api/users/1@N01/similar", &[]),
        (Method::GET, "/users/1@N01", &[]),
    ] {
        assert!(
            serve::fast::answer(&state, &request(method.clone(), uri, headers)).is_none(),
            "{method} {uri} {headers:?}"
        );
    }
}

#[tokio::test]
async fn tag_photos_api_and_pages() {
    let state = published_state().await;
    // film: photo 30 (favourited by 2@N01 and 3@N01), then 20 (by 3@N01).
    for uri in ["/api/tags/film/photos", "/api/tags/FILM/photos"] {
        let (status, headers, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(headers.contains_key(header::ETAG));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["tag"], "film");
        let items: Vec<(String, i64)> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["photo_id"].as_str().unwrap().to_string(),
                    i["favorites"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(items, vec![("30".to_string(), 2), ("20".to_string(), 1)]);
    }
    let (status, _, body) = get(&state, "/api/tags/film/photos?limit=1&offset=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("\"photo_id\":\"20\"") && !body.contains("\"photo_id\":\"30\""),
        "{body}"
    );
    let (status, _, body) = get(&state, "/api/tags/nope/photos").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("nope"), "{body}");
    for bad in ["%3Cb%3Ebold%3C%2Fb%3E", "a%20b", "..", &"x".repeat(65)] {
        let (status, _, _) = get(&state, &format!("/api/tags/{bad}/photos")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let (status, _, _) = get(&state, &format!("/tags/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _, page) = get(&state, "/tags/film").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("href=\"/photos/30\"") && page.contains("2 favourites"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert(1)"),
        "titles stay escaped: {page}"
    );
    // The photo page lists its tags; valid ones link to their tag page, the
    // hostile one is inert text.
    let (status, _, page) = get(&state, "/photos/30").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("href=\"/tags/film\"") && page.contains("href=\"/tags/sea\""),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;bold&lt;/b&gt;") && !page.contains("<b>bold"),
        "{page}"
    );
}

/// Rewrites every part file of `table` in `run_id` with `change` applied to each
/// batch (the files stay valid Parquet).
async fn rewrite_parts(
    storage: &pipeline::store::Storage,
    run_id: &str,
    table: pipeline::model::Table,
    change: impl Fn(&arrow_array::RecordBatch) -> arrow_array::RecordBatch,
) {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = pipeline::model::run_table_dir(run_id, table);
    let files = storage.list_files(&dir).await.unwrap();
    assert!(!files.is_empty(), "{dir} has parts");
    for path in files {
        let bytes = storage.get_bytes(&path).await.unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        // An empty table's part has no batch; its schema still changes.
        let empty = change(&arrow_array::RecordBatch::new_empty(
            builder.schema().clone(),
        ));
        let mut batches: Vec<_> = builder
            .build()
            .unwrap()
            .map(|b| change(&b.unwrap()))
            .collect();
        if batches.is_empty() {
            batches.push(empty);
        }
        let schema = batches[0].schema();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        for b in &batches {
            writer.write(b).unwrap();
        }
        writer.close().unwrap();
        storage.put_bytes(&path, out.into()).await.unwrap();
    }
}

/// The batch with its columns in reverse order and an unknown column in front.
fn reversed_with_extra(b: &arrow_array::RecordBatch) -> arrow_array::RecordBatch {
    use std::sync::Arc;
    let schema = b.schema();
    let mut fields = vec![Arc::new(arrow_schema::Field::new(
        "added_later",
        arrow_schema::DataType::Utf8,
        true,
    ))];
    let mut columns: Vec<arrow_array::ArrayRef> =
        vec![Arc::new(arrow_array::StringArray::from(vec![
            Some("x");
            b.num_rows()
        ]))];
    for i in (0..b.num_columns()).rev() {
        fields.push(schema.fields()[i].clone());
        columns.push(b.column(i).clone());
    }
    arrow_array::RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap()
}

#[tokio::test]
async fn a_run_whose_tables_have_their_columns_reordered_is_served_the_same() {
    // Arrange: the example run, and what it serves as scored.
    let state = published_state().await;
    let run_id = state.snapshot().unwrap().manifest.run_id.clone();
    let uris = [
        "/api/users/1@N01/photos",
        "/api/users/1@N01/photos?limit=2&offset=1",
        "/api/users/1@N01/photographers",
        "/api/photos/30/similar",
        "/api/tags/sea/photos",
        "/users/1@N01",
        "/photos/30",
    ];
    let mut before = Vec::new();
    for uri in uris {
        let (status, _, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        before.push(body);
    }
    // Every table the service reads, rewritten with its columns reversed and a
    // column the contract does not know in front.
    for table in pipeline::model::Table::RUN {
        rewrite_parts(&state.storage, &run_id, table, reversed_with_extra).await;
    }

    // Act: a fresh replica loads the rewritten run.
    let fresh = AppState::new(state.storage.clone());
    assert_eq!(fresh.refresh().await.unwrap(), Some(run_id));

    // Assert: every column was found by name: the same answers, byte for byte.
    for (uri, expected) in uris.iter().zip(&before) {
        let (status, _, body) = get(&fresh, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(&body, expected, "{uri}");
    }
}

#[tokio::test]
async fn a_run_table_missing_a_column_is_refused_with_the_column_named() {
    let state = published_state().await;
    let run_id = state.snapshot().unwrap().manifest.run_id.clone();
    rewrite_parts(
        &state.storage,
        &run_id,
        pipeline::model::Table::PhotographerRecs,
        |b| {
            let at = b.schema().index_of("common_favorites").unwrap();
            let mut b = b.clone();
            b.remove_column(at);
            b
        },
    )
    .await;

    let fresh = AppState::new(state.storage.clone());
    let err = fresh.refresh().await.unwrap_err().to_string();

    assert!(err.contains("common_favorites"), "{err}");
    assert!(err.contains("photographer_recs"), "{err}");
    assert!(fresh.snapshot().is_none(), "nothing half-loaded is served");
}

/// Two runs published in turn, then the second one's photo_recs file damaged:
/// CURRENT names a run that cannot be loaded. Returns (good, broken).
async fn storage_whose_published_run_is_corrupt(
    storage: &pipeline::store::Storage,
) -> (String, String) {
    write_example(storage).await;
    let good = score_and_publish(storage).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let broken = score_and_publish(storage).await;
    let path =
        object_store::path::Path::from(format!("runs/{broken}/photo_recs/part-00000.parquet"));
    storage
        .put_bytes(&path, bytes::Bytes::from_static(b"PAR1 truncated"))
        .await
        .unwrap();
    (good, broken)
}

#[tokio::test]
async fn a_restart_on_a_corrupt_published_run_says_which_run_and_why() {
    // Arrange: on_bad_run = unavailable.
    let storage = empty_storage();
    let (_, broken) = storage_whose_published_run_is_corrupt(&storage).await;
    let state = AppState::new(storage).with_on_bad_run(pipeline::config::OnBadRun::Unavailable);

    // Act: a restarted server loads CURRENT.
    let err = state.refresh().await.unwrap_err().to_string();

    // Assert: the log line, /readyz, /api/runs/current and every list name the run
    // and the reason; none says "no run is published yet".
    assert!(err.contains(&broken), "{err}");
    for uri in ["/readyz", "/api/runs/current", "/api/users/1@N01/photos"] {
        let (status, _, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(body.contains(&broken), "{uri}: {body}");
        assert!(body.contains("photo_recs"), "{uri} names the file: {body}");
        assert!(!body.contains("no run is published yet"), "{uri}: {body}");
    }
    let (_, _, metrics) = get(&state, "/metrics").await;
    assert!(metrics.contains("faverecs_run_load_error 1"), "{metrics}");
}

#[tokio::test]
async fn with_the_fallback_on_a_restart_serves_the_previous_good_run_and_says_so() {
    // Arrange: on_bad_run = previous (the default).
    let storage = empty_storage();
    let (good, broken) = storage_whose_published_run_is_corrupt(&storage).await;
    let state = AppState::new(storage);

    // Act
    assert!(state.refresh().await.is_err());

    // Assert: the previous run answers, and every answer says it is a fallback.
    let (status, headers, body) = get(&state, "/api/users/1@N01/photos").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["run_id"], good.as_str());
    let fallback = headers["faverecs-fallback"].to_str().unwrap();
    assert!(
        fallback.contains(&good) && fallback.contains(&broken),
        "{fallback}"
    );
    let (status, _, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["published_run_id"], broken.as_str());
    let (_, _, body) = get(&state, "/api/runs/current").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["manifest"]["run_id"], good.as_str());
    assert_eq!(v["load_error"]["run_id"], broken.as_str());
    assert!(
        v["load_error"]["reason"]
            .as_str()
            .unwrap()
            .contains("photo_recs")
    );

    // A good publish ends the fallback.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let fixed = score_and_publish(&state.storage).await;
    assert_eq!(state.refresh().await.unwrap(), Some(fixed));
    let (_, headers, _) = get(&state, "/api/users/1@N01/photos").await;
    assert!(headers.get("faverecs-fallback").is_none());
    let (_, _, body) = get(&state, "/readyz").await;
    assert!(body.contains("\"ready\""), "{body}");
}

#[tokio::test]
async fn a_bad_manifest_a_junk_folder_and_a_garbage_current_never_block_the_run_list() {
    // Arrange: a good published run, then damage around it.
    let state = published_state().await;
    let storage = state.storage.clone();
    let put = |path: &str, text: &'static str| {
        let storage = storage.clone();
        let path = object_store::path::Path::from(path);
        async move {
            storage
                .put_bytes(&path, bytes::Bytes::from_static(text.as_bytes()))
                .await
                .unwrap()
        }
    };
    put("runs/20990101T000000Z-aaaaaa/manifest.json", "{ not json").await;
    put(
        "runs/20990101T000001Z-bbbbbb/manifest.json",
        r#"{"run_id": "20990101T000001Z-bbbbbb", "status": "paused"}"#,
    )
    .await;
    put("runs/backup-copy/manifest.json", "{}").await;
    put("CURRENT", "hello").await;

    // Act and assert: the API and the page list every run, mark the bad ones,
    // and ignore the junk folder.
    let (status, _, body) = get(&state, "/api/runs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let runs: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(runs.len(), 3, "{body}");
    let unreadable = runs
        .iter()
        .filter(|r| r["status"].as_str().unwrap().starts_with("unreadable ("))
        .count();
    assert_eq!(unreadable, 2, "{body}");
    assert!(!body.contains("backup-copy"));
    let (status, _, page) = get(&state, "/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("the manifest cannot be read"));
    // The served run keeps serving; the garbage CURRENT is reported.
    let err = state.refresh().await.unwrap_err().to_string();
    assert!(err.contains("CURRENT is unreadable"), "{err}");
    let (status, _, _) = get(&state, "/api/users/1@N01/photos").await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, ready) = get(&state, "/readyz").await;
    assert!(
        ready.contains("degraded") && ready.contains("CURRENT"),
        "{ready}"
    );
}

#[tokio::test]
async fn an_algorithm_the_run_did_not_compute_is_404_and_an_unknown_name_400() {
    let storage = empty_storage();
    write_example(&storage).await;
    let mut settings = pipeline::config::Settings::load_with_env(None, Vec::new()).unwrap();
    settings.score.algorithms = vec![pipeline::model::Algorithm::Flexplore];
    let run = pipeline::score::run_score(&storage, &settings, Default::default())
        .await
        .unwrap();
    pipeline::runs::publish(&storage, Some(&run.run_id))
        .await
        .unwrap();
    let state = AppState::new(storage);
    state.refresh().await.unwrap();
    let (status, _, body) = get(&state, "/api/users/1@N01/photos?algorithm=itemknn").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("no algorithm \\\"itemknn\\\""), "{body}");
    assert!(body.contains("it has: flexplore"), "{body}");
    let (status, _, _) = get(&state, "/api/users/1@N01/photos?algorithm=magic").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_user_with_too_little_data_gets_a_fallback_list_marked_as_such() {
    use pipeline::model::Table;
    let storage = empty_storage();
    write_example(&storage).await;
    // 5@N01 favourited one photo, whose owner favourited nothing: no neighbour
    // of theirs has anything to recommend.
    let favorites = arrow_array::RecordBatch::try_new(
        Table::Favorites.schema(),
        vec![
            strings(vec![Some("5@N01")]),
            strings(vec![Some("99")]),
            strings(vec![Some("9@N01")]),
            times(1),
        ],
    )
    .unwrap();
    let tracked = arrow_array::RecordBatch::try_new(
        Table::TrackedUsers.schema(),
        vec![
            strings(vec![Some("5@N01")]),
            strings(vec![Some("eve")]),
            times(1),
        ],
    )
    .unwrap();
    pipeline::raw::merge_raw(&storage, Table::Favorites, vec![favorites])
        .await
        .unwrap();
    pipeline::raw::merge_raw(&storage, Table::TrackedUsers, vec![tracked])
        .await
        .unwrap();
    score_and_publish(&storage).await;
    let state = AppState::new(storage);
    state.refresh().await.unwrap();

    let (status, _, body) = get(&state, "/api/users/5@N01/photos").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{v}");
    assert!(items.iter().all(|i| i["fallback"] == true), "{v}");
    let ids: std::collections::BTreeSet<&str> = items
        .iter()
        .map(|i| i["photo_id"].as_str().unwrap())
        .collect();
    // The neighbourhood's popular photos, none of them theirs or favourited.
    assert!(
        ids.contains("11") && ids.contains("30") && !ids.contains("99"),
        "{ids:?}"
    );

    let (_, _, body) = get(&state, "/api/users/1@N01/photos").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["fallback"] == false),
        "{v}"
    );

    let (_, _, page) = get(&state, "/users/5@N01").await;
    assert!(page.contains("popular pick"), "{page}");
    assert!(page.contains("not enough of your favourites yet"), "{page}");
    let (_, _, page) = get(&state, "/users/1@N01").await;
    assert!(!page.contains("popular pick"));
}

#[tokio::test]
async fn a_run_written_before_the_fallback_column_still_publishes_and_serves() {
    let state = published_state().await;
    let run_id = state.snapshot().unwrap().manifest.run_id.clone();
    rewrite_parts(
        &state.storage,
        &run_id,
        pipeline::model::Table::PhotoRecs,
        |b| {
            let at = b.schema().index_of("fallback").unwrap();
            let mut b = b.clone();
            b.remove_column(at);
            b
        },
    )
    .await;
    // Publish's checks accept it (a rollback across the upgrade works) ...
    pipeline::runs::publish(&state.storage, Some(&run_id))
        .await
        .unwrap();
    // ... and serve loads it, with no fallbacks.
    let fresh = AppState::new(state.storage.clone());
    fresh.refresh().await.unwrap();
    let (status, _, body) = get(&fresh, "/api/users/1@N01/photos").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = v["items"].as_array().unwrap();
    assert!(
        !items.is_empty() && items.iter().all(|i| i["fallback"] == false),
        "{v}"
    );
}
