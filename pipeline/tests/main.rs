//! Integration tests of the pipeline's public API.
//!
//! The storage contract suite is written once, as async functions over a
//! [`Storage`], and run on `InMemory`, on a local directory, and on moto's real S3
//! API server.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod buckets;
mod extract;
mod helpers;
#[path = "support/moto.rs"]
mod moto;
mod neighbourhood;
mod nights;
mod retention;
mod serving;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use bytes::Bytes;
use object_store::path::Path;
use pipeline::config::Settings;
use pipeline::import::{ImportError, ImportKind, import_file};
use pipeline::model::{CURRENT, Table};
use pipeline::raw::merge_raw;
use pipeline::runs::{RunError, RunStatus, current, list_runs, publish, read_manifest};
use pipeline::score::{ScoreError, ScoreOptions, run_score};
use pipeline::store::{Storage, StoreError};

use helpers::*;

// ---- the contract suite -------------------------------------------------------

/// Parquet written through the store reads back equal, zstd-compressed, with
/// statistics.
async fn check_parquet_round_trip(storage: &Storage) {
    let batch = favorites_batch(&[("1@N01", "10", Some("2@N01")), ("1@N01", "11", None)]);
    let path = Path::from("contract/favorites.parquet");
    let rows = storage
        .write_parquet(&path, Table::Favorites, std::slice::from_ref(&batch))
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let back = storage.read_parquet(&path, Table::Favorites).await.unwrap();
    assert_eq!(back, vec![batch]);

    let bytes = storage.get_bytes(&path).await.unwrap();
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes).unwrap();
    use parquet::file::reader::FileReader;
    let rg = reader.metadata().row_group(0);
    for c in rg.columns() {
        assert!(
            matches!(c.compression(), parquet::basic::Compression::ZSTD(_)),
            "{:?}",
            c.compression()
        );
        assert!(
            c.statistics().is_some(),
            "column {} has statistics",
            c.column_path()
        );
    }
}

/// Missing, garbage and mistyped objects give typed errors, not panics.
async fn check_bad_objects_are_errors(storage: &Storage) {
    let missing = storage
        .read_parquet(&Path::from("contract/nope.parquet"), Table::Favorites)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    let garbage = Path::from("contract/garbage.parquet");
    storage
        .put_bytes(
            &garbage,
            Bytes::from_static(b"not parquet at all, just words"),
        )
        .await
        .unwrap();
    let err = storage
        .read_parquet(&garbage, Table::Favorites)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Parquet { .. }), "{err}");

    // A contacts file read as favorites: the missing column is named.
    let contacts = Path::from("contract/contacts.parquet");
    storage
        .write_parquet(
            &contacts,
            Table::Contacts,
            &[contacts_batch(&[("1@N01", "2@N01")])],
        )
        .await
        .unwrap();
    let err = storage
        .read_parquet(&contacts, Table::Favorites)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("column photo_id is missing"), "{msg}");
}

/// Merging removes duplicates by key, keeps the new row, and sorts.
async fn check_merge_dedupes(storage: &Storage) {
    merge_raw(
        storage,
        Table::Favorites,
        vec![favorites_batch(&[
            ("2@N01", "20", None),
            ("1@N01", "10", None),
        ])],
    )
    .await
    .unwrap();
    let report = merge_raw(
        storage,
        Table::Favorites,
        vec![favorites_batch(&[
            ("1@N01", "10", Some("3@N01")),
            ("1@N01", "10", Some("4@N01")),
            ("1@N01", "11", None),
        ])],
    )
    .await
    .unwrap();
    assert_eq!(
        (report.rows_read, report.rows_before, report.rows_after),
        (3, 2, 3)
    );
    let rows = favorites_rows(&storage.read_raw(Table::Favorites).await.unwrap().unwrap());
    assert_eq!(
        rows,
        vec![
            ("1@N01".into(), "10".into(), Some("3@N01".into())),
            ("1@N01".into(), "11".into(), None),
            ("2@N01".into(), "20".into(), None),
        ]
    );
}

/// score → publish → CURRENT, listing, refusal of bad publishes, rollback.
async fn check_runs_and_publish(storage: &Storage) {
    write_example(storage).await;
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    let first = run_score(storage, &settings, ScoreOptions::default())
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Succeeded);
    // Three recs from each of the four default algorithms.
    assert_eq!(first.rows_out["photo_recs"], 12);
    assert!(first.stages.iter().any(|s| s.stage == "recommend"));
    let mut written: Vec<&str> = first.tables.keys().map(String::as_str).collect();
    let mut contract: Vec<&str> = Table::RUN.iter().map(|t| t.name()).collect();
    written.sort_unstable();
    contract.sort_unstable();
    assert_eq!(
        written, contract,
        "a run writes exactly the run tables of the contract"
    );
    assert!(
        current(storage).await.unwrap().is_none(),
        "score does not publish"
    );

    let p = publish(storage, None).await.unwrap();
    assert_eq!(p.run_id, first.run_id);
    assert_eq!(
        current(storage).await.unwrap().unwrap().run_id,
        first.run_id
    );

    // A second run, published, then rolled back to the first.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = run_score(
        storage,
        &settings,
        ScoreOptions {
            all_users: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    publish(storage, Some(&second.run_id)).await.unwrap();
    // Recs the published first run already made keep its date; the rest are new.
    let first_rec = storage
        .read_table_dir(
            &pipeline::model::run_table_dir(&second.run_id, Table::FirstRecommended),
            Table::FirstRecommended,
        )
        .await
        .unwrap();
    let mut carried = 0;
    for b in &first_rec {
        let (u, r) = (
            b.column(0).as_string::<i32>(),
            b.column(3).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let want = if u.value(i) == "1@N01" {
                &first.run_id
            } else {
                &second.run_id
            };
            assert_eq!(r.value(i), want, "row {i} of user {}", u.value(i));
            carried += usize::from(u.value(i) == "1@N01");
        }
    }
    assert_eq!(carried, 3);
    let runs = list_runs(storage).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs[1].current && !runs[0].current);
    publish(storage, Some(&first.run_id)).await.unwrap();
    assert_eq!(
        current(storage).await.unwrap().unwrap().run_id,
        first.run_id
    );

    // Unknown, malformed and unfinished runs are refused; CURRENT is unchanged.
    let before = storage.get_bytes(&Path::from(CURRENT)).await.unwrap();
    assert!(matches!(
        publish(storage, Some("20990101T000000Z-000000")).await,
        Err(RunError::UnknownRun { .. })
    ));
    assert!(matches!(
        publish(storage, Some("../x")).await,
        Err(RunError::BadRunId { .. })
    ));
    let mut running = read_manifest(storage, &first.run_id).await.unwrap();
    running.run_id = "20990101T000000Z-running".into();
    running.status = RunStatus::Running;
    pipeline::runs::write_manifest(storage, &running)
        .await
        .unwrap();
    let err = publish(storage, Some(&running.run_id)).await.unwrap_err();
    assert!(
        err.to_string().contains("is running, not succeeded"),
        "{err}"
    );
    assert_eq!(
        storage.get_bytes(&Path::from(CURRENT)).await.unwrap(),
        before
    );

    // The manifest records the config and never a secret-looking key.
    let text = String::from_utf8(
        storage
            .get_bytes(&pipeline::model::manifest_path(&first.run_id))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("\"photo_recs_per_user\": 100"), "{text}");
    assert!(!text.to_lowercase().contains("api_key"));
}

/// A conditional put refuses to overwrite what another writer changed, and
/// leaves no lock file behind.
async fn check_conditional_put(storage: &Storage) {
    use pipeline::store::{StoreError, Version};
    let dir = object_store::path::Path::from("concurrency");
    let path = dir.clone().join("object");
    let seen_absent = storage.version(&path).await.unwrap();
    assert_eq!(seen_absent, Version::Absent);
    storage
        .put_if(&path, "one".into(), &seen_absent)
        .await
        .unwrap();
    // A second creator, who also saw nothing there, loses.
    let err = storage
        .put_if(&path, "two".into(), &seen_absent)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let seen_one = storage.version(&path).await.unwrap();
    storage
        .put_if(&path, "three".into(), &seen_one)
        .await
        .unwrap();
    // A writer holding the older version loses, and writes nothing.
    let err = storage
        .put_if(&path, "four".into(), &seen_one)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("changed by another writer"),
        "{err}"
    );
    assert_eq!(storage.get_bytes(&path).await.unwrap(), "three");
    assert_eq!(storage.list_files(&dir).await.unwrap(), vec![path.clone()]);
    storage.delete(&path).await.unwrap();
}

/// Concurrent read-modify-writes of one raw table keep every writer's rows:
/// in many buckets, and in one bucket that every writer rewrites (there the
/// first writes also race to create the table's layout).
async fn check_concurrent_merges_lose_nothing(storage: &Storage) {
    for storage in [storage.clone(), storage.clone().with_raw_buckets(1)] {
        concurrent_merges_lose_nothing(&storage).await;
    }
}

async fn concurrent_merges_lose_nothing(storage: &Storage) {
    use pipeline::model::arrow::string_array;
    use pipeline::model::columns::ContactsArrays;
    remove_raw(storage, Table::Contacts).await;
    let rows_each = 500;
    let writers = (0..4).map(|w| {
        let batch = ContactsArrays {
            user_id: string_array(vec![Some(format!("{w}@N01")); rows_each]),
            contact_id: string_array((0..rows_each).map(|i| Some(format!("{i}@N02"))).collect()),
        }
        .into_batch()
        .unwrap();
        merge_raw(storage, Table::Contacts, vec![batch])
    });
    let reports = futures::future::join_all(writers).await;
    for r in &reports {
        assert_eq!(r.as_ref().unwrap().rows_read, rows_each);
    }
    assert_eq!(
        raw_rows(storage, Table::Contacts).await,
        4 * rows_each,
        "every writer's rows are kept"
    );
    let layout = layout_of(storage, Table::Contacts).await;
    assert_eq!(layout.buckets, storage.raw_buckets());
    assert_eq!(
        raw_objects(storage, Table::Contacts).await.len(),
        layout.buckets as usize,
        "one file per bucket: the losers of the layout race left nothing"
    );
    remove_raw(storage, Table::Contacts).await;
}

/// A large object is written from a staged file (on S3 in parts: three here,
/// 16, 16 and the rest, in MiB) and reads back whole; a stage dropped without
/// its put leaves nothing, not even on a local directory.
async fn check_put_staged(storage: &Storage) {
    use std::io::Write;
    let len = (32 << 20) + 12_345;
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let path = Path::from("contract/large.bin");
    let abandoned = storage.stage(&path).unwrap();
    abandoned.file().write_all(b"never stored").unwrap();
    drop(abandoned);
    let staged = storage.stage(&path).unwrap();
    staged.file().write_all(&bytes).unwrap();
    assert_eq!(staged.path(), &path);
    storage.put_staged(staged).await.unwrap();
    assert!(storage.get_bytes(&path).await.unwrap()[..] == bytes[..]);
    if let Some(file) = storage.local_file(&path) {
        let dir = file.parent().unwrap();
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["large.bin"], "a staged file was left behind");
    }
    storage.delete(&path).await.unwrap();
}

async fn contract_suite(storage: &Storage) {
    check_conditional_put(storage).await;
    check_put_staged(storage).await;
    check_concurrent_merges_lose_nothing(storage).await;
    check_parquet_round_trip(storage).await;
    check_bad_objects_are_errors(storage).await;
    check_merge_dedupes(storage).await;
    // The runs check needs a fresh favorites table.
    remove_raw(storage, Table::Favorites).await;
    check_runs_and_publish(storage).await;
    serving::check_stored_layout(storage).await;
}

#[tokio::test]
async fn contract_holds_in_memory() {
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    contract_suite(&storage).await;
}

#[tokio::test]
async fn contract_holds_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let storage = local(&dir.path().join("nested/root"), 64);
    contract_suite(&storage).await;
    assert!(dir.path().join("nested/root/CURRENT").exists());
}

#[tokio::test]
async fn contract_holds_on_s3_via_moto() {
    let moto = moto::Moto::start();
    moto.create_bucket("contract");
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("contract")
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .build()
        .unwrap();
    let storage = Storage::from_store(
        Arc::new(object_store::prefix::PrefixStore::new(s3, "some/prefix")),
        "s3://contract/some/prefix",
    );
    contract_suite(&storage).await;
}

// ---- import and score through storage ------------------------------------------

#[tokio::test]
async fn failed_import_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "user_id,photo_id,owner_id\n1@N01,10,2@N01\n").unwrap();
    import_file(&storage, ImportKind::Favorites, &good)
        .await
        .unwrap();
    let before = raw_objects(&storage, Table::Favorites).await;

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "user_id,photo_id\n1@N01,11\n1@N01,12\nnot-an-nsid,13\n",
    )
    .unwrap();
    let err = import_file(&storage, ImportKind::Favorites, &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::Row { .. }));
    assert!(err.to_string().contains("line 4"), "{err}");
    assert_eq!(raw_objects(&storage, Table::Favorites).await, before);

    let wrong_type = dir.path().join("wrong.parquet");
    write_parquet_file(&wrong_type);
    let err = import_file(&storage, ImportKind::Favorites, &wrong_type)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("column photo_id has type Float64"),
        "{err}"
    );
    assert_eq!(raw_objects(&storage, Table::Favorites).await, before);
}

#[tokio::test]
async fn parquet_import_accepts_integer_photo_ids_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    let file = dir.path().join("favs.parquet");
    write_good_parquet_file(&file);
    let r = import_file(&storage, ImportKind::Favorites, &file)
        .await
        .unwrap();
    assert_eq!(r.rows_after, 2);
    let rows = storage.read_raw(Table::Favorites).await.unwrap().unwrap();
    assert_eq!(rows[0].column(1).as_string::<i32>().value(0), "51737769056");
}

#[tokio::test]
async fn parquet_import_reads_every_common_compression() {
    use parquet::basic::{Compression, GzipLevel, ZstdLevel};
    let dir = tempfile::tempdir().unwrap();
    for (name, codec) in [
        ("snappy", Compression::SNAPPY),
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("lz4_raw", Compression::LZ4_RAW),
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
    ] {
        let storage =
            Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
        let file = dir.path().join(format!("favs-{name}.parquet"));
        helpers::write_good_parquet_file_with(&file, codec);
        let r = import_file(&storage, ImportKind::Favorites, &file)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.rows_after, 2, "{name}");
    }
}

#[tokio::test]
async fn score_without_favorites_says_what_to_do() {
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    let err = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ScoreError::NoFavorites));
    assert!(
        err.to_string().contains("faverecs import favorites"),
        "{err}"
    );
    // The failed run is recorded as failed, and cannot be published.
    let runs = list_runs(&storage).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].manifest.as_ref().unwrap().status, RunStatus::Failed);
    assert!(matches!(
        publish(&storage, None).await,
        Err(RunError::NothingToPublish)
    ));
}

#[tokio::test]
async fn favourites_without_owners_still_score_and_the_manifest_says_what_was_skipped() {
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    let favorites = favorites_batch(&[
        ("1@N01", "10", None),
        ("1@N01", "11", None),
        ("2@N01", "10", None),
        ("2@N01", "12", None),
        ("3@N01", "11", None),
        ("3@N01", "12", None),
    ]);
    merge_raw(&storage, Table::Favorites, vec![favorites])
        .await
        .unwrap();
    merge_raw(
        &storage,
        Table::TrackedUsers,
        vec![tracked_batch(&["1@N01"])],
    )
    .await
    .unwrap();
    let m = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .expect("a run without owners succeeds");
    assert_eq!(m.status, RunStatus::Succeeded);
    assert_eq!(m.notes.len(), 1, "{:?}", m.notes);
    assert!(m.notes[0].contains("flexplore, explore and photographer recs are skipped"));
    assert_eq!(m.rows_out["photographer_recs"], 0);
    assert!(m.rows_out["photo_recs"] > 0, "{:?}", m.rows_out);
    assert!(m.rows_out["similar_photos"] > 0, "{:?}", m.rows_out);
    // Read back: the manifest as stored carries the note.
    let stored = read_manifest(&storage, &m.run_id).await.unwrap();
    assert_eq!(stored.notes, m.notes);
}

#[tokio::test]
async fn same_input_gives_byte_identical_tables() {
    let storage = small_community().await;
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    let a = run_score(&storage, &settings, ScoreOptions::default())
        .await
        .unwrap();
    let mut two = settings.clone();
    two.score.threads = 1;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let b = run_score(&storage, &two, ScoreOptions::default())
        .await
        .unwrap();
    for table in ["photo_recs", "photographer_recs", "photos"] {
        let pa = Path::from(format!("runs/{}/{}", a.run_id, a.tables[table][0]));
        let pb = Path::from(format!("runs/{}/{}", b.run_id, b.tables[table][0]));
        assert_eq!(
            storage.get_bytes(&pa).await.unwrap(),
            storage.get_bytes(&pb).await.unwrap(),
            "{table} differs between runs"
        );
    }
    assert!(a.rows_out["photo_recs"] > 100);
}

/// Scores the example into a new run (one second after the last, so ids sort).
async fn scored_run(storage: &Storage) -> String {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let settings = Settings::load_with_env(None, Vec::new()).unwrap();
    run_score(storage, &settings, ScoreOptions::default())
        .await
        .unwrap()
        .run_id
}

#[tokio::test]
async fn publish_refuses_a_run_with_a_truncated_missing_or_drifted_file() {
    // Arrange: one good run, published; then damaged runs after it.
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    write_example(&storage).await;
    let good = scored_run(&storage).await;
    publish(&storage, Some(&good)).await.unwrap();
    let part =
        |run: &str, table: &str| Path::from(format!("runs/{run}/{table}/part-00000.parquet"));

    // A truncated photo_recs file.
    let truncated = scored_run(&storage).await;
    let bytes = storage
        .get_bytes(&part(&truncated, "photo_recs"))
        .await
        .unwrap();
    storage
        .put_bytes(
            &part(&truncated, "photo_recs"),
            bytes.slice(..bytes.len() / 2),
        )
        .await
        .unwrap();
    // A missing similar_photos file.
    let missing = scored_run(&storage).await;
    storage
        .delete(&part(&missing, "similar_photos"))
        .await
        .unwrap();
    // A photographer_recs file whose `score` column was renamed: valid Parquet,
    // wrong schema.
    let drifted = scored_run(&storage).await;
    {
        use parquet::arrow::ArrowWriter;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let path = part(&drifted, "photographer_recs");
        let bytes = storage.get_bytes(&path).await.unwrap();
        let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let schema = batches[0].schema();
        let renamed = Arc::new(arrow_schema::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| {
                    let name = if f.name() == "score" {
                        "points"
                    } else {
                        f.name()
                    };
                    f.as_ref().clone().with_name(name)
                })
                .collect::<Vec<_>>(),
        ));
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, renamed.clone(), None).unwrap();
        for b in &batches {
            let b = arrow_array::RecordBatch::try_new(renamed.clone(), b.columns().to_vec());
            w.write(&b.unwrap()).unwrap();
        }
        w.close().unwrap();
        storage.put_bytes(&path, out.into()).await.unwrap();
    }
    // A photo_recs file that decodes but holds fewer rows than the manifest says.
    let short = scored_run(&storage).await;
    let mut manifest = read_manifest(&storage, &short).await.unwrap();
    *manifest.rows_out.get_mut("photo_recs").unwrap() += 1;
    pipeline::runs::write_manifest(&storage, &manifest)
        .await
        .unwrap();

    // Act and assert: each is refused by name, with the file and the reason.
    let refused = |run: &str, needle: &str| {
        let storage = storage.clone();
        let (run, needle) = (run.to_string(), needle.to_string());
        async move {
            let err = publish(&storage, Some(&run)).await.unwrap_err().to_string();
            assert!(
                err.contains(&run) && err.contains(&needle),
                "{needle}: {err}"
            );
        }
    };
    refused(&truncated, "photo_recs/part-00000.parquet").await;
    refused(&missing, "similar_photos/part-00000.parquet is missing").await;
    refused(&drifted, "column score is missing").await;
    refused(&short, "its files hold 12 rows, the manifest says 13").await;
    assert_eq!(current(&storage).await.unwrap().unwrap().run_id, good);

    // Without --run, the newest run that passes is the good one.
    assert_eq!(publish(&storage, None).await.unwrap().run_id, good);
    // A new good run is taken over the damaged ones, and CURRENT remembers the
    // run before it.
    let newest = scored_run(&storage).await;
    let pointer = publish(&storage, None).await.unwrap();
    assert_eq!(pointer.run_id, newest);
    assert_eq!(pointer.previous[0].run_id, good);
}

#[tokio::test]
async fn a_garbage_current_blocks_neither_runs_nor_score_nor_publish() {
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    write_example(&storage).await;
    let first = scored_run(&storage).await;
    storage
        .put_bytes(&Path::from(CURRENT), Bytes::from_static(b"\x00garbage"))
        .await
        .unwrap();

    // `runs` lists every run, none current.
    let runs = list_runs(&storage).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert!(!runs[0].current);
    // `current` names the problem and the repair.
    let err = current(&storage).await.unwrap_err().to_string();
    assert!(err.contains("CURRENT is unreadable"), "{err}");
    assert!(err.contains("faverecs publish --run"), "{err}");
    assert!(err.len() < 400, "a short message: {err}");
    // `score` still runs (every rec counts as new) and records no failure.
    let second = scored_run(&storage).await;
    let m = read_manifest(&storage, &second).await.unwrap();
    assert_eq!(m.status, RunStatus::Succeeded);
    // `publish --run` replaces the garbage.
    publish(&storage, Some(&first)).await.unwrap();
    assert_eq!(current(&storage).await.unwrap().unwrap().run_id, first);
}

/// A contacts table of one row, stored in one bucket of a local directory.
async fn one_contact_in_one_bucket() -> (tempfile::TempDir, Storage, pipeline::store::Layout) {
    let dir = tempfile::tempdir().unwrap();
    let storage = local(dir.path(), 1);
    merge_raw(
        &storage,
        Table::Contacts,
        vec![contacts_batch(&[("1@N01", "2@N01")])],
    )
    .await
    .unwrap();
    let layout = layout_of(&storage, Table::Contacts).await;
    (dir, storage, layout)
}

#[tokio::test]
async fn the_next_writer_removes_what_a_killed_writer_left() {
    // Arrange: a stored table on a local directory (one bucket), then the
    // debris of a writer killed mid-put (temporary files) and while holding
    // the lock.
    let (dir, storage, layout) = one_contact_in_one_bucket().await;
    let file = format!("{}.parquet", layout.generation);
    let bucket_dir = dir.path().join("raw/contacts/bucket=0000");
    for n in [1, 2] {
        std::fs::write(bucket_dir.join(format!("{file}#{n}")), vec![0u8; 4096]).unwrap();
    }
    let lock = std::fs::File::create(bucket_dir.join(format!("{file}.lock"))).unwrap();
    lock.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
        .unwrap();
    // And a writer of the layout killed after its commit's rename, before it
    // removed its temporary file and released the lock (a first write or a
    // rebucket); the next write only rewrites a bucket.
    let table_dir = dir.path().join("raw/contacts");
    std::fs::write(table_dir.join("_layout.json#1"), b"{}").unwrap();
    std::fs::write(
        table_dir.join("_layout.json.lock"),
        format!(
            "{{\"pid\":{},\"host\":\"some other machine\",\"at\":\"2026-01-01T00:00:00Z\"}}",
            std::process::id()
        ),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(table_dir.join("_layout.json.lock"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
        .unwrap();

    // Act: the next write of the same table.
    let started = std::time::Instant::now();
    let report = merge_raw(
        &storage,
        Table::Contacts,
        vec![contacts_batch(&[("3@N01", "4@N01")])],
    )
    .await
    .unwrap();

    // Assert: the stale lock was taken over at once, the debris is gone, and the
    // rows are all there.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(report.rows_after, 2);
    let mut left: Vec<String> = std::fs::read_dir(&bucket_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![file]);
    let mut left: Vec<String> = std::fs::read_dir(&table_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["_layout.json", "bucket=0000"]);
}

#[tokio::test]
async fn a_new_generation_leaves_what_live_writers_are_writing() {
    // Arrange: a stored table on a local directory (one bucket); then what
    // writers still at work hold there: another writer's lock of the layout,
    // not linked yet (its temporary file, naming a live holder elsewhere), and
    // a generation named as written earlier (a writer whose clock runs behind,
    // rebucketing the table it read after this write's commit) with one
    // bucket written and one being written, under that bucket's lock (every
    // put of a bucket holds its lock while its temporary file exists). Beside
    // them, what a writer killed mid-put left in a third generation: a
    // temporary file whose lock is gone.
    let (dir, storage, first) = one_contact_in_one_bucket().await;
    let table_dir = dir.path().join("raw/contacts");
    let live_holder = r#"{"pid":1,"host":"some other machine","at":"2026-01-01T00:00:00Z"}"#;
    let lock_temp = table_dir.join("_layout.json.lock#7");
    std::fs::write(&lock_temp, live_holder).unwrap();
    let live = "g20000101T000000Z-1-0000beef.parquet";
    let written = table_dir.join(format!("bucket=0000/{live}"));
    let writing_temp = table_dir.join(format!("bucket=0001/{live}#1"));
    let writing_lock = table_dir.join(format!("bucket=0001/{live}.lock"));
    std::fs::create_dir_all(table_dir.join("bucket=0001")).unwrap();
    std::fs::write(&written, b"written, not committed yet").unwrap();
    std::fs::write(&writing_temp, b"still being written").unwrap();
    std::fs::write(&writing_lock, live_holder).unwrap();
    let killed_temp = table_dir.join("bucket=0000/g20000101T000000Z-2-0000dead.parquet#1");
    std::fs::write(&killed_temp, b"a killed writer's").unwrap();

    // Act: a new generation (the table rebucketed).
    let rebucketed = pipeline::raw::rebucket(&storage.clone().with_raw_buckets(2), Table::Contacts)
        .await
        .unwrap();

    // Assert: the replaced generation is gone, and the killed writer's
    // temporary file; what the live writers hold is not, and the rows are
    // all there.
    assert_eq!(
        rebucketed,
        pipeline::raw::Rebucketed::Rewritten {
            from: Some(1),
            to: 2,
            rows: 1
        }
    );
    let second = layout_of(&storage, Table::Contacts).await;
    assert_eq!(second.buckets, 2);
    assert!(
        !table_dir
            .join(format!("bucket=0000/{}.parquet", first.generation))
            .exists()
    );
    assert!(
        !killed_temp.exists(),
        "a killed writer's temporary file was kept"
    );
    for kept in [&lock_temp, &written, &writing_temp, &writing_lock] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_footer_read_while_another_writer_replaces_the_file_reads_one_file() {
    // Arrange: two Parquet files of different sizes, and a writer that keeps
    // replacing one object with either (as a bucket is rewritten in place
    // while another writer counts its rows).
    let dir = tempfile::tempdir().unwrap();
    let storage = local(dir.path(), 1);
    let encoded = |rows: usize| {
        let storage = storage.clone();
        async move {
            let owned: Vec<(String, String)> = (0..rows)
                .map(|i| (format!("{i}@N01"), format!("{}", 1_000_000 + i)))
                .collect();
            let rows: Vec<(&str, &str, Option<&str>)> = owned
                .iter()
                .map(|(u, p)| (u.as_str(), p.as_str(), Some("9@N09")))
                .collect();
            let path = Path::from(format!("encoded/{}.parquet", rows.len()));
            storage
                .write_parquet(&path, Table::Favorites, &[favorites_batch(&rows)])
                .await
                .unwrap();
            storage.get_bytes(&path).await.unwrap()
        }
    };
    let small = encoded(10).await;
    let large = encoded(5000).await;
    assert_ne!(small.len(), large.len());
    let path = Path::from("raw/favorites/bucket=0000/replaced.parquet");
    storage.put_bytes(&path, small.clone()).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (storage, path, stop) = (storage.clone(), path.clone(), stop.clone());
        tokio::spawn(async move {
            let mut puts = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let bytes = if puts.is_multiple_of(2) {
                    &large
                } else {
                    &small
                };
                storage.put_bytes(&path, bytes.clone()).await.unwrap();
                puts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            puts
        })
    };

    // Act: count its rows from the footer, again and again.
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..400 {
        let rows = storage
            .check_parquet(&path, Table::Favorites)
            .await
            .unwrap_or_else(|e| panic!("a footer read mixed two files: {e}"));
        *counts.entry(rows).or_insert(0) += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let puts = writer.await.unwrap();

    // Assert: every read saw one whole file, and the object was replaced
    // throughout.
    assert!(
        puts > 20,
        "the writer replaced the object only {puts} times"
    );
    assert!(
        counts.keys().all(|rows| *rows == 10 || *rows == 5000),
        "{counts:?}"
    );
}
