//! Conditional writes: a put that succeeds only while the object is still at
//! the version its writer read, so read-modify-write cycles never lose each
//! other's work.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

use super::debris::{LOCK_SUFFIX, is_temp_of};
use super::error::StoreError;
use super::storage::Storage;

/// The version of an object as a writer read it. A conditional write
/// ([`Storage::put_if`]) succeeds only while the object is still at this
/// version, so two read-modify-write cycles on one object never silently lose
/// each other's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The object did not exist.
    Absent,
    /// The object's ETag and version id, as read.
    At(UpdateVersion),
}

/// How long a lock file of an emulated conditional write may stand before it
/// is taken for a dead writer's and removed. A lock is held for one put only.
const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a writer waits for another's lock before it reports a conflict.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Storage {
    /// The object's current version (for a later [`Storage::put_if`]).
    pub async fn version(&self, path: &Path) -> Result<Version, StoreError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Version::At(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(Version::Absent),
            Err(e) => Err(StoreError::object(path, e)),
        }
    }

    /// Writes a whole object in one atomic put, but only if it is still at
    /// `expected`; otherwise [`StoreError::Conflict`] and nothing is written.
    /// Returns the version written, for the writer's next conditional put.
    ///
    /// S3 and memory stores do this natively (`If-None-Match: *` to create,
    /// `If-Match: <etag>` to replace). A local directory has atomic create but no
    /// conditional replace, so there the check and the put run under a lock file
    /// (`<path>.lock`, created atomically), creates included: every conditional
    /// writer of an object on a local directory holds its lock while its
    /// temporary file exists, so the holder may remove the temporary files of
    /// writers that were killed ([`Storage::clean_after_killed_writer`]). A lock
    /// whose holder died is taken over: at once when the holder was a process
    /// on this machine that is gone, otherwise once it is older than
    /// [`LOCK_STALE`].
    pub async fn put_if(
        &self,
        path: &Path,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        if self.local_root.is_some() {
            return self.put_if_locked(path, bytes, expected).await;
        }
        let conflict = || StoreError::Conflict {
            path: path.to_string(),
        };
        let mode = match expected {
            Version::Absent => PutMode::Create,
            Version::At(v) => PutMode::Update(v.clone()),
        };
        let payload = PutPayload::from_bytes(bytes.clone());
        match self.store.put_opts(path, payload, mode.into()).await {
            Ok(r) => Ok(Version::At(UpdateVersion {
                e_tag: r.e_tag,
                version: r.version,
            })),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Err(conflict()),
            Err(object_store::Error::NotImplemented { .. }) => {
                self.put_if_locked(path, bytes, expected).await
            }
            Err(e) => Err(StoreError::object(path, e)),
        }
    }

    /// [`Storage::put_if`] for stores without conditional replace.
    async fn put_if_locked(
        &self,
        path: &Path,
        bytes: Bytes,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut wait_ms = 2u64;
        while !self.take_lock(path).await? {
            if std::time::Instant::now() > deadline {
                return Err(StoreError::Conflict {
                    path: path.to_string(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            wait_ms = (wait_ms * 2).min(100);
        }
        let result = async {
            if &self.version(path).await? != expected {
                return Err(StoreError::Conflict {
                    path: path.to_string(),
                });
            }
            self.put_bytes(path, bytes).await?;
            self.version(path).await
        }
        .await;
        let released = self.delete(&lock_of(path)).await;
        let written = result?;
        released?;
        Ok(written)
    }

    /// On a local directory, removes what writers of `path` killed mid-put
    /// left: their temporary files, and a lock whose holder died. Takes the
    /// lock to do it, and does nothing when a live writer holds it (that
    /// writer cleans up instead). For objects written only by
    /// [`Storage::put_if`], whose writers all hold the lock.
    pub(crate) async fn clean_after_killed_writer(&self, path: &Path) -> Result<(), StoreError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(path.as_ref());
        let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str()))
        else {
            return Ok(());
        };
        // The lock, its temporary files and the object's, all in one folder.
        let lock = format!("{name}{LOCK_SUFFIX}");
        let debris = std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_str().is_some_and(|other| {
                    other == lock || is_temp_of(other, name) || is_temp_of(other, &lock)
                })
            })
        });
        if !debris {
            return Ok(());
        }
        if self.take_lock(path).await? {
            self.delete(&lock_of(path)).await?;
        }
        Ok(())
    }

    /// Tries once to take `path`'s lock, taking over a dead holder's; `true`
    /// when taken. The taker then removes the temporary files of the object
    /// and of the lock that killed writers left.
    async fn take_lock(&self, path: &Path) -> Result<bool, StoreError> {
        let lock = lock_of(path);
        let holder = Bytes::from(format!(
            "{{\"pid\":{},\"host\":{:?},\"at\":\"{}\"}}\n",
            std::process::id(),
            hostname(),
            chrono::Utc::now().to_rfc3339()
        ));
        for _ in 0..2 {
            let taken = self
                .store
                .put_opts(
                    &lock,
                    PutPayload::from_bytes(holder.clone()),
                    PutMode::Create.into(),
                )
                .await;
            match taken {
                Ok(_) => {
                    self.clean_predecessors(path, |_| true);
                    // The lock's own temporary file, left by a writer killed
                    // between writing it and linking it into place. It holds
                    // that writer's pid and host; one whose writer may still
                    // be alive (and trying for the lock) is kept until it is
                    // older than LOCK_STALE.
                    self.clean_predecessors(&lock, |temp| {
                        let old = std::fs::metadata(temp)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age > LOCK_STALE);
                        old || std::fs::read(temp).is_ok_and(|b| holder_gone(&b))
                    });
                    return Ok(true);
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(StoreError::object(&lock, e)),
            }
            let Ok(meta) = self.store.head(&lock).await else {
                continue; // released meanwhile: try again
            };
            let age = chrono::Utc::now() - meta.last_modified;
            let old = age.to_std().is_ok_and(|a| a > LOCK_STALE);
            if !(old || self.holder_is_dead(&lock).await) {
                return Ok(false);
            }
            tracing::warn!(%lock, age_seconds = age.num_seconds(), "removing a stale lock left by a writer that died");
            self.delete(&lock).await?;
        }
        Ok(false)
    }

    /// Whether a lock's holder was a process on this machine that no longer
    /// runs (a killed `faverecs`): then its lock is taken over at once instead of
    /// after [`LOCK_STALE`]. Holders on other machines are judged by age alone.
    async fn holder_is_dead(&self, lock: &Path) -> bool {
        self.get_bytes(lock)
            .await
            .is_ok_and(|bytes| holder_gone(&bytes))
    }

    /// Removes what a writer of `path` killed mid-write left on a local
    /// directory: its temporary files `<object>#<n>` (object_store writes there,
    /// then renames, and picks the next free `n`, so without this they pile up,
    /// each the size of the object). Only called by a writer holding the
    /// object's lock, or by the writer of an object no one else writes at the
    /// same time, so none of them is in flight.
    pub(crate) fn clean_predecessors(
        &self,
        path: &Path,
        removable: impl Fn(&std::path::Path) -> bool,
    ) {
        let Some(root) = &self.local_root else { return };
        let file = root.join(path.as_ref());
        let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let other = entry.file_name();
            let temp = other.to_str().is_some_and(|o| is_temp_of(o, name));
            if temp && removable(&entry.path()) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::warn!(file = %entry.path().display(), "removed a temporary file a killed writer left")
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a killed writer's temporary file")
                    }
                }
            }
        }
    }
}

/// The lock file of `path`'s conditional writes on a local directory.
fn lock_of(path: &Path) -> Path {
    Path::from(format!("{path}{LOCK_SUFFIX}"))
}

/// Whether the holder a lock file names was a process on this machine that no
/// longer runs.
fn holder_gone(lock_content: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Holder {
        pid: u32,
        host: String,
    }
    let Ok(holder) = serde_json::from_slice::<Holder>(lock_content) else {
        return false;
    };
    let proc = std::path::Path::new("/proc");
    holder.host == hostname()
        && holder.pid != std::process::id()
        && proc.join("self").exists()
        && !proc.join(holder.pid.to_string()).exists()
}

/// This machine's name, for lock files (who holds it).
pub(crate) fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
