//! Storing a run's encoded parts: one put each, concurrently, recorded in the
//! manifest's `tables` and `rows_out`.

use crate::model::{Table, run_table_dir};
use crate::runs::Manifest;
use crate::store::Storage;

use super::error::ScoreError;
use super::parts::Part;

/// Uploads every part and lists it in the manifest. Every table of the run is
/// listed, even with no rows (it then has one empty file).
pub async fn upload_parts(
    storage: &Storage,
    manifest: &mut Manifest,
    parts: Vec<Part>,
) -> Result<(), ScoreError> {
    for table in Table::RUN {
        manifest.rows_out.insert(table.name().to_string(), 0);
        manifest.tables.insert(table.name().to_string(), Vec::new());
    }
    let mut uploads = Vec::with_capacity(parts.len());
    for part in parts {
        let path = run_table_dir(&manifest.run_id, part.table).join(part.file.as_str());
        *manifest
            .rows_out
            .entry(part.table.name().to_string())
            .or_insert(0) += part.rows;
        manifest
            .tables
            .entry(part.table.name().to_string())
            .or_default()
            .push(format!("{}/{}", part.table.name(), part.file));
        let storage = storage.clone();
        uploads.push(tokio::spawn(async move {
            storage.put_bytes(&path, part.bytes).await
        }));
    }
    for upload in uploads {
        upload.await.map_err(|e| ScoreError::Task {
            what: "uploading the run's files",
            reason: e.to_string(),
        })??;
    }
    Ok(())
}
