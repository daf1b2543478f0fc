//! The second night: a run scored after another was published keeps, for
//! each rec the published run already made, the time and run that first made
//! it, whichever way it is scored, and its serving layout shows them.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use pipeline::config::Settings;
use pipeline::model::{Table, run_table_dir};
use pipeline::runs::{ShardStep, publish};
use pipeline::score::sharded::{finish, run_shard};
use pipeline::score::{ScoreOptions, run_score};
use pipeline::serving::PhotoItem;
use pipeline::store::Storage;

/// (user, photo) → (first recommended at, first run) of a run.
async fn first_recs(storage: &Storage, run_id: &str) -> BTreeMap<(String, String), (i64, String)> {
    let table = Table::FirstRecommended;
    let batches = storage
        .read_table_dir(&run_table_dir(run_id, table), table)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for b in &batches {
        let (u, p) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        let at = b.column(2).as_primitive::<TimestampMicrosecondType>();
        let run = b.column(3).as_string::<i32>();
        for i in 0..b.num_rows() {
            let key = (u.value(i).to_string(), p.value(i).to_string());
            let row = (at.value(i), run.value(i).to_string());
            assert!(out.insert(key, row).is_none(), "one row per (user, photo)");
        }
    }
    out
}

/// A tracked run (which reads only its targets' rows of the published table),
/// a run of every favoriter (which reads them all) and a run of two users
/// shards each carry the published run's first recommendations; the recs it
/// did not make are new, dated when the run started.
#[tokio::test]
async fn a_second_night_keeps_the_published_runs_first_recommendations() {
    let storage = crate::helpers::small_community().await;
    let mut settings = Settings::load_with_env(None, Vec::new()).unwrap();
    settings.score.photo_recs_per_user = 10;
    let first = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .unwrap();
    publish(&storage, Some(&first.run_id)).await.unwrap();
    let published = first_recs(&storage, &first.run_id).await;
    // Longer lists: each user gets recs the published run did not make.
    settings.score.photo_recs_per_user = 20;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let tracked = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let every = ScoreOptions {
        all_users: true,
        ..Default::default()
    };
    let every = run_score(&storage, &settings, every).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let run_id = chrono::Utc::now()
        .format("%Y%m%dT%H%M%SZ-5ba4ed")
        .to_string();
    for shard in [1, 0] {
        run_shard(
            &storage,
            &settings,
            &run_id,
            ShardStep::Users,
            (shard, 2),
            false,
        )
        .await
        .unwrap();
    }
    run_shard(
        &storage,
        &settings,
        &run_id,
        ShardStep::Photos,
        (0, 1),
        false,
    )
    .await
    .unwrap();
    let sharded = finish(&storage, &settings, &run_id).await.unwrap();
    for manifest in [&tracked, &every, &sharded] {
        let run_id = &manifest.run_id;
        let now = manifest.started_at.timestamp_micros();
        let (mut carried, mut new) = (0, 0);
        let rows = first_recs(&storage, run_id).await;
        for (key, row) in rows.clone() {
            match published.get(&key) {
                Some(before) => {
                    assert_eq!(&row, before, "{run_id}: {key:?} keeps its first rec");
                    carried += 1;
                }
                None => {
                    assert_eq!(row, (now, run_id.clone()), "{run_id}: {key:?} is new");
                    new += 1;
                }
            }
        }
        assert!(
            carried > 100 && new > 100,
            "{run_id}: {carried} carried, {new} new"
        );
        // Every photo rec the layout serves says what its row says.
        let layout = pipeline::serving::open(&storage, manifest).await.unwrap();
        let algorithms: Vec<String> =
            serde_json::from_slice(&layout.get("meta", b"algorithms").unwrap()).unwrap();
        let mut served = 0;
        for algorithm in &algorithms {
            let name = format!("photos/{algorithm}");
            for user in layout.section(&name).keys() {
                let list = layout.list(&name, user).unwrap().unwrap();
                let user = String::from_utf8(user.to_vec()).unwrap();
                let items: Vec<PhotoItem> = list.decode(0..list.len()).unwrap();
                for item in items {
                    let (at, first) = &rows[&(user.clone(), item.photo_id.clone())];
                    let shown = item.first_recommended_at.map(|t| t.timestamp_micros());
                    assert_eq!(shown, Some(*at), "{run_id}: {user} {}", item.photo_id);
                    assert_eq!(item.is_new, first == run_id);
                    served += 1;
                }
            }
        }
        assert!(
            served >= rows.len(),
            "{served} items for {} rows",
            rows.len()
        );
    }
    // The sharded run makes the tracked run's recs (every favoriter's run
    // ranks `popular` over another community).
    let recs = |rows: BTreeMap<(String, String), (i64, String)>| -> Vec<(String, String)> {
        rows.into_keys().collect()
    };
    let want = recs(first_recs(&storage, &tracked.run_id).await);
    assert!(recs(first_recs(&storage, &sharded.run_id).await) == want);

    // The sharded run's layout was built a part at a time (one per users
    // shard). With its `first_recommended` files renamed, so that the parts
    // of the per-user tables no longer line up, the same tables are read
    // whole, as one part: the records are the same.
    use pipeline::serving::build::{UserParts, read_tables};
    let stored = pipeline::serving::open(&storage, &sharded).await.unwrap();
    let aligned = read_tables(&storage, &sharded.run_id).await.unwrap();
    match aligned.user_parts() {
        UserParts::Aligned(names) => assert_eq!(names.len(), 2, "{names:?}"),
        UserParts::Whole => panic!("a sharded run's parts line up"),
    }
    let dir = format!("runs/{}/first_recommended", sharded.run_id);
    let files = storage.list_files(&dir.as_str().into()).await.unwrap();
    for f in files {
        let renamed = f.as_ref().replace("/part-", "/moved-");
        let bytes = storage.get_bytes(&f).await.unwrap();
        storage.put_bytes(&renamed.into(), bytes).await.unwrap();
        storage.delete(&f).await.unwrap();
    }
    let whole = read_tables(&storage, &sharded.run_id).await.unwrap();
    assert_eq!(whole.user_parts(), &UserParts::Whole);
    let rebuilt = pipeline::serving::build_mapped(&storage, &sharded)
        .await
        .unwrap();
    assert!(
        stored.bytes() != rebuilt.bytes(),
        "the records lie in another order"
    );
    let algorithms: Vec<String> =
        serde_json::from_slice(&stored.get("meta", b"algorithms").unwrap()).unwrap();
    crate::serving::assert_same_records(&stored, &rebuilt, &algorithms);
}
