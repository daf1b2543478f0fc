//! Object storage and Parquet I/O.
//!
//! Every byte the pipeline reads or writes goes through one `Arc<dyn ObjectStore>`,
//! built from `storage.url`, so the same code path runs on a local directory and on
//! S3. Parquet is written with the `parquet` crate's async writer straight into the
//! store (zstd, column-chunk statistics on every top-level column) and read back with its async reader. Reads are
//! checked against the table contract in [`crate::model`].
//!
//! Atomicity: a single `put` (or a completed multipart upload) is atomic on S3, and
//! `LocalFileSystem` writes to a temporary file then renames it. Each raw table is
//! one object and the publish pointer is one object, which is what makes imports and
//! publishes all-or-nothing.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::FutureExt;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::config::{StorageSettings, StorageUrl};
use crate::model::Table;

/// The writer settings of every table: zstd, and column-chunk statistics on
/// every top-level column.
fn writer_properties(schema: &arrow_schema::Schema) -> Result<WriterProperties, ParquetError> {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    // Min/max of list elements (`top_neighbors`, `similar_to`) prune nothing —
    // engines skip row groups on top-level columns — and computing them cost two
    // string comparisons per element.
    let leaves = parquet::arrow::ArrowSchemaConverter::new().convert(schema)?;
    for column in leaves.columns() {
        if column.max_rep_level() > 0 {
            props =
                props.set_column_statistics_enabled(column.path().clone(), EnabledStatistics::None);
        }
    }
    Ok(props.build())
}

/// A Parquet file of one table being encoded in memory, with the same settings
/// as [`Storage::write_parquet`]. For callers that build and encode many parts on
/// a thread pool and upload them afterwards with [`Storage::put_bytes`]: batches
/// can be built and written a few at a time, so each is dropped (and its memory
/// reused) before the next is built.
pub struct ParquetEncoder {
    /// Encodes into a growing buffer; one row group per file at our part sizes.
    writer: ArrowWriter<Vec<u8>>,
    /// The contract schema every batch must have.
    schema: SchemaRef,
    /// For messages.
    table: Table,
    /// Where the file will go, for messages.
    path: Path,
    /// Rows written so far.
    rows: u64,
}

impl ParquetEncoder {
    /// Starts a file of `table` that will be stored at `path`.
    pub fn new(path: &Path, table: Table) -> Result<Self, StoreError> {
        let schema = table.schema();
        let perr = |source| encode_error(path, source);
        let props = writer_properties(&schema).map_err(perr)?;
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(perr)?;
        Ok(Self {
            writer,
            schema,
            table,
            path: path.clone(),
            rows: 0,
        })
    }

    /// Encodes one batch (checked against the table's schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        check_batch_schema(batch, &self.schema, self.table, &self.path)?;
        self.writer
            .write(batch)
            .map_err(|source| encode_error(&self.path, source))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes the file: its bytes and row count.
    pub fn finish(self) -> Result<(Bytes, u64), StoreError> {
        let bytes = self
            .writer
            .into_inner()
            .map_err(|source| encode_error(&self.path, source))?;
        Ok((Bytes::from(bytes), self.rows))
    }
}

/// A storage failure, with the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened from the settings.
    #[error("cannot open storage {url}: {reason}")]
    Open {
        /// The storage URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The object does not exist.
    #[error("{path} not found in storage")]
    NotFound {
        /// The object path.
        path: String,
    },
    /// The object store failed (network, permissions, disk).
    #[error("storage error on {path}: {source}")]
    Object {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Storage refused access: a file-system permission, or an S3 policy.
    #[error(
        "permission denied on {path}: check the owner and mode of the storage directory, or the IAM policy of the bucket"
    )]
    PermissionDenied {
        /// The object path.
        path: String,
    },
    /// A batch could not be encoded as Parquet (a bug: batches are built from
    /// the contract).
    #[error("cannot encode {path} as Parquet: {source}")]
    Encode {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file could not be decoded.
    #[error("cannot read {path} as Parquet (the file may be truncated or not Parquet): {source}")]
    Parquet {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file does not match the table contract.
    #[error("{path}: {problem} (table {table}; see docs/data-model.md for its schema)")]
    Schema {
        /// The object path.
        path: String,
        /// The table it should hold.
        table: &'static str,
        /// What does not match.
        problem: String,
    },
    /// A conditional write found the object changed since it was read: another
    /// writer got there first.
    #[error("{path} was changed by another writer since it was read")]
    Conflict {
        /// The object path.
        path: String,
    },
    /// A JSON object could not be encoded or decoded.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    fn object(path: &Path, source: object_store::Error) -> Self {
        if denied(&source) {
            return StoreError::PermissionDenied {
                path: path.to_string(),
            };
        }
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                path: path.to_string(),
            },
            source => StoreError::Object {
                path: path.to_string(),
                source,
            },
        }
    }
}

/// The version of an object as a writer read it. A conditional write
/// ([`Storage::put_if`]) succeeds only while the object is still at this
/// version, so two read-modify-write cycles on one object never silently lose
/// each other's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The object did not exist.
    Absent,
    /// The object's ETag and version id, as read.
    At(UpdateVersion),
}

/// How long a lock file of an emulated conditional write may stand before it
/// is taken for a dead writer's and removed. A lock is held for one put only.
const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a writer waits for another's lock before it reports a conflict.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The suffix of the lock file that serialises conditional writes on a store
/// without native conditional updates (a local directory).
pub const LOCK_SUFFIX: &str = ".lock";

/// The pipeline's handle on its object store.
#[derive(Clone, Debug)]
pub struct Storage {
    /// Shared by every stage and by the Parquet reader and writer.
    store: Arc<dyn ObjectStore>,
    /// Human-readable location, for logs and errors.
    url: String,
    /// The directory, for a local store: where a killed writer's temporary
    /// files (`<object>#<n>`, which object_store hides from listings) are found.
    local_root: Option<std::path::PathBuf>,
}

impl Storage {
    /// Opens the store described by the settings. A local directory is created if it
    /// does not exist; S3 takes credentials and region from the `AWS_*` environment.
    pub fn open(settings: &StorageSettings) -> Result<Self, StoreError> {
        let url = settings.url.to_string();
        let fail = |reason: String| StoreError::Open {
            url: url.clone(),
            reason,
        };
        let store: Arc<dyn ObjectStore> = match &settings.url {
            StorageUrl::Local { path } => {
                // Creating the root is the one file-system call outside object_store:
                // LocalFileSystem refuses a prefix that does not exist.
                std::fs::create_dir_all(path)
                    .map_err(|e| fail(format!("cannot create directory: {e}")))?;
                let fs = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| fail(e.to_string()))?
                    .with_automatic_cleanup(true);
                Arc::new(fs)
            }
            StorageUrl::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint);
                    if endpoint.starts_with("http://") {
                        builder = builder.with_allow_http(true);
                    }
                }
                let s3 = builder.build().map_err(|e| {
                    fail(format!(
                        "{e} (set AWS_REGION and credentials, or AWS_ENDPOINT_URL for a local S3 server)"
                    ))
                })?;
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                }
            }
        };
        let local_root = match &settings.url {
            StorageUrl::Local { path } => Some(path.clone()),
            StorageUrl::S3 { .. } => None,
        };
        Ok(Self {
            store,
            url,
            local_root,
        })
    }

    /// Wraps an existing store (for example `InMemory` in tests).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self {
            store,
            url: url.into(),
            local_root: None,
        }
    }

    /// Removes what a writer of `path` killed mid-write left on a local
    /// directory: its temporary files `<object>#<n>` (object_store writes there,
    /// then renames, and picks the next free `n`, so without this they pile up,
    /// each the size of the object). Only called by a writer holding the
    /// object's lock, so none of them is in flight.
    fn clean_predecessors(&self, path: &Path) {
        let Some(root) = &self.local_root else { return };
        let file = root.join(path.as_ref());
        let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let other = entry.file_name();
            let Some(suffix) = other
                .to_str()
                .and_then(|o| o.strip_prefix(name))
                .and_then(|o| o.strip_prefix('#'))
            else {
                continue;
            };
            if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::warn!(file = %entry.path().display(), "removed a temporary file a killed writer left")
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a killed writer's temporary file")
                    }
                }
            }
        }
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where this storage is, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `batches` (all of `table`'s schema) as one Parquet object.
    /// Returns the number of rows written.
    pub async fn write_parquet(
        &self,
        path: &Path,
        table: Table,
        batches: &[RecordBatch],
    ) -> Result<u64, StoreError> {
        let schema = table.schema();
        let perr = |source| encode_error(path, source);
        let props = writer_properties(&schema).map_err(perr)?;
        // BufWriter switches to a multipart upload for large files; either way the
        // object only appears when the writer is closed.
        let sink = BufWriter::new(self.store.clone(), path.clone());
        let mut writer =
            AsyncArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(perr)?;
        let mut rows = 0u64;
        for batch in batches {
            check_batch_schema(batch, &schema, table, path)?;
            rows += batch.num_rows() as u64;
            writer.write(batch).await.map_err(perr)?;
        }
        writer.close().await.map_err(perr)?;
        Ok(rows)
    }

    /// Reads one Parquet object and projects it onto `table`'s schema. Extra columns
    /// are ignored (forward compatibility); a missing or mistyped contract column is
    /// a [`StoreError::Schema`].
    pub async fn read_parquet(
        &self,
        path: &Path,
        table: Table,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let perr = |source| StoreError::Parquet {
            path: path.to_string(),
            source,
        };
        let reader = ObjectReader {
            store: self.store.clone(),
            path: path.clone(),
            size: self.size(path).await?,
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(perr)?;
        let stream = builder.with_batch_size(64 * 1024).build().map_err(perr)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(perr)?;
        let target = table.schema();
        batches
            .iter()
            .map(|b| project(b, &target, table, path))
            .collect()
    }

    /// Reads a raw table, or `None` if it has never been written.
    pub async fn read_raw(&self, table: Table) -> Result<Option<Vec<RecordBatch>>, StoreError> {
        Ok(self.read_raw_versioned(table).await?.0)
    }

    /// Reads every `.parquet` object under `dir`, in name order.
    pub async fn read_table_dir(
        &self,
        dir: &Path,
        table: Table,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let mut files = self.list_files(dir).await?;
        files.retain(|p| p.as_ref().ends_with(".parquet"));
        files.sort();
        let mut out = Vec::new();
        for f in files {
            out.extend(self.read_parquet(&f, table).await?);
        }
        Ok(out)
    }

    /// Lists every object under `dir`, recursively.
    pub async fn list_files(&self, dir: &Path) -> Result<Vec<Path>, StoreError> {
        let listed: Vec<_> = self
            .store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| StoreError::object(dir, e))?;
        Ok(listed.into_iter().map(|m| m.location).collect())
    }

    /// Lists the immediate sub-folders of `dir` (their last path segment).
    pub async fn list_dirs(&self, dir: &Path) -> Result<Vec<String>, StoreError> {
        let listed = self
            .store
            .list_with_delimiter(Some(dir))
            .await
            .map_err(|e| StoreError::object(dir, e))?;
        Ok(listed
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// The size of an object in bytes; [`StoreError::NotFound`] when it does not
    /// exist.
    pub async fn size(&self, path: &Path) -> Result<u64, StoreError> {
        let meta = self
            .store
            .head(path)
            .await
            .map_err(|e| StoreError::object(path, e))?;
        Ok(meta.size)
    }

    /// The object's current version (for a later [`Storage::put_if`]).
    pub async fn version(&self, path: &Path) -> Result<Version, StoreError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Version::At(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(Version::Absent),
            Err(e) => Err(StoreError::object(path, e)),
        }
    }

    /// Writes a whole object in one atomic put, but only if it is still at
    /// `expected`; otherwise [`StoreError::Conflict`] and nothing is written.
    ///
    /// S3 and memory stores do this natively (`If-None-Match: *` to create,
    /// `If-Match: <etag>` to replace). A local directory has atomic create but no
    /// conditional replace, so there the check and the put run under a lock file
    /// (`<path>.lock`, created atomically), which a writer that died holding it
    /// leaves for at most [`LOCK_STALE`].
    pub async fn put_if(
        &self,
        path: &Path,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict {
            path: path.to_string(),
        };
        let mode = match expected {
            Version::Absent => PutMode::Create,
            Version::At(v) => PutMode::Update(v.clone()),
        };
        let payload = PutPayload::from_bytes(bytes.clone());
        match self.store.put_opts(path, payload, mode.into()).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Err(conflict()),
            Err(object_store::Error::NotImplemented { .. }) => {
                self.put_if_locked(path, bytes, expected).await
            }
            Err(e) => Err(StoreError::object(path, e)),
        }
    }

    /// [`Storage::put_if`] for stores without conditional replace.
    async fn put_if_locked(
        &self,
        path: &Path,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<(), StoreError> {
        let lock = Path::from(format!("{path}{LOCK_SUFFIX}"));
        let holder = Bytes::from(format!(
            "{{\"pid\":{},\"host\":{:?},\"at\":\"{}\"}}\n",
            std::process::id(),
            hostname(),
            chrono::Utc::now().to_rfc3339()
        ));
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut wait_ms = 2u64;
        loop {
            let taken = self
                .store
                .put_opts(
                    &lock,
                    PutPayload::from_bytes(holder.clone()),
                    PutMode::Create.into(),
                )
                .await;
            match taken {
                Ok(_) => break,
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(StoreError::object(&lock, e)),
            }
            if let Ok(meta) = self.store.head(&lock).await {
                let age = chrono::Utc::now() - meta.last_modified;
                if age.to_std().is_ok_and(|a| a > LOCK_STALE) {
                    tracing::warn!(%lock, age_seconds = age.num_seconds(), "removing a stale lock left by a writer that died");
                    self.delete(&lock).await?;
                    continue;
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(StoreError::Conflict {
                    path: path.to_string(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            wait_ms = (wait_ms * 2).min(100);
        }
        self.clean_predecessors(path);
        let result = async {
            if &self.version(path).await? != expected {
                return Err(StoreError::Conflict {
                    path: path.to_string(),
                });
            }
            self.put_bytes(path, bytes).await
        }
        .await;
        let released = self.delete(&lock).await;
        result.and(released)
    }

    /// Encodes `batches` as one Parquet file of `table` in memory and writes it
    /// with [`Storage::put_if`].
    pub async fn put_parquet_if(
        &self,
        path: &Path,
        table: Table,
        batches: &[RecordBatch],
        expected: &Version,
    ) -> Result<u64, StoreError> {
        let mut encoder = ParquetEncoder::new(path, table)?;
        for b in batches {
            encoder.write(b)?;
        }
        let (bytes, rows) = encoder.finish()?;
        self.put_if(path, bytes, expected).await?;
        Ok(rows)
    }

    /// Reads a raw table with the version it was read at; `None` (and
    /// [`Version::Absent`]) if it has never been written.
    ///
    /// The object is fetched whole in one GET, so the rows and the version
    /// belong to the same write even while another writer replaces the table (a
    /// footer-then-ranges read could mix two files).
    pub async fn read_raw_versioned(
        &self,
        table: Table,
    ) -> Result<(Option<Vec<RecordBatch>>, Version), StoreError> {
        let path = table.raw_path();
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok((None, Version::Absent)),
            Err(e) => return Err(StoreError::object(&path, e)),
        };
        let version = Version::At(UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        });
        let bytes = got
            .bytes()
            .await
            .map_err(|e| StoreError::object(&path, e))?;
        let perr = |source| StoreError::Parquet {
            path: path.to_string(),
            source,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(perr)?
            .with_batch_size(64 * 1024)
            .build()
            .map_err(perr)?;
        let target = table.schema();
        let batches = reader
            .map(|b| {
                let b = b.map_err(|e| perr(ParquetError::from(e)))?;
                project(&b, &target, table, &path)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((Some(batches), version))
    }

    /// Checks a stored Parquet file of `table` without reading its data: it
    /// exists, its footer decodes, and its schema holds the contract's columns.
    /// Returns the row count its footer states.
    pub async fn check_parquet(&self, path: &Path, table: Table) -> Result<u64, StoreError> {
        let mut reader = ObjectReader {
            store: self.store.clone(),
            path: path.clone(),
            size: self.size(path).await?,
        };
        let perr = |source| StoreError::Parquet {
            path: path.to_string(),
            source,
        };
        let meta = reader.get_metadata(None).await.map_err(perr)?;
        let file = meta.file_metadata();
        let schema =
            parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
                .map_err(perr)?;
        check_schema(&schema, table, path)?;
        Ok(u64::try_from(file.num_rows()).unwrap_or(0))
    }

    /// Reads a whole object.
    pub async fn get_bytes(&self, path: &Path) -> Result<Bytes, StoreError> {
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| StoreError::object(path, e))?;
        got.bytes().await.map_err(|e| StoreError::object(path, e))
    }

    /// Writes a whole object in one atomic put.
    pub async fn put_bytes(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| StoreError::object(path, e))?;
        Ok(())
    }

    /// Reads and decodes a JSON object.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<T, StoreError> {
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: path.to_string(),
            source,
        })
    }

    /// Encodes and writes a JSON object (pretty-printed: people read manifests).
    pub async fn put_json<T: serde::Serialize>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<(), StoreError> {
        self.put_bytes(path, json_bytes(path, value)?).await
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::object(path, e)),
        }
    }
}

/// Reads byte ranges of one object for the async Parquet reader: the footer first
/// (with a 64 KiB prefetch), then the column chunks it needs, asked for together
/// so that `object_store` coalesces nearby ranges into fewer requests. (The
/// parquet crate's `ParquetObjectReader` did this too; it is deprecated in favour
/// of implementing `AsyncFileReader`, which is what this is.)
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Whether an error is, at its root, a refused permission.
fn denied(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(os) = c.downcast_ref::<object_store::Error>()
            && matches!(os, object_store::Error::PermissionDenied { .. })
        {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A Parquet write error: a refused permission underneath says so.
fn encode_error(path: &Path, source: ParquetError) -> StoreError {
    if denied(&source) {
        StoreError::PermissionDenied {
            path: path.to_string(),
        }
    } else {
        StoreError::Encode {
            path: path.to_string(),
            source,
        }
    }
}

/// A JSON object as stored: pretty-printed (people read manifests), with a final
/// newline.
pub fn json_bytes<T: serde::Serialize>(path: &Path, value: &T) -> Result<Bytes, StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        path: path.to_string(),
        source,
    })?;
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}

/// This machine's name, for lock files (who holds it).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn check_batch_schema(
    batch: &RecordBatch,
    schema: &SchemaRef,
    table: Table,
    path: &Path,
) -> Result<(), StoreError> {
    if batch.schema().fields() != schema.fields() {
        return Err(StoreError::Schema {
            path: path.to_string(),
            table: table.name(),
            problem: format!(
                "writer was given columns {:?}, expected {:?} (a bug: build batches from pipeline::model)",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>(),
                schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
            ),
        });
    }
    Ok(())
}

/// Whether a stored column's type is the contract's. Nested list fields may
/// carry a different item name or nullability from other writers; only the item
/// type of a list is compared.
fn same_type(found: &arrow_schema::DataType, expected: &arrow_schema::DataType) -> bool {
    match (found, expected) {
        (arrow_schema::DataType::List(a), arrow_schema::DataType::List(b)) => {
            a.data_type() == b.data_type()
        }
        (a, b) => a == b,
    }
}

/// Checks that a file's schema holds every column of `table`'s contract, by
/// name, with the contract's type (extra columns are allowed).
fn check_schema(found: &arrow_schema::Schema, table: Table, path: &Path) -> Result<(), StoreError> {
    for field in table.schema().fields() {
        let problem = match found.field_with_name(field.name()) {
            Err(_) => format!("column {} is missing", field.name()),
            Ok(f) if !same_type(f.data_type(), field.data_type()) => format!(
                "column {} has type {}, expected {}",
                field.name(),
                f.data_type(),
                field.data_type()
            ),
            Ok(_) => continue,
        };
        return Err(StoreError::Schema {
            path: path.to_string(),
            table: table.name(),
            problem,
        });
    }
    Ok(())
}

fn project(
    batch: &RecordBatch,
    target: &SchemaRef,
    table: Table,
    path: &Path,
) -> Result<RecordBatch, StoreError> {
    let schema_err = |problem: String| StoreError::Schema {
        path: path.to_string(),
        table: table.name(),
        problem,
    };
    check_schema(&batch.schema(), table, path)?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let Some(column) = batch.column_by_name(field.name()) else {
            return Err(schema_err(format!("column {} is missing", field.name())));
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(schema_err(format!(
                "column {} has {} null values but may not be null",
                field.name(),
                column.null_count()
            )));
        }
        columns.push(column.clone());
    }
    let nullable_schema = Arc::new(arrow_schema::Schema::new(
        target
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(nullable_schema, columns).map_err(|e| schema_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_permission_says_so_and_names_the_path() {
        let path = Path::from("raw/favorites/data.parquet");
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "os error 13");
        // As LocalFileSystem reports a failed write: a generic error around io.
        let local = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(io),
        };
        let err = StoreError::object(&path, local).to_string();
        assert!(
            err.starts_with("permission denied on raw/favorites/data.parquet"),
            "{err}"
        );
        assert!(!err.contains("truncated or not Parquet"), "{err}");
        // As S3 reports a 403.
        let s3 = object_store::Error::PermissionDenied {
            path: path.to_string(),
            source: "403 Forbidden".into(),
        };
        let err = StoreError::object(&path, s3).to_string();
        assert!(err.starts_with("permission denied on"), "{err}");
        // Inside a Parquet write.
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "os error 13");
        let err = encode_error(&path, ParquetError::External(Box::new(io))).to_string();
        assert!(err.starts_with("permission denied on"), "{err}");
    }
}
