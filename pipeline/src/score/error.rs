//! Why a score run failed.

use crate::frame::FrameError;
use crate::model::columns::ColumnError;
use crate::store::StoreError;

/// Why scoring could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// There are no favourites at all.
    #[error(
        "the favorites table is empty or missing; import some with `faverecs import favorites FILE` (or run the extractor) first"
    )]
    NoFavorites,
    /// Nobody to score.
    #[error("{}", if *all_users { "no user has a favourite to score" } else { "there are no tracked users to score; add some with `faverecs import tracked FILE`, or pass --all-users to score every favoriter" })]
    NoTargets {
        /// Whether `--all-users` was given.
        all_users: bool,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A table lacks a contract column, or holds it with another type.
    #[error(transparent)]
    Column(#[from] ColumnError),
    /// Polars or Arrow failed.
    #[error("preparing tables: {0}")]
    Frame(#[from] FrameError),
    /// The run's serving layout could not be built or stored.
    #[error(transparent)]
    Serving(#[from] crate::serving::LayoutError),
    /// A background task died (a bug: it panicked).
    #[error("{what} failed: {reason}")]
    Task {
        /// What the task was doing.
        what: &'static str,
        /// The runtime's account of it.
        reason: String,
    },
    /// A sharded run's step cannot run or finish (see the message).
    #[error("{0}")]
    Shard(String),
    /// The thread pool could not be built.
    #[error("cannot start {threads} scoring threads: {reason}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// Why not.
        reason: String,
    },
}

impl From<polars::prelude::PolarsError> for ScoreError {
    fn from(e: polars::prelude::PolarsError) -> Self {
        ScoreError::Frame(FrameError::Polars(e))
    }
}

impl From<arrow_schema::ArrowError> for ScoreError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        ScoreError::Frame(FrameError::Arrow(e))
    }
}
