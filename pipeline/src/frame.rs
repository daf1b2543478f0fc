//! Conversion between Arrow record batches (what Parquet reads and writes) and
//! Polars data frames (where the table work happens).
//!
//! Polars carries its own Arrow implementation, so batches are converted column by
//! column for the types the table contract uses: strings, 32/64-bit integers,
//! doubles and UTC microsecond timestamps (held as `i64` microseconds on the Polars
//! side; [`crate::sql`] casts them to datetimes for analysts). List-of-string
//! columns (output tables only) become Polars lists, one way.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use polars::prelude::{Column, DataFrame, IntoColumn, NamedFrom, PlSmallStr, Series};

/// A column of a type the bridge does not handle, or a Polars/Arrow failure.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Polars refused an operation.
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    /// Arrow refused to build a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The column type is not one the contract uses.
    #[error("column {column}: type {data_type} is not supported by the frame bridge")]
    Unsupported {
        /// Column name.
        column: String,
        /// Its type.
        data_type: DataType,
    },
}

fn downcast<'a, T: 'static>(array: &'a ArrayRef, column: &str) -> Result<&'a T, FrameError> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| FrameError::Unsupported {
            column: column.to_string(),
            data_type: array.data_type().clone(),
        })
}

/// Builds one data frame from batches that all share `schema`.
pub fn batches_to_frame(
    batches: &[RecordBatch],
    schema: &SchemaRef,
) -> Result<DataFrame, FrameError> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let name = PlSmallStr::from_str(field.name());
        let arrays = batches.iter().map(|b| b.column(i));
        let column = match field.data_type() {
            DataType::Utf8 => {
                let mut v: Vec<Option<&str>> = Vec::new();
                for a in arrays {
                    v.extend(downcast::<StringArray>(a, field.name())?.iter());
                }
                Column::new(name, v)
            }
            DataType::Int32 => {
                let mut v: Vec<Option<i32>> = Vec::new();
                for a in arrays {
                    v.extend(downcast::<Int32Array>(a, field.name())?.iter());
                }
                Column::new(name, v)
            }
            DataType::Int64 => {
                let mut v: Vec<Option<i64>> = Vec::new();
                for a in arrays {
                    v.extend(downcast::<Int64Array>(a, field.name())?.iter());
                }
                Column::new(name, v)
            }
            DataType::Float64 => {
                let mut v: Vec<Option<f64>> = Vec::new();
                for a in arrays {
                    v.extend(downcast::<Float64Array>(a, field.name())?.iter());
                }
                Column::new(name, v)
            }
            DataType::Boolean => {
                let mut v: Vec<Option<bool>> = Vec::new();
                for a in arrays {
                    v.extend(downcast::<BooleanArray>(a, field.name())?.iter());
                }
                Column::new(name, v)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let mut v: Vec<Option<i64>> = Vec::new();
                for a in arrays {
                    v.extend(downcast::<TimestampMicrosecondArray>(a, field.name())?.iter());
                }
                Column::new(name, v)
            }
            DataType::List(item) if item.data_type() == &DataType::Utf8 => {
                let mut v: Vec<Series> = Vec::new();
                for a in arrays {
                    let lists = downcast::<ListArray>(a, field.name())?;
                    for i in 0..lists.len() {
                        let inner = lists.value(i);
                        let values: Vec<Option<&str>> = if lists.is_null(i) {
                            Vec::new()
                        } else {
                            downcast::<StringArray>(&inner, field.name())?
                                .iter()
                                .collect()
                        };
                        v.push(Series::new(PlSmallStr::EMPTY, values));
                    }
                }
                Series::new(name, v)
                    .cast(&polars::prelude::DataType::List(Box::new(
                        polars::prelude::DataType::String,
                    )))?
                    .into_column()
            }
            other => {
                return Err(FrameError::Unsupported {
                    column: field.name().clone(),
                    data_type: other.clone(),
                });
            }
        };
        columns.push(column);
    }
    Ok(DataFrame::new_infer_height(columns)?)
}

/// Builds one batch of `schema` from the frame's columns of the same names.
pub fn frame_to_batch(df: &DataFrame, schema: &SchemaRef) -> Result<RecordBatch, FrameError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let c = df.column(field.name())?;
        let array: ArrayRef = match field.data_type() {
            DataType::Utf8 => Arc::new(c.str()?.iter().collect::<StringArray>()),
            DataType::Int32 => Arc::new(c.i32()?.iter().collect::<Int32Array>()),
            DataType::Int64 => Arc::new(c.i64()?.iter().collect::<Int64Array>()),
            DataType::Float64 => Arc::new(c.f64()?.iter().collect::<Float64Array>()),
            DataType::Boolean => Arc::new(c.bool()?.iter().collect::<BooleanArray>()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
                c.i64()?
                    .iter()
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone_opt(tz.clone()),
            ),
            other => {
                return Err(FrameError::Unsupported {
                    column: field.name().clone(),
                    data_type: other.clone(),
                });
            }
        };
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Table;

    #[test]
    fn favorites_round_trip_through_polars_unchanged() {
        let schema = Table::Favorites.schema();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["1@N01", "2@N01"])),
                Arc::new(StringArray::from(vec!["10", "11"])),
                Arc::new(StringArray::from(vec![Some("3@N01"), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_639_261_222_000_000), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .expect("valid batch");
        let df = batches_to_frame(std::slice::from_ref(&batch), &schema).expect("to frame");
        assert_eq!(df.height(), 2);
        let back = frame_to_batch(&df, &schema).expect("to batch");
        assert_eq!(back, batch);
    }

    #[test]
    fn every_contract_column_type_crosses_the_bridge() {
        // Every table reaches Polars (`faverecs sql`); raw tables come back too
        // (their writes deduplicate through Polars).
        for table in Table::ALL {
            let schema = table.schema();
            let empty = RecordBatch::new_empty(schema.clone());
            let df = batches_to_frame(std::slice::from_ref(&empty), &schema)
                .unwrap_or_else(|e| panic!("{}: {e}", table.name()));
            if Table::RAW.contains(&table) {
                frame_to_batch(&df, &schema).unwrap_or_else(|e| panic!("{}: {e}", table.name()));
            }
        }
    }
}
