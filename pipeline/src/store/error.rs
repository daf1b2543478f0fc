//! Why a storage operation failed, with the object it concerns.

use object_store::path::Path;
use parquet::errors::ParquetError;

/// A storage failure, with the object it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened from the settings.
    #[error("cannot open storage {url}: {reason}")]
    Open {
        /// The storage URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The object does not exist.
    #[error("{path} not found in storage")]
    NotFound {
        /// The object path.
        path: String,
    },
    /// The object store failed (network, permissions, disk).
    #[error("storage error on {path}: {source}")]
    Object {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Storage refused access: a file-system permission, or an S3 policy.
    #[error(
        "permission denied on {path}: check the owner and mode of the storage directory, or the IAM policy of the bucket"
    )]
    PermissionDenied {
        /// The object path.
        path: String,
    },
    /// A batch could not be encoded as Parquet (a bug: batches are built from
    /// the contract).
    #[error("cannot encode {path} as Parquet: {source}")]
    Encode {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file could not be decoded.
    #[error("cannot read {path} as Parquet (the file may be truncated or not Parquet): {source}")]
    Parquet {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file does not match the table contract.
    #[error("{path}: {problem} (table {table}; see docs/data-model.md for its schema)")]
    Schema {
        /// The object path.
        path: String,
        /// The table it should hold.
        table: &'static str,
        /// What does not match.
        problem: String,
    },
    /// A local file could not be removed.
    #[error("cannot remove {path}: {source}")]
    Local {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A conditional write found the object changed since it was read: another
    /// writer got there first.
    #[error("{path} was changed by another writer since it was read")]
    Conflict {
        /// The object path.
        path: String,
    },
    /// A bucketed raw table's layout object is unusable, or kept changing.
    #[error("{path} {problem}")]
    Layout {
        /// The layout object.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A JSON object could not be encoded or decoded.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The object path.
        path: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// The error for an object_store failure on `path`.
    pub(crate) fn object(path: &Path, source: object_store::Error) -> Self {
        if denied(&source) {
            return StoreError::PermissionDenied {
                path: path.to_string(),
            };
        }
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                path: path.to_string(),
            },
            source => StoreError::Object {
                path: path.to_string(),
                source,
            },
        }
    }
}

/// Whether an error is, at its root, a refused permission.
pub(crate) fn denied(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(os) = c.downcast_ref::<object_store::Error>()
            && matches!(os, object_store::Error::PermissionDenied { .. })
        {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A Parquet write error: a refused permission underneath says so.
pub(crate) fn encode_error(path: &Path, source: ParquetError) -> StoreError {
    if denied(&source) {
        StoreError::PermissionDenied {
            path: path.to_string(),
        }
    } else {
        StoreError::Encode {
            path: path.to_string(),
            source,
        }
    }
}
