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
    /// A stored table lacks a contract column.
    #[error(transparent)]
    Column(#[from] crate::model::columns::ColumnError),
    /// Other writers changed the table every time this one tried.
    #[error(
        "raw table {table} was changed by other writers {attempts} times in a row while this one merged into it; nothing was written by this command, so run it again"
    )]
    LostRace {
        /// The table.
        table: &'static str,
        /// Attempts made.
        attempts: u32,
    },
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

/// How many times a read-modify-write of a raw table is tried before the writer
/// gives up and says it lost the race.
pub const MAX_ATTEMPTS: u32 = 10;

/// Merges `new` rows into a raw table and writes it back as one object.
///
/// Duplicates are rows with the same key ([`Table::key`]). New rows win over stored
/// ones (they are the fresher observation) and, within the new rows, the first
/// occurrence wins. The table is written sorted by its key, so the same rows always
/// give the same bytes. Safe against concurrent writers: see [`update_raw`].
pub async fn merge_raw(
    storage: &Storage,
    table: Table,
    new: Vec<RecordBatch>,
) -> Result<MergeReport, RawTableError> {
    let rows_read = new.iter().map(|b| b.num_rows()).sum();
    let report = update_raw(storage, table, |old| {
        let mut all = new.clone();
        all.extend(old);
        Ok(all)
    })
    .await?;
    Ok(MergeReport {
        rows_read,
        ..report
    })
}

/// Rewrites a raw table from what is stored: `change` gets the stored rows and
/// returns the table's new rows (duplicates by key are then removed, first wins,
/// and rows sorted by key).
///
/// Optimistic concurrency: the table is read with its version and written with a
/// conditional put on that version. If another writer changed it in between,
/// the put fails, and the whole cycle (read, `change`, write) runs again on the
/// fresh table, so both writers' rows are kept. After [`MAX_ATTEMPTS`] lost
/// races the writer gives up with [`RawTableError::LostRace`] and has written
/// nothing.
pub async fn update_raw<F>(
    storage: &Storage,
    table: Table,
    mut change: F,
) -> Result<MergeReport, RawTableError>
where
    F: FnMut(Vec<RecordBatch>) -> Result<Vec<RecordBatch>, RawTableError>,
{
    let schema = table.schema();
    let path = table.raw_path();
    for attempt in 1..=MAX_ATTEMPTS {
        let (old, version) = match storage.read_raw_versioned(table).await {
            Ok(read) => read,
            // Replaced between the version and the read: read again.
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let old = old.unwrap_or_default();
        let rows_before = old.iter().map(|b| b.num_rows()).sum();
        let rows = change(old)?;
        let rows_read = rows.iter().map(|b| b.num_rows()).sum();
        let df = dedupe_sorted(&batches_to_frame(&rows, &schema)?, table)?;
        let batch = frame_to_batch(&df, &schema)?;
        match storage
            .put_parquet_if(&path, table, std::slice::from_ref(&batch), &version)
            .await
        {
            Ok(rows_after) => {
                return Ok(MergeReport {
                    table: table.name(),
                    rows_read,
                    rows_before,
                    rows_after: rows_after as usize,
                });
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::info!(
                    table = table.name(),
                    attempt,
                    "another writer changed the table first; merging again"
                );
                let jitter = u64::from(std::process::id() % 7 + attempt * 5);
                tokio::time::sleep(std::time::Duration::from_millis(jitter * 3)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RawTableError::LostRace {
        table: table.name(),
        attempts: MAX_ATTEMPTS,
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
