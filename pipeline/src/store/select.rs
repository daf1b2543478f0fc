//! Reads of a raw table restricted to the rows whose key column holds one of a
//! set of ids: the favourites of some users, the photos of some photo ids.
//!
//! Used by score when a run needs only its targets' neighbourhood
//! (`crate::score::load`). Each object is still fetched in one GET, so the rows
//! belong to one write, but the reader:
//!
//! - skips every row group whose column statistics (min/max of the key column)
//!   hold none of the ids: the bucketed tables are sorted by user in row
//!   groups of [`super::parquet::RAW_ROW_GROUP_ROWS`] rows;
//! - decodes the key column first; a `user_id` as each row group's
//!   dictionary and the rows' indices into it, so that each distinct user is
//!   looked up once;
//! - then decodes every column only for the rows kept (a Parquet row
//!   selection), skipping the others rather than decoding them, and copies
//!   the rows kept into buffers of their own size;
//! - reads, of a bucketed table filtered by `user_id`, only the buckets that
//!   hold one of the users, and decodes each object on a task of its own
//!   ([`super::parquet::decoding`]), so the buckets are decoded side by side.
//!
//! The rows kept are exactly those a whole read would give with the same
//! filter applied afterwards, in the same order.

use std::sync::Arc;

use arrow_array::{Array, BooleanArray, RecordBatch, cast::AsArray};
use arrow_schema::{ArrowError, DataType, FieldRef, Schema};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelectionPolicy,
};
use parquet::errors::ParquetError;
use polars::prelude::PlHashSet;

use crate::model::{Table, col};

use super::error::StoreError;
use super::parquet::{check_schema, decoding, project};
use super::storage::Storage;

/// A set of ids, with their sorted order for comparing with statistics.
#[derive(Debug, Default)]
pub struct IdSet {
    sorted: Vec<Arc<str>>,
    set: PlHashSet<Arc<str>>,
}

impl IdSet {
    /// The distinct ids of `ids`.
    pub fn new<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> Self {
        let set: PlHashSet<Arc<str>> = ids.into_iter().map(|s| Arc::from(s.as_ref())).collect();
        let mut sorted: Vec<Arc<str>> = set.iter().cloned().collect();
        sorted.sort_unstable();
        Self { sorted, set }
    }

    /// How many ids.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Whether `id` is one of them.
    #[inline]
    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// The ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.sorted.iter().map(|s| &**s)
    }

    /// Whether some id lies between `min` and `max` (bytes compared, as
    /// Parquet orders strings), both included.
    fn any_between(&self, min: &[u8], max: &[u8]) -> bool {
        let first = self.sorted.partition_point(|id| id.as_bytes() < min);
        self.sorted
            .get(first)
            .is_some_and(|id| id.as_bytes() <= max)
    }
}

/// Which rows a read keeps: those whose `column` (a non-null string column of
/// the table's contract) holds one of `ids`.
#[derive(Debug, Clone)]
pub struct Select {
    /// The key column.
    pub column: &'static str,
    /// The ids kept.
    pub ids: Arc<IdSet>,
    /// Nullable columns of the contract that are not decoded: they read as
    /// nulls (see [`Select::skipping`]).
    pub skip: &'static [&'static str],
}

impl Select {
    /// Rows whose `column` holds one of `ids`.
    pub fn new(column: &'static str, ids: Arc<IdSet>) -> Self {
        Self {
            column,
            ids,
            skip: &[],
        }
    }

    /// The same rows with `columns` left undecoded, for a reader that does
    /// not use them: the nullable ones among them read as nulls (slices of one
    /// shared null column, so they take no memory per row); the others, and
    /// names the table does not have, are read as usual.
    pub fn skipping(self, columns: &'static [&'static str]) -> Self {
        Self {
            skip: columns,
            ..self
        }
    }
}

impl Storage {
    /// Reads a raw table's rows chosen by `select` (of every bucket of a
    /// bucketed table that can hold them), or `None` if the table has never
    /// been written.
    pub async fn read_raw_where(
        &self,
        table: Table,
        select: &Select,
    ) -> Result<Option<Vec<RecordBatch>>, StoreError> {
        if table.bucketed() {
            return self.read_raw_buckets(table, Some(select)).await;
        }
        self.read_object_where(&table.raw_path(), table, select)
            .await
    }

    /// Reads the rows chosen by `select` of every Parquet file of `table`
    /// under `dir` (a run's table), up to [`super::storage::CONCURRENCY`]
    /// files at a time, in name order.
    pub async fn read_table_dir_where(
        &self,
        dir: &Path,
        table: Table,
        select: &Select,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let files: Vec<Option<Vec<RecordBatch>>> =
            futures::stream::iter(self.table_files(dir).await?)
                .map(|f| async move { self.read_object_where(&f, table, select).await })
                .buffered(super::storage::CONCURRENCY)
                .try_collect()
                .await?;
        Ok(files.into_iter().flatten().flatten().collect())
    }

    /// Reads the rows of one Parquet object of `table` chosen by `select`;
    /// `None` if the object does not exist.
    pub(crate) async fn read_object_where(
        &self,
        path: &Path,
        table: Table,
        select: &Select,
    ) -> Result<Option<Vec<RecordBatch>>, StoreError> {
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StoreError::object(path, e)),
        };
        let bytes = got.bytes().await.map_err(|e| StoreError::object(path, e))?;
        let select = select.clone();
        decoding(path, move |path| decode_where(bytes, path, table, &select))
            .await
            .map(Some)
    }
}

/// Decodes the rows of one Parquet file chosen by `select`.
fn decode_where(
    bytes: Bytes,
    path: &Path,
    table: Table,
    select: &Select,
) -> Result<Vec<RecordBatch>, StoreError> {
    let perr = |source| StoreError::Parquet {
        path: path.to_string(),
        source,
    };
    let metadata = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()).map_err(perr)?;
    check_schema(metadata.schema(), table, path)?;
    // A user's id repeats on each of their rows, sorted together; a photo id
    // is on one row of `photos`, where a dictionary would only add work.
    let keyed = match select.column {
        col::USER_ID => key_as_dictionary(metadata.clone(), select.column).map_err(perr)?,
        _ => metadata.clone(),
    };
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), metadata);
    let descr = builder.parquet_schema();
    let Some(leaf) = descr.columns().iter().position(|c| {
        c.max_rep_level() == 0 && c.path().parts().len() == 1 && c.name() == select.column
    }) else {
        return Err(StoreError::Schema {
            path: path.to_string(),
            table: table.name(),
            problem: format!("column {} is missing", select.column),
        });
    };
    let ids = &select.ids;
    let groups: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, group)| {
            let stats = group.column(leaf).statistics();
            match stats.and_then(|s| Some((s.min_bytes_opt()?, s.max_bytes_opt()?))) {
                Some((min, max)) => ids.any_between(min, max),
                // No statistics: the group may hold anything.
                None => true,
            }
        })
        .map(|(i, _)| i)
        .collect();
    let target = table.schema();
    let skipped: Vec<&arrow_schema::FieldRef> = target
        .fields()
        .iter()
        .filter(|f| f.is_nullable() && select.skip.contains(&f.name().as_str()))
        .collect();
    let decoded = descr.columns().iter().enumerate().filter(|(_, c)| {
        !(c.max_rep_level() == 0
            && c.path().parts().len() == 1
            && skipped.iter().any(|f| f.name() == c.name()))
    });
    let projection = ProjectionMask::leaves(descr, decoded.map(|(i, _)| i));
    // First the key column alone, a row group at a time, as dictionary
    // indices: which rows to keep.
    let keys = ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, keyed)
        .with_projection(ProjectionMask::leaves(descr, [leaf]))
        .with_row_groups(groups.clone())
        .with_batch_size(KEY_BATCH_ROWS)
        .build()
        .map_err(perr)?;
    let mut kept = Vec::new();
    for batch in keys {
        let batch = batch.map_err(|e| perr(ParquetError::from(e)))?;
        kept.push(keep_rows(&batch, select.column, ids).map_err(|e| perr(e.into()))?);
    }
    let selection = RowSelection::from_filters(&kept);
    if !selection.selects_any() {
        return Ok(Vec::new());
    }
    // Then every column of those rows alone.
    let reader = builder
        .with_projection(projection)
        .with_row_groups(groups)
        .with_row_selection(selection)
        // Skip the rows not selected rather than decode them and mask them
        // out. The reader's default picks the mask for sparse selections, and
        // a mask batch spans as many rows as it takes to find `batch_size`
        // kept ones: for the 34 000 shown photos of the 8M community that is
        // every column of all 1.38M `photos` rows decoded at once (+110 MiB).
        .with_row_selection_policy(RowSelectionPolicy::Selectors)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(perr)?;
    reader
        .map(|b| {
            let b = b.map_err(|e| perr(ParquetError::from(e)))?;
            let b = compact(&b).map_err(|e| perr(ParquetError::from(e)))?;
            let b = with_nulls(b, &skipped).map_err(|e| perr(ParquetError::from(e)))?;
            project(&b, &target, table, path)
        })
        .collect()
}

/// Rows a filtered read decodes at a time.
const BATCH_ROWS: usize = 64 * 1024;

/// Key values a filtered read decodes at a time, to choose its rows: a raw
/// row group, so that each batch of a bucketed table's key column holds one
/// row group's, as indices into that group's dictionary
/// ([`key_as_dictionary`]).
const KEY_BATCH_ROWS: usize = super::parquet::RAW_ROW_GROUP_ROWS;

/// The reader's schema with the key `column` decoded as a dictionary, when
/// the file stores it as strings. Parquet writes a row group's strings as
/// indices into that group's dictionary: the filter then looks each distinct
/// id up once and maps the indices ([`keep_rows`]) rather than copying every
/// row's id out first. A batch that spans two row groups (or a column chunk
/// that fell back from its dictionary) comes out with a dictionary the
/// reader rebuilt from the values, which gives the same rows. Only the
/// choice of rows reads the key this way; the rows kept are read as strings.
fn key_as_dictionary(
    metadata: ArrowReaderMetadata,
    column: &str,
) -> Result<ArrowReaderMetadata, ParquetError> {
    let schema = metadata.schema();
    let Ok(key) = schema.index_of(column) else {
        return Ok(metadata);
    };
    if schema.field(key).data_type() != &DataType::Utf8 {
        return Ok(metadata);
    }
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match i == key {
            true => Arc::new(f.as_ref().clone().with_data_type(dictionary.clone())),
            false => f.clone(),
        })
        .collect();
    let hinted = Schema::new_with_metadata(fields, schema.metadata().clone());
    let options = ArrowReaderOptions::new().with_schema(Arc::new(hinted));
    ArrowReaderMetadata::try_new(metadata.metadata().clone(), options)
}

/// `batch` with a column of nulls for each of `fields`, each a slice of one
/// null column of [`BATCH_ROWS`] rows shared by every batch (of any read) that
/// needs one of its type.
fn with_nulls(
    batch: RecordBatch,
    fields: &[&arrow_schema::FieldRef],
) -> Result<RecordBatch, ArrowError> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static SHARED: LazyLock<Mutex<HashMap<arrow_schema::DataType, arrow_array::ArrayRef>>> =
        LazyLock::new(Default::default);
    if fields.is_empty() {
        return Ok(batch);
    }
    let rows = batch.num_rows();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let mut schema: Vec<arrow_schema::FieldRef> = batch.schema().fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    for &field in fields {
        let nulls = shared.entry(field.data_type().clone()).or_insert_with(|| {
            arrow_array::new_null_array(field.data_type(), BATCH_ROWS.max(rows))
        });
        if nulls.len() < rows {
            *nulls = arrow_array::new_null_array(field.data_type(), rows);
        }
        schema.push(field.clone());
        columns.push(nulls.slice(0, rows));
    }
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(schema)), columns)
}

/// A copy of `batch` in buffers of its own size. The reader gives every
/// batch buffers for a whole batch (64 Ki rows) however few rows the filter
/// keeps, and grows the string bytes by doubling: reading 1 000 targets'
/// favourites from 64 buckets held about 80 MB for 86 000 rows.
fn compact(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    // Row counts fit: a batch holds at most the reader's batch size.
    let rows = arrow_array::UInt32Array::from_iter_values(0..batch.num_rows() as u32);
    arrow_select::take::take_record_batch(batch, &rows)
}

/// Which rows to keep: whether each row's key is one of `keep`. Rows sorted by the
/// key (the bucketed tables) repeat it, so a key equal to the row before is
/// not looked up again. A null key is an error, as in a whole read.
///
/// A dictionary key column ([`key_as_dictionary`]) is looked up a value of
/// its dictionary at a time, and each row takes its value's answer.
fn keep_rows(batch: &RecordBatch, column: &str, keep: &IdSet) -> Result<BooleanArray, ArrowError> {
    let key = batch.column(0);
    if key.null_count() > 0 {
        return Err(ArrowError::InvalidArgumentError(format!(
            "column {column} has {} null values but may not be null",
            key.null_count()
        )));
    }
    let not_strings = || ArrowError::SchemaError(format!("column {column} is not a string column"));
    if let Some(dictionary) = key.as_dictionary_opt::<arrow_array::types::Int32Type>() {
        let values = dictionary
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(not_strings)?;
        let kept = kept_values(values, keep);
        let rows = dictionary.keys().values().iter();
        // A key out of the dictionary's range is not kept (the reader makes
        // none).
        let kept = rows.map(|&k| usize::try_from(k).is_ok_and(|k| kept.get(k) == Some(&true)));
        return Ok(BooleanArray::from_iter(kept.map(Some)));
    }
    let values = key.as_string_opt::<i32>().ok_or_else(not_strings)?;
    Ok(BooleanArray::from_iter(
        kept_values(values, keep).into_iter().map(Some),
    ))
}

/// Whether each of `values` (none null) is one of `keep`. A value equal to
/// the one before is not looked up again: rows sorted by the key repeat it.
fn kept_values(values: &arrow_array::StringArray, keep: &IdSet) -> Vec<bool> {
    let mut last: Option<(&str, bool)> = None;
    values
        .iter()
        .map(|v| {
            let v = v.unwrap_or_default();
            let kept = match last {
                Some((l, kept)) if l == v => kept,
                _ => keep.contains(v),
            };
            last = Some((v, kept));
            kept
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::parquet::ParquetEncoder;
    use arrow_array::{StringArray, TimestampMicrosecondArray};

    /// A favourites batch of `rows` rows, row `i` holding `user(i)`,
    /// `photo(i)` and `owner(i)`, faved at `i` microseconds.
    fn favorites_batch(
        rows: usize,
        user: impl Fn(usize) -> String,
        photo: impl Fn(usize) -> String,
        owner: impl Fn(usize) -> String,
    ) -> Result<RecordBatch, ArrowError> {
        RecordBatch::try_new(
            Table::Favorites.schema(),
            vec![
                Arc::new(StringArray::from_iter_values((0..rows).map(user))),
                Arc::new(StringArray::from_iter_values((0..rows).map(photo))),
                Arc::new(StringArray::from_iter_values((0..rows).map(owner))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(0..rows as i64)
                        .with_timezone("UTC"),
                ),
            ],
        )
    }

    /// A Parquet file of `rows` favourites, one per user `<i>@N01`, faved at
    /// `i` microseconds.
    fn favorites_file(rows: usize) -> (Bytes, Path) {
        let batch = favorites_batch(
            rows,
            |i| format!("{i}@N01"),
            |i| format!("{}", 53_000_000_000u64 + i as u64),
            |i| format!("{}@N01", rows - 1 - i),
        )
        .expect("a favourites batch");
        let path = Path::from("raw/favorites/data.parquet");
        let bytes = favorites_bytes(&path, &batch).expect("encoded");
        (bytes, path)
    }

    /// `batch` encoded as the bucketed raw tables are.
    fn favorites_bytes(path: &Path, batch: &RecordBatch) -> Result<Bytes, StoreError> {
        let mut encoder = ParquetEncoder::new(path, Table::Favorites)?;
        encoder.write(batch)?;
        Ok(encoder.finish()?.0)
    }

    /// A filtered read holds only what it keeps: 3 of 100 000 favourites, in
    /// a few kilobytes, not in buffers sized for a whole 64 Ki-row batch.
    #[test]
    fn a_sparse_read_holds_only_the_rows_it_keeps() {
        let table = Table::Favorites;
        let (bytes, path) = favorites_file(100_000);
        let keep = ["5@N01", "50000@N01", "99999@N01"];
        let select = Select::new(col::USER_ID, Arc::new(IdSet::new(keep)));
        let read = decode_where(bytes, &path, table, &select).expect("read");
        let kept: Vec<&str> = read
            .iter()
            .flat_map(|b| b.column(0).as_string::<i32>().iter().flatten())
            .collect();
        assert_eq!(kept, keep);
        let held: usize = read.iter().map(|b| b.get_array_memory_size()).sum();
        assert!(held < 16 * 1024, "3 rows held in {held} bytes");
    }

    /// The rows kept are those a whole read gives with the filter applied
    /// afterwards, however the file's row groups and key column were
    /// written: the bucketed tables' row groups (a key batch each), groups
    /// that key batches straddle (the reader then rebuilds each batch's
    /// dictionary), one group, and keys stored without a dictionary.
    #[test]
    fn the_rows_kept_do_not_depend_on_row_groups_or_encoding()
    -> Result<(), Box<dyn std::error::Error>> {
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let table = Table::Favorites;
        let rows = 60_000;
        // 6 000 users with ten favourites each, stored sorted by user.
        let user = |i: usize| format!("{}@N01", 10_000 + i / 10);
        let photo = |i: usize| format!("{}", 53_000_000_000u64 + i as u64);
        let batch = favorites_batch(rows, user, photo, |i| user(i + 7))?;
        // Every seventh user, and ids no row holds.
        let keep: Vec<String> = (0..rows)
            .step_by(70)
            .map(user)
            .chain(["1@N01".into(), "99999@N01".into()])
            .collect();
        let want: Vec<(String, String)> = (0..rows)
            .filter(|i| (i / 10) % 7 == 0)
            .map(|i| (user(i), photo(i)))
            .collect();
        let path = Path::from("raw/favorites/data.parquet");
        let mut files = vec![("bucketed", favorites_bytes(&path, &batch)?)];
        let written = [
            ("groups of 10 000 rows", Some(10_000), true),
            ("one group", None, true),
            ("no dictionary", Some(10_000), false),
        ];
        for (name, group_rows, dictionary) in written {
            let props = WriterProperties::builder()
                .set_max_row_group_row_count(group_rows)
                .set_dictionary_enabled(dictionary)
                .build();
            let mut bytes = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut bytes, table.schema(), Some(props))?;
            writer.write(&batch)?;
            writer.close()?;
            files.push((name, Bytes::from(bytes)));
        }
        let select = Select::new(col::USER_ID, Arc::new(IdSet::new(&keep)));
        for (name, bytes) in files {
            let read = decode_where(bytes, &path, table, &select)?;
            let got: Vec<(String, String)> = read
                .iter()
                .flat_map(|b| {
                    let users = b.column(0).as_string::<i32>().iter().flatten();
                    let photos = b.column(1).as_string::<i32>().iter().flatten();
                    users.zip(photos).map(|(u, p)| (u.to_owned(), p.to_owned()))
                })
                .collect();
            assert_eq!(got.len(), 8_580, "{name}");
            assert!(got == want, "{name}: the rows kept differ");
        }
        Ok(())
    }

    /// A skipped nullable column reads as nulls that every batch shares;
    /// the other columns, and the skipped names that are not nullable or not
    /// the table's, read as without the skip.
    #[test]
    fn a_skipped_column_reads_as_shared_nulls() {
        let table = Table::Favorites;
        let (bytes, path) = favorites_file(200_000);
        let keep: Vec<String> = (0..200_000)
            .step_by(2)
            .map(|i| format!("{i}@N01"))
            .collect();
        let select = Select::new(col::USER_ID, Arc::new(IdSet::new(&keep)));
        let whole = decode_where(bytes.clone(), &path, table, &select).expect("read");
        let skipping = select.skipping(&[col::DATE_FAVED, col::USER_ID, "no_such_column"]);
        let read = decode_where(bytes, &path, table, &skipping).expect("read");
        assert!(read.len() > 1, "{} batches", read.len());
        let concat = |batches: &[RecordBatch]| {
            arrow_select::concat::concat_batches(&table.schema(), batches).expect("one batch")
        };
        let (whole, skipped) = (concat(&whole), concat(&read));
        assert_eq!(skipped.num_rows(), 100_000);
        assert_eq!(skipped.schema(), whole.schema());
        for c in [0, 1, 2] {
            assert_eq!(skipped.column(c), whole.column(c), "column {c}");
        }
        assert_eq!(whole.column(3).null_count(), 0);
        assert_eq!(skipped.column(3).null_count(), 100_000);
        let values = |b: &RecordBatch| b.column(3).to_data().buffers()[0].data_ptr();
        assert!(read.iter().all(|b| values(b) == values(&read[0])));
    }

    #[test]
    fn ids_between_bounds_are_found_by_byte_order() {
        let ids = IdSet::new(["20@N01", "35@N02", "35@N02", "9@N01"]);
        assert_eq!(ids.len(), 3);
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            ["20@N01", "35@N02", "9@N01"]
        );
        assert!(ids.any_between(b"1", b"21"));
        assert!(ids.any_between(b"35@N02", b"35@N02"));
        assert!(ids.any_between(b"9", b"9@N01"));
        assert!(!ids.any_between(b"21", b"35@N01"));
        assert!(!ids.any_between(b"9@N02", b"z"));
        assert!(!IdSet::default().any_between(b"", b"z"));
    }
}
