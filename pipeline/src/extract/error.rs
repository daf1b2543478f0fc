//! Why an extract run stopped.

use crate::model::columns::ColumnError;
use crate::raw::RawTableError;
use crate::store::StoreError;

use super::client::FlickrError;

/// Why an extract run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Nobody to pull.
    #[error(
        "there are no tracked users; add some with `faverecs users add <flickr URL | NSID | username>`"
    )]
    NoTrackedUsers,
    /// Flickr refused the key, or it is missing.
    #[error(transparent)]
    Flickr(#[from] FlickrError),
    /// Too many users failed.
    #[error(
        "{failed} of {attempted} users failed ({percent:.0}% ≥ extract.max_failed_percent = {limit}%): the run is stopped and nothing was folded into the tables; finished users are kept and the same command resumes. First failures: {examples}"
    )]
    TooManyFailures {
        /// Users that failed.
        failed: usize,
        /// Users attempted.
        attempted: usize,
        /// failed / attempted.
        percent: f64,
        /// The limit.
        limit: u32,
        /// A few failures.
        examples: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored table lacks a contract column.
    #[error(transparent)]
    Column(#[from] ColumnError),
    /// Writing tables failed.
    #[error(transparent)]
    Write(#[from] RawTableError),
}
