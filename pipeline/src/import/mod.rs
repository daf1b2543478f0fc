//! Import: loads CSV or Parquet files into the raw tables.
//!
//! Imported rows land in the same raw tables the extractor writes. A file is
//! validated completely before anything is written: every id is checked against
//! the NSID and photo-id shapes, every time is parsed, and the first bad row is
//! reported with its line (CSV) or row (Parquet) number. Only then are the new rows
//! merged with the stored table (Polars: concatenate, drop duplicate keys, sort) and
//! written back as one object, so a failed import leaves storage untouched.

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use bytes::Bytes;
use polars::prelude::{Column, DataFrame, PlSmallStr};

mod error;
mod kind;
mod read;

use crate::frame::{FrameError, frame_to_batch};
use crate::model::{is_nsid, is_photo_id};
use crate::raw::{MergeReport, merge_raw};
use crate::text::quoted;

use crate::store::Storage;
pub use error::ImportError;
pub use kind::ImportKind;
use kind::{Cell, Cells, Check};
use read::{read_csv, read_parquet};

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
) -> Result<MergeReport, ImportError> {
    let bytes = tokio::fs::read(file).await.map_err(|e| ImportError::Read {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let batch = parse_file(kind, file, Bytes::from(bytes))?;
    Ok(merge_raw(storage, kind.table(), vec![batch]).await?)
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
                .map_err(|_| format!("{} is not a time (expected unix seconds or RFC 3339, e.g. 2021-12-11T22:20:22Z)", quoted(s)))
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
                                        "{} {} is not a Flickr NSID (expected e.g. 38134034@N04)",
                                        s.name,
                                        quoted(t)
                                    ),
                                ));
                            }
                            Check::PhotoId if !is_photo_id(t) => {
                                return Err(row_err(
                                    row,
                                    format!(
                                        "{} {} is not a Flickr photo id (expected up to 20 decimal digits)",
                                        s.name,
                                        quoted(t)
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    use crate::model::columns::{FavoritesColumns, PhotosColumns};

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
        let cols = FavoritesColumns::new(&b).expect("favorites columns");
        let dates = cols.date_faved;
        assert_eq!(dates.value(0), 1_639_261_222_000_000);
        assert_eq!(dates.value(1), 1_639_261_222_000_000);
        assert!(cols.owner_id.is_null(1));
    }

    #[test]
    fn duplicated_columns_are_refused_naming_both_positions() {
        let err = parse(
            ImportKind::Favorites,
            "f.csv",
            "user_id,photo_id,user_id\n1@N01,10,2@N01\n",
        )
        .expect_err("duplicate");
        let msg = err.to_string();
        assert!(
            msg.contains("columns 1 and 3 are both named \"user_id\""),
            "{msg}"
        );
        // The same in a Parquet file (Arrow allows repeated names).
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("user_id", DataType::Utf8, false),
            arrow_schema::Field::new("photo_id", DataType::Utf8, false),
            arrow_schema::Field::new("photo_id", DataType::Utf8, false),
        ]));
        let col = |v: &str| -> arrow_array::ArrayRef {
            std::sync::Arc::new(arrow_array::StringArray::from(vec![v]))
        };
        let batch = RecordBatch::try_new(schema.clone(), vec![col("1@N01"), col("10"), col("11")])
            .expect("batch");
        let mut bytes = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).expect("w");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let err = parse_file(ImportKind::Favorites, Path::new("f.parquet"), bytes.into())
            .expect_err("duplicate");
        assert!(
            err.to_string()
                .contains("columns 2 and 3 are both named \"photo_id\""),
            "{err}"
        );
    }

    #[test]
    fn a_huge_header_or_cell_gives_a_short_message() {
        let header = format!("user_id,{}\n1@N01\n", "x".repeat(10_000_000));
        let err = parse(ImportKind::Favorites, "f.csv", &header).expect_err("no photo_id");
        let msg = err.to_string();
        assert!(msg.contains("required column photo_id is missing"), "{msg}");
        assert!(msg.len() < 600, "{} bytes", msg.len());
        let cell = format!("user_id,photo_id\n1@N01,{}\n", "9x".repeat(5_000_000));
        let err = parse(ImportKind::Favorites, "f.csv", &cell).expect_err("bad id");
        let msg = err.to_string();
        assert!(msg.contains("is not a Flickr photo id"), "{msg}");
        assert!(msg.contains("10000000 bytes in all"), "{msg}");
        assert!(msg.len() < 400, "{} bytes", msg.len());
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
        assert_eq!(
            PhotosColumns::new(&b)
                .expect("photos columns")
                .title
                .value(0),
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
