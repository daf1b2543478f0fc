//! Debris of killed writers on a local directory: object_store's temporary
//! files (`<object>#<n>`, written before its rename and hidden from listings)
//! and the `<object>.lock` files of emulated conditional writes. S3 has neither:
//! its puts are atomic, and the bucket's lifecycle rule aborts stale multipart
//! uploads.

use std::path::PathBuf;
use std::time::Duration;

use super::error::StoreError;
use super::storage::Storage;

/// The suffix of the lock file that serialises conditional writes on a store
/// without native conditional updates (a local directory).
pub const LOCK_SUFFIX: &str = ".lock";

/// Whether `file` is a temporary file of the object named `object`
/// (`<object>#<n>`, which object_store writes before its rename).
pub fn is_temp_of(file: &str, object: &str) -> bool {
    file.strip_prefix(object)
        .and_then(|rest| rest.strip_prefix('#'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a file name is a temporary file or a conditional-write lock.
pub fn is_debris_name(name: &str) -> bool {
    let temp = name
        .rsplit_once('#')
        .is_some_and(|(object, _)| is_temp_of(name, object));
    temp || name.ends_with(LOCK_SUFFIX)
}

impl Storage {
    /// Temporary and lock files older than `grace` under `prefix` ("" for
    /// everything) of a local directory, sorted; none for other stores. Younger
    /// ones may belong to a writer at work.
    pub fn debris(&self, prefix: &str, grace: Duration) -> Vec<PathBuf> {
        let Some(root) = &self.local_root else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut dirs = vec![root.join(prefix)];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(entry.path());
                    continue;
                }
                let old = grace.is_zero()
                    || meta
                        .modified()
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > grace);
                if old && entry.file_name().to_str().is_some_and(is_debris_name) {
                    out.push(entry.path());
                }
            }
        }
        out.sort();
        out
    }

    /// Removes one file found by [`Storage::debris`]; `false` if it was gone.
    pub fn remove_debris(&self, file: &std::path::Path) -> Result<bool, StoreError> {
        match std::fs::remove_file(file) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(StoreError::PermissionDenied {
                    path: file.display().to_string(),
                })
            }
            Err(source) => Err(StoreError::Local {
                path: file.display().to_string(),
                source,
            }),
        }
    }

    /// Removes the empty folders left under `prefix` of a local directory once
    /// its objects are deleted (so a removed run leaves no folder that would
    /// list as a run); nothing for other stores, whose folders are prefixes.
    pub fn remove_empty_dirs(&self, prefix: &str) {
        let Some(root) = &self.local_root else { return };
        fn prune(dir: &std::path::Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        prune(&entry.path());
                    }
                }
            }
            // Fails, harmlessly, when something is still in it.
            let _ = std::fs::remove_dir(dir);
        }
        prune(&root.join(prefix));
    }
}
