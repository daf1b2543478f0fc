//! Why an import was refused.

use std::path::PathBuf;

use crate::frame::FrameError;
use crate::raw::RawTableError;

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
    /// Two columns have the same name.
    #[error(
        "{file}: columns {first} and {second} are both named {column}; rename or drop one (nothing was imported)"
    )]
    DuplicateColumn {
        /// Input file.
        file: PathBuf,
        /// The name, quoted.
        column: String,
        /// 1-based position of the first.
        first: usize,
        /// 1-based position of the second.
        second: usize,
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
    /// Reading the stored table or writing the merged one failed.
    #[error(transparent)]
    Write(#[from] RawTableError),
    /// The validated rows could not be built into a batch.
    #[error("building rows: {0}")]
    Frame(#[from] FrameError),
}
