//! Extract against the Flickr API simulator, over real HTTP on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use chrono::{Duration, Utc};
use pipeline::community::{Community, generate};
use pipeline::config::{DemoSettings, Settings};
use pipeline::extract::client::{ApiKey, FlickrClient, FlickrError};
use pipeline::extract::sim::{SimOptions, Simulator};
use pipeline::extract::{ExtractError, ExtractOptions, Phase, run_extract, users};
use pipeline::model::Table;
use pipeline::raw::merge_raw;
use pipeline::store::Storage;

pub const KEY: &str = "test-key-0123456789abcdef";

pub fn community(users: usize, tracked: usize) -> Community {
    generate(&DemoSettings {
        users,
        tracked_users: tracked,
        clusters: 5,
        seed: 11,
    })
}

/// Starts a simulator on 127.0.0.1:0; returns it and its REST URL.
pub async fn start_sim(c: &Community, options: SimOptions) -> (Simulator, String) {
    let sim = Simulator::new(c, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = sim.clone();
    tokio::spawn(async move { s.serve(listener, std::future::pending()).await });
    (sim, format!("http://{addr}/services/rest/"))
}

pub fn settings_for(url: &str) -> Settings {
    let mut s = Settings::load_with_env(None, Vec::new()).unwrap();
    s.flickr.api_url = url.to_string();
    s.flickr.calls_per_hour = 3_600_000;
    s.flickr.burst = 50;
    s.flickr.per_page = 100;
    s.flickr.max_calls_per_user = 20;
    s.flickr.timeout_secs = 1;
    s.flickr.max_attempts = 12;
    s.extract.concurrency = 8;
    s
}

fn memory() -> Storage {
    Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory")
}

async fn track_all(storage: &Storage, c: &Community) {
    merge_raw(storage, Table::TrackedUsers, vec![c.tracked_users.clone()])
        .await
        .unwrap();
}

/// user → set of (photo, owner).
async fn stored_favorites(storage: &Storage) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for b in storage
        .read_raw(Table::Favorites)
        .await
        .unwrap()
        .unwrap_or_default()
    {
        let (u, p, o) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
            b.column(2).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            out.entry(u.value(i).to_string())
                .or_default()
                .insert((p.value(i).to_string(), o.value(i).to_string()));
        }
    }
    out
}

async fn table_bytes(storage: &Storage, t: Table) -> Vec<(String, bytes::Bytes)> {
    crate::helpers::raw_objects(storage, t).await
}

fn now() -> chrono::DateTime<Utc> {
    "2026-11-20T03:00:00Z".parse().unwrap()
}

#[tokio::test]
async fn extract_yields_the_simulators_ground_truth() {
    let c = community(250, 6);
    let (sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    track_all(&storage, &c).await;
    let settings = settings_for(&url);
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    let m = run_extract(&storage, &settings, &client, ExtractOptions::at(now()))
        .await
        .unwrap();
    assert_eq!(m.tracked.fetched, 6);
    assert!(m.neighbors.fetched > 20, "{m:?}");
    let stored = stored_favorites(&storage).await;
    assert_eq!(
        stored.len(),
        m.tracked.fetched + m.neighbors.fetched - m.neighbors.not_found
    );
    let mut checked = 0;
    for (user, got) in &stored {
        let mut truth = sim.visible_favorites(user);
        truth.truncate(settings.flickr.max_favorites_per_user);
        let want: BTreeSet<(String, String)> = truth.into_iter().map(|(p, o, _)| (p, o)).collect();
        assert_eq!(got, &want, "favourites of {user}");
        checked += 1;
    }
    assert!(checked > 20);
    // Contacts of tracked users equal the simulator's.
    let contacts = storage.read_raw(Table::Contacts).await.unwrap().unwrap();
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in &contacts {
        let (u, k) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            by_user
                .entry(u.value(i).to_string())
                .or_default()
                .insert(k.value(i).to_string());
        }
    }
    for u in c.tracked_ids() {
        let want: BTreeSet<String> = sim.contacts_of(&u).into_iter().collect();
        assert_eq!(
            by_user.get(&u).cloned().unwrap_or_default(),
            want,
            "contacts of {u}"
        );
    }
    // Photos carry thumbnail parts from the API.
    let photos = storage.read_raw(Table::Photos).await.unwrap().unwrap();
    assert!(photos.iter().map(|b| b.num_rows()).sum::<usize>() > 100);
    assert_eq!(
        photos[0].column(4).null_count(),
        0,
        "server is always given"
    );
}

#[tokio::test]
async fn twenty_percent_faults_give_the_same_tables() {
    let c = community(150, 4);
    let storage_clean = memory();
    let storage_faulty = memory();
    for s in [&storage_clean, &storage_faulty] {
        track_all(s, &c).await;
    }
    let (_, clean_url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let (_, faulty_url) = start_sim(
        &c,
        SimOptions {
            api_key: KEY.into(),
            fault_rate: 0.2,
            seed: 5,
            stall: std::time::Duration::from_millis(1500),
            ..SimOptions::default()
        },
    )
    .await;
    let mut clean = settings_for(&clean_url);
    let mut faulty = settings_for(&faulty_url);
    // Small pages: many calls, so every kind of fault shows up.
    clean.flickr.per_page = 10;
    faulty.flickr.per_page = 10;
    clean.flickr.max_calls_per_user = 200;
    faulty.flickr.max_calls_per_user = 200;
    let c1 = FlickrClient::new(&clean.flickr, ApiKey::new(KEY)).unwrap();
    let c2 = FlickrClient::new(&faulty.flickr, ApiKey::new(KEY)).unwrap();
    run_extract(&storage_clean, &clean, &c1, ExtractOptions::at(now()))
        .await
        .unwrap();
    let m = run_extract(&storage_faulty, &faulty, &c2, ExtractOptions::at(now()))
        .await
        .unwrap();
    let retries: u64 = m.retries.values().sum();
    assert!(
        retries > 10,
        "faults were injected and retried: {:?}",
        m.retries
    );
    for cause in ["http_429", "http_502", "timeout", "unparseable"] {
        assert!(
            m.retries.contains_key(cause),
            "{cause} seen: {:?}",
            m.retries
        );
    }
    assert_eq!(m.tracked.failed + m.neighbors.failed, 0);
    for t in [
        Table::Favorites,
        Table::Photos,
        Table::Contacts,
        Table::ExtractState,
    ] {
        assert_eq!(
            table_bytes(&storage_clean, t).await,
            table_bytes(&storage_faulty, t).await,
            "{}",
            t.name()
        );
    }
}

#[tokio::test]
async fn the_rate_limit_holds_across_concurrent_requests() {
    let c = community(120, 3);
    let (sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    track_all(&storage, &c).await;
    let mut settings = settings_for(&url);
    settings.flickr.calls_per_hour = 36_000; // 10 per second
    settings.flickr.burst = 2;
    settings.extract.concurrency = 6;
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    // Bound the test: stop after ~4 s of calls by using a small community.
    let m = run_extract(&storage, &settings, &client, ExtractOptions::at(now()))
        .await
        .unwrap();
    let times: Vec<u64> = sim.calls().iter().map(|c| c.at_ms).collect();
    assert!(
        times.len() >= 25,
        "enough calls to measure: {}",
        times.len()
    );
    assert_eq!(times.len() as u64, m.calls);
    // In any one-second window: at most 10 per second plus the burst.
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|u| **u < t + 1000).count();
        assert!(
            in_window <= 12,
            "{in_window} calls in the second after {t} ms"
        );
    }
}

#[tokio::test]
async fn a_second_night_is_incremental_and_a_full_refresh_drops_deleted_favorites() {
    let c = community(200, 5);
    let (sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    track_all(&storage, &c).await;
    let mut settings = settings_for(&url);
    // Pages of 10 stand in for real users whose lists span several 500-item pages:
    // a full pull takes several calls, an incremental one takes one.
    settings.flickr.per_page = 10;
    settings.flickr.max_calls_per_user = 200;
    let run = |when| {
        let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
        let storage = storage.clone();
        let settings = settings.clone();
        async move {
            run_extract(&storage, &settings, &client, ExtractOptions::at(when))
                .await
                .unwrap()
        }
    };
    let first = run(now()).await;

    // The same night again: everyone is fresh, nothing is fetched.
    let again = run(now() + Duration::hours(1)).await;
    assert_eq!(again.calls, 0);
    assert_eq!(again.tracked.skipped_fresh, 5);

    // Next night, with one new favourite and one deleted favourite.
    let user = c.tracked_ids()[0].clone();
    let have = sim.visible_favorites(&user);
    let (deleted, _, _) = have.last().unwrap().clone();
    assert!(sim.remove_favorite(&user, &deleted));
    let candidate = sim
        .visible_favorites(&c.tracked_ids()[1])
        .into_iter()
        .map(|f| f.0)
        .find(|p| !have.iter().any(|h| &h.0 == p))
        .unwrap();
    let later = (now() + Duration::hours(25)).timestamp();
    assert!(sim.add_favorite(&user, &candidate, later - 60));
    let second = run(now() + Duration::hours(25)).await;
    assert!(
        second.calls * 2 <= first.calls,
        "second night made {} calls, first {}",
        second.calls,
        first.calls
    );
    let stored = stored_favorites(&storage).await;
    assert!(
        stored[&user].iter().any(|(p, _)| p == &candidate),
        "the new favourite appears"
    );
    assert!(
        stored[&user].iter().any(|(p, _)| p == &deleted),
        "an incremental pull cannot see the deletion"
    );

    // A week later the full refresh replaces the list: the deletion shows.
    run(now() + Duration::days(8)).await;
    let stored = stored_favorites(&storage).await;
    assert!(
        !stored[&user].iter().any(|(p, _)| p == &deleted),
        "deleted favourite is gone"
    );
    assert!(stored[&user].iter().any(|(p, _)| p == &candidate));
}

#[tokio::test]
async fn users_are_resolved_from_urls_nsids_and_usernames() {
    let c = community(100, 3);
    let (_, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let settings = settings_for(&url);
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    let nsid = c.tracked_ids()[0].clone();
    let username = c
        .tracked_users
        .column(1)
        .as_string::<i32>()
        .value(0)
        .to_string();
    for input in [
        format!("https://www.flickr.com/photos/{nsid}/"),
        format!("https://www.flickr.com/people/{nsid}/"),
        format!("www.flickr.com/photos/{username}/"),
        username.clone(),
        nsid.clone(),
    ] {
        let p = users::resolve(&client, &input)
            .await
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(p.nsid, nsid, "{input}");
    }
    for unknown in [
        "https://www.flickr.com/photos/nobody-here/",
        "99999999@N09",
        "no such person",
    ] {
        let err = users::resolve(&client, unknown).await.unwrap_err();
        assert!(
            err.to_string().contains("no Flickr user matches"),
            "{unknown}: {err}"
        );
    }
    let storage = memory();
    let p = users::resolve(&client, &nsid).await.unwrap();
    users::add(&storage, &p, now()).await.unwrap();
    assert_eq!(users::list(&storage).await.unwrap(), vec![nsid.clone()]);
    assert!(users::remove(&storage, &nsid).await.unwrap());
    assert!(users::list(&storage).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_key_stops_the_run_at_once() {
    let c = community(100, 3);
    let (sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    track_all(&storage, &c).await;
    let settings = settings_for(&url);
    let client = FlickrClient::new(&settings.flickr, ApiKey::new("wrong-key")).unwrap();
    let started = std::time::Instant::now();
    let err = run_extract(&storage, &settings, &client, ExtractOptions::at(now()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::Flickr(FlickrError::InvalidKey)),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        sim.calls().len() <= settings.extract.concurrency,
        "no retries of code 100"
    );
    assert!(err.to_string().contains("FLICKR_API_KEY"));
}

#[tokio::test]
async fn not_found_users_are_recorded_and_backed_off() {
    let c = community(100, 2);
    let (_, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    let ghost = pipeline::extract::client::Person {
        nsid: "99999999@N09".into(),
        username: None,
    };
    users::add(&storage, &ghost, now()).await.unwrap();
    track_all(&storage, &c).await;
    let settings = settings_for(&url);
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    let m = run_extract(&storage, &settings, &client, ExtractOptions::at(now()))
        .await
        .unwrap();
    assert_eq!(m.tracked.not_found, 1);
    assert_eq!(m.tracked.fetched, 2);
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    let m = run_extract(
        &storage,
        &settings,
        &client,
        ExtractOptions::at(now() + Duration::days(2)),
    )
    .await
    .unwrap();
    assert_eq!(m.tracked.skipped_backoff, 1, "not retried every night");
}

#[tokio::test]
async fn sharded_phases_then_a_fold_equal_one_unsharded_run() {
    let c = community(200, 6);
    let (_, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let settings = settings_for(&url);
    let whole = memory();
    let sharded = memory();
    for s in [&whole, &sharded] {
        track_all(s, &c).await;
    }
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    run_extract(&whole, &settings, &client, ExtractOptions::at(now()))
        .await
        .unwrap();
    let mut fetched = 0;
    for phase in [Phase::Tracked, Phase::Neighbor] {
        for i in 0..3 {
            let options = ExtractOptions {
                shard: Some((i, 3)),
                phase: Some(phase),
                ..ExtractOptions::at(now())
            };
            let m = run_extract(&sharded, &settings, &client, options)
                .await
                .unwrap();
            fetched += m.tracked.fetched + m.neighbors.fetched;
            assert!(m.rows_written.is_empty(), "a shard does not fold");
        }
    }
    pipeline::extract::fold(&sharded, &settings, now())
        .await
        .unwrap();
    let unsharded_users = stored_favorites(&whole).await.len();
    assert!(
        fetched >= unsharded_users,
        "{fetched} users fetched over the shards"
    );
    for t in [
        Table::Favorites,
        Table::Photos,
        Table::Contacts,
        Table::ExtractState,
    ] {
        assert_eq!(
            table_bytes(&whole, t).await,
            table_bytes(&sharded, t).await,
            "{}",
            t.name()
        );
    }
}

#[tokio::test]
async fn a_fold_racing_an_import_keeps_both() {
    // Arrange: the tracked users pulled but not folded (one phase only), on a
    // local directory (whose conditional writes are emulated with a lock file).
    let c = community(120, 4);
    let (_sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&pipeline::config::StorageSettings {
        url: pipeline::config::StorageUrl::Local {
            path: dir.path().to_path_buf(),
        },
        endpoint: None,
        raw_buckets: 64,
    })
    .unwrap();
    track_all(&storage, &c).await;
    let settings = settings_for(&url);
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    let options = ExtractOptions {
        phase: Some(Phase::Tracked),
        ..ExtractOptions::at(now())
    };
    run_extract(&storage, &settings, &client, options)
        .await
        .unwrap();
    let imported = {
        use pipeline::model::arrow::{string_array, timestamp_array};
        pipeline::model::columns::FavoritesArrays {
            user_id: string_array(vec![Some("77@N07".into()); 300]),
            photo_id: string_array((0..300).map(|i| Some(format!("9{i}"))).collect()),
            owner_id: string_array(vec![Some("78@N07".into()); 300]),
            date_faved: timestamp_array(vec![None; 300]),
        }
        .into_batch()
        .unwrap()
    };

    // Act: the fold and an import of other favourites at the same time.
    let (folded, import) = tokio::join!(
        pipeline::extract::fold(&storage, &settings, now()),
        merge_raw(&storage, Table::Favorites, vec![imported]),
    );

    // Assert: both landed.
    folded.unwrap();
    import.unwrap();
    let stored = stored_favorites(&storage).await;
    assert_eq!(stored.get("77@N07").map(BTreeSet::len), Some(300));
    for user in c.tracked_ids() {
        assert!(stored.contains_key(&user), "{user}'s pulled favourites");
    }
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Which users were pulled (their `extract_state.last_pulled_at` is `at`).
async fn pulled_at(storage: &Storage, at: chrono::DateTime<Utc>) -> BTreeSet<String> {
    let at = at.timestamp_micros();
    pipeline::extract::read_state(storage)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, s)| s.last_pulled_at == Some(at))
        .map(|(u, _)| u)
        .collect()
}

#[tokio::test]
async fn a_budget_caps_the_calls_new_users_go_first_and_deferred_users_lead_the_next_night() {
    let c = community(300, 8);
    let (sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    let mut settings = settings_for(&url);
    // One user at a time, so the order the planner chose is the order of calls.
    settings.extract.concurrency = 1;
    settings.flickr.per_page = 50;
    let tracked = c.tracked_users.clone();
    let old = tracked.slice(0, 6);
    let new = tracked.slice(6, 2);
    let new_ids: BTreeSet<String> = c.tracked_ids()[6..].iter().cloned().collect();
    merge_raw(&storage, Table::TrackedUsers, vec![old])
        .await
        .unwrap();
    let run = |when, budget| {
        let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
        let storage = storage.clone();
        let settings = settings.clone();
        async move {
            let options = ExtractOptions {
                budget,
                ..ExtractOptions::at(when)
            };
            run_extract(&storage, &settings, &client, options)
                .await
                .unwrap()
        }
    };
    // Night 0: no budget, everyone pulled.
    let night0 = run(now(), None).await;
    assert_eq!(night0.tracked.deferred + night0.neighbors.deferred, 0);

    // Night 1: two newly tracked users (added an hour before it; night 0 may
    // have pulled them as neighbours), and a budget of 40 calls.
    let t1 = now() + Duration::hours(25);
    let added = arrow_array::TimestampMicrosecondArray::from(vec![
        Some(
            (t1 - Duration::hours(1)).timestamp_micros()
        );
        2
    ])
    .with_timezone("UTC");
    let mut columns = new.columns().to_vec();
    columns[2] = Arc::new(added);
    let new = arrow_array::RecordBatch::try_new(new.schema(), columns).unwrap();
    merge_raw(&storage, Table::TrackedUsers, vec![new])
        .await
        .unwrap();
    let before = sim.calls().len();
    let night1 = run(t1, Some(40)).await;
    let calls1 = &sim.calls()[before..];
    assert!(
        calls1.len() <= 40,
        "the simulator saw {} calls",
        calls1.len()
    );
    assert_eq!(night1.calls as usize, calls1.len());
    assert_eq!(night1.budget, Some(40));
    assert!(night1.neighbors.deferred > 40, "{:?}", night1.neighbors);
    // The new users' calls come first, before any other user's.
    let first_two: BTreeSet<String> = calls1
        .iter()
        .filter_map(|r| r.user_id.clone())
        .fold(Vec::new(), |mut seen: Vec<String>, u| {
            if !seen.contains(&u) {
                seen.push(u);
            }
            seen
        })
        .into_iter()
        .take(2)
        .collect();
    assert_eq!(first_two, new_ids);
    let pulled1 = pulled_at(&storage, t1).await;
    assert!(new_ids.is_subset(&pulled1));

    // Night 2: the neighbours night 1 deferred are pulled before any it reached.
    let t2 = now() + Duration::hours(50);
    let before = sim.calls().len();
    let night2 = run(t2, Some(40)).await;
    assert!(sim.calls().len() - before <= 40);
    let pulled2 = pulled_at(&storage, t2).await;
    let tracked_ids: BTreeSet<String> = c.tracked_ids().into_iter().collect();
    let neighbors2: BTreeSet<&String> = pulled2.difference(&tracked_ids).collect();
    assert!(!neighbors2.is_empty(), "{night2:?}");
    for n in &neighbors2 {
        assert!(
            !pulled1.contains(*n),
            "{n} was pulled on night 1 and again before a deferred neighbour"
        );
    }
    // The data age is reported, and a pulled user's is 0.
    let age = night2.data_age_hours.unwrap();
    assert!(
        age.neighbors_p90 >= age.neighbors_p50 && age.neighbors_p90 > 0.0,
        "{age:?}"
    );
}

#[tokio::test]
async fn the_plan_estimates_the_calls_a_run_makes_within_ten_percent() {
    let c = community(300, 8);
    let (_sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    track_all(&storage, &c).await;
    let mut settings = settings_for(&url);
    settings.flickr.per_page = 10;
    settings.flickr.max_calls_per_user = 200;
    let client = || FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    run_extract(&storage, &settings, &client(), ExtractOptions::at(now()))
        .await
        .unwrap();
    // A night later (incremental pulls) and a week later (full pulls, a page
    // per 10 favourites held): the plan, then the run.
    for when in [now() + Duration::hours(25), now() + Duration::days(8)] {
        let plan = pipeline::extract::plan_run(&storage, &settings, ExtractOptions::at(when))
            .await
            .unwrap();
        let estimate: u64 = plan
            .summary()
            .iter()
            .filter(|l| l.class.due())
            .map(|l| l.calls)
            .sum();
        let m = run_extract(&storage, &settings, &client(), ExtractOptions::at(when))
            .await
            .unwrap();
        let off = (estimate as f64 - m.calls as f64).abs() / m.calls as f64;
        println!(
            "plan {estimate} calls, run {} ({:.1}% off)",
            m.calls,
            100.0 * off
        );
        assert!(off <= 0.10, "plan {estimate} calls, run {}", m.calls);
    }
}

#[tokio::test]
async fn deletions_show_within_two_nights_and_no_list_outgrows_the_cap() {
    let c = community(200, 5);
    let (sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    track_all(&storage, &c).await;
    let mut settings = settings_for(&url);
    settings.flickr.per_page = 10;
    settings.flickr.max_calls_per_user = 200;
    let cap = 40;
    settings.flickr.max_favorites_per_user = cap;
    let run = |when| {
        let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
        let storage = storage.clone();
        let settings = settings.clone();
        async move {
            run_extract(&storage, &settings, &client, ExtractOptions::at(when))
                .await
                .unwrap()
        }
    };
    run(now()).await;
    let user = c.tracked_ids()[0].clone();
    let stored = stored_favorites(&storage).await;
    assert!(stored[&user].len() > 10, "the user spans several pages");

    // Night 1: one of the newest favourites and one of the oldest held are
    // deleted on Flickr.
    let held: Vec<(String, String, i64)> = sim.visible_favorites(&user);
    let newest = held.first().unwrap().0.clone();
    let oldest_held = stored[&user]
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| held.iter().any(|h| &h.0 == p))
        .min_by_key(|p| held.iter().find(|h| &h.0 == p).unwrap().2)
        .unwrap();
    assert!(sim.remove_favorite(&user, &newest));
    assert!(sim.remove_favorite(&user, &oldest_held));
    run(now() + Duration::hours(25)).await;
    let after1 = stored_favorites(&storage).await;
    assert!(
        !after1[&user].iter().any(|(p, _)| p == &newest),
        "a deletion among the newest shows the next night"
    );
    // Night 2: the total disagreed, so the whole list was pulled again.
    run(now() + Duration::hours(50)).await;
    let after2 = stored_favorites(&storage).await;
    assert!(
        !after2[&user].iter().any(|(p, _)| p == &oldest_held),
        "an older deletion shows within two nights"
    );

    // Nights 3 to 8: the user favourites 15 new photos a night; the stored
    // list never outgrows the cap, and keeps the newest.
    let others: Vec<String> = c
        .tracked_ids()
        .iter()
        .skip(1)
        .flat_map(|o| sim.visible_favorites(o))
        .map(|f| f.0)
        .collect();
    let mut fresh = others.into_iter();
    for night in 3..9 {
        let when = now() + Duration::hours(25 * night);
        for k in 0..15 {
            let photo = fresh.next().unwrap();
            sim.add_favorite(&user, &photo, when.timestamp() - 3600 + k);
        }
        run(when).await;
        for (u, list) in stored_favorites(&storage).await {
            assert!(list.len() <= cap, "night {night}: {u} holds {}", list.len());
        }
    }
}

#[tokio::test]
async fn refresh_intervals_adapt_to_each_users_change() {
    let c = community(200, 5);
    let (sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    track_all(&storage, &c).await;
    let mut settings = settings_for(&url);
    settings.extract.refresh_after_hours = 24;
    settings.extract.min_refresh_hours = 6;
    settings.extract.max_refresh_hours = 72;
    let run = |when| {
        let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
        let storage = storage.clone();
        let settings = settings.clone();
        async move {
            run_extract(&storage, &settings, &client, ExtractOptions::at(when))
                .await
                .unwrap()
        }
    };
    let (quiet, busy) = (c.tracked_ids()[1].clone(), c.tracked_ids()[0].clone());
    let held: BTreeSet<String> = sim
        .visible_favorites(&busy)
        .into_iter()
        .map(|f| f.0)
        .collect();
    let all: BTreeSet<String> = c
        .favorites
        .column(1)
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_string)
        .filter(|p| !held.contains(p))
        .collect();
    let mut photos = all.into_iter();
    let mut pulls_of_quiet = 0;
    let mut hour = 0;
    run(now()).await;
    // Every 6 hours for 12 days: the busy user favourites 12 photos a day.
    while hour < 24 * 12 {
        hour += 6;
        let when = now() + Duration::hours(hour);
        if hour % 24 == 0 {
            for k in 0..12 {
                sim.add_favorite(&busy, &photos.next().unwrap(), when.timestamp() - 600 + k);
            }
        }
        let before = pipeline::extract::read_state(&storage).await.unwrap()[&quiet].last_pulled_at;
        run(when).await;
        let state = pipeline::extract::read_state(&storage).await.unwrap();
        if state[&quiet].last_pulled_at != before {
            pulls_of_quiet += 1;
        }
    }
    let state = pipeline::extract::read_state(&storage).await.unwrap();
    assert_eq!(
        state[&quiet].refresh_hours,
        Some(72.0),
        "a user who never changes reaches the bound"
    );
    assert!(
        state[&busy].refresh_hours.unwrap() < 24.0,
        "a busy user is pulled more often: {:?}",
        state[&busy].refresh_hours
    );
    // 24 h, 36 h, 54 h, then 72 h: fewer pulls than the 12 a fixed day would take.
    assert!(
        pulls_of_quiet <= 6,
        "the quiet user was pulled {pulls_of_quiet} times"
    );
}

#[tokio::test]
async fn the_new_users_mode_pulls_only_new_tracked_users_and_their_neighbours() {
    let c = community(300, 8);
    let (_sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let storage = memory();
    let settings = settings_for(&url);
    merge_raw(
        &storage,
        Table::TrackedUsers,
        vec![c.tracked_users.slice(0, 7)],
    )
    .await
    .unwrap();
    let client = || FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    run_extract(&storage, &settings, &client(), ExtractOptions::at(now()))
        .await
        .unwrap();
    // A day and more later everyone is due; only the new user and the
    // neighbours they bring are pulled.
    let t1 = now() + Duration::hours(30);
    let new = c.tracked_users.slice(7, 1);
    let added = arrow_array::TimestampMicrosecondArray::from(vec![Some(
        (t1 - Duration::minutes(1)).timestamp_micros(),
    )])
    .with_timezone("UTC");
    let mut columns = new.columns().to_vec();
    columns[2] = Arc::new(added);
    let new = arrow_array::RecordBatch::try_new(new.schema(), columns).unwrap();
    merge_raw(&storage, Table::TrackedUsers, vec![new])
        .await
        .unwrap();
    let m = run_extract(
        &storage,
        &settings,
        &client(),
        ExtractOptions {
            only_new: true,
            ..ExtractOptions::at(t1)
        },
    )
    .await
    .unwrap();
    let new_user = c.tracked_ids()[7].clone();
    let pulled = pulled_at(&storage, t1).await;
    assert!(pulled.contains(&new_user));
    let stored = stored_favorites(&storage).await;
    let owners: BTreeSet<String> = stored[&new_user].iter().map(|(_, o)| o.clone()).collect();
    for u in &pulled {
        assert!(
            u == &new_user || owners.contains(u),
            "{u} is neither the new user nor one of their neighbours"
        );
    }
    assert_eq!(m.tracked.fetched, 1, "{:?}", m.tracked);
}

#[tokio::test]
async fn the_same_state_and_budget_give_the_same_tables() {
    let c = community(300, 8);
    let (_sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let settings = settings_for(&url);
    let mut tables = Vec::new();
    for _ in 0..2 {
        let storage = memory();
        track_all(&storage, &c).await;
        for (when, budget) in [(now(), None), (now() + Duration::hours(25), Some(60))] {
            let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
            let options = ExtractOptions {
                budget,
                ..ExtractOptions::at(when)
            };
            let m = run_extract(&storage, &settings, &client, options)
                .await
                .unwrap();
            if budget.is_some() {
                // Without a budget every neighbour is due a night after their
                // pull; under it some are deferred or wait for their stretched
                // interval (counted as not due).
                assert!(
                    m.neighbors.deferred + m.neighbors.skipped_fresh > 0,
                    "the budget bit: {:?}",
                    m.neighbors
                );
                assert!(m.calls <= 60, "{} calls", m.calls);
            }
        }
        tables.push((
            table_bytes(&storage, Table::Favorites).await,
            table_bytes(&storage, Table::ExtractState).await,
        ));
    }
    assert!(
        tables[0] == tables[1],
        "two runs of the same night under the same budget differ"
    );
}
