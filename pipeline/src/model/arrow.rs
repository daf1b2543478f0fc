//! The Arrow helpers every stage shares: building the contract's string and
//! timestamp columns, and reading nullable values out of them.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, StringArray, TimestampMicrosecondArray};

/// A nullable `Utf8` column.
pub fn string_array(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

/// A nullable timestamp column in the contract's type (microseconds, UTC).
pub fn timestamp_array(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// Row `i` of a string column, `None` when null.
#[inline]
pub fn str_at(column: &StringArray, i: usize) -> Option<&str> {
    (!column.is_null(i)).then(|| column.value(i))
}

/// Row `i` of a string column as an owned string, `None` when null.
pub fn string_at(column: &StringArray, i: usize) -> Option<String> {
    str_at(column, i).map(str::to_string)
}

/// Row `i` of a timestamp column (microseconds), `None` when null.
#[inline]
pub fn time_at(column: &TimestampMicrosecondArray, i: usize) -> Option<i64> {
    (!column.is_null(i)).then(|| column.value(i))
}
