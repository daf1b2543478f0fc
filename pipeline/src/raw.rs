//! Writing the raw tables: merge new rows into a stored table, or replace it,
//! with duplicates removed by the table's key and rows sorted by it. A small
//! table is one object; a large one (favorites, contacts, dismissals) is hash
//! buckets by user ([`crate::store::layout`]), and a write rewrites only the
//! buckets of the users it touches, each in one conditional put. Import,
//! extract's fold, `users add`/`remove` and the demo all write raw tables
//! through here.

use std::collections::BTreeSet;

use arrow_array::{Array, RecordBatch, StringArray, UInt32Array};
use object_store::path::Path;
use polars::prelude::{DataFrame, SortMultipleOptions, UniqueKeepStrategy};

use crate::frame::{FrameError, batches_to_frame, frame_to_batch};
use crate::model::{Table, col};
use crate::shard::shard_of;
use crate::store::layout::{CONCURRENCY, layout_path};
use crate::store::{Layout, Storage, StoreError, Version, json_bytes};

/// Why a raw table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RawTableError {
    /// Storage failed while reading the old table or writing the new one.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Polars merge failed.
    #[error("merging rows: {0}")]
    Frame(#[from] FrameError),
    /// A stored table lacks a contract column.
    #[error(transparent)]
    Column(#[from] crate::model::columns::ColumnError),
    /// A change gave a bucket rows of a user who belongs in another (a bug).
    #[error(
        "internal error: a change of raw table {table} gave bucket {bucket} of {buckets} rows of user {user_id}, who belongs in another bucket; nothing of it was written"
    )]
    WrongBucket {
        /// The table.
        table: &'static str,
        /// The bucket written.
        bucket: u32,
        /// The bucket count.
        buckets: u32,
        /// The misplaced user.
        user_id: String,
    },
    /// Other writers changed the table every time this one tried.
    #[error(
        "raw table {table} was changed by other writers {attempts} times in a row while this one merged into it; nothing was written by this command, so run it again"
    )]
    LostRace {
        /// The table.
        table: &'static str,
        /// Attempts made.
        attempts: u32,
    },
}

/// What a write of a raw table did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// The raw table written.
    pub table: &'static str,
    /// Rows given (read from the file, for an import).
    pub rows_read: usize,
    /// Rows in the table before.
    pub rows_before: usize,
    /// Rows in the table after merging and removing duplicates.
    pub rows_after: usize,
}

/// How many times a read-modify-write of a raw table is tried before the writer
/// gives up and says it lost the race.
pub const MAX_ATTEMPTS: u32 = 10;

/// Merges `new` rows into a raw table and writes it back as one object.
///
/// Duplicates are rows with the same key ([`Table::key`]). New rows win over stored
/// ones (they are the fresher observation) and, within the new rows, the first
/// occurrence wins. The table is written sorted by its key, so the same rows always
/// give the same bytes. Safe against concurrent writers: see [`update_raw`].
pub async fn merge_raw(
    storage: &Storage,
    table: Table,
    new: Vec<RecordBatch>,
) -> Result<MergeReport, RawTableError> {
    let rows_read = new.iter().map(|b| b.num_rows()).sum();
    let report = if table.bucketed() {
        let users = user_ids(&new)?;
        // The new rows split by bucket, once per bucket count met.
        let mut split: Option<(u32, Vec<Vec<RecordBatch>>)> = None;
        update_raw_users(storage, table, &users, |bucket, old| {
            let parts = match &mut split {
                Some((count, parts)) if *count == bucket.count => parts,
                _ => {
                    &mut split
                        .insert((bucket.count, split_by_bucket(&new, bucket.count)?))
                        .1
                }
            };
            let mut all = parts[bucket.index as usize].clone();
            all.extend(old);
            Ok(all)
        })
        .await?
    } else {
        update_raw(storage, table, |old| {
            let mut all = new.clone();
            all.extend(old);
            Ok(all)
        })
        .await?
    };
    Ok(MergeReport {
        rows_read,
        ..report
    })
}

/// One bucket of a bucketed raw table, as a change sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Its index.
    pub index: u32,
    /// The table's bucket count.
    pub count: u32,
}

impl Bucket {
    /// Whether `user_id`'s rows belong in this bucket.
    pub fn holds(&self, user_id: &str) -> bool {
        shard_of(user_id, self.count) == self.index
    }
}

/// Rewrites the buckets of a bucketed raw table that hold `users`: `change`
/// gets one bucket and its stored rows, and returns the bucket's new rows
/// (duplicates by key are then removed, first wins, and rows sorted by key).
/// It must give only rows of users the bucket holds.
///
/// Each bucket is read with its version and written with a conditional put,
/// so a writer that lost a race on a bucket redoes that bucket alone; writers
/// of different buckets never wait for each other. The first write of a table,
/// and the first write of one still in its legacy single file, writes every
/// bucket (see [`crate::store::layout`]).
pub async fn update_raw_users<F>(
    storage: &Storage,
    table: Table,
    users: &BTreeSet<String>,
    change: F,
) -> Result<MergeReport, RawTableError>
where
    F: FnMut(Bucket, Vec<RecordBatch>) -> Result<Vec<RecordBatch>, RawTableError>,
{
    update_buckets(storage, table, Some(users), change).await
}

/// Rewrites a raw table from what is stored: `change` gets the stored rows and
/// returns the table's new rows (duplicates by key are then removed, first wins,
/// and rows sorted by key).
///
/// Optimistic concurrency: the table is read with its version and written with a
/// conditional put on that version. If another writer changed it in between,
/// the put fails, and the whole cycle (read, `change`, write) runs again on the
/// fresh table, so both writers' rows are kept. After [`MAX_ATTEMPTS`] lost
/// races the writer gives up with [`RawTableError::LostRace`] and has written
/// nothing.
pub async fn update_raw<F>(
    storage: &Storage,
    table: Table,
    mut change: F,
) -> Result<MergeReport, RawTableError>
where
    F: FnMut(Vec<RecordBatch>) -> Result<Vec<RecordBatch>, RawTableError>,
{
    if table.bucketed() {
        // Every bucket, each changed on its own rows.
        return update_buckets(storage, table, None, |_, old| change(old)).await;
    }
    let schema = table.schema();
    let path = table.raw_path();
    for attempt in 1..=MAX_ATTEMPTS {
        let (old, version) = match storage.read_raw_versioned(table).await {
            Ok(read) => read,
            // Replaced between the version and the read: read again.
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let old = old.unwrap_or_default();
        let rows_before = old.iter().map(|b| b.num_rows()).sum();
        let rows = change(old)?;
        let rows_read = rows.iter().map(|b| b.num_rows()).sum();
        let df = dedupe_sorted(&batches_to_frame(&rows, &schema)?, table)?;
        let batch = frame_to_batch(&df, &schema)?;
        match storage
            .put_parquet_if(&path, table, std::slice::from_ref(&batch), &version)
            .await
        {
            Ok(rows_after) => {
                return Ok(MergeReport {
                    table: table.name(),
                    rows_read,
                    rows_before,
                    rows_after: rows_after as usize,
                });
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::info!(
                    table = table.name(),
                    attempt,
                    "another writer changed the table first; merging again"
                );
                let jitter = u64::from(std::process::id() % 7 + attempt * 5);
                tokio::time::sleep(std::time::Duration::from_millis(jitter * 3)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RawTableError::LostRace {
        table: table.name(),
        attempts: MAX_ATTEMPTS,
    })
}

/// How a bucketed write ended: done, or it must start again on a changed
/// layout (another writer committed a new generation first).
type Attempt = Option<MergeReport>;

/// [`update_raw_users`], or every bucket when `users` is `None`.
async fn update_buckets<F>(
    storage: &Storage,
    table: Table,
    users: Option<&BTreeSet<String>>,
    mut change: F,
) -> Result<MergeReport, RawTableError>
where
    F: FnMut(Bucket, Vec<RecordBatch>) -> Result<Vec<RecordBatch>, RawTableError>,
{
    for attempt in 1..=MAX_ATTEMPTS {
        let done = match storage.raw_layout(table).await? {
            None => relayout(storage, table, None, users, &mut change).await?,
            Some((layout, _)) => {
                if layout.buckets != storage.raw_buckets() {
                    tracing::warn!(
                        table = table.name(),
                        stored = layout.buckets,
                        configured = storage.raw_buckets(),
                        "the table keeps its stored bucket count; `faverecs raw rebucket` changes it to storage.raw_buckets"
                    );
                }
                update_in_place(storage, table, &layout, users, &mut change).await?
            }
        };
        if let Some(report) = done {
            return Ok(report);
        }
        tracing::info!(
            table = table.name(),
            attempt,
            "another writer changed the table's layout first; writing again"
        );
        backoff(attempt).await;
    }
    Err(RawTableError::LostRace {
        table: table.name(),
        attempts: MAX_ATTEMPTS,
    })
}

/// Waits a little before a writer that lost a race tries again.
async fn backoff(attempt: u32) {
    let jitter = u64::from(std::process::id() % 7 + attempt * 5);
    tokio::time::sleep(std::time::Duration::from_millis(jitter * 3)).await;
}

/// Rows counted while a bucket is rewritten: before, given by the change,
/// written.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    before: usize,
    read: usize,
    after: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.before += o.before;
        self.read += o.read;
        self.after += o.after;
    }
}

/// Rewrites the touched buckets of the current generation, each with a
/// conditional put. [`Storage::write_concurrency`] buckets at a time (eight on
/// S3, one on a local directory) are read together, changed one after
/// another (`change` is not shared between threads), and written together, so
/// a write to S3 waits on about one round trip per eight buckets, and holds
/// that many buckets in memory.
async fn update_in_place<F>(
    storage: &Storage,
    table: Table,
    layout: &Layout,
    users: Option<&BTreeSet<String>>,
    change: &mut F,
) -> Result<Attempt, RawTableError>
where
    F: FnMut(Bucket, Vec<RecordBatch>) -> Result<Vec<RecordBatch>, RawTableError>,
{
    let touched: BTreeSet<u32> = match users {
        Some(users) => users.iter().map(|u| layout.bucket_of(u)).collect(),
        None => (0..layout.buckets).collect(),
    };
    let bucket = |index| Bucket {
        index,
        count: layout.buckets,
    };
    let mut counts = Counts::default();
    let order: Vec<u32> = touched.iter().copied().collect();
    for chunk in order.chunks(storage.write_concurrency()) {
        let paths: Vec<Path> = chunk
            .iter()
            .map(|&b| layout.bucket_path(table, b))
            .collect();
        let read = futures::future::try_join_all(
            paths
                .iter()
                .map(|p| storage.read_object_versioned(p, table)),
        )
        .await?;
        let mut changed = Vec::with_capacity(chunk.len());
        for (&index, got) in chunk.iter().zip(read) {
            // Every bucket of a committed generation exists: a missing one
            // means a new generation replaced this one.
            let Some((old, version)) = got else {
                return Ok(None);
            };
            let before = old.iter().map(|b| b.num_rows()).sum();
            let rows = change(bucket(index), old)?;
            let (read, batch) = bucket_batch(table, bucket(index), &rows)?;
            changed.push((index, before, read, batch, version));
        }
        let written = futures::future::join_all(changed.iter().zip(&paths).map(
            |((_, _, _, batch, version), path)| {
                storage.put_parquet_if(path, table, std::slice::from_ref(batch), version)
            },
        ))
        .await;
        for ((index, before, read, _, _), result) in changed.into_iter().zip(written) {
            match result {
                Ok(after) => {
                    counts += Counts {
                        before,
                        read,
                        after: after as usize,
                    }
                }
                // Another writer changed the bucket first: merge again.
                Err(StoreError::Conflict { .. }) => {
                    match retry_bucket(storage, table, layout, index, change).await? {
                        Some(c) => counts += c,
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    // A rebucket that committed while these buckets were written may have read
    // them before: then the change is made again in its generation (a change
    // applied twice gives the same rows).
    match storage.raw_layout(table).await? {
        Some((now, _)) if now.generation == layout.generation => {}
        _ => return Ok(None),
    }
    let untouched: Vec<Path> = (0..layout.buckets)
        .filter(|b| !touched.contains(b))
        .map(|b| layout.bucket_path(table, b))
        .collect();
    let rest = storage.footer_rows(table, &untouched).await? as usize;
    // The legacy file of a migration whose writer was killed after its commit,
    // and what that writer's commit left on a local directory.
    storage.delete(&table.raw_path()).await?;
    storage
        .clean_after_killed_writer(&layout_path(table))
        .await?;
    Ok(Some(MergeReport {
        table: table.name(),
        rows_read: counts.read,
        rows_before: counts.before + rest,
        rows_after: counts.after + rest,
    }))
}

/// Rewrites one bucket whose conditional put found it changed: read, change
/// and put again until a put lands, at most [`MAX_ATTEMPTS`] more times.
/// `None` when the bucket is gone (a new generation replaced this one).
async fn retry_bucket<F>(
    storage: &Storage,
    table: Table,
    layout: &Layout,
    index: u32,
    change: &mut F,
) -> Result<Option<Counts>, RawTableError>
where
    F: FnMut(Bucket, Vec<RecordBatch>) -> Result<Vec<RecordBatch>, RawTableError>,
{
    let bucket = Bucket {
        index,
        count: layout.buckets,
    };
    let path = layout.bucket_path(table, index);
    for attempt in 1..=MAX_ATTEMPTS {
        tracing::info!(
            table = table.name(),
            bucket = index,
            attempt,
            "another writer changed the bucket first; merging again"
        );
        backoff(attempt).await;
        let Some((old, version)) = storage.read_object_versioned(&path, table).await? else {
            return Ok(None);
        };
        let before = old.iter().map(|b| b.num_rows()).sum();
        let rows = change(bucket, old)?;
        let (read, batch) = bucket_batch(table, bucket, &rows)?;
        match storage
            .put_parquet_if(&path, table, std::slice::from_ref(&batch), &version)
            .await
        {
            Ok(after) => {
                return Ok(Some(Counts {
                    before,
                    read,
                    after: after as usize,
                }));
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(RawTableError::LostRace {
        table: table.name(),
        attempts: MAX_ATTEMPTS,
    })
}

/// Writes a whole new generation of a bucketed table from its current rows
/// (its legacy single file when `prior` is `None`, else every bucket of
/// `prior`), with `change` applied to the buckets of `users` (every bucket
/// when `None`), in [`Storage::raw_buckets`] buckets; then commits it by a
/// conditional put of the layout object, and removes what it replaced.
///
/// Nothing read may change before the commit: a writer that got in between
/// makes this one start again, and the files it wrote are removed.
async fn relayout<F>(
    storage: &Storage,
    table: Table,
    prior: Option<(Layout, Version)>,
    users: Option<&BTreeSet<String>>,
    change: &mut F,
) -> Result<Attempt, RawTableError>
where
    F: FnMut(Bucket, Vec<RecordBatch>) -> Result<Vec<RecordBatch>, RawTableError>,
{
    use futures::{StreamExt, TryStreamExt};
    let (old_rows, old_objects, layout_version) = match &prior {
        None => {
            let legacy = table.raw_path();
            match storage.read_object_versioned(&legacy, table).await? {
                Some((rows, v)) => (rows, vec![(legacy, v)], Version::Absent),
                None => (Vec::new(), vec![(legacy, Version::Absent)], Version::Absent),
            }
        }
        Some((old, version)) => {
            let read: Vec<_> = futures::stream::iter(old.bucket_paths(table))
                .map(|p| async move {
                    let got = storage.read_object_versioned(&p, table).await?;
                    Ok::<_, StoreError>(got.map(|(rows, v)| (p, rows, v)))
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            let mut rows = Vec::new();
            let mut objects = Vec::new();
            for got in read {
                let Some((p, r, v)) = got else {
                    return Ok(None);
                };
                rows.extend(r);
                objects.push((p, v));
            }
            (rows, objects, version.clone())
        }
    };
    let layout = Layout::new(storage.raw_buckets());
    let rows_before = old_rows.iter().map(|b| b.num_rows()).sum();
    let mut split = split_by_bucket(&old_rows, layout.buckets)?;
    drop(old_rows);
    let touched: Option<BTreeSet<u32>> =
        users.map(|u| u.iter().map(|u| layout.bucket_of(u)).collect());
    let mut written = Vec::new();
    let (mut rows_read, mut rows_after) = (0, 0);
    let committed = async {
        let indexes: Vec<u32> = (0..layout.buckets).collect();
        for chunk in indexes.chunks(storage.write_concurrency()) {
            // Changed and encoded one after another, stored together.
            let mut encoded = Vec::with_capacity(chunk.len());
            for &index in chunk {
                let bucket = Bucket {
                    index,
                    count: layout.buckets,
                };
                let old = std::mem::take(&mut split[index as usize]);
                let rows = match &touched {
                    Some(t) if !t.contains(&index) => old,
                    _ => change(bucket, old)?,
                };
                let (read, batch) = bucket_batch(table, bucket, &rows)?;
                rows_read += read;
                let path = layout.bucket_path(table, index);
                written.push(path.clone());
                encoded.push((path, batch));
            }
            let stored = futures::future::try_join_all(encoded.iter().map(|(path, batch)| {
                storage.put_parquet_if(path, table, std::slice::from_ref(batch), &Version::Absent)
            }))
            .await?;
            rows_after += stored.iter().sum::<u64>() as usize;
        }
        let versions: Vec<Version> = futures::stream::iter(&old_objects)
            .map(|(path, _)| storage.version(path))
            .buffered(4 * CONCURRENCY)
            .try_collect()
            .await?;
        if versions
            .iter()
            .zip(&old_objects)
            .any(|(now, (_, read))| now != read)
        {
            return Ok(false);
        }
        let body = json_bytes(&layout_path(table), &layout)?;
        match storage
            .put_if(&layout_path(table), body, &layout_version)
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(RawTableError::from(e)),
        }
    }
    .await;
    if !matches!(committed, Ok(true)) {
        for path in &written {
            if let Err(e) = storage.delete(path).await {
                tracing::warn!(%path, error = %e, "cannot remove a file of an uncommitted generation; gc removes it later");
            }
        }
        // A generation that lost while it was being written may also fail to
        // be committed: the winner's sweep removes the generation this one
        // read (the versions checked above). That is a lost race too, so
        // start again; a failure with the layout unchanged is real.
        if let Err(RawTableError::Store(e)) = &committed
            && storage.version(&layout_path(table)).await.ok().as_ref() != Some(&layout_version)
        {
            tracing::info!(table = table.name(), error = %e, "another writer's generation landed first; merging again");
            return Ok(None);
        }
        return committed.map(|_| None);
    }
    sweep(
        storage,
        table,
        &layout,
        prior.as_ref().map(|(old, _)| old.generation.as_str()),
    )
    .await?;
    tracing::info!(
        table = table.name(),
        buckets = layout.buckets,
        generation = %layout.generation,
        rows = rows_after,
        from = if prior.is_some() { "buckets" } else { "one file" },
        "raw table written in a new generation of buckets"
    );
    Ok(Some(MergeReport {
        table: table.name(),
        rows_read,
        rows_before,
        rows_after,
    }))
}

/// Removes, after `layout` was committed, every Parquet object of `table`
/// that it replaced: the files of the generation `prior` names, and the legacy
/// single file, with, on a local directory, their temporary and lock files
/// (`<file>#<n>`, `<file>.lock`: no writer ever writes those names again).
///
/// Left alone: every other generation's objects. Its writer may have read
/// this layout and be rebucketing it, and its commit may land (removing its
/// files would commit a generation with buckets missing); generation names
/// carry their writer's clock, to the second, so their age cannot tell. A
/// writer that lost removes its own files; `faverecs gc` removes what a
/// killed one left, once older than `retention.stray_grace_secs`; and the
/// temporary and lock files of a put killed mid-way go now, when the lock's
/// holder is gone ([`Storage::clean_after_killed_writer`]). Also left alone: the
/// layout's own lock and temporary files, which belong to the writer holding
/// that lock ([`Storage::put_if`] takes over a dead holder's and removes them).
async fn sweep(
    storage: &Storage,
    table: Table,
    layout: &Layout,
    prior: Option<&str>,
) -> Result<(), StoreError> {
    let dir = format!("raw/{}", table.name());
    let legacy = table.raw_path();
    let legacy = legacy.filename().unwrap_or_default();
    let legacy = legacy.strip_suffix(".parquet").unwrap_or(legacy);
    let replaced = |name: &str| {
        let generation = name.rsplit('/').next().unwrap_or(name);
        let generation = generation.split(".parquet").next().unwrap_or(generation);
        generation != layout.generation && (prior == Some(generation) || generation == legacy)
    };
    for path in storage.list_files(&Path::from(dir.as_str())).await? {
        let name = path.as_ref();
        if name.ends_with(".parquet") && replaced(name) {
            storage.delete(&path).await?;
        }
    }
    for file in storage.debris(&dir, std::time::Duration::ZERO) {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((object, _)) = name.split_once(".parquet") else {
            continue;
        };
        if replaced(name) {
            storage.remove_debris(&file)?;
        } else if let Some(bucket) = file.parent().and_then(|d| d.file_name()) {
            // Another generation's file killed mid-put: its temporary and
            // lock files go only when the lock's holder is gone (a live
            // writer's are left to it).
            let path = Path::from(format!(
                "{dir}/{}/{object}.parquet",
                bucket.to_string_lossy()
            ));
            storage.clean_after_killed_writer(&path).await?;
        }
    }
    Ok(())
}

/// How a bucketed raw table is stored now, for `faverecs raw status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawLayout {
    /// Never written.
    Absent,
    /// Still its legacy single file.
    SingleFile {
        /// Rows, from the footer.
        rows: u64,
    },
    /// In buckets.
    Buckets {
        /// The current generation.
        layout: Layout,
        /// Rows, from the footers.
        rows: u64,
    },
}

/// How `table` (a bucketed raw table) is stored now.
pub async fn raw_layout_of(storage: &Storage, table: Table) -> Result<RawLayout, StoreError> {
    match storage.raw_layout(table).await? {
        Some((layout, _)) => {
            let rows = storage
                .footer_rows(table, &layout.bucket_paths(table))
                .await?;
            Ok(RawLayout::Buckets { layout, rows })
        }
        None if storage.version(&table.raw_path()).await? == Version::Absent => {
            Ok(RawLayout::Absent)
        }
        None => Ok(RawLayout::SingleFile {
            rows: storage.check_parquet(&table.raw_path(), table).await?,
        }),
    }
}

/// What `faverecs raw rebucket` did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebucketed {
    /// Never written: the first write gives it the configured count.
    Absent,
    /// Already in the configured count of buckets.
    Kept {
        /// Its bucket count.
        buckets: u32,
    },
    /// Rewritten into the configured count of buckets.
    Rewritten {
        /// The count before (`None`: the legacy single file).
        from: Option<u32>,
        /// The count now.
        to: u32,
        /// Rows in the table.
        rows: usize,
    },
}

/// Rewrites a bucketed raw table in [`Storage::raw_buckets`] buckets, if it
/// is in another count or still in its legacy single file. Safe against
/// concurrent writers: one that changes the table before the new generation
/// is committed makes this start again.
pub async fn rebucket(storage: &Storage, table: Table) -> Result<Rebucketed, RawTableError> {
    let unchanged = BTreeSet::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let prior = storage.raw_layout(table).await?;
        let from = prior.as_ref().map(|(l, _)| l.buckets);
        match from {
            Some(buckets) if buckets == storage.raw_buckets() => {
                return Ok(Rebucketed::Kept { buckets });
            }
            None if storage.version(&table.raw_path()).await? == Version::Absent => {
                return Ok(Rebucketed::Absent);
            }
            _ => {}
        }
        let mut keep = |_: Bucket, old: Vec<RecordBatch>| Ok(old);
        if let Some(report) = relayout(storage, table, prior, Some(&unchanged), &mut keep).await? {
            return Ok(Rebucketed::Rewritten {
                from,
                to: storage.raw_buckets(),
                rows: report.rows_after,
            });
        }
        backoff(attempt).await;
    }
    Err(RawTableError::LostRace {
        table: table.name(),
        attempts: MAX_ATTEMPTS,
    })
}

/// A bucket's new rows deduplicated and sorted as one batch, after checking
/// that they all belong in it; with the row count before deduplication.
fn bucket_batch(
    table: Table,
    bucket: Bucket,
    rows: &[RecordBatch],
) -> Result<(usize, RecordBatch), RawTableError> {
    for b in rows {
        let users = user_column(b)?;
        if let Some(user_id) = users.iter().flatten().find(|u| !bucket.holds(u)) {
            return Err(RawTableError::WrongBucket {
                table: table.name(),
                bucket: bucket.index,
                buckets: bucket.count,
                user_id: user_id.to_string(),
            });
        }
    }
    let schema = table.schema();
    let read = rows.iter().map(|b| b.num_rows()).sum();
    let df = dedupe_sorted(&batches_to_frame(rows, &schema)?, table)?;
    Ok((read, frame_to_batch(&df, &schema)?))
}

/// The `user_id` column of a bucketed raw table's batch.
fn user_column(batch: &RecordBatch) -> Result<&StringArray, RawTableError> {
    batch
        .column_by_name(col::USER_ID)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| {
            RawTableError::Frame(FrameError::from(arrow_schema::ArrowError::SchemaError(
                format!(
                    "a bucketed raw table's batch has no utf8 column {}",
                    col::USER_ID
                ),
            )))
        })
}

/// The distinct users of `batches`.
fn user_ids(batches: &[RecordBatch]) -> Result<BTreeSet<String>, RawTableError> {
    let mut users = BTreeSet::new();
    for b in batches {
        users.extend(user_column(b)?.iter().flatten().map(str::to_string));
    }
    Ok(users)
}

/// `batches` split into `count` buckets by user, in their order. A row
/// without a user goes to bucket 0 (the contract refuses it there, as
/// anywhere).
fn split_by_bucket(
    batches: &[RecordBatch],
    count: u32,
) -> Result<Vec<Vec<RecordBatch>>, RawTableError> {
    let mut parts = vec![Vec::new(); count as usize];
    for b in batches {
        let users = user_column(b)?;
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); count as usize];
        for (i, u) in users.iter().enumerate() {
            rows[u.map_or(0, |u| shard_of(u, count)) as usize].push(i as u32);
        }
        for (bucket, rows) in rows.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let taken = arrow_select::take::take_record_batch(b, &UInt32Array::from(rows))
                .map_err(|e| RawTableError::Frame(FrameError::from(e)))?;
            parts[bucket].push(taken);
        }
    }
    Ok(parts)
}

/// Keeps the first row of each key, then sorts by the key.
pub fn dedupe_sorted(df: &DataFrame, table: Table) -> Result<DataFrame, FrameError> {
    let key: Vec<String> = table.key().iter().map(|k| k.to_string()).collect();
    let unique = df.unique_stable(Some(&key), UniqueKeepStrategy::First, None)?;
    Ok(unique.sort(
        &key,
        SortMultipleOptions::default().with_maintain_order(true),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The sweep after a commit removes the generation the commit replaced
    /// and the legacy single file, whatever the times in the names, and
    /// leaves every other generation: its writer may have read the new
    /// layout, and its commit may land.
    #[tokio::test]
    async fn the_sweep_removes_only_what_the_commit_replaced() {
        let storage =
            Storage::from_store(Arc::new(object_store::memory::InMemory::new()), "memory");
        let table = Table::Favorites;
        let named = |generation: &str| Layout {
            buckets: 2,
            generation: generation.into(),
            created_at: chrono::Utc::now(),
        };
        let committed = named("g20261202T174101Z-2-0000abcd");
        let generations = [
            // The one it replaced, named in the same second (a quick rebucket).
            "g20261202T174101Z-2-00000001",
            // A killed writer's, an earlier second: left to gc.
            "g20261202T174059Z-2-00000002",
            // Another writer's, named in the same second: may follow.
            "g20261202T174101Z-2-00000003",
            // Named later: may follow.
            "g20261202T174102Z-2-00000004",
            committed.generation.as_str(),
        ];
        for generation in generations {
            for b in 0..2 {
                let path = named(generation).bucket_path(table, b);
                storage
                    .put_bytes(&path, bytes::Bytes::from_static(b"PAR1"))
                    .await
                    .expect("stored");
            }
        }
        let legacy = table.raw_path();
        storage
            .put_bytes(&legacy, bytes::Bytes::from_static(b"PAR1"))
            .await
            .expect("stored");
        sweep(&storage, table, &committed, Some(generations[0]))
            .await
            .expect("swept");
        let mut left: Vec<String> = storage
            .list_files(&Path::from("raw/favorites"))
            .await
            .expect("listed")
            .iter()
            .map(|p| {
                let name = p.filename().unwrap_or_default();
                name.trim_end_matches(".parquet").to_string()
            })
            .collect();
        left.sort();
        left.dedup();
        assert_eq!(
            left,
            [
                generations[1],
                generations[2],
                generations[4],
                generations[3]
            ]
        );
    }
}
