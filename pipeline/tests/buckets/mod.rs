//! The large raw tables in hash buckets by user: a write rewrites only the
//! buckets of the users it touches; a single-file table of the last release is
//! read, migrated, and scores the same; a change of bucket count is handled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use pipeline::config::Settings;
use pipeline::extract::client::{ApiKey, FlickrClient};
use pipeline::extract::sim::SimOptions;
use pipeline::extract::{ExtractOptions, Phase, run_extract};
use pipeline::import::{ImportKind, import_file};
use pipeline::model::{Table, run_table_dir};
use pipeline::raw::{Rebucketed, merge_raw, rebucket, update_raw_users};
use pipeline::score::{ScoreOptions, run_score};
use pipeline::shard::shard_of;
use pipeline::store::{Storage, Version};

use crate::extract::{KEY, community, settings_for, start_sim};
use crate::helpers::{favorites_rows, layout_of, local, raw_objects, raw_rows};

/// Every stored object of a raw table: folder → (bytes, last modified).
async fn snapshot(
    storage: &Storage,
    table: Table,
) -> BTreeMap<String, (bytes::Bytes, chrono::DateTime<chrono::Utc>)> {
    let dir = object_store::path::Path::from(format!("raw/{}", table.name()));
    let mut out = BTreeMap::new();
    for f in storage.list_files(&dir).await.unwrap() {
        if !f.as_ref().ends_with(".parquet") {
            continue;
        }
        let folder = f.as_ref().rsplit_once('/').unwrap().0.to_string();
        let entry = (
            storage.get_bytes(&f).await.unwrap(),
            storage.last_modified(&f).await.unwrap(),
        );
        assert!(out.insert(folder, entry).is_none(), "one file per bucket");
    }
    out
}

/// Checks that only the buckets of `users` were rewritten (at least one was),
/// and every other bucket kept its bytes and its time. Returns how many were.
fn only_their_buckets_changed(
    table: Table,
    users: &[String],
    before: &BTreeMap<String, (bytes::Bytes, chrono::DateTime<chrono::Utc>)>,
    after: &BTreeMap<String, (bytes::Bytes, chrono::DateTime<chrono::Utc>)>,
) -> usize {
    let theirs: BTreeSet<String> = users
        .iter()
        .map(|u| format!("raw/{}/bucket={:04}", table.name(), shard_of(u, 64)))
        .collect();
    assert_eq!(before.len(), 64);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let mut changed = 0;
    for (folder, old) in before {
        let new = &after[folder];
        if theirs.contains(folder) {
            changed += usize::from(old != new);
        } else {
            assert!(
                old == new,
                "{folder} holds none of the users, yet was rewritten"
            );
        }
    }
    assert!(changed >= 1, "none of the users' buckets was rewritten");
    assert!(
        theirs.len() < 32,
        "the users span {} of 64 buckets",
        theirs.len()
    );
    changed
}

#[tokio::test]
async fn an_import_or_a_fold_touching_one_percent_of_users_rewrites_only_their_buckets() {
    // Arrange: 2 000 people, 20 of them (1 %) tracked, stored in 64 buckets.
    let dir = tempfile::tempdir().unwrap();
    let storage = local(dir.path(), 64);
    let c = community(2000, 20);
    pipeline::community::write_community(&storage, &c)
        .await
        .unwrap();
    let tracked = c.tracked_ids();
    assert_eq!(tracked.len(), 20);

    // Act 1: import one new favourite for each of the 20.
    let before = snapshot(&storage, Table::Favorites).await;
    let csv = dir.path().join("new.csv");
    let mut text = String::from("user_id,photo_id,owner_id\n");
    for (i, u) in tracked.iter().enumerate() {
        text.push_str(&format!("{u},{},5@N05\n", 990_000_000 + i));
    }
    std::fs::write(&csv, text).unwrap();
    let r = import_file(&storage, ImportKind::Favorites, &csv)
        .await
        .unwrap();

    // Assert 1: only their buckets were rewritten, and the totals are right.
    let after = snapshot(&storage, Table::Favorites).await;
    let changed = only_their_buckets_changed(Table::Favorites, &tracked, &before, &after);
    assert_eq!(r.rows_after, r.rows_before + 20, "{r:?}");
    println!("import: {changed} of 64 favorites buckets rewritten");

    // Act 2: an extract of the tracked users alone (the sharded extract's
    // first phase), then its fold.
    let (_sim, url) = start_sim(&c, SimOptions::keyed(KEY)).await;
    let settings = settings_for(&url);
    let before = [
        snapshot(&storage, Table::Favorites).await,
        snapshot(&storage, Table::Contacts).await,
    ];
    let client = FlickrClient::new(&settings.flickr, ApiKey::new(KEY)).unwrap();
    let options = ExtractOptions {
        phase: Some(Phase::Tracked),
        ..ExtractOptions::at(chrono::Utc::now())
    };
    let now = options.now;
    run_extract(&storage, &settings, &client, options)
        .await
        .unwrap();
    pipeline::extract::fold(&storage, &settings, now)
        .await
        .unwrap();

    // Assert 2: the fold rewrote only the buckets of the 20.
    for (table, before) in [Table::Favorites, Table::Contacts].into_iter().zip(before) {
        let after = snapshot(&storage, table).await;
        let changed = only_their_buckets_changed(table, &tracked, &before, &after);
        println!("fold: {changed} of 64 {} buckets rewritten", table.name());
    }
}

/// A run's tables that hold no time of the run, each read whole.
async fn run_tables(storage: &Storage, run_id: &str) -> Vec<(Table, Vec<RecordBatch>)> {
    let mut out = Vec::new();
    for table in [
        Table::PhotoRecs,
        Table::PhotographerRecs,
        Table::SimilarPhotos,
        Table::TagPhotos,
        Table::Photos,
        Table::TrackedUsers,
    ] {
        let rows = storage
            .read_table_dir(&run_table_dir(run_id, table), table)
            .await
            .unwrap();
        let schema = table.schema();
        out.push((
            table,
            vec![arrow_select::concat::concat_batches(&schema, &rows).unwrap()],
        ));
    }
    out
}

fn sorted(
    mut rows: Vec<(String, String, Option<String>)>,
) -> Vec<(String, String, Option<String>)> {
    rows.sort();
    rows
}

#[tokio::test]
async fn a_single_file_table_of_the_last_release_is_read_migrated_and_scores_the_same() {
    // Arrange: the last release's layout, each raw table one file.
    let dir = tempfile::tempdir().unwrap();
    let storage = local(dir.path(), 64);
    let c = community(600, 10);
    for (table, batch) in [
        (Table::Favorites, &c.favorites),
        (Table::Contacts, &c.contacts),
        (Table::Photos, &c.photos),
        (Table::TrackedUsers, &c.tracked_users),
    ] {
        storage
            .write_parquet(&table.raw_path(), table, std::slice::from_ref(batch))
            .await
            .unwrap();
    }
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    let legacy_favorites = sorted(favorites_rows(
        &storage.read_raw(Table::Favorites).await.unwrap().unwrap(),
    ));
    assert_eq!(legacy_favorites.len(), c.favorites.num_rows());
    assert!(
        storage
            .raw_layout(Table::Favorites)
            .await
            .unwrap()
            .is_none()
    );
    let legacy_run = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .unwrap();

    // Act: the documented command migrates favorites; the next write migrates
    // contacts (a row it already holds, so the rows stay the same).
    let moved = rebucket(&storage, Table::Favorites).await.unwrap();
    merge_raw(&storage, Table::Contacts, vec![c.contacts.slice(0, 1)])
        .await
        .unwrap();

    // Assert: both are in 64 buckets, the single files are gone, the rows are
    // the same, and a score over them gives the same tables.
    assert_eq!(
        moved,
        Rebucketed::Rewritten {
            from: None,
            to: 64,
            rows: c.favorites.num_rows()
        }
    );
    for table in [Table::Favorites, Table::Contacts] {
        assert_eq!(layout_of(&storage, table).await.buckets, 64);
        assert_eq!(
            storage.version(&table.raw_path()).await.unwrap(),
            Version::Absent,
            "{} still has its single file",
            table.name()
        );
        assert_eq!(raw_objects(&storage, table).await.len(), 64);
    }
    assert_eq!(
        raw_rows(&storage, Table::Contacts).await,
        c.contacts.num_rows()
    );
    assert_eq!(
        sorted(favorites_rows(
            &storage.read_raw(Table::Favorites).await.unwrap().unwrap()
        )),
        legacy_favorites
    );
    let bucketed_run = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .unwrap();
    let (a, b) = (
        run_tables(&storage, &legacy_run.run_id).await,
        run_tables(&storage, &bucketed_run.run_id).await,
    );
    for ((table, a), (_, b)) in a.iter().zip(&b) {
        assert!(a[0].num_rows() > 0 || *table == Table::TagPhotos);
        assert!(a == b, "{} differs after the migration", table.name());
    }

    // A different storage.raw_buckets: writes keep the stored count (a user's
    // rows are never looked for in the wrong bucket); rebucket changes it.
    let eight = storage.clone().with_raw_buckets(8);
    merge_raw(
        &eight,
        Table::Favorites,
        vec![crate::helpers::favorites_batch(&[("7@N07", "77", None)])],
    )
    .await
    .unwrap();
    assert_eq!(layout_of(&eight, Table::Favorites).await.buckets, 64);
    assert_eq!(
        rebucket(&eight, Table::Favorites).await.unwrap(),
        Rebucketed::Rewritten {
            from: Some(64),
            to: 8,
            rows: legacy_favorites.len() + 1
        }
    );
    assert_eq!(layout_of(&eight, Table::Favorites).await.buckets, 8);
    assert_eq!(raw_objects(&eight, Table::Favorites).await.len(), 8);
    assert_eq!(
        rebucket(&eight, Table::Favorites).await.unwrap(),
        Rebucketed::Kept { buckets: 8 }
    );
    let mut expected = legacy_favorites.clone();
    expected.push(("7@N07".into(), "77".into(), None));
    assert_eq!(
        sorted(favorites_rows(
            &eight.read_raw(Table::Favorites).await.unwrap().unwrap()
        )),
        sorted(expected)
    );
}

#[tokio::test]
async fn a_reader_never_sees_a_generation_that_was_not_committed() {
    // A writer that lost the race to create the layout leaves nothing behind,
    // and readers only ever see the committed generation.
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory")
        .with_raw_buckets(4);
    let writers = (0..6).map(|w| {
        let batch =
            crate::helpers::favorites_batch(&[(&*format!("{w}@N01"), &*format!("{w}0"), None)]);
        let storage = storage.clone();
        async move { merge_raw(&storage, Table::Favorites, vec![batch]).await }
    });
    for r in futures::future::join_all(writers).await {
        r.unwrap();
    }
    let rows = favorites_rows(&storage.read_raw(Table::Favorites).await.unwrap().unwrap());
    assert_eq!(rows.len(), 6, "{rows:?}");
    let objects = raw_objects(&storage, Table::Favorites).await;
    assert_eq!(objects.len(), 4, "the losers' generations were removed");
}

/// Merges `rows` into the favourites as another writer would, on a thread
/// and runtime of its own, while the caller's write is half-way (called from
/// its change, which cannot await); gives the layout it left.
fn merged_meanwhile(storage: &Storage, rows: &RecordBatch) -> pipeline::store::Layout {
    let (storage, rows) = (storage.clone(), rows.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            merge_raw(&storage, Table::Favorites, vec![rows])
                .await
                .unwrap();
            layout_of(&storage, Table::Favorites).await
        })
    })
    .join()
    .unwrap()
}

/// The favourites held, as (user, photo, owner), sorted.
async fn favorites_held(storage: &Storage) -> Vec<(String, String, Option<String>)> {
    sorted(favorites_rows(
        &storage.read_raw(Table::Favorites).await.unwrap().unwrap(),
    ))
}

/// (user, photo) pairs as [`favorites_held`] gives them, without owners.
fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String, Option<String>)> {
    rows.iter()
        .map(|(u, p)| (u.to_string(), p.to_string(), None))
        .collect()
}

/// Writes `a`'s rows of user 1@N01 into the favourites with
/// `update_raw_users`; the first time its change runs, writer B merges `b`
/// (`merged_meanwhile`) before A's write lands. Gives how many times A's
/// change ran, the layout B left, and A's report.
async fn write_with_a_writer_between(
    storage: &Storage,
    a: &RecordBatch,
    b: &RecordBatch,
) -> (u32, pipeline::store::Layout, pipeline::raw::MergeReport) {
    let users: BTreeSet<String> = ["1@N01".to_string()].into();
    let mut left_by_b = None;
    let mut changes = 0;
    let report = update_raw_users(storage, Table::Favorites, &users, |bucket, old| {
        changes += 1;
        if left_by_b.is_none() {
            left_by_b = Some(merged_meanwhile(storage, b));
        }
        let mut rows = Vec::new();
        if bucket.holds("1@N01") {
            rows.push(a.clone());
        }
        rows.extend(old);
        Ok(rows)
    })
    .await
    .unwrap();
    (changes, left_by_b.unwrap(), report)
}

/// In memory, and on a local directory (where a conditional put runs under
/// the object's lock file): the stores a second writer can reach from a
/// thread of its own without the first writer's runtime (an S3 client's
/// pooled connections belong to the runtime that opened them, which the
/// first writer blocks while its change runs).
fn race_stores(dir: &std::path::Path) -> [Storage; 2] {
    [
        Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory")
            .with_raw_buckets(4),
        local(dir, 4),
    ]
}

#[tokio::test]
async fn a_writer_that_loses_the_race_to_create_the_layout_writes_again_on_the_winners() {
    let dir = tempfile::tempdir().unwrap();
    for storage in race_stores(dir.path()) {
        first_layout_race(&storage).await;
    }
}

async fn first_layout_race(storage: &Storage) {
    // Deterministic, unlike the race above: B creates the table while A is
    // writing the first generation. A's conditional put of the layout must
    // then fail; A removes the generation it wrote and writes again, this
    // time into B's generation.
    let a = crate::helpers::favorites_batch(&[("1@N01", "10", None)]);
    let b = crate::helpers::favorites_batch(&[("2@N01", "20", None), ("1@N01", "11", None)]);
    let (changes, winners, report) = write_with_a_writer_between(storage, &a, &b).await;
    // Once in A's own generation (abandoned), once in B's.
    assert_eq!(changes, 2);
    assert_eq!(layout_of(storage, Table::Favorites).await, winners);
    let rows = favorites_held(storage).await;
    assert_eq!(
        rows,
        pairs(&[("1@N01", "10"), ("1@N01", "11"), ("2@N01", "20")])
    );
    assert_eq!(
        report.rows_after,
        rows.len(),
        "the report counts the rows kept"
    );
    let objects = raw_objects(storage, Table::Favorites).await;
    assert_eq!(objects.len(), 4, "A's abandoned generation was removed");
}

#[tokio::test]
async fn a_writer_that_loses_the_race_for_a_bucket_merges_it_again() {
    let dir = tempfile::tempdir().unwrap();
    for storage in race_stores(dir.path()) {
        bucket_race(&storage).await;
    }
}

async fn bucket_race(storage: &Storage) {
    // B rewrites the bucket of user 1@N01 while A is changing it: A's
    // conditional put of that bucket must fail, and A merges it again from
    // B's rows, in the same generation.
    let first = crate::helpers::favorites_batch(&[("1@N01", "1", None), ("2@N01", "2", None)]);
    merge_raw(storage, Table::Favorites, vec![first])
        .await
        .unwrap();
    let before = layout_of(storage, Table::Favorites).await;
    let a = crate::helpers::favorites_batch(&[("1@N01", "10", None)]);
    let b = crate::helpers::favorites_batch(&[("1@N01", "11", None)]);
    let (changes, left_by_b, report) = write_with_a_writer_between(storage, &a, &b).await;
    // Once on the bucket as A read it, once on B's.
    assert_eq!(changes, 2);
    assert_eq!(left_by_b, before, "B wrote in place");
    assert_eq!(layout_of(storage, Table::Favorites).await, before);
    let rows = favorites_held(storage).await;
    assert_eq!(
        rows,
        pairs(&[
            ("1@N01", "1"),
            ("1@N01", "10"),
            ("1@N01", "11"),
            ("2@N01", "2")
        ])
    );
    assert_eq!(
        report.rows_after,
        rows.len(),
        "the report counts the rows kept"
    );
    assert_eq!(raw_objects(storage, Table::Favorites).await.len(), 4);
}

#[tokio::test]
async fn gc_removes_old_files_of_a_generation_no_reader_uses() {
    // Arrange: a table in 4 buckets, then the files a killed rebucket left (a
    // generation never committed) and a migrated table's single file, two
    // hours old, and one such file a minute old (its writer may be at work).
    let dir = tempfile::tempdir().unwrap();
    let storage = local(dir.path(), 4);
    merge_raw(
        &storage,
        Table::Favorites,
        vec![crate::helpers::favorites_batch(&[
            ("1@N01", "10", None),
            ("2@N01", "20", None),
        ])],
    )
    .await
    .unwrap();
    let current = raw_objects(&storage, Table::Favorites).await;
    let root = dir.path().join("raw/favorites");
    let aged = |file: &std::path::Path, secs: u64| {
        std::fs::write(file, b"PAR1 left by a killed writer").unwrap();
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
            .unwrap();
    };
    aged(
        &root.join("bucket=0001/g20261130T000000Z-8-00000000.parquet"),
        7200,
    );
    aged(&root.join("data.parquet"), 7200);
    aged(
        &root.join("bucket=0002/g20261130T000001Z-8-00000001.parquet"),
        60,
    );
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();

    // Act.
    let (plan, _) = pipeline::gc::run_gc(&storage, &settings, false)
        .await
        .unwrap();

    // Assert: the two old files went, the young one and the table stayed.
    let removed: Vec<String> = plan.raw_stale.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        removed,
        vec![
            "raw/favorites/bucket=0001/g20261130T000000Z-8-00000000.parquet".to_string(),
            "raw/favorites/data.parquet".to_string(),
        ]
    );
    assert!(!root.join("data.parquet").exists());
    assert!(
        root.join("bucket=0002/g20261130T000001Z-8-00000001.parquet")
            .exists()
    );
    std::fs::remove_file(root.join("bucket=0002/g20261130T000001Z-8-00000001.parquet")).unwrap();
    assert_eq!(raw_objects(&storage, Table::Favorites).await, current);
    assert_eq!(raw_rows(&storage, Table::Favorites).await, 2);
}
