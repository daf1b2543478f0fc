//! The `metrics` table's row type, shared by `score::evaluate`, which makes the
//! rows, and by `serve`, which draws them.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::ArrowError;
use serde::Serialize;

use super::arrow::string_at;
use super::columns::{ColumnError, MetricsArrays, MetricsColumns};

/// One row of `metrics`: one algorithm measured at one cut-off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// The algorithm's name.
    pub algorithm: String,
    /// The cut-off.
    pub k: i32,
    /// Users evaluated.
    pub users_evaluated: i64,
    /// Mean precision@k.
    pub precision: f64,
    /// Mean recall@k.
    pub recall: f64,
    /// Mean nDCG@k.
    pub ndcg: f64,
    /// MAP@k.
    pub map: f64,
    /// Share of users with at least one hit in the top k.
    pub hit_rate: f64,
    /// Catalogue coverage@k.
    pub coverage: f64,
    /// `temporal`, `random` or `mixed`: how the users' favourites were split.
    pub split: String,
}

/// Builds the `metrics` table.
pub fn metrics_batch(metrics: &[Metric]) -> Result<RecordBatch, ArrowError> {
    let f = |get: fn(&Metric) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(metrics.iter().map(get)))
    };
    MetricsArrays {
        algorithm: Arc::new(StringArray::from_iter_values(
            metrics.iter().map(|m| m.algorithm.as_str()),
        )),
        k: Arc::new(Int32Array::from_iter_values(metrics.iter().map(|m| m.k))),
        users_evaluated: Arc::new(Int64Array::from_iter_values(
            metrics.iter().map(|m| m.users_evaluated),
        )),
        precision: f(|m| m.precision),
        recall: f(|m| m.recall),
        ndcg: f(|m| m.ndcg),
        map: f(|m| m.map),
        hit_rate: f(|m| m.hit_rate),
        coverage: f(|m| m.coverage),
        split: Arc::new(StringArray::from_iter_values(
            metrics.iter().map(|m| m.split.as_str()),
        )),
    }
    .into_batch()
}

/// Reads `metrics` rows back (rows without an algorithm are skipped).
pub fn read_metrics(batches: &[RecordBatch]) -> Result<Vec<Metric>, ColumnError> {
    let mut out = Vec::new();
    for b in batches {
        let c = MetricsColumns::new(b)?;
        for r in 0..b.num_rows() {
            let Some(algorithm) = string_at(c.algorithm, r) else {
                continue;
            };
            out.push(Metric {
                algorithm,
                k: c.k.value(r),
                users_evaluated: c.users_evaluated.value(r),
                precision: c.precision.value(r),
                recall: c.recall.value(r),
                ndcg: c.ndcg.value(r),
                map: c.map.value(r),
                hit_rate: c.hit_rate.value(r),
                coverage: c.coverage.value(r),
                split: string_at(c.split, r).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_rows_round_trip_through_a_batch() {
        let rows = vec![Metric {
            algorithm: "flexplore".into(),
            k: 20,
            users_evaluated: 40,
            precision: 0.1,
            recall: 0.2,
            ndcg: 0.3,
            map: 0.4,
            hit_rate: 0.5,
            coverage: 0.6,
            split: "temporal".into(),
        }];
        let batch = metrics_batch(&rows).expect("batch");
        assert_eq!(read_metrics(&[batch]).expect("rows"), rows);
    }
}
