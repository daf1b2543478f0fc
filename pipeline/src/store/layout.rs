//! The bucketed layout of the large raw tables (`favorites`, `contacts`,
//! `dismissals`): hash buckets by user, so a write rewrites only the buckets of
//! the users it touches.
//!
//! ```text
//! raw/<table>/_layout.json                          which generation is current, and its bucket count
//! raw/<table>/bucket=NNNN/<generation>.parquet      bucket NNNN: the rows of users u with
//!                                                   FNV-1a(u) mod buckets = NNNN, sorted by key
//! ```
//!
//! - A user's bucket is [`crate::shard::shard_of`] of their NSID, the hash the
//!   shards use: when the score's shard count divides the bucket count, shard i
//!   owns exactly the buckets b with b mod N = i.
//! - Every bucket of a generation has a file, empty or not, written before the
//!   layout object names the generation. A reader that finds one missing knows
//!   the layout changed under it, and reads again.
//! - A new generation (a first write, the migration of a single-file table, or
//!   a change of bucket count by `faverecs raw rebucket`) is committed by one
//!   conditional put of the layout object, so of two writers doing it at once
//!   exactly one wins and the other redoes its change on the winner's table.
//! - The layout object's name starts with `_`, which Athena and Hive skip.

use arrow_array::RecordBatch;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::model::Table;
use crate::shard::shard_of;

use super::conditional::Version;
use super::error::StoreError;
use super::select::Select;
use super::storage::Storage;

/// The most buckets a table may have (`NNNN` has four digits).
pub use crate::config::MAX_RAW_BUCKETS as MAX_BUCKETS;

/// The bucket count when `storage.raw_buckets` is not given (and of
/// [`Storage::from_store`]).
pub use crate::config::DEFAULT_RAW_BUCKETS as DEFAULT_BUCKETS;

pub(crate) use super::storage::CONCURRENCY;

/// What `_layout.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The bucket count.
    pub buckets: u32,
    /// Names this generation's files: `bucket=NNNN/<generation>.parquet`.
    pub generation: String,
    /// When the generation was written.
    pub created_at: DateTime<Utc>,
}

impl Layout {
    /// A new generation of `buckets` buckets (clamped to 1..=[`MAX_BUCKETS`]).
    pub fn new(buckets: u32) -> Self {
        use rand::RngCore;
        let created_at = Utc::now();
        let buckets = buckets.clamp(1, MAX_BUCKETS);
        Self {
            buckets,
            generation: format!(
                "g{}-{buckets}-{:08x}",
                created_at.format("%Y%m%dT%H%M%SZ"),
                rand::rng().next_u32()
            ),
            created_at,
        }
    }

    /// The bucket that holds `user_id`'s rows.
    pub fn bucket_of(&self, user_id: &str) -> u32 {
        shard_of(user_id, self.buckets)
    }

    /// Where bucket `b` of this generation is stored.
    pub fn bucket_path(&self, table: Table, b: u32) -> Path {
        Path::from(format!(
            "{}/{}.parquet",
            bucket_dir(table, b),
            self.generation
        ))
    }

    /// Every bucket's path, in bucket order.
    pub fn bucket_paths(&self, table: Table) -> Vec<Path> {
        (0..self.buckets)
            .map(|b| self.bucket_path(table, b))
            .collect()
    }
}

/// The folder of bucket `b` of `table`.
pub fn bucket_dir(table: Table, b: u32) -> String {
    format!("raw/{}/bucket={b:04}", table.name())
}

/// Where `table`'s layout object lives.
pub fn layout_path(table: Table) -> Path {
    Path::from(format!("raw/{}/_layout.json", table.name()))
}

/// How many times a reader starts again after the layout changed under it.
pub(crate) const READ_ATTEMPTS: u32 = 5;

impl Storage {
    /// `table`'s layout and the version it was read at, or `None` when the
    /// table has no layout object (never written, or still one legacy file).
    pub async fn raw_layout(&self, table: Table) -> Result<Option<(Layout, Version)>, StoreError> {
        let path = layout_path(table);
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(StoreError::object(&path, e)),
        };
        let version = Version::At(object_store::UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        });
        let bytes = got
            .bytes()
            .await
            .map_err(|e| StoreError::object(&path, e))?;
        let layout: Layout = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: path.to_string(),
            source,
        })?;
        if layout.buckets == 0 || layout.buckets > MAX_BUCKETS {
            return Err(StoreError::Layout {
                path: path.to_string(),
                problem: format!(
                    "names {} buckets (expected 1 to {MAX_BUCKETS})",
                    layout.buckets
                ),
            });
        }
        Ok(Some((layout, version)))
    }

    /// Reads every bucket of a bucketed raw table, in bucket order, or with
    /// `select` only the rows it chooses (and, when it chooses by `user_id`,
    /// only the buckets of its users); `None` when the table has never been
    /// written. A table still in one legacy file is read whole (or filtered).
    /// A layout replaced while it is read is read again.
    pub(crate) async fn read_raw_buckets(
        &self,
        table: Table,
        select: Option<&Select>,
    ) -> Result<Option<Vec<RecordBatch>>, StoreError> {
        let read_object = |path: Path| async move {
            match select {
                Some(select) => self.read_object_where(&path, table, select).await,
                None => Ok(self
                    .read_object_versioned(&path, table)
                    .await?
                    .map(|(rows, _)| rows)),
            }
        };
        for _ in 0..READ_ATTEMPTS {
            let Some((layout, _)) = self.raw_layout(table).await? else {
                return read_object(table.raw_path()).await;
            };
            let paths: Vec<Path> = match select {
                Some(s) if s.column == crate::model::col::USER_ID => {
                    let mut buckets: Vec<u32> = s.ids.iter().map(|u| layout.bucket_of(u)).collect();
                    buckets.sort_unstable();
                    buckets.dedup();
                    buckets
                        .into_iter()
                        .map(|b| layout.bucket_path(table, b))
                        .collect()
                }
                _ => layout.bucket_paths(table),
            };
            let read: Vec<_> = futures::stream::iter(paths)
                .map(read_object)
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            if read.iter().all(Option::is_some) {
                return Ok(Some(read.into_iter().flatten().flatten().collect()));
            }
            tracing::info!(
                table = table.name(),
                "the table's layout changed while it was read; reading it again"
            );
        }
        Err(StoreError::Layout {
            path: layout_path(table).to_string(),
            problem: format!("changed {READ_ATTEMPTS} times while it was read; try again"),
        })
    }

    /// The Parquet objects of a bucketed raw table that no reader uses, last
    /// written more than `grace` before `now`: the files of a generation that
    /// was replaced or never committed (a writer killed before its commit, or
    /// before it removed what its commit replaced), and the single file of a
    /// table already in buckets. Younger ones may belong to a writer at work.
    pub async fn stale_raw_objects(
        &self,
        table: Table,
        grace: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Path>, StoreError> {
        let layout = self.raw_layout(table).await?.map(|(l, _)| l);
        let current = layout
            .as_ref()
            .map(|l| format!("/{}.parquet", l.generation));
        let legacy = table.raw_path();
        let mut stale = Vec::new();
        for path in self
            .list_files(&Path::from(format!("raw/{}", table.name())))
            .await?
        {
            let name = path.as_ref();
            let used = match &current {
                Some(current) => name.ends_with(current.as_str()),
                None => path == legacy,
            };
            if used || !name.ends_with(".parquet") {
                continue;
            }
            let age = now - self.last_modified(&path).await?;
            if age.to_std().is_ok_and(|age| age > grace) {
                stale.push(path);
            }
        }
        stale.sort();
        Ok(stale)
    }

    /// Rows in the stored Parquet objects `paths`, from their footers (32 read
    /// at a time: each is a HEAD and one small GET).
    pub(crate) async fn footer_rows(
        &self,
        table: Table,
        paths: &[Path],
    ) -> Result<u64, StoreError> {
        let counts: Vec<u64> = futures::stream::iter(paths)
            .map(|p| self.check_parquet(p, table))
            .buffer_unordered(4 * CONCURRENCY)
            .try_collect()
            .await?;
        Ok(counts.iter().sum())
    }
}
