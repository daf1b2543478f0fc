//! The serving layout: a run's lists as the service answers them, one file per
//! run, read in place from a memory map. This is the contract between a run and
//! `serve`, beside the table contract ([`crate::model`]).
//!
//! - [`items`] — the JSON of one list item (photo recs, photographer recs,
//!   similar photos, tag photos) and what a run knows of a photo.
//! - [`format`] — the file: sections of records found by key through a sorted
//!   index; a list record holds its items' JSON and its default page.
//! - [`build`] — the layout from a run's tables.
//! - [`section`] — the sections' names.
//!
//! The service keeps only the directory in memory: a request binary-searches a
//! section's index in the map and answers the record's bytes (the default page
//! as they are, another window by joining the items' JSON). The pages sit in
//! the OS page cache, not in the process's own memory, so what `serve` holds
//! does not grow with the run.
//!
//! Sections ([`section`]): `meta` (`algorithms`: the display order), `users`
//! (every user with a list), `photos/<algorithm>` and `photographers` (by user
//! NSID), `similar` (by photo id), `tags` (by tag), `photo_info` (by photo id),
//! `tracked` (NSID → username) and `usernames` (lower-cased username → NSID).

pub mod build;
pub mod format;
pub mod items;
pub mod section;

use std::fs::File;
use std::io::BufWriter;

use bytes::Bytes;

pub use format::{DEFAULT_LIMIT, Layout, LayoutError, List, page_json};
pub use items::{
    PhotoCard, PhotoInfo, PhotoItem, PhotographerItem, SimilarItem, TagItem, UserList, photo_url,
    thumbnail_url,
};

use object_store::path::Path;

use crate::model::RUNS_DIR;
use crate::runs::{Manifest, ServingFile};
use crate::store::Storage;

/// Where a run keeps its layout, relative to the run folder.
pub const LAYOUT_FILE: &str = "serving/layout.bin";

/// Builds the layout of `manifest`'s run from its tables in storage into a
/// private temporary file (unlinked: it goes when the last map of it does) and
/// maps it.
pub async fn build_mapped(storage: &Storage, manifest: &Manifest) -> Result<Layout, LayoutError> {
    let tables = build::read_tables(storage, &manifest.run_id).await?;
    let parts = build::parts(storage, &manifest.run_id, &tables);
    let manifest = manifest.clone();
    tokio::task::spawn_blocking(move || {
        let file = tempfile::tempfile()?;
        build_into(&manifest, tables, parts, &file)
    })
    .await
    .map_err(|e| LayoutError::Build(format!("the build task failed: {e}")))?
}

/// Builds the layout of `manifest`'s run from its tables in storage and
/// stores it in the run ([`LAYOUT_FILE`]), whole or not at all; returns what
/// the manifest records of it.
///
/// The layout is written once, into a file staged for the object
/// ([`Storage::stage`]: beside it on a local directory, so storing it is a
/// rename), and checked as [`Layout::open`] checks a stored one before it is
/// stored. Its records are never read back into memory: the build holds a
/// batch of records at a time, whatever the size of the run, and reads the
/// per-user tables and `similar_photos` a part at a time ([`build::parts`]).
pub async fn store_layout(
    storage: &Storage,
    manifest: &Manifest,
) -> Result<ServingFile, LayoutError> {
    let tables = build::read_tables(storage, &manifest.run_id).await?;
    let parts = build::parts(storage, &manifest.run_id, &tables);
    let path = run_path(&manifest.run_id, LAYOUT_FILE);
    let staged = storage
        .stage(&path)
        .map_err(|e| LayoutError::Build(e.to_string()))?;
    let manifest = manifest.clone();
    let (staged, bytes) = tokio::task::spawn_blocking(move || {
        let bytes = build_into(&manifest, tables, parts, staged.file())?.len() as u64;
        Ok::<_, LayoutError>((staged, bytes))
    })
    .await
    .map_err(|e| LayoutError::Build(format!("the build task failed: {e}")))??;
    storage
        .put_staged(staged)
        .await
        .map_err(|e| LayoutError::Build(e.to_string()))?;
    Ok(ServingFile {
        file: LAYOUT_FILE.to_string(),
        bytes,
    })
}

/// Builds the layout of `manifest`'s run from `tables` and `parts` into
/// `file` (new and empty), frees the tables, and opens the file mapped,
/// checked as a stored layout is.
fn build_into(
    manifest: &Manifest,
    tables: build::RunTables,
    parts: impl IntoIterator<Item = Result<build::Part, LayoutError>>,
    file: &File,
) -> Result<Layout, LayoutError> {
    build::build(
        manifest,
        &tables,
        parts,
        BufWriter::with_capacity(1 << 20, file),
    )?
    .into_inner()
    .map_err(|e| e.into_error())?;
    drop(tables);
    let layout = Layout::open(map(file)?)?;
    if layout.run_id() != manifest.run_id {
        return Err(LayoutError::Damaged(format!(
            "built for run {}",
            layout.run_id()
        )));
    }
    Ok(layout)
}

fn run_path(run_id: &str, file: &str) -> Path {
    Path::from(format!("{RUNS_DIR}/{run_id}/{file}"))
}

/// Opens the layout `manifest`'s run stored: on a local directory the file is
/// mapped where it is; from S3 it is downloaded into a private temporary file
/// first. Its size must be the manifest's, and it must be the run's.
pub async fn open_stored(
    storage: &Storage,
    manifest: &Manifest,
    stored: &ServingFile,
) -> Result<Layout, LayoutError> {
    let path = run_path(&manifest.run_id, &stored.file);
    let bytes = match storage.local_file(&path) {
        Some(local) => map_run_file(&File::open(&local)?)?,
        None => {
            let file = storage
                .download_into(&path, tempfile::tempfile()?)
                .await
                .map_err(|e| LayoutError::Build(e.to_string()))?;
            map(&file)?
        }
    };
    if bytes.len() as u64 != stored.bytes {
        return Err(LayoutError::Damaged(format!(
            "{} holds {} bytes, the manifest says {}",
            stored.file,
            bytes.len(),
            stored.bytes
        )));
    }
    let layout = Layout::open(bytes)?;
    if layout.run_id() != manifest.run_id {
        return Err(LayoutError::Damaged(format!(
            "{} is the layout of run {}",
            stored.file,
            layout.run_id()
        )));
    }
    Ok(layout)
}

/// Opens a run's layout: the one it stored, or (a run written before layouts
/// were stored) one built from its tables.
pub async fn open(storage: &Storage, manifest: &Manifest) -> Result<Layout, LayoutError> {
    match &manifest.serving {
        Some(stored) => open_stored(storage, manifest, stored).await,
        None => build_mapped(storage, manifest).await,
    }
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map(file: &File) -> Result<Bytes, LayoutError> {
    // SAFETY: the map is of a file this process created for itself, written
    // completely before it is mapped and never written after: a
    // `tempfile()` (unlinked, so no other process can open it), or a file
    // staged for a run's layout (`<object>#<n>`, created new by this process;
    // a writer of the same object stages a file of its own, and only `gc`
    // removes one, which leaves a map intact). The bytes therefore cannot
    // change under the map.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Maps a run's layout file on a local directory read-only, where it is.
#[allow(unsafe_code)]
fn map_run_file(file: &File) -> Result<Bytes, LayoutError> {
    // SAFETY: a run's files are written once, each to a temporary file renamed
    // into place, and never written again: a rewrite (a rerun of `--finish`)
    // renames a new file over the name, leaving this inode as it was, and gc
    // unlinks, which leaves a map intact. Only a hand edit of the file in
    // place could change the bytes under the map.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}
