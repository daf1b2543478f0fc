//! Large objects written from a file: the writer fills a staged file, then
//! [`Storage::put_staged`] makes it the object, whole or not at all. On a
//! local directory the staged file already lies beside the object, so the put
//! is one rename and the bytes are written once; elsewhere it is an unnamed
//! temporary file, uploaded in parts. Neither maps or holds the whole object
//! in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;
use object_store::path::Path;

use super::error::StoreError;
use super::storage::Storage;

/// The size of an upload's parts (and of the reads that fill them).
const PART: usize = 16 << 20;

/// A file being written to become an object ([`Storage::stage`]). Dropped
/// without [`Storage::put_staged`], it leaves nothing behind.
#[derive(Debug)]
pub struct Staged {
    path: Path,
    file: File,
    /// On a local directory: the file's name, `<object>#<n>` beside the
    /// object (the name object_store gives its own temporary files, so a
    /// killed writer's is found and removed like theirs), and the object's.
    local: Option<(PathBuf, PathBuf)>,
}

impl Staged {
    /// The file, to write the object's bytes into (`&File` is `Write`) and
    /// read them back.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The object it becomes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some((name, _)) = self.local.take() {
            let _ = std::fs::remove_file(name);
        }
    }
}

impl Storage {
    /// A new, empty file to write the object `path` into before
    /// [`Storage::put_staged`].
    pub fn stage(&self, path: &Path) -> Result<Staged, StoreError> {
        let Some(object) = self.local_file(path) else {
            let file = tempfile::tempfile().map_err(|source| StoreError::Local {
                path: std::env::temp_dir().display().to_string(),
                source,
            })?;
            return Ok(Staged {
                path: path.clone(),
                file,
                local: None,
            });
        };
        let local = |p: &std::path::Path, source| StoreError::Local {
            path: p.display().to_string(),
            source,
        };
        if let Some(dir) = object.parent() {
            std::fs::create_dir_all(dir).map_err(|e| local(dir, e))?;
        }
        let mut n = 0u64;
        loop {
            n += 1;
            let mut name = object.clone().into_os_string();
            name.push(format!("#{n}"));
            let name = PathBuf::from(name);
            match File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&name)
            {
                Ok(file) => {
                    return Ok(Staged {
                        path: path.clone(),
                        file,
                        local: Some((name, object)),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(local(&name, e)),
            }
        }
    }

    /// Makes a staged file its object, whole or absent: a rename on a local
    /// directory, a multipart upload elsewhere (a reader never sees a part of
    /// it).
    pub async fn put_staged(&self, mut staged: Staged) -> Result<(), StoreError> {
        let path = &staged.path.clone();
        if let Some((name, object)) = staged.local.take() {
            let renamed = std::fs::rename(&name, &object);
            return renamed.map_err(|source| {
                let _ = std::fs::remove_file(&name);
                StoreError::Local {
                    path: object.display().to_string(),
                    source,
                }
            });
        }
        use tokio::io::AsyncWriteExt;
        let fail = |e: object_store::Error| StoreError::object(path, e);
        let io = |e: std::io::Error| {
            fail(object_store::Error::Generic {
                store: "put_staged",
                source: Box::new(e),
            })
        };
        let mut file = staged.file.try_clone().map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut out = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            path.clone(),
            PART,
        );
        let uploaded = async {
            loop {
                // One part read at a time: memory stays at a part or two.
                let (read, part) = tokio::task::spawn_blocking(move || {
                    let mut part = Vec::with_capacity(PART);
                    let read = (&mut file).take(PART as u64).read_to_end(&mut part);
                    (read.map(|_| file), part)
                })
                .await
                .map_err(|e| io(std::io::Error::other(e)))?;
                file = read.map_err(io)?;
                if part.is_empty() {
                    break;
                }
                out.put(Bytes::from(part)).await.map_err(fail)?;
            }
            out.shutdown().await.map_err(io)
        }
        .await;
        if uploaded.is_err() {
            let _ = out.abort().await;
        }
        uploaded
    }
}
