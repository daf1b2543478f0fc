//! Router tests: every endpoint through `app(state).oneshot(...)`, without a socket,
//! on a run scored from a small community whose titles and names are hostile.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

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
    // The photographers section lists both neighbors.
    assert!(body.contains("Photographers you may like"));
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
