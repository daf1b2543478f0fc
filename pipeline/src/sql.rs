//! `faverecs sql`: Polars SQL over a run's tables, for analysts.
//!
//! The run's tables are registered under their names (`photo_recs`,
//! `photographer_recs`, `similar_photos`, `tag_photos`, `metrics`,
//! `first_recommended`, `photos`, `tracked_users`), and the raw tables beside them
//! (`favorites`, `contacts`, `dismissals`, `extract_state`). Where a raw table has
//! the same name as the run's copy, the run's copy wins and the raw one is
//! `raw_photos` / `raw_tracked_users`. Only the tables a query names are read.
//! Timestamps are UTC datetimes; list columns are lists of strings.

use std::collections::HashSet;
use std::path::Path;

use polars::prelude::{
    CsvWriter, DataFrame, DataType, IntoLazy, ParquetWriter, SerWriter, TimeUnit, TimeZone,
};
use polars::sql::SQLContext;

use crate::frame::{FrameError, batches_to_frame};
use crate::model::{Table, run_table_dir};
use crate::runs;
use crate::store::{Storage, StoreError};

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Nothing is published and no run was named.
    #[error(
        "no run is published; run `faverecs score` then `faverecs publish`, or name one with --run (see `faverecs runs`)"
    )]
    NoRun,
    /// The named run did not succeed, so its tables may be incomplete.
    #[error(
        "run {run_id} is {status}, not succeeded: its tables may be incomplete; pick a succeeded run from `faverecs runs`"
    )]
    NotSucceeded {
        /// The run.
        run_id: String,
        /// Its status.
        status: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run could not be found or read.
    #[error(transparent)]
    Run(#[from] runs::RunError),
    /// A table could not be converted.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Polars refused the query.
    #[error("{message}\n(tables: {tables})")]
    Query {
        /// Polars' message.
        message: String,
        /// The names a query can use.
        tables: String,
    },
    /// The output file could not be written.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A name a query can use, and where its rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A table of the run.
    Run(Table),
    /// A raw table.
    Raw(Table),
}

/// Every name a query can use, with its source.
pub fn tables() -> Vec<(String, Source)> {
    let mut out: Vec<(String, Source)> = Table::RUN
        .iter()
        .map(|t| (t.name().to_string(), Source::Run(*t)))
        .collect();
    for t in Table::RAW {
        let name = if Table::RUN.contains(&t) {
            format!("raw_{}", t.name())
        } else {
            t.name().to_string()
        };
        out.push((name, Source::Raw(t)));
    }
    out
}

/// The lower-cased words of a query: a table is read only if its name is one.
fn words(query: &str) -> HashSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Runs `query` over the tables of `run_id` (the published run when `None`) and
/// returns the run id and the result.
pub async fn query(
    storage: &Storage,
    run_id: Option<&str>,
    query: &str,
) -> Result<(String, DataFrame), SqlError> {
    let run_id = match run_id {
        Some(id) => {
            let m = runs::read_manifest(storage, id).await?;
            if m.status != runs::RunStatus::Succeeded {
                return Err(SqlError::NotSucceeded {
                    run_id: m.run_id,
                    status: m.status.to_string(),
                });
            }
            m.run_id
        }
        None => runs::current(storage).await?.ok_or(SqlError::NoRun)?.run_id,
    };
    let used = words(query);
    let mut ctx = SQLContext::new();
    let all = tables();
    for (name, source) in &all {
        if !used.contains(name) {
            continue;
        }
        let (table, batches) = match *source {
            Source::Run(t) => (
                t,
                storage
                    .read_table_dir(&run_table_dir(&run_id, t), t)
                    .await?,
            ),
            Source::Raw(t) => (t, storage.read_raw(t).await?.unwrap_or_default()),
        };
        let mut df = batches_to_frame(&batches, &table.schema())?;
        for field in table.schema().fields() {
            if matches!(field.data_type(), arrow_schema::DataType::Timestamp(..)) {
                let as_time = df
                    .column(field.name())
                    .map_err(FrameError::from)?
                    .cast(&DataType::Datetime(
                        TimeUnit::Microseconds,
                        Some(TimeZone::UTC),
                    ))
                    .map_err(FrameError::from)?;
                df.replace(field.name(), as_time)
                    .map_err(FrameError::from)?;
            }
        }
        ctx.register(name, df.lazy());
    }
    let names = all
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let fail = |e: polars::prelude::PolarsError| SqlError::Query {
        message: e.to_string(),
        tables: names.clone(),
    };
    let df = ctx.execute(query).map_err(fail)?.collect().map_err(fail)?;
    Ok((run_id, df))
}

/// Writes the result to `path`: CSV for `.csv`, Parquet for `.parquet`.
pub fn write(df: &mut DataFrame, path: &Path) -> Result<(), SqlError> {
    let fail = |reason: String| SqlError::Output {
        path: path.display().to_string(),
        reason,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("csv" | "parquet")) {
        return Err(fail(
            "the file name must end in .csv or .parquet, which picks the format".into(),
        ));
    }
    let file = std::fs::File::create(path).map_err(|e| fail(e.to_string()))?;
    match ext.as_deref() {
        Some("csv") => {
            // CSV has no lists: list columns are written as their text.
            let mut flat = df.clone();
            for c in df.columns() {
                if matches!(c.dtype(), DataType::List(_)) {
                    let text: Vec<Option<String>> = (0..c.len())
                        .map(|i| c.get(i).ok().map(|v| v.to_string()))
                        .collect();
                    let column = polars::prelude::Column::new(c.name().clone(), text);
                    flat.replace(c.name(), column)
                        .map_err(|e| fail(e.to_string()))?;
                }
            }
            CsvWriter::new(file)
                .finish(&mut flat)
                .map_err(|e| fail(e.to_string()))
        }
        _ => ParquetWriter::new(file)
            .finish(df)
            .map(|_| ())
            .map_err(|e| fail(e.to_string())),
    }
}

/// Renders batches of a contract table as [`render`] does a query's result.
pub fn render_batches(
    batches: &[arrow_array::RecordBatch],
    table: Table,
    max_rows: usize,
) -> Result<String, SqlError> {
    let df = crate::frame::batches_to_frame(batches, &table.schema())?;
    Ok(render(&df, max_rows))
}

/// Renders up to `max_rows` rows as a terminal table, with a line saying how many
/// rows there are.
pub fn render(df: &DataFrame, max_rows: usize) -> String {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header(df.columns().iter().map(|c| c.name().to_string()));
    for i in 0..df.height().min(max_rows) {
        table.add_row(df.columns().iter().map(|c| match c.get(i) {
            Ok(polars::prelude::AnyValue::Null) | Err(_) => String::new(),
            Ok(polars::prelude::AnyValue::String(s)) => s.to_string(),
            Ok(polars::prelude::AnyValue::StringOwned(s)) => s.to_string(),
            Ok(polars::prelude::AnyValue::Float64(v)) => format!("{v:.6}"),
            Ok(v) => v.to_string(),
        }));
    }
    let shown = df.height().min(max_rows);
    let mut out = table.to_string();
    out.push('\n');
    if shown < df.height() {
        out.push_str(&format!(
            "{} rows, {shown} shown (write them all with --out FILE.csv or FILE.parquet)\n",
            df.height()
        ));
    } else {
        out.push_str(&format!("{} rows\n", df.height()));
    }
    out
}
