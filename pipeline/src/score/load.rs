//! The `load` stage: the raw tables, and the published run's
//! `first_recommended` rows that say which recs are new.

use std::collections::HashMap;

use crate::model::columns::FirstRecommendedColumns;
use crate::model::{Table, run_table_dir};
use crate::runs::PointerState;
use crate::store::Storage;

use super::error::ScoreError;
use super::prepare::Inputs;

/// Loads the raw tables.
pub async fn load_inputs(storage: &Storage) -> Result<Inputs, ScoreError> {
    // Decoding is CPU work: one task per table lets the runtime's workers decode
    // the tables side by side.
    let read = |table: Table| {
        let storage = storage.clone();
        tokio::spawn(async move { storage.read_raw(table).await })
    };
    let tasks = [
        read(Table::Favorites),
        read(Table::Photos),
        read(Table::Contacts),
        read(Table::TrackedUsers),
        read(Table::Dismissals),
    ];
    let mut tables = Vec::with_capacity(tasks.len());
    for task in tasks {
        let read = task.await.map_err(|e| ScoreError::Task {
            what: "reading the raw tables",
            reason: e.to_string(),
        })??;
        // Without favourites there is nothing to score, whatever else is wrong.
        if tables.is_empty() && read.is_none() {
            return Err(ScoreError::NoFavorites);
        }
        tables.push(read);
    }
    let mut tables = tables.into_iter();
    let mut next = || tables.next().flatten().unwrap_or_default();
    Ok(Inputs {
        favorites: next(),
        photos: next(),
        contacts: next(),
        tracked_users: next(),
        dismissals: next(),
    })
}

/// The published run's `first_recommended` rows, looked up by user then photo
/// (by `&str`, no allocation per lookup).
#[derive(Debug, Default)]
pub struct PreviousFirst {
    /// user → photo → (first time, index into `runs`).
    pub by_user: HashMap<String, HashMap<String, (i64, usize)>>,
    /// The distinct run ids (a few hundred after a year of nightly runs).
    pub runs: Vec<String>,
}

/// Reads the published run's `first_recommended` table; empty when nothing is
/// published or the table is unreadable (every rec then counts as new).
pub async fn previous_first_recommended(storage: &Storage) -> Result<PreviousFirst, ScoreError> {
    let mut previous = PreviousFirst::default();
    let pointer = match crate::runs::pointer_state(storage).await? {
        PointerState::Published(p) => p,
        PointerState::Unpublished => return Ok(previous),
        PointerState::Garbage(reason) => {
            tracing::warn!(%reason, "CURRENT is unreadable; every rec counts as new");
            return Ok(previous);
        }
    };
    let dir = run_table_dir(&pointer.run_id, Table::FirstRecommended);
    let batches = match storage.read_table_dir(&dir, Table::FirstRecommended).await {
        Ok(batches) => batches,
        Err(e) => {
            tracing::warn!(error = %e, run = %pointer.run_id, "previous run's first_recommended unreadable; every rec counts as new");
            return Ok(previous);
        }
    };
    let mut run_index: HashMap<String, usize> = HashMap::new();
    for b in &batches {
        let cols = FirstRecommendedColumns::new(b)?;
        let (u, p, t, r) = (
            cols.user_id,
            cols.photo_id,
            cols.first_recommended_at,
            cols.first_run_id,
        );
        for i in 0..b.num_rows() {
            let run = match run_index.get(r.value(i)) {
                Some(&at) => at,
                None => {
                    previous.runs.push(r.value(i).to_string());
                    run_index.insert(r.value(i).to_string(), previous.runs.len() - 1);
                    previous.runs.len() - 1
                }
            };
            previous
                .by_user
                .entry(u.value(i).to_string())
                .or_default()
                .insert(p.value(i).to_string(), (t.value(i), run));
        }
    }
    Ok(previous)
}
