//! Builders for small tables used by the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use pipeline::model::Table;
use pipeline::raw::merge_raw;
use pipeline::store::Storage;

fn strings(v: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

pub fn favorites_batch(rows: &[(&str, &str, Option<&str>)]) -> RecordBatch {
    RecordBatch::try_new(
        Table::Favorites.schema(),
        vec![
            strings(rows.iter().map(|r| Some(r.0)).collect()),
            strings(rows.iter().map(|r| Some(r.1)).collect()),
            strings(rows.iter().map(|r| r.2).collect()),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_639_261_222_000_000); rows.len()])
                    .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap()
}

pub fn contacts_batch(rows: &[(&str, &str)]) -> RecordBatch {
    RecordBatch::try_new(
        Table::Contacts.schema(),
        vec![
            strings(rows.iter().map(|r| Some(r.0)).collect()),
            strings(rows.iter().map(|r| Some(r.1)).collect()),
        ],
    )
    .unwrap()
}

pub fn tracked_batch(users: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        Table::TrackedUsers.schema(),
        vec![
            strings(users.iter().map(|u| Some(*u)).collect()),
            strings(vec![None; users.len()]),
            Arc::new(TimestampMicrosecondArray::from(vec![None; users.len()]).with_timezone("UTC")),
        ],
    )
    .unwrap()
}

pub fn favorites_rows(batches: &[RecordBatch]) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for b in batches {
        let (u, p, o) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
            b.column(2).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            out.push((
                u.value(i).to_string(),
                p.value(i).to_string(),
                (!arrow_array::Array::is_null(o, i)).then(|| o.value(i).to_string()),
            ));
        }
    }
    out
}

/// The hand-computed community of the score unit tests: A = 1@N01 is tracked and
/// gets photos 30, 20, 21 in that order.
pub const EXAMPLE: [(&str, &str, Option<&str>); 11] = [
    ("1@N01", "10", Some("2@N01")),
    ("1@N01", "11", Some("3@N01")),
    ("2@N01", "11", Some("3@N01")),
    ("2@N01", "21", Some("3@N01")),
    ("2@N01", "30", Some("4@N01")),
    ("3@N01", "10", Some("2@N01")),
    ("3@N01", "11", Some("3@N01")),
    ("3@N01", "20", Some("2@N01")),
    ("3@N01", "30", Some("4@N01")),
    ("3@N01", "40", Some("1@N01")),
    ("4@N01", "10", Some("2@N01")),
];

pub async fn write_example(storage: &Storage) {
    merge_raw(storage, Table::Favorites, vec![favorites_batch(&EXAMPLE)])
        .await
        .unwrap();
    merge_raw(
        storage,
        Table::TrackedUsers,
        vec![tracked_batch(&["1@N01"])],
    )
    .await
    .unwrap();
}

fn write_file(path: &std::path::Path, batch: RecordBatch) {
    write_file_with(path, batch, parquet::basic::Compression::UNCOMPRESSED);
}

fn write_file_with(
    path: &std::path::Path,
    batch: RecordBatch,
    compression: parquet::basic::Compression,
) {
    let file = std::fs::File::create(path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A favourites file whose photo_id column is a float.
pub fn write_parquet_file(path: &std::path::Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("photo_id", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            strings(vec![Some("1@N01")]),
            Arc::new(Float64Array::from(vec![1.5])),
        ],
    )
    .unwrap();
    write_file(path, batch);
}

/// A valid favourites file with Int64 photo ids and millisecond timestamps.
pub fn write_good_parquet_file(path: &std::path::Path) {
    write_good_parquet_file_with(path, parquet::basic::Compression::UNCOMPRESSED);
}

/// The same favourites, compressed with `compression` (pandas, pyarrow, DuckDB
/// and Spark default to snappy; others write gzip, lz4 or zstd).
pub fn write_good_parquet_file_with(
    path: &std::path::Path,
    compression: parquet::basic::Compression,
) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("photo_id", DataType::Int64, false),
        Field::new("owner_id", DataType::Utf8, true),
        Field::new(
            "date_faved",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        Field::new("extra", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            strings(vec![Some("1@N01"), Some("1@N01")]),
            Arc::new(Int64Array::from(vec![51737769056, 51737769057])),
            strings(vec![Some("38134034@N04"), None]),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_639_261_222_000),
                None,
            ])),
            strings(vec![Some("ignored"), None]),
        ],
    )
    .unwrap();
    write_file_with(path, batch, compression);
}

/// A raw table's stored objects as (folder, bytes), in path order: one
/// `("raw/<t>", …)` for a single-file table, one `("raw/<t>/bucket=NNNN", …)`
/// per bucket of a bucketed one. Folders, not names: a bucket file is named
/// by its generation, which differs between two stores holding equal rows.
pub async fn raw_objects(storage: &Storage, table: Table) -> Vec<(String, bytes::Bytes)> {
    let dir = object_store::path::Path::from(format!("raw/{}", table.name()));
    let mut files = storage.list_files(&dir).await.unwrap();
    files.retain(|p| p.as_ref().ends_with(".parquet"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let folder = f.as_ref().rsplit_once('/').unwrap().0.to_string();
        out.push((folder, storage.get_bytes(&f).await.unwrap()));
    }
    out
}

/// Removes every object of a raw table (its layout, buckets or single file).
pub async fn remove_raw(storage: &Storage, table: Table) {
    let dir = object_store::path::Path::from(format!("raw/{}", table.name()));
    for f in storage.list_files(&dir).await.unwrap() {
        storage.delete(&f).await.unwrap();
    }
}

/// Rows stored in a raw table.
pub async fn raw_rows(storage: &Storage, table: Table) -> usize {
    storage
        .read_raw(table)
        .await
        .unwrap()
        .unwrap_or_default()
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

/// A bucketed raw table's current layout.
pub async fn layout_of(storage: &Storage, table: Table) -> pipeline::store::Layout {
    storage.raw_layout(table).await.unwrap().unwrap().0
}

/// Storage on the local directory `dir`, with `raw_buckets` buckets for a
/// bucketed raw table's first write.
pub fn local(dir: &std::path::Path, raw_buckets: u32) -> pipeline::store::Storage {
    pipeline::store::Storage::open(&pipeline::config::StorageSettings {
        url: pipeline::config::StorageUrl::Local {
            path: dir.to_path_buf(),
        },
        endpoint: None,
        raw_buckets,
    })
    .unwrap()
}

/// A store in memory holding a generated community of 400 people, 30 of them
/// tracked (seed 3): enough for every algorithm to make recs.
pub async fn small_community() -> Storage {
    let storage = Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
    let community = pipeline::community::generate(&pipeline::config::DemoSettings {
        users: 400,
        tracked_users: 30,
        clusters: 5,
        seed: 3,
    });
    pipeline::community::write_community(&storage, &community)
        .await
        .unwrap();
    storage
}
