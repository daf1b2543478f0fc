//! Import: loads CSV or Parquet files into the raw tables.
//!
//! Imported rows land in the same raw tables the extractor writes. A file is
//! validated completely before anything is written: every id is checked against
//! the NSID and photo-id shapes, every time is parsed, and the first bad row is
//! reported with its line (CSV) or row (Parquet) number. Only then are the new rows
//! merged with the stored table (Polars: concatenate, drop duplicate keys, sort) and
//! written back as one object, so a failed import leaves storage untouched.

use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use polars::prelude::{Column, DataFrame, PlSmallStr, SortMultipleOptions, UniqueKeepStrategy};

use crate::frame::{FrameError, batches_to_frame, frame_to_batch};
use crate::model::{Table, col, is_nsid, is_photo_id};
use crate::store::{Storage, StoreError};

/// What a file is imported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// `user_id`, `photo_id`, optional `owner_id` and `date_faved`.
    Favorites,
    /// `user_id`, optional `username` and `added_at`.
    Tracked,
    /// `user_id`, `contact_id`.
    Contacts,
    /// `user_id` and exactly one of `photo_id` or `dismissed_user_id`.
    Dismissals,
    /// `photo_id`, `owner_id`; optional `owner_name`, `title`, `server`, `secret`,
    /// `tags`, `date_upload`.
    Photos,
}

/// Why an import was refused. Nothing is written when any of these occur.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// Input file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Neither CSV nor Parquet.
    #[error("{file}: unknown format (expected a .csv or .parquet file)")]
    Format {
        /// Input file.
        file: PathBuf,
    },
    /// A required column is absent.
    #[error("{file}: required column {column} is missing (found columns: {found}); {hint}")]
    MissingColumn {
        /// Input file.
        file: PathBuf,
        /// The missing column.
        column: &'static str,
        /// The columns that were found.
        found: String,
        /// What the import needs.
        hint: String,
    },
    /// A Parquet column has a type that cannot hold the value.
    #[error("{file}: column {column} has type {found}, expected {expected}")]
    WrongType {
        /// Input file.
        file: PathBuf,
        /// Column.
        column: &'static str,
        /// The type found.
        found: String,
        /// The types accepted.
        expected: &'static str,
    },
    /// The file has a header but no rows.
    #[error("{file}: the file has no data rows; nothing was imported")]
    Empty {
        /// Input file.
        file: PathBuf,
    },
    /// One row is malformed.
    #[error("{file}: {place}: {problem}; nothing was imported")]
    Row {
        /// Input file.
        file: PathBuf,
        /// `line N` (CSV, counting the header) or `row N` (Parquet, 1-based).
        place: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Storage failed while reading the old table or writing the new one.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Polars merge failed.
    #[error("merging rows: {0}")]
    Frame(#[from] FrameError),
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The raw table written.
    pub table: &'static str,
    /// Rows read from the file.
    pub rows_read: usize,
    /// Rows in the table before.
    pub rows_before: usize,
    /// Rows in the table after merging and removing duplicates.
    pub rows_after: usize,
}

#[derive(Clone, Copy)]
enum Check {
    Nsid,
    PhotoId,
    Text,
    Time,
}

struct ColSpec {
    name: &'static str,
    required: bool,
    check: Check,
}

const fn spec(name: &'static str, required: bool, check: Check) -> ColSpec {
    ColSpec {
        name,
        required,
        check,
    }
}

const FAVORITES_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::PHOTO_ID, true, Check::PhotoId),
    spec(col::OWNER_ID, false, Check::Nsid),
    spec(col::DATE_FAVED, false, Check::Time),
];
const TRACKED_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::USERNAME, false, Check::Text),
    spec(col::ADDED_AT, false, Check::Time),
];
const CONTACTS_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::CONTACT_ID, true, Check::Nsid),
];
const PHOTOS_COLUMNS: &[ColSpec] = &[
    spec(col::PHOTO_ID, true, Check::PhotoId),
    spec(col::OWNER_ID, true, Check::Nsid),
    spec(col::OWNER_NAME, false, Check::Text),
    spec(col::TITLE, false, Check::Text),
    spec(col::SERVER, false, Check::Text),
    spec(col::SECRET, false, Check::Text),
    spec(col::TAGS, false, Check::Text),
    spec(col::DATE_UPLOAD, false, Check::Time),
];
const DISMISSALS_COLUMNS: &[ColSpec] = &[
    spec(col::USER_ID, true, Check::Nsid),
    spec(col::PHOTO_ID, false, Check::PhotoId),
    spec(col::DISMISSED_USER_ID, false, Check::Nsid),
];

impl ImportKind {
    /// The raw table this kind lands in.
    pub fn table(self) -> Table {
        match self {
            ImportKind::Favorites => Table::Favorites,
            ImportKind::Tracked => Table::TrackedUsers,
            ImportKind::Contacts => Table::Contacts,
            ImportKind::Dismissals => Table::Dismissals,
            ImportKind::Photos => Table::Photos,
        }
    }

    fn columns(self) -> &'static [ColSpec] {
        match self {
            ImportKind::Favorites => FAVORITES_COLUMNS,
            ImportKind::Tracked => TRACKED_COLUMNS,
            ImportKind::Contacts => CONTACTS_COLUMNS,
            ImportKind::Dismissals => DISMISSALS_COLUMNS,
            ImportKind::Photos => PHOTOS_COLUMNS,
        }
    }

    fn hint(self) -> String {
        let cols = self.columns();
        let req: Vec<_> = cols.iter().filter(|c| c.required).map(|c| c.name).collect();
        let opt: Vec<_> = cols
            .iter()
            .filter(|c| !c.required)
            .map(|c| c.name)
            .collect();
        format!(
            "{} needs {} and may have {}",
            self.table().name(),
            req.join(", "),
            if opt.is_empty() {
                "nothing else".into()
            } else {
                opt.join(", ")
            }
        )
    }
}

/// One cell as read from the file, before validation.
enum Cell {
    Str(String),
    Int(i64),
    Micros(i64),
}

/// Validated column values.
enum Values {
    Text(Vec<Option<String>>),
    Time(Vec<Option<i64>>),
}

/// Reads `file` (CSV or Parquet, by extension or content) and merges its rows into
/// the raw table for `kind`.
pub async fn import_file(
    storage: &Storage,
    kind: ImportKind,
    file: &Path,
) -> Result<ImportReport, ImportError> {
    let bytes = tokio::fs::read(file).await.map_err(|e| ImportError::Read {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let batch = parse_file(kind, file, Bytes::from(bytes))?;
    merge_raw(storage, kind.table(), vec![batch]).await
}

/// Parses and validates a file's bytes into one batch of the kind's raw table.
pub fn parse_file(kind: ImportKind, file: &Path, bytes: Bytes) -> Result<RecordBatch, ImportError> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let is_parquet = bytes.starts_with(b"PAR1");
    let (cells, places) = match (ext.as_deref(), is_parquet) {
        (_, true) => read_parquet(kind, file, bytes)?,
        (Some("csv") | Some("txt"), false) => read_csv(kind, file, &bytes)?,
        (Some("parquet"), false) => {
            return Err(ImportError::Row {
                file: file.to_path_buf(),
                place: "header".into(),
                problem: "the file is named .parquet but does not start with the Parquet magic bytes (truncated or not Parquet)".into(),
            });
        }
        _ => {
            return Err(ImportError::Format {
                file: file.to_path_buf(),
            });
        }
    };
    if places.is_empty() {
        return Err(ImportError::Empty {
            file: file.to_path_buf(),
        });
    }
    let values = validate(kind, file, cells, &places)?;
    build_batch(kind, values, places.len())
}

type Cells = Vec<Option<Vec<Option<Cell>>>>;

fn missing(kind: ImportKind, file: &Path, column: &'static str, found: &[String]) -> ImportError {
    ImportError::MissingColumn {
        file: file.to_path_buf(),
        column,
        found: if found.is_empty() {
            "none".into()
        } else {
            found.join(", ")
        },
        hint: kind.hint(),
    }
}

fn read_csv(
    kind: ImportKind,
    file: &Path,
    bytes: &[u8],
) -> Result<(Cells, Vec<String>), ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ImportError::Row {
            file: file.to_path_buf(),
            place: "line 1".into(),
            problem: format!("cannot read the header: {e}"),
        })?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    let specs = kind.columns();
    let mut index = Vec::with_capacity(specs.len());
    for s in specs {
        let pos = headers.iter().position(|h| h == s.name);
        if s.required && pos.is_none() {
            return Err(missing(kind, file, s.name, &headers));
        }
        index.push(pos);
    }
    let mut cells: Cells = index.iter().map(|p| p.map(|_| Vec::new())).collect();
    let mut places = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                let problem = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("has {len} fields, but the header has {expected_len}")
                    }
                    csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_string(),
                    _ => e.to_string(),
                };
                return Err(ImportError::Row {
                    file: file.to_path_buf(),
                    place: format!("line {line}"),
                    problem,
                });
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        places.push(format!("line {line}"));
        for (slot, pos) in cells.iter_mut().zip(&index) {
            if let (Some(values), Some(pos)) = (slot.as_mut(), pos) {
                let v = record.get(*pos).unwrap_or("");
                values.push((!v.is_empty()).then(|| Cell::Str(v.to_string())));
            }
        }
    }
    Ok((cells, places))
}

fn read_parquet(
    kind: ImportKind,
    file: &Path,
    bytes: Bytes,
) -> Result<(Cells, Vec<String>), ImportError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |reason: String| ImportError::Read {
        file: file.to_path_buf(),
        reason: format!("{reason} (the file may be truncated or not Parquet)"),
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(e.to_string()))?;
    let schema = builder.schema().clone();
    let found: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let specs = kind.columns();
    let mut index = Vec::with_capacity(specs.len());
    for s in specs {
        let pos = found.iter().position(|h| h == s.name);
        if s.required && pos.is_none() {
            return Err(missing(kind, file, s.name, &found));
        }
        if let Some(p) = pos {
            let dt = schema.field(p).data_type();
            let ok = match s.check {
                Check::Time => matches!(
                    dt,
                    DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Int64
                        | DataType::Int32
                        | DataType::Timestamp(_, _)
                ),
                Check::PhotoId => {
                    matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Int64)
                }
                _ => matches!(dt, DataType::Utf8 | DataType::LargeUtf8),
            };
            if !ok {
                return Err(ImportError::WrongType {
                    file: file.to_path_buf(),
                    column: s.name,
                    found: dt.to_string(),
                    expected: match s.check {
                        Check::Time => "a timestamp, unix seconds (integer) or RFC 3339 text",
                        Check::PhotoId => "a string of digits or an Int64",
                        _ => "a string (Utf8)",
                    },
                });
            }
        }
        index.push(pos);
    }
    let reader = builder.build().map_err(|e| bad(e.to_string()))?;
    let mut cells: Cells = index.iter().map(|p| p.map(|_| Vec::new())).collect();
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        for (slot, pos) in cells.iter_mut().zip(&index) {
            let (Some(values), Some(pos)) = (slot.as_mut(), pos) else {
                continue;
            };
            let array = batch.column(*pos);
            let cast_err = |e: arrow_schema::ArrowError| bad(e.to_string());
            match array.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 => {
                    let a = arrow_cast_utf8(array).map_err(cast_err)?;
                    values.extend(a.iter().map(|v| {
                        v.filter(|s| !s.trim().is_empty())
                            .map(|s| Cell::Str(s.trim().to_string()))
                    }));
                }
                DataType::Int64 => {
                    let a = array.as_any().downcast_ref::<arrow_array::Int64Array>();
                    values.extend(
                        a.into_iter()
                            .flat_map(|a| a.iter())
                            .map(|v| v.map(Cell::Int)),
                    );
                }
                DataType::Int32 => {
                    let a = array.as_any().downcast_ref::<arrow_array::Int32Array>();
                    values.extend(
                        a.into_iter()
                            .flat_map(|a| a.iter())
                            .map(|v| v.map(|v| Cell::Int(v.into()))),
                    );
                }
                DataType::Timestamp(unit, _) => {
                    let per_micro: (i64, i64) = match unit {
                        TimeUnit::Second => (1_000_000, 1),
                        TimeUnit::Millisecond => (1_000, 1),
                        TimeUnit::Microsecond => (1, 1),
                        TimeUnit::Nanosecond => (1, 1_000),
                    };
                    let raw = array.to_data();
                    let ints = arrow_array::Int64Array::from(
                        raw.into_builder()
                            .data_type(DataType::Int64)
                            .build()
                            .map_err(cast_err)?,
                    );
                    values.extend(ints.iter().map(|v| {
                        v.map(|v| Cell::Micros(v.saturating_mul(per_micro.0) / per_micro.1))
                    }));
                }
                _ => unreachable!("types were checked against the spec above"),
            }
        }
        rows += batch.num_rows();
    }
    let places = (1..=rows).map(|r| format!("row {r}")).collect();
    Ok((cells, places))
}

fn arrow_cast_utf8(
    array: &arrow_array::ArrayRef,
) -> Result<arrow_array::StringArray, arrow_schema::ArrowError> {
    if let Some(a) = array.as_any().downcast_ref::<arrow_array::StringArray>() {
        return Ok(a.clone());
    }
    let large = array
        .as_any()
        .downcast_ref::<arrow_array::LargeStringArray>()
        .ok_or_else(|| arrow_schema::ArrowError::CastError("expected a string column".into()))?;
    Ok(large.iter().collect())
}

/// Parses a time cell into UTC microseconds.
fn parse_time(cell: &Cell) -> Result<i64, String> {
    match cell {
        Cell::Micros(m) => Ok(*m),
        Cell::Int(secs) => secs
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("{secs} is out of range for unix seconds")),
        Cell::Str(s) => {
            if let Ok(secs) = s.parse::<i64>() {
                return parse_time(&Cell::Int(secs));
            }
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_micros())
                .map_err(|_| format!("{s:?} is not a time (expected unix seconds or RFC 3339, e.g. 2021-12-11T22:20:22Z)"))
        }
    }
}

fn validate(
    kind: ImportKind,
    file: &Path,
    cells: Cells,
    places: &[String],
) -> Result<Vec<Values>, ImportError> {
    let specs = kind.columns();
    let row_err = |row: usize, problem: String| ImportError::Row {
        file: file.to_path_buf(),
        place: places[row].clone(),
        problem,
    };
    let mut out = Vec::with_capacity(specs.len());
    for (s, column) in specs.iter().zip(cells) {
        let Some(column) = column else {
            out.push(match s.check {
                Check::Time => Values::Time(vec![None; places.len()]),
                _ => Values::Text(vec![None; places.len()]),
            });
            continue;
        };
        match s.check {
            Check::Time => {
                let mut v = Vec::with_capacity(column.len());
                for (row, cell) in column.iter().enumerate() {
                    v.push(match cell {
                        None => None,
                        Some(c) => Some(
                            parse_time(c).map_err(|p| row_err(row, format!("{}: {p}", s.name)))?,
                        ),
                    });
                }
                out.push(Values::Time(v));
            }
            check => {
                let mut v = Vec::with_capacity(column.len());
                for (row, cell) in column.into_iter().enumerate() {
                    let text = match cell {
                        None if s.required => {
                            return Err(row_err(row, format!("{} is empty", s.name)));
                        }
                        None => None,
                        Some(Cell::Str(t)) => Some(t),
                        Some(Cell::Int(i)) if i >= 0 => Some(i.to_string()),
                        Some(Cell::Int(i)) | Some(Cell::Micros(i)) => {
                            return Err(row_err(
                                row,
                                format!("{} {i} is not a Flickr photo id", s.name),
                            ));
                        }
                    };
                    if let Some(t) = &text {
                        match check {
                            Check::Nsid if !is_nsid(t) => {
                                return Err(row_err(
                                    row,
                                    format!(
                                        "{} {t:?} is not a Flickr NSID (expected e.g. 38134034@N04)",
                                        s.name
                                    ),
                                ));
                            }
                            Check::PhotoId if !is_photo_id(t) => {
                                return Err(row_err(
                                    row,
                                    format!(
                                        "{} {t:?} is not a Flickr photo id (expected up to 20 decimal digits)",
                                        s.name
                                    ),
                                ));
                            }
                            _ => {}
                        }
                    }
                    v.push(text);
                }
                out.push(Values::Text(v));
            }
        }
    }
    if kind == ImportKind::Dismissals
        && let (Values::Text(photos), Values::Text(users)) = (&out[1], &out[2])
    {
        for (row, (p, u)) in photos.iter().zip(users).enumerate() {
            if p.is_some() == u.is_some() {
                return Err(row_err(
                    row,
                    "a dismissal needs exactly one of photo_id or dismissed_user_id".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn build_batch(
    kind: ImportKind,
    values: Vec<Values>,
    height: usize,
) -> Result<RecordBatch, ImportError> {
    let table = kind.table();
    let schema = table.schema();
    let specs = kind.columns();
    let mut columns = Vec::new();
    for field in schema.fields() {
        let name = PlSmallStr::from_str(field.name());
        let given = specs
            .iter()
            .position(|s| s.name == field.name())
            .map(|i| &values[i]);
        columns.push(match (given, field.data_type()) {
            (Some(Values::Text(v)), _) => Column::new(name, v.clone()),
            (Some(Values::Time(v)), _) => Column::new(name, v.clone()),
            (None, DataType::Utf8) => Column::new(name, vec![None::<&str>; height]),
            (None, _) => Column::new(name, vec![None::<i64>; height]),
        });
    }
    let df = DataFrame::new_infer_height(columns).map_err(FrameError::from)?;
    Ok(frame_to_batch(&df, &schema)?)
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
) -> Result<ImportReport, ImportError> {
    let rows_read = new.iter().map(|b| b.num_rows()).sum();
    let old = storage.read_raw(table).await?.unwrap_or_default();
    let rows_before = old.iter().map(|b| b.num_rows()).sum();
    let mut all = new;
    all.extend(old);
    let report = replace_raw(storage, table, all).await?;
    Ok(ImportReport {
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
) -> Result<ImportReport, ImportError> {
    let schema = table.schema();
    let rows_read = rows.iter().map(|b| b.num_rows()).sum();
    let df = dedupe_sorted(&batches_to_frame(&rows, &schema)?, table)?;
    let batch = frame_to_batch(&df, &schema)?;
    let rows_after = batch.num_rows();
    storage
        .write_parquet(&table.raw_path(), table, &[batch])
        .await?;
    Ok(ImportReport {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: ImportKind, name: &str, text: &str) -> Result<RecordBatch, ImportError> {
        parse_file(kind, Path::new(name), Bytes::from(text.to_string()))
    }

    #[test]
    fn favorites_csv_with_optional_columns_parses() {
        let b = parse(
            ImportKind::Favorites,
            "f.csv",
            "user_id,photo_id,owner_id,date_faved\n1@N01,10,2@N01,1639261222\n1@N01,11,,2021-12-11T22:20:22Z\n",
        )
        .expect("valid");
        assert_eq!(b.num_rows(), 2);
        let dates = b
            .column(3)
            .as_any()
            .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
            .expect("timestamp");
        assert_eq!(dates.value(0), 1_639_261_222_000_000);
        assert_eq!(dates.value(1), 1_639_261_222_000_000);
        assert!(b.column(2).is_null(1));
    }

    #[test]
    fn missing_required_column_names_it_and_what_was_found() {
        let err =
            parse(ImportKind::Favorites, "f.csv", "user_id,owner\n1@N01,x\n").expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("required column photo_id is missing"), "{msg}");
        assert!(msg.contains("found columns: user_id, owner"), "{msg}");
    }

    #[test]
    fn malformed_row_reports_its_line() {
        let err = parse(
            ImportKind::Favorites,
            "f.csv",
            "user_id,photo_id\n1@N01,10\n1@N01,abc\n",
        )
        .expect_err("bad photo id");
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("\"abc\" is not a Flickr photo id"), "{msg}");
        let err = parse(
            ImportKind::Favorites,
            "f.csv",
            "user_id,photo_id\n1@N01,10,extra\n",
        )
        .expect_err("ragged");
        assert!(err.to_string().contains("line 2: has 3 fields"), "{err}");
        let err = parse(
            ImportKind::Favorites,
            "f.csv",
            "user_id,photo_id,date_faved\n1@N01,10,yesterday\n",
        )
        .expect_err("bad time");
        assert!(
            err.to_string()
                .contains("line 2: date_faved: \"yesterday\" is not a time"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_and_unknown_format_are_refused() {
        assert!(matches!(
            parse(ImportKind::Tracked, "t.csv", "user_id\n"),
            Err(ImportError::Empty { .. })
        ));
        assert!(matches!(
            parse(ImportKind::Tracked, "t.csv", ""),
            Err(ImportError::MissingColumn { .. })
        ));
        assert!(matches!(
            parse(ImportKind::Tracked, "t.json", "{}"),
            Err(ImportError::Format { .. })
        ));
    }

    #[test]
    fn photos_metadata_keeps_text_as_given() {
        let b = parse(
            ImportKind::Photos,
            "p.csv",
            "photo_id,owner_id,title,owner_name\n30,4@N01,\"<script>alert(1)</script>\",<b>Dee</b>\n",
        )
        .expect("valid");
        use arrow_array::cast::AsArray;
        assert_eq!(
            b.column(3).as_string::<i32>().value(0),
            "<script>alert(1)</script>"
        );
        let err =
            parse(ImportKind::Photos, "p.csv", "photo_id,title\n30,x\n").expect_err("no owner");
        assert!(err.to_string().contains("owner_id"), "{err}");
    }

    #[test]
    fn dismissal_needs_exactly_one_target() {
        let err = parse(
            ImportKind::Dismissals,
            "d.csv",
            "user_id,photo_id,dismissed_user_id\n1@N01,,\n",
        )
        .expect_err("neither");
        assert!(err.to_string().contains("exactly one"), "{err}");
        let ok = parse(
            ImportKind::Dismissals,
            "d.csv",
            "user_id,photo_id,dismissed_user_id\n1@N01,5,\n1@N01,,2@N01\n",
        )
        .expect("valid");
        assert_eq!(ok.num_rows(), 2);
    }
}
