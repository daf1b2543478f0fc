//! Reading a CSV or Parquet file into cells, column by column, with the place
//! (line or row) of each row for messages.

use std::path::Path;

use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;

use super::error::ImportError;
use super::kind::{Cell, Cells, Check, ImportKind, check_unique, missing};
use crate::text::capped;

pub fn read_csv(
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
            problem: format!("cannot read the header: {}", capped(&e.to_string(), 200)),
        })?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    check_unique(file, &headers)?;
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
                    _ => capped(&e.to_string(), 200),
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

pub fn read_parquet(
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
    check_unique(file, &found)?;
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
