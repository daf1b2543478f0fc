//! Object storage and Parquet I/O.
//!
//! Files: [`storage`] (the handle and plain object operations), [`parquet`]
//! (Parquet writes, reads projected on the contract, footer checks),
//! [`conditional`] (conditional writes and their lock-file emulation on a
//! local directory), [`layout`] (the hash buckets of the large raw tables),
//! [`select`] (reads of the rows of some users or photos), [`scan`] (a
//! function folded over a few columns of every object of a raw table), [`staged`] (large
//! objects written from a file), [`error`].
//!
//! Every byte the pipeline reads or writes goes through one `Arc<dyn ObjectStore>`,
//! built from `storage.url`, so the same code path runs on a local directory and on
//! S3. Parquet is written with the `parquet` crate's async writer straight into the
//! store (zstd, column-chunk statistics on every top-level column) and read back with its async reader. Reads are
//! checked against the table contract in [`crate::model`].
//!
//! Atomicity: a single `put` (or a completed multipart upload) is atomic on S3, and
//! `LocalFileSystem` writes to a temporary file then renames it. Each small raw
//! table is one object, each bucket of a large one is one object (and a user's
//! rows are all in one bucket), and the publish pointer is one object, which is
//! what makes a user's update and a publish all-or-nothing.

pub mod conditional;
pub mod debris;
pub mod error;
pub mod layout;
pub mod parquet;
pub mod scan;
pub mod select;
pub mod staged;
pub mod storage;

pub use conditional::Version;
pub use debris::LOCK_SUFFIX;
pub use error::StoreError;
pub use layout::{DEFAULT_BUCKETS, Layout, MAX_BUCKETS};
pub use parquet::ParquetEncoder;
pub use scan::Batches;
pub use select::{IdSet, Select};
pub use staged::Staged;
pub use storage::{Storage, json_bytes};

#[cfg(test)]
mod tests {
    use object_store::path::Path;
    use parquet::errors::ParquetError;

    use super::error::{StoreError, encode_error};

    #[test]
    fn a_refused_permission_says_so_and_names_the_path() {
        let path = Path::from("raw/favorites/data.parquet");
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "os error 13");
        // As LocalFileSystem reports a failed write: a generic error around io.
        let local = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(io),
        };
        let err = StoreError::object(&path, local).to_string();
        assert!(
            err.starts_with("permission denied on raw/favorites/data.parquet"),
            "{err}"
        );
        assert!(!err.contains("truncated or not Parquet"), "{err}");
        // As S3 reports a 403.
        let s3 = object_store::Error::PermissionDenied {
            path: path.to_string(),
            source: "403 Forbidden".into(),
        };
        let err = StoreError::object(&path, s3).to_string();
        assert!(err.starts_with("permission denied on"), "{err}");
        // Inside a Parquet write.
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "os error 13");
        let err = encode_error(&path, ParquetError::External(Box::new(io))).to_string();
        assert!(err.starts_with("permission denied on"), "{err}");
    }
}
