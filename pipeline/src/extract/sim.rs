//! A Flickr API simulator over the synthetic community.
//!
//! It serves `/services/rest/` for the methods the extractor uses and reproduces
//! the quirks listed in `shared/flickr-api.md`:
//!
//! - failures are `{"stat":"fail",...}` with HTTP 200, and a wrong key is code 100;
//! - numeric fields alternate between numbers and strings;
//! - pages come back short while more pages exist: about 2% of photos are
//!   "restricted" and are left out of the listing, as unauthenticated Flickr does;
//! - a page past the last one repeats the last page instead of being empty.
//!
//! Faults are injected at a configurable rate from a seeded generator: 429, 502
//! with an HTML body, a delay past the client's timeout, truncated JSON, and the
//! transient codes 0, 105 and 201 with HTTP 200.
//!
//! `GET /sim/stats` reports every call with its time; `POST` and `DELETE` on
//! `/sim/favorites?user_id=…&photo_id=…` add and remove favourites while it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::community::Community;
use crate::model::arrow::{str_at, string_at, time_at};
use crate::model::columns::{
    ContactsColumns, FavoritesColumns, PhotosColumns, TrackedUsersColumns,
};
use crate::model::is_nsid;

/// How the simulator misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// The key it accepts; anything else gets code 100.
    pub api_key: String,
    /// Share of requests that fail (0.0 – 1.0).
    pub fault_rate: f64,
    /// Seed of the fault generator.
    pub seed: u64,
    /// Added to every response.
    pub latency: Duration,
    /// How long a "timeout" fault stalls before answering.
    pub stall: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            api_key: "sim-key".into(),
            fault_rate: 0.0,
            seed: 1,
            latency: Duration::ZERO,
            stall: Duration::from_secs(5),
        }
    }
}

impl SimOptions {
    /// No faults or latency; accepts `api_key`.
    pub fn keyed(api_key: &str) -> Self {
        Self {
            api_key: api_key.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
struct Photo {
    id: String,
    owner: String,
    owner_name: Option<String>,
    title: Option<String>,
    tags: Option<String>,
    date_upload: Option<i64>,
    /// Left out of public listings (the short-page quirk).
    restricted: bool,
}

#[derive(Debug)]
struct World {
    photos: HashMap<String, Photo>,
    /// user → (photo id, date_faved), any order; sorted when listed.
    favorites: HashMap<String, Vec<(String, i64)>>,
    contacts: HashMap<String, Vec<String>>,
    usernames: HashMap<String, String>,
}

/// One call received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    /// The API method.
    pub method: String,
    /// The `user_id` asked about, if any.
    pub user_id: Option<String>,
}

#[derive(Debug)]
struct SimState {
    options: SimOptions,
    world: Mutex<World>,
    faults: Mutex<ChaCha8Rng>,
    calls: Mutex<Vec<CallRecord>>,
    started: Instant,
}

/// A running simulator's shared state, cheap to clone.
#[derive(Debug, Clone)]
pub struct Simulator(Arc<SimState>);

fn secs(micros: Option<i64>) -> Option<i64> {
    micros.map(|m| m / 1_000_000)
}

/// Whether the simulator treats a photo as restricted, left out of every
/// listing: deterministically, about one photo in fifty.
pub fn is_restricted(photo_id: &str) -> bool {
    photo_id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 50
        == 3
}

impl Simulator {
    /// Builds the simulator over a generated community.
    pub fn new(community: &Community, options: SimOptions) -> Self {
        // The community's batches are built on the contract's schemas, so every
        // view resolves; a table that did not would simply be served empty.
        let mut photos = HashMap::new();
        let p = &community.photos;
        if let Ok(c) = PhotosColumns::new(p) {
            for i in 0..p.num_rows() {
                let id = c.photo_id.value(i).to_string();
                let restricted = is_restricted(&id);
                photos.insert(
                    id.clone(),
                    Photo {
                        id,
                        owner: c.owner_id.value(i).to_string(),
                        owner_name: string_at(c.owner_name, i),
                        title: string_at(c.title, i),
                        tags: string_at(c.tags, i),
                        date_upload: secs(time_at(c.date_upload, i)),
                        restricted,
                    },
                );
            }
        }
        let mut favorites: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        let f = &community.favorites;
        if let Ok(c) = FavoritesColumns::new(f) {
            for i in 0..f.num_rows() {
                favorites
                    .entry(c.user_id.value(i).to_string())
                    .or_default()
                    .push((
                        c.photo_id.value(i).to_string(),
                        c.date_faved.value(i) / 1_000_000,
                    ));
            }
        }
        let mut contacts: HashMap<String, Vec<String>> = HashMap::new();
        let t = &community.contacts;
        if let Ok(c) = ContactsColumns::new(t) {
            for i in 0..t.num_rows() {
                contacts
                    .entry(c.user_id.value(i).to_string())
                    .or_default()
                    .push(c.contact_id.value(i).to_string());
            }
        }
        let mut usernames = HashMap::new();
        let t = &community.tracked_users;
        if let Ok(c) = TrackedUsersColumns::new(t) {
            for i in 0..t.num_rows() {
                if let Some(name) = str_at(c.username, i) {
                    usernames
                        .entry(name.to_lowercase())
                        .or_insert_with(|| c.user_id.value(i).to_string());
                }
            }
        }
        let faults = ChaCha8Rng::seed_from_u64(options.seed);
        Simulator(Arc::new(SimState {
            options,
            world: Mutex::new(World {
                photos,
                favorites,
                contacts,
                usernames,
            }),
            faults: Mutex::new(faults),
            calls: Mutex::new(Vec::new()),
            started: Instant::now(),
        }))
    }

    /// The router: `/services/rest/`, `/sim/stats`, `/sim/favorites`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/services/rest/", get(rest))
            .route("/sim/stats", get(stats))
            .route(
                "/sim/favorites",
                axum::routing::post(add_favorite).delete(remove_favorite),
            )
            .with_state(self.clone())
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.0.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Ground truth: a user's visible favourites, newest first (ties by photo id),
    /// as the API would list them with no caps.
    pub fn visible_favorites(&self, user: &str) -> Vec<(String, String, i64)> {
        let Ok(world) = self.0.world.lock() else {
            return vec![];
        };
        listing(&world, user, None)
            .into_iter()
            .filter_map(|(p, d)| {
                let photo = world.photos.get(&p)?;
                (!photo.restricted).then(|| (p.clone(), photo.owner.clone(), d))
            })
            .collect()
    }

    /// Ground truth: a user's contacts.
    pub fn contacts_of(&self, user: &str) -> Vec<String> {
        self.0
            .world
            .lock()
            .ok()
            .and_then(|w| w.contacts.get(user).cloned())
            .unwrap_or_default()
    }

    /// Adds a favourite now (as the real user would on Flickr).
    pub fn add_favorite(&self, user: &str, photo_id: &str, date_faved: i64) -> bool {
        let Ok(mut w) = self.0.world.lock() else {
            return false;
        };
        if !w.photos.contains_key(photo_id) {
            return false;
        }
        let list = w.favorites.entry(user.to_string()).or_default();
        if list.iter().any(|(p, _)| p == photo_id) {
            return false;
        }
        list.push((photo_id.to_string(), date_faved));
        true
    }

    /// Removes a favourite.
    pub fn remove_favorite(&self, user: &str, photo_id: &str) -> bool {
        let Ok(mut w) = self.0.world.lock() else {
            return false;
        };
        let Some(list) = w.favorites.get_mut(user) else {
            return false;
        };
        let before = list.len();
        list.retain(|(p, _)| p != photo_id);
        list.len() != before
    }
}

/// Newest first, ties by photo id, filtered by `min_fave_date`.
fn listing(world: &World, user: &str, min: Option<i64>) -> Vec<(String, i64)> {
    let mut list: Vec<(String, i64)> = world
        .favorites
        .get(user)
        .map(|l| {
            l.iter()
                .filter(|(_, d)| min.is_none_or(|m| *d >= m))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    list
}

fn fail(code: i64, message: &str) -> Response {
    // Flickr answers failures with HTTP 200.
    axum::Json(json!({"stat": "fail", "code": code, "message": message})).into_response()
}

/// A number that arrives as a string half the time, as Flickr's do.
fn num(n: i64, as_string: bool) -> Value {
    if as_string {
        Value::String(n.to_string())
    } else {
        json!(n)
    }
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str)
}

fn int_param(q: &HashMap<String, String>, k: &str, default: i64) -> i64 {
    param(q, k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn rest(State(sim): State<Simulator>, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = &sim.0;
    let method = param(&q, "method").unwrap_or("").to_string();
    if let Ok(mut calls) = s.calls.lock() {
        calls.push(CallRecord {
            at_ms: s.started.elapsed().as_millis() as u64,
            method: method.clone(),
            user_id: param(&q, "user_id").map(str::to_string),
        });
    }
    if !s.options.latency.is_zero() {
        tokio::time::sleep(s.options.latency).await;
    }
    if param(&q, "api_key") != Some(s.options.api_key.as_str()) {
        return fail(100, "Invalid API Key (Key has invalid format)");
    }
    let fault = {
        let Ok(mut rng) = s.faults.lock() else {
            return fail(
                0,
                "Sorry, the Flickr API service is not currently available.",
            );
        };
        (rng.random::<f64>() < s.options.fault_rate).then(|| rng.random_range(0..7u8))
    };
    let body = answer(&sim, &method, &q);
    match fault {
        Some(0) => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "<html><body><h1>429 Too Many Requests</h1></body></html>").into_response(),
        Some(1) => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
        )
            .into_response(),
        Some(2) => {
            tokio::time::sleep(s.options.stall).await;
            body
        }
        Some(3) => {
            let text = axum::body::to_bytes(body.into_body(), 1 << 24).await.unwrap_or_default();
            let cut = text.len() / 2;
            ([(header::CONTENT_TYPE, "application/json")], text.slice(..cut)).into_response()
        }
        Some(4) => fail(0, "Sorry, the Flickr API service is not currently available."),
        Some(5) => fail(105, "Service currently unavailable"),
        Some(6) => fail(201, "Sorry, the Flickr API service is not currently available."),
        _ => body,
    }
}

fn answer(sim: &Simulator, method: &str, q: &HashMap<String, String>) -> Response {
    let Ok(world) = sim.0.world.lock() else {
        return fail(
            0,
            "Sorry, the Flickr API service is not currently available.",
        );
    };
    let user = param(q, "user_id").unwrap_or("");
    let known = |u: &str| {
        world.favorites.contains_key(u)
            || world.contacts.contains_key(u)
            || world.photos.values().any(|p| p.owner == u)
    };
    match method {
        "flickr.favorites.getPublicList" => {
            if !is_nsid(user) || !known(user) {
                return fail(1, "User not found");
            }
            let per_page = int_param(q, "per_page", 100).clamp(1, 500);
            let page = int_param(q, "page", 1).max(1);
            let min = param(q, "min_fave_date").and_then(|v| v.parse().ok());
            let list = listing(&world, user, min);
            let total = list.len() as i64;
            let pages = (total + per_page - 1) / per_page;
            // Past the last page, Flickr repeats the last page rather than ending.
            let shown_page = page.min(pages.max(1));
            let start = ((shown_page - 1) * per_page) as usize;
            let end = (start + per_page as usize).min(list.len());
            let strings = (page + user.len() as i64) % 2 == 0;
            let photos: Vec<Value> = list[start.min(end)..end]
                .iter()
                .filter_map(|(p, d)| {
                    let photo = world.photos.get(p)?;
                    if photo.restricted {
                        return None;
                    }
                    let server = 65535 - (p.len() as i64 % 3);
                    Some(json!({
                        "id": photo.id, "owner": photo.owner,
                        "secret": format!("{:010x}", p.bytes().fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b))) & 0xff_ffff_ffff),
                        "server": server.to_string(), "farm": 66,
                        "title": photo.title.clone().unwrap_or_default(),
                        "ispublic": 1, "isfriend": 0, "isfamily": 0,
                        "date_faved": d.to_string(),
                        "ownername": photo.owner_name,
                        "dateupload": photo.date_upload.map(|t| t.to_string()),
                        "tags": photo.tags.clone().unwrap_or_default(),
                    }))
                })
                .collect();
            let total_field = if total == 0 {
                Value::String(String::new())
            } else {
                num(total, strings)
            };
            axum::Json(json!({
                "photos": {"page": num(page, !strings), "pages": num(pages, strings), "perpage": num(per_page, strings),
                           "per_page": num(per_page, !strings), "total": total_field, "photo": photos},
                "stat": "ok"
            }))
            .into_response()
        }
        "flickr.contacts.getPublicList" => {
            if !is_nsid(user) || !known(user) {
                return fail(1, "User not found");
            }
            let per_page = int_param(q, "per_page", 1000).clamp(1, 1000);
            let page = int_param(q, "page", 1).max(1);
            let list = world.contacts.get(user).cloned().unwrap_or_default();
            let total = list.len() as i64;
            let pages = (total + per_page - 1) / per_page;
            let start = (((page.min(pages.max(1))) - 1) * per_page) as usize;
            let end = (start + per_page as usize).min(list.len());
            let contacts: Vec<Value> = list[start.min(end)..end]
                .iter()
                .map(|c| json!({"nsid": c, "username": c, "iconserver": "0", "iconfarm": 0, "ignored": 0}))
                .collect();
            axum::Json(json!({"contacts": {"page": page, "pages": pages.to_string(), "perpage": per_page, "total": total.to_string(), "contact": contacts}, "stat": "ok"})).into_response()
        }
        "flickr.urls.lookupUser" => {
            let url = param(q, "url").unwrap_or("");
            let segment = url
                .split("flickr.com/")
                .nth(1)
                .and_then(|rest| {
                    let mut parts = rest.split('/');
                    match parts.next() {
                        Some("photos") | Some("people") => parts.next(),
                        _ => None,
                    }
                })
                .unwrap_or("");
            let nsid = if is_nsid(segment) && known(segment) {
                Some(segment.to_string())
            } else {
                world.usernames.get(&segment.to_lowercase()).cloned()
            };
            match nsid {
                Some(n) => axum::Json(
                    json!({"user": {"id": n, "username": {"_content": segment}}, "stat": "ok"}),
                )
                .into_response(),
                None => fail(1, "User not found"),
            }
        }
        "flickr.people.findByUsername" => {
            let name = param(q, "username").unwrap_or("").to_lowercase();
            match world.usernames.get(&name) {
                Some(n) => axum::Json(json!({"user": {"id": n, "nsid": n, "username": {"_content": name}}, "stat": "ok"})).into_response(),
                None => fail(1, "User not found"),
            }
        }
        _ => fail(112, &format!("Method \"{method}\" not found")),
    }
}

async fn stats(State(sim): State<Simulator>) -> Response {
    let calls = sim.calls();
    axum::Json(json!({"calls": calls.len(), "records": calls})).into_response()
}

async fn add_favorite(
    State(sim): State<Simulator>,
    Query(q): Query<HashMap<String, String>>,
    _h: HeaderMap,
) -> Response {
    let (Some(u), Some(p)) = (param(&q, "user_id"), param(&q, "photo_id")) else {
        return (StatusCode::BAD_REQUEST, "user_id and photo_id are required").into_response();
    };
    let date = int_param(&q, "date_faved", 1_800_000_000);
    if sim.add_favorite(u, p, date) {
        StatusCode::CREATED
    } else {
        StatusCode::CONFLICT
    }
    .into_response()
}

async fn remove_favorite(
    State(sim): State<Simulator>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(u), Some(p)) = (param(&q, "user_id"), param(&q, "photo_id")) else {
        return (StatusCode::BAD_REQUEST, "user_id and photo_id are required").into_response();
    };
    if sim.remove_favorite(u, p) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response()
}

impl Simulator {
    /// Serves the simulator on `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}
