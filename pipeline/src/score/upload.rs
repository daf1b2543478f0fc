//! Storing a run's encoded parts: one put each, concurrently, recorded in the
//! manifest's `tables` and `rows_out`.

use std::collections::BTreeMap;

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
    let (tables, rows) = store_parts(storage, &manifest.run_id, parts).await?;
    for (table, files) in tables {
        manifest.tables.entry(table).or_default().extend(files);
    }
    for (table, n) in rows {
        *manifest.rows_out.entry(table).or_default() += n;
    }
    Ok(())
}

/// Uploads parts of run `run_id`, one put each, concurrently, and returns the
/// files (relative to the run folder) and the rows written, by table.
pub async fn store_parts(
    storage: &Storage,
    run_id: &str,
    parts: Vec<Part>,
) -> Result<(BTreeMap<String, Vec<String>>, BTreeMap<String, u64>), ScoreError> {
    let (mut tables, mut rows) = (BTreeMap::new(), BTreeMap::new());
    let mut uploads = Vec::with_capacity(parts.len());
    for part in parts {
        let path = run_table_dir(run_id, part.table).join(part.file.as_str());
        *rows.entry(part.table.name().to_string()).or_insert(0) += part.rows;
        tables
            .entry(part.table.name().to_string())
            .or_insert_with(Vec::new)
            .push(format!("{}/{}", part.table.name(), part.file));
        let storage = storage.clone();
        // A shard rerun writes the names its killed attempt wrote: that
        // attempt's temporary files on a local directory go first.
        uploads.push(tokio::spawn(async move {
            storage.put_bytes_replacing(&path, part.bytes).await
        }));
    }
    for upload in uploads {
        upload.await.map_err(|e| ScoreError::Task {
            what: "uploading the run's files",
            reason: e.to_string(),
        })??;
    }
    Ok((tables, rows))
}
