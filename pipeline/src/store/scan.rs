//! Scans: a few columns of every object of a raw table, each object reduced
//! by a function of the caller's on a task of its own as it is decoded, so
//! that a pass over a table the size of `favorites` holds at most
//! [`CONCURRENCY`] objects' columns at once, never the table.
//!
//! Each object is fetched in one GET, as [`super::select`] fetches it, so its
//! rows belong to one write. A bucketed table is scanned bucket by bucket at
//! one layout; when a bucket of that layout has gone (a fold or a rebucket
//! replaced the generation), the scan starts again from a fresh accumulator.

use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;

use crate::model::Table;

use super::error::StoreError;
use super::layout::{READ_ATTEMPTS, layout_path};
use super::parquet::{check_schema, columns_mask, in_order, on_a_task};
use super::storage::{CONCURRENCY, Storage};

/// The batches of one object's scanned columns, in the order asked for,
/// decoded one at a time as they are taken.
pub struct Batches<'a> {
    reader: ParquetRecordBatchReader,
    columns: &'a [&'a str],
    path: &'a Path,
}

impl Iterator for Batches<'_> {
    type Item = Result<RecordBatch, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.reader.next()?;
        Some(
            batch
                .and_then(|b| in_order(&b, self.columns))
                .map_err(|e| StoreError::Parquet {
                    path: self.path.to_string(),
                    source: ParquetError::from(e),
                }),
        )
    }
}

/// What a scan does with one object's batches.
type Each<T, E> = dyn Fn(Batches<'_>) -> Result<T, E> + Send + Sync;

/// Decodes `columns` of one fetched object and hands them to `each`.
fn scan_object<T, E: From<StoreError>>(
    bytes: Bytes,
    path: &Path,
    table: Table,
    columns: &[&str],
    each: &Each<T, E>,
) -> Result<T, E> {
    let perr = |source| StoreError::Parquet {
        path: path.to_string(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(perr)?;
    check_schema(builder.schema(), table, path)?;
    let mask = columns_mask(builder.parquet_schema(), table, columns, path)?;
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(perr)?;
    each(Batches {
        reader,
        columns,
        path,
    })
}

impl Storage {
    /// Folds `each` over `columns` (top-level columns of `table`'s contract)
    /// of every Parquet object of raw `table`: every bucket of a bucketed
    /// table, in bucket order, or its single file. `each` runs on a task of
    /// its own per object, up to [`CONCURRENCY`] at a time, and `fold`
    /// merges its results in object order into an accumulator that `init`
    /// makes. `None` when the table has never been written.
    pub async fn scan_raw<T, E, A>(
        &self,
        table: Table,
        columns: &'static [&'static str],
        each: impl Fn(Batches<'_>) -> Result<T, E> + Send + Sync + 'static,
        init: impl Fn() -> A,
        mut fold: impl FnMut(&mut A, T) -> Result<(), E>,
    ) -> Result<Option<A>, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let each: Arc<Each<T, E>> = Arc::new(each);
        let scan_one = |path: Path| {
            let each = each.clone();
            async move {
                let got = match self.store.get(&path).await {
                    Ok(got) => got,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(E::from(StoreError::object(&path, e))),
                };
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| E::from(StoreError::object(&path, e)))?;
                on_a_task(&path, move |path| {
                    scan_object(bytes, path, table, columns, each.as_ref()).map(Some)
                })
                .await
            }
        };
        for _ in 0..READ_ATTEMPTS {
            let paths = match self.raw_layout(table).await? {
                Some((layout, _)) if table.bucketed() => layout.bucket_paths(table),
                _ => vec![table.raw_path()],
            };
            let legacy = paths.len() == 1 && paths[0] == table.raw_path();
            let mut results = futures::stream::iter(paths)
                .map(scan_one)
                .buffered(CONCURRENCY);
            let mut acc = init();
            let mut complete = true;
            while let Some(result) = results.next().await {
                match result? {
                    Some(t) => fold(&mut acc, t)?,
                    // The single file gone: never written, unless it was
                    // migrated to buckets meanwhile.
                    None if legacy && self.raw_layout(table).await?.is_none() => return Ok(None),
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                return Ok(Some(acc));
            }
            tracing::info!(
                table = table.name(),
                "the table's layout changed while it was scanned; scanning it again"
            );
        }
        Err(E::from(StoreError::Layout {
            path: layout_path(table).to_string(),
            problem: format!("changed {READ_ATTEMPTS} times while it was scanned; try again"),
        }))
    }
}
