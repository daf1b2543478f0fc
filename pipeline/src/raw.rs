//! Writing the raw tables: merge new rows into a stored table, or replace it,
//! with duplicates removed by the table's key and rows sorted by it, as one
//! object. Import, extract's fold, `users add`/`remove` and the demo all write
//! raw tables through here.

use arrow_array::RecordBatch;
use polars::prelude::{DataFrame, SortMultipleOptions, UniqueKeepStrategy};

use crate::frame::{FrameError, batches_to_frame, frame_to_batch};
use crate::model::Table;
use crate::store::{Storage, StoreError};

/// Why a raw table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RawTableError {
    /// Storage failed while reading the old table or writing the new one.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Polars merge failed.
    #[error("merging rows: {0}")]
    Frame(#[from] FrameError),
}

/// What a write of a raw table did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// The raw table written.
    pub table: &'static str,
    /// Rows given (read from the file, for an import).
    pub rows_read: usize,
    /// Rows in the table before.
    pub rows_before: usize,
    /// Rows in the table after merging and removing duplicates.
    pub rows_after: usize,
}

/// Merges `new` rows into a raw table and writes it back as one object.
///
/// Duplicates are rows with the same key ([`Table::key`]). New rows win over stored
/// ones (they are the fresher observation) and, within the new rows, the first
/// occurrence wins. The table is written sorted by its key, so the same rows always
/// give the same bytes.
pub async fn merge_raw(
    storage: &Storage,
    table: Table,
    new: Vec<RecordBatch>,
) -> Result<MergeReport, RawTableError> {
    let rows_read = new.iter().map(|b| b.num_rows()).sum();
    let old = storage.read_raw(table).await?.unwrap_or_default();
    let rows_before = old.iter().map(|b| b.num_rows()).sum();
    let mut all = new;
    all.extend(old);
    let report = replace_raw(storage, table, all).await?;
    Ok(MergeReport {
        rows_read,
        rows_before,
        ..report
    })
}

/// Writes `rows` as the whole raw table, replacing what was stored. Duplicates by
/// key are removed (first wins) and rows are sorted by key.
pub async fn replace_raw(
    storage: &Storage,
    table: Table,
    rows: Vec<RecordBatch>,
) -> Result<MergeReport, RawTableError> {
    let schema = table.schema();
    let rows_read = rows.iter().map(|b| b.num_rows()).sum();
    let df = dedupe_sorted(&batches_to_frame(&rows, &schema)?, table)?;
    let batch = frame_to_batch(&df, &schema)?;
    let rows_after = batch.num_rows();
    storage
        .write_parquet(&table.raw_path(), table, &[batch])
        .await?;
    Ok(MergeReport {
        table: table.name(),
        rows_read,
        rows_before: rows_read,
        rows_after,
    })
}

/// Keeps the first row of each key, then sorts by the key.
pub fn dedupe_sorted(df: &DataFrame, table: Table) -> Result<DataFrame, FrameError> {
    let key: Vec<String> = table.key().iter().map(|k| k.to_string()).collect();
    let unique = df.unique_stable(Some(&key), UniqueKeepStrategy::First, None)?;
    Ok(unique.sort(
        &key,
        SortMultipleOptions::default().with_maintain_order(true),
    )?)
}
