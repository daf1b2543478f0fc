//! The pipeline's handle on its object store, and the plain object operations.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::{StorageSettings, StorageUrl};

use super::error::StoreError;

/// How many objects (buckets, a run's files) are read or written at once.
pub(crate) const CONCURRENCY: usize = 8;

/// Objects a bucketed raw table's writer stores at once on S3
/// ([`Storage::write_concurrency`]).
const WRITES_IN_FLIGHT: usize = 8;

/// The pipeline's handle on its object store.
#[derive(Clone, Debug)]
pub struct Storage {
    /// Shared by every stage and by the Parquet reader and writer.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Human-readable location, for logs and errors.
    url: String,
    /// The directory, for a local store: where a killed writer's temporary
    /// files (`<object>#<n>`, which object_store hides from listings) are found.
    pub(crate) local_root: Option<std::path::PathBuf>,
    /// The bucket count of a bucketed raw table written for the first time
    /// (`storage.raw_buckets`); a table already bucketed keeps its own.
    raw_buckets: u32,
}

impl Storage {
    /// Opens the store described by the settings. A local directory is created if it
    /// does not exist; S3 takes credentials and region from the `AWS_*` environment.
    pub fn open(settings: &StorageSettings) -> Result<Self, StoreError> {
        let url = settings.url.to_string();
        let fail = |reason: String| StoreError::Open {
            url: url.clone(),
            reason,
        };
        let store: Arc<dyn ObjectStore> = match &settings.url {
            StorageUrl::Local { path } => {
                // Creating the root is the one file-system call outside object_store:
                // LocalFileSystem refuses a prefix that does not exist.
                std::fs::create_dir_all(path)
                    .map_err(|e| fail(format!("cannot create directory: {e}")))?;
                let fs = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| fail(e.to_string()))?
                    .with_automatic_cleanup(true);
                Arc::new(fs)
            }
            StorageUrl::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint);
                    if endpoint.starts_with("http://") {
                        builder = builder.with_allow_http(true);
                    }
                }
                let s3 = builder.build().map_err(|e| {
                    fail(format!(
                        "{e} (set AWS_REGION and credentials, or AWS_ENDPOINT_URL for a local S3 server)"
                    ))
                })?;
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                }
            }
        };
        let local_root = match &settings.url {
            StorageUrl::Local { path } => Some(path.clone()),
            StorageUrl::S3 { .. } => None,
        };
        Ok(Self {
            store,
            url,
            local_root,
            raw_buckets: settings.raw_buckets,
        })
    }

    /// Wraps an existing store (for example `InMemory` in tests).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Self {
        Self {
            store,
            url: url.into(),
            local_root: None,
            raw_buckets: crate::config::DEFAULT_RAW_BUCKETS,
        }
    }

    /// The same store, with `buckets` for bucketed raw tables written from now on.
    pub fn with_raw_buckets(mut self, buckets: u32) -> Self {
        self.raw_buckets = buckets.clamp(1, crate::config::MAX_RAW_BUCKETS);
        self
    }

    /// How many objects a bucketed raw table's writer stores at once: several
    /// on S3, where each put waits on the network; one on a local directory,
    /// where nothing is gained, and where a writer killed mid-way should leave
    /// the temporary files of at most the one put it was in (which the next
    /// writer of that object removes).
    pub fn write_concurrency(&self) -> usize {
        if self.local_root.is_some() {
            1
        } else {
            WRITES_IN_FLIGHT
        }
    }

    /// The bucket count a bucketed raw table gets when it is first written or
    /// rebucketed (`storage.raw_buckets`).
    pub fn raw_buckets(&self) -> u32 {
        self.raw_buckets
    }

    /// Where this storage is, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Lists every object under `dir`, recursively.
    pub async fn list_files(&self, dir: &Path) -> Result<Vec<Path>, StoreError> {
        let listed: Vec<_> = self
            .store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| StoreError::object(dir, e))?;
        Ok(listed.into_iter().map(|m| m.location).collect())
    }

    /// Lists the immediate sub-folders of `dir` (their last path segment).
    pub async fn list_dirs(&self, dir: &Path) -> Result<Vec<String>, StoreError> {
        let listed = self
            .store
            .list_with_delimiter(Some(dir))
            .await
            .map_err(|e| StoreError::object(dir, e))?;
        Ok(listed
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// The size of an object in bytes; [`StoreError::NotFound`] when it does not
    /// exist.
    pub async fn size(&self, path: &Path) -> Result<u64, StoreError> {
        let meta = self
            .store
            .head(path)
            .await
            .map_err(|e| StoreError::object(path, e))?;
        Ok(meta.size)
    }

    /// When an object was last written; [`StoreError::NotFound`] when it does
    /// not exist.
    pub async fn last_modified(
        &self,
        path: &Path,
    ) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        let meta = self
            .store
            .head(path)
            .await
            .map_err(|e| StoreError::object(path, e))?;
        Ok(meta.last_modified)
    }

    /// Reads a whole object.
    pub async fn get_bytes(&self, path: &Path) -> Result<Bytes, StoreError> {
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| StoreError::object(path, e))?;
        got.bytes().await.map_err(|e| StoreError::object(path, e))
    }

    /// Writes an object's bytes into `file`, as they stream in.
    pub async fn download_into(
        &self,
        path: &Path,
        file: std::fs::File,
    ) -> Result<std::fs::File, StoreError> {
        use tokio::io::AsyncWriteExt;
        let got = self
            .store
            .get(path)
            .await
            .map_err(|e| StoreError::object(path, e))?;
        let mut stream = got.into_stream();
        let mut out = tokio::fs::File::from_std(file);
        let io = |e: std::io::Error| {
            StoreError::object(
                path,
                object_store::Error::Generic {
                    store: "download",
                    source: Box::new(e),
                },
            )
        };
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| StoreError::object(path, e))?
        {
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        Ok(out.into_std().await)
    }

    /// The file behind `path` on a local directory (`None` on other stores).
    pub fn local_file(&self, path: &Path) -> Option<std::path::PathBuf> {
        let root = self.local_root.as_ref()?;
        Some(
            path.parts()
                .fold(root.clone(), |p, part| p.join(part.as_ref())),
        )
    }

    /// Writes a whole object in one atomic put.
    pub async fn put_bytes(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| StoreError::object(path, e))?;
        Ok(())
    }

    /// [`Storage::put_bytes`] for an object whose earlier writers are done
    /// (a copy rewritten after each publish): first removes the temporary files
    /// `<object>#<n>` a killed earlier writer left on a local directory.
    pub async fn put_bytes_replacing(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.clean_predecessors(path, |_| true);
        self.put_bytes(path, bytes).await
    }

    /// Reads and decodes a JSON object.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<T, StoreError> {
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: path.to_string(),
            source,
        })
    }

    /// Encodes and writes a JSON object (pretty-printed: people read manifests).
    pub async fn put_json<T: serde::Serialize>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<(), StoreError> {
        self.put_bytes(path, json_bytes(path, value)?).await
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::object(path, e)),
        }
    }
}

/// A JSON object as stored: pretty-printed (people read manifests), with a final
/// newline.
pub fn json_bytes<T: serde::Serialize>(path: &Path, value: &T) -> Result<Bytes, StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        path: path.to_string(),
        source,
    })?;
    bytes.push(b'\n');
    Ok(Bytes::from(bytes))
}
