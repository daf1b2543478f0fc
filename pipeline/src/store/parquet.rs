//! Parquet through the object store: the writer settings of every table, the
//! in-memory encoder, reads projected onto the contract by column name, raw
//! tables read whole with their version, and footer checks for publish.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, UpdateVersion};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::{ArrowWriter, AsyncArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::model::Table;

use super::conditional::Version;
use super::error::{StoreError, encode_error};
use super::storage::Storage;

/// Rows per row group of a bucketed raw table: small enough that the
/// statistics of `user_id` (the rows are sorted by it) let a reader skip the
/// row groups of users it does not need.
pub const RAW_ROW_GROUP_ROWS: usize = 16 * 1024;

/// The writer settings of every table: zstd, and column-chunk statistics on
/// every top-level column; small row groups for the bucketed raw tables.
fn writer_properties(table: Table) -> Result<WriterProperties, ParquetError> {
    let schema = table.schema();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Chunk);
    if table.bucketed() {
        props = props.set_max_row_group_row_count(Some(RAW_ROW_GROUP_ROWS));
    }
    // Min/max of list elements (`top_neighbors`, `similar_to`) prune nothing —
    // engines skip row groups on top-level columns — and computing them cost two
    // string comparisons per element.
    let leaves = parquet::arrow::ArrowSchemaConverter::new().convert(&schema)?;
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
        let props = writer_properties(table).map_err(perr)?;
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

impl Storage {
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
        let props = writer_properties(table).map_err(perr)?;
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

    /// A reader of one Parquet object, its footer read.
    async fn stream_builder(
        &self,
        path: &Path,
    ) -> Result<ParquetRecordBatchStreamBuilder<ObjectReader>, StoreError> {
        let reader = self.object_reader(path).await?;
        ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|source| StoreError::Parquet {
                path: path.to_string(),
                source,
            })
    }

    /// Reads only `columns` (top-level columns of `table`'s contract) of one
    /// Parquet object, checked against the contract as [`Storage::read_parquet`]
    /// checks it: batches of those columns, in that order. For a reader that
    /// needs one or two columns of a large table (the photo ids of a run's
    /// `photo_recs`), so the others are not decoded.
    pub async fn read_parquet_columns(
        &self,
        path: &Path,
        table: Table,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let perr = |source| StoreError::Parquet {
            path: path.to_string(),
            source,
        };
        let builder = self.stream_builder(path).await?;
        check_schema(builder.schema(), table, path)?;
        let mask = columns_mask(builder.parquet_schema(), table, columns, path)?;
        let stream = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(perr)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(perr)?;
        batches
            .iter()
            .map(|b| in_order(b, columns).map_err(|e| perr(ParquetError::from(e))))
            .collect()
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
        let builder = self.stream_builder(path).await?;
        let stream = builder.with_batch_size(64 * 1024).build().map_err(perr)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(perr)?;
        let target = table.schema();
        batches
            .iter()
            .map(|b| project(b, &target, table, path))
            .collect()
    }

    /// Reads a raw table whole (every bucket of a bucketed one), or `None` if
    /// it has never been written.
    pub async fn read_raw(&self, table: Table) -> Result<Option<Vec<RecordBatch>>, StoreError> {
        if table.bucketed() {
            return self.read_raw_buckets(table, None).await;
        }
        Ok(self.read_raw_versioned(table).await?.0)
    }

    /// The `.parquet` objects under `dir`, in name order.
    pub async fn table_files(&self, dir: &Path) -> Result<Vec<Path>, StoreError> {
        let mut files = self.list_files(dir).await?;
        files.retain(|p| p.as_ref().ends_with(".parquet"));
        files.sort();
        Ok(files)
    }

    /// Reads every `.parquet` object under `dir`, in name order.
    pub async fn read_table_dir(
        &self,
        dir: &Path,
        table: Table,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        // Up to `CONCURRENCY` files fetched at a time, kept in name order.
        let files: Vec<Vec<RecordBatch>> = futures::stream::iter(self.table_files(dir).await?)
            .map(|f| async move { self.read_parquet(&f, table).await })
            .buffered(super::storage::CONCURRENCY)
            .try_collect()
            .await?;
        Ok(files.into_iter().flatten().collect())
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

    /// Reads a single-object raw table with the version it was read at; `None`
    /// (and [`Version::Absent`]) if it has never been written. For the
    /// bucketed tables see [`Storage::raw_layout`].
    pub async fn read_raw_versioned(
        &self,
        table: Table,
    ) -> Result<(Option<Vec<RecordBatch>>, Version), StoreError> {
        Ok(
            match self.read_object_versioned(&table.raw_path(), table).await? {
                Some((rows, version)) => (Some(rows), version),
                None => (None, Version::Absent),
            },
        )
    }

    /// Reads one Parquet object of `table` whole, with the version it was read
    /// at; `None` if it does not exist.
    ///
    /// The object is fetched in one GET, so the rows and the version belong to
    /// the same write even while another writer replaces it (a
    /// footer-then-ranges read could mix two files).
    pub(crate) async fn read_object_versioned(
        &self,
        path: &Path,
        table: Table,
    ) -> Result<Option<(Vec<RecordBatch>, Version)>, StoreError> {
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StoreError::object(path, e)),
        };
        let version = Version::At(UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        });
        let bytes = got.bytes().await.map_err(|e| StoreError::object(path, e))?;
        let batches = decoding(path, move |path| decode_whole(bytes, path, table)).await?;
        Ok(Some((batches, version)))
    }

    /// Checks a stored Parquet file of `table` without reading its data: it
    /// exists, its footer decodes, and its schema holds the contract's columns.
    /// Returns the row count its footer states.
    ///
    /// The footer is read at the version the first request found. An object
    /// another writer replaced between two requests (a bucket rewritten in
    /// place) is read again, up to [`READ_ATTEMPTS`] times, rather than
    /// decoded from pieces of two files.
    pub async fn check_parquet(&self, path: &Path, table: Table) -> Result<u64, StoreError> {
        let perr = |source| StoreError::Parquet {
            path: path.to_string(),
            source,
        };
        let mut attempt = 1;
        let meta = loop {
            let mut reader = self.object_reader(path).await?;
            match reader.get_metadata(None).await {
                Err(e) if replaced_while_read(&e) && attempt < READ_ATTEMPTS => attempt += 1,
                got => break got.map_err(perr)?,
            }
        };
        let file = meta.file_metadata();
        let schema =
            parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
                .map_err(perr)?;
        check_schema(&schema, table, path)?;
        Ok(u64::try_from(file.num_rows()).unwrap_or(0))
    }

    /// A reader of `path` pinned to the version it has now.
    async fn object_reader(&self, path: &Path) -> Result<ObjectReader, StoreError> {
        let meta = self
            .store
            .head(path)
            .await
            .map_err(|e| StoreError::object(path, e))?;
        Ok(ObjectReader {
            store: self.store.clone(),
            path: path.clone(),
            size: meta.size,
            e_tag: meta.e_tag,
        })
    }
}

/// Runs `decode` (CPU work: decompressing and decoding a Parquet object
/// fetched whole) as a task of its own, so that the objects of a table read
/// several at a time (its buckets) are decoded side by side on the runtime's
/// workers rather than one after another on the task that fetched them.
///
/// The rows come back copied into buffers the calling thread allocates. A
/// score frees its raw rows on the task that read them once it has encoded
/// them, and mimalloc returns memory freed from another thread to the OS only
/// once the thread that allocated it collects it: rows left in a worker's
/// pages stayed resident while it slept. On the 8M-favourite community, the
/// largest users shard of 4 (Flexplore and explore) peaked at 78–82 MiB
/// without the copy, 69–71 MiB with it, against 67–69 MiB decoding on one
/// thread (and its shards took 0.40 s each instead of 0.57 s). The workers of
/// batch commands also collect what others freed in their pages when they
/// sleep or wake (`jobs/src/main.rs`). Decoding on the blocking threads
/// instead raised a Flexplore-only score of 1 000 tracked users from 113 to
/// 207–214 MiB: an idle blocking thread never collects.
pub(crate) async fn decoding(
    path: &Path,
    decode: impl FnOnce(&Path) -> Result<Vec<RecordBatch>, StoreError> + Send + 'static,
) -> Result<Vec<RecordBatch>, StoreError> {
    let batches = on_a_task(path, decode).await?;
    batches
        .iter()
        .map(copied_here)
        .collect::<Result<_, _>>()
        .map_err(|e| StoreError::Parquet {
            path: path.to_string(),
            source: ParquetError::from(e),
        })
}

/// Runs `work` on `path`'s object as a task of its own, on the runtime's
/// workers; a task that died (a panic) fails naming the object.
pub(crate) async fn on_a_task<T, E>(
    path: &Path,
    work: impl FnOnce(&Path) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let owned = path.clone();
    tokio::spawn(async move { work(&owned) })
        .await
        .unwrap_or_else(|e| {
            Err(E::from(StoreError::Parquet {
                path: path.to_string(),
                source: ParquetError::General(format!("the decoding task failed: {e}")),
            }))
        })
}

/// A copy of `batch` in buffers the calling thread allocates, of the
/// batch's own size. Columns of nulls only are kept as they are (a skipped
/// column's shared nulls, [`super::select::Select::skipping`]).
fn copied_here(batch: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    // Row counts fit: a batch holds at most the reader's batch size.
    let rows = arrow_array::UInt32Array::from_iter_values(0..batch.num_rows() as u32);
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if c.null_count() == c.len() {
                Ok(c.clone())
            } else {
                arrow_select::take::take(c.as_ref(), &rows, None)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// Decodes every row of one Parquet object of `table`, projected onto its
/// contract.
fn decode_whole(bytes: Bytes, path: &Path, table: Table) -> Result<Vec<RecordBatch>, StoreError> {
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
    reader
        .map(|b| {
            let b = b.map_err(|e| perr(ParquetError::from(e)))?;
            project(&b, &target, table, path)
        })
        .collect()
}

/// How many times [`Storage::check_parquet`] reads a footer whose object was
/// replaced while it was read.
const READ_ATTEMPTS: u32 = 5;

/// Whether a read failed because the object was replaced after the reader
/// took its version (its ETag no longer matched).
fn replaced_while_read(e: &ParquetError) -> bool {
    let ParquetError::External(inner) = e else {
        return false;
    };
    matches!(
        inner.downcast_ref::<object_store::Error>(),
        Some(object_store::Error::Precondition { .. })
    )
}

/// Reads byte ranges of one object for the async Parquet reader: the footer first
/// (with a 64 KiB prefetch), then the column chunks it needs, asked for together
/// so that nearby ranges are coalesced into fewer requests. (The parquet crate's
/// `ParquetObjectReader` did this too; it is deprecated in favour of
/// implementing `AsyncFileReader`, which is what this is.)
///
/// Every request carries the ETag the reader was made with (`If-Match`), so
/// the size, the footer and the column chunks all come from the same write:
/// an object replaced in between fails the read with
/// `object_store::Error::Precondition` instead of mixing two files.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    e_tag: Option<String>,
}

impl ObjectReader {
    /// One range of the object, at the reader's version.
    async fn range(&self, range: std::ops::Range<u64>) -> Result<Bytes, object_store::Error> {
        let options = object_store::GetOptions {
            range: Some(range.into()),
            if_match: self.e_tag.clone(),
            ..Default::default()
        };
        self.store
            .get_opts(&self.path, options)
            .await?
            .bytes()
            .await
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.range(range)
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
            let this = &*self;
            object_store::coalesce_ranges(
                &ranges,
                |r| this.range(r),
                object_store::OBJECT_STORE_COALESCE_DEFAULT,
            )
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

/// The projection of `columns` (top-level columns of `table`'s contract) in
/// a Parquet file's schema; a column missing from either is a
/// [`StoreError::Schema`].
pub(super) fn columns_mask(
    descr: &parquet::schema::types::SchemaDescriptor,
    table: Table,
    columns: &[&str],
    path: &Path,
) -> Result<parquet::arrow::ProjectionMask, StoreError> {
    let mut leaves = Vec::with_capacity(columns.len());
    for &name in columns {
        let leaf = descr.columns().iter().position(|c| {
            c.max_rep_level() == 0 && c.path().parts().len() == 1 && c.name() == name
        });
        let in_contract = table.schema().field_with_name(name).is_ok();
        match leaf {
            Some(leaf) if in_contract => leaves.push(leaf),
            _ => {
                return Err(StoreError::Schema {
                    path: path.to_string(),
                    table: table.name(),
                    problem: format!("column {name} is missing"),
                });
            }
        }
    }
    Ok(parquet::arrow::ProjectionMask::leaves(descr, leaves))
}

/// `batch`'s `columns` in that order: a projection keeps the file's order.
pub(super) fn in_order(
    batch: &RecordBatch,
    columns: &[&str],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let picked: Result<Vec<usize>, _> =
        columns.iter().map(|c| batch.schema().index_of(c)).collect();
    batch.project(&picked?)
}

/// Checks that a file's schema holds every column of `table`'s contract, by
/// name, with the contract's type (extra columns are allowed).
pub(super) fn check_schema(
    found: &arrow_schema::Schema,
    table: Table,
    path: &Path,
) -> Result<(), StoreError> {
    for field in table.schema().fields() {
        let problem = match found.field_with_name(field.name()) {
            Err(_) if crate::model::is_added_later(field) => continue,
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

pub(super) fn project(
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
        let column = match batch.column_by_name(field.name()) {
            Some(c) => c.clone(),
            // A column the contract gained after this file was written.
            None if crate::model::is_added_later(field) => {
                arrow_array::new_null_array(field.data_type(), batch.num_rows())
            }
            None => return Err(schema_err(format!("column {} is missing", field.name()))),
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(schema_err(format!(
                "column {} has {} null values but may not be null",
                field.name(),
                column.null_count()
            )));
        }
        columns.push(column);
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
    use arrow_array::cast::AsArray;

    /// A read of some columns gives those columns of a whole read, in the
    /// order asked for; a column the contract does not have is refused.
    #[tokio::test]
    async fn a_read_of_some_columns_gives_those_of_a_whole_read() {
        let storage =
            Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
        let table = Table::Favorites;
        let rows = 70_000;
        let users: Vec<String> = (0..rows).map(|i| format!("{i}@N01")).collect();
        let batch = RecordBatch::try_new(
            table.schema(),
            vec![
                Arc::new(arrow_array::StringArray::from_iter_values(&users)),
                Arc::new(arrow_array::StringArray::from_iter_values(
                    (0..rows).map(|i| format!("{}", 53_000_000_000u64 + i as u64)),
                )),
                Arc::new(arrow_array::StringArray::from_iter_values(
                    users.iter().rev(),
                )),
                Arc::new(
                    arrow_array::TimestampMicrosecondArray::from_iter_values(0..rows as i64)
                        .with_timezone("UTC"),
                ),
            ],
        )
        .expect("a favourites batch");
        let path = Path::from("runs/r/favorites/part-00000.parquet");
        storage
            .write_parquet(&path, table, &[batch])
            .await
            .expect("written");
        let whole = storage.read_parquet(&path, table).await.expect("read");
        let cols = ["owner_id", "photo_id"];
        let some = storage
            .read_parquet_columns(&path, table, &cols)
            .await
            .expect("read");
        assert!(some.len() > 1, "{} batches", some.len());
        let strings = |batches: &[RecordBatch], c: usize| -> Vec<String> {
            batches
                .iter()
                .flat_map(|b| b.column(c).as_string::<i32>().iter().flatten())
                .map(str::to_string)
                .collect()
        };
        assert!(some.iter().all(|b| b.num_columns() == 2));
        assert_eq!(strings(&some, 0), strings(&whole, 2), "owner_id");
        assert_eq!(strings(&some, 1), strings(&whole, 1), "photo_id");
        let err = storage
            .read_parquet_columns(&path, table, &["photo_id", "no_such_column"])
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains("column no_such_column is missing"), "{err}");
    }
}
