//! CloudWatch Embedded Metric Format: one JSON line per finished stage on
//! stdout, which CloudWatch Logs (the Batch jobs' `awslogs` driver) turns into
//! metrics in the `faverecs` namespace, by `Stage`. Written when the process
//! runs as an AWS Batch job (`AWS_BATCH_JOB_ID` is set) or `FAVERECS_EMF=1`;
//! the alarms in `terraform/monitoring.tf` read them.

use std::time::Duration;

/// The metrics of one stage.
pub struct Emf {
    stage: &'static str,
    metrics: Vec<(&'static str, f64, &'static str)>,
}

impl Emf {
    /// Metrics for `stage` (`extract`, `score`, `publish`, `gc`, `nightly`).
    pub fn stage(stage: &'static str) -> Self {
        Emf {
            stage,
            metrics: Vec::new(),
        }
    }

    /// A count.
    pub fn count(mut self, name: &'static str, value: u64) -> Self {
        self.metrics.push((name, value as f64, "Count"));
        self
    }

    /// The stage's wall-clock time.
    pub fn seconds(mut self, took: Duration) -> Self {
        self.metrics
            .push(("StageSeconds", took.as_secs_f64(), "Seconds"));
        self
    }

    /// The JSON line, with the process's peak memory added.
    pub fn line(mut self, now_ms: i64) -> String {
        if let Some(mb) = peak_memory_mb() {
            self.metrics.push(("PeakMemory", mb, "Megabytes"));
        }
        let mut root = serde_json::Map::new();
        let names: Vec<serde_json::Value> = self
            .metrics
            .iter()
            .map(|(name, _, unit)| serde_json::json!({ "Name": name, "Unit": unit }))
            .collect();
        root.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": "faverecs",
                    "Dimensions": [["Stage"]],
                    "Metrics": names,
                }],
            }),
        );
        root.insert("Stage".into(), self.stage.into());
        for (name, value, _) in &self.metrics {
            root.insert((*name).into(), serde_json::json!(value));
        }
        serde_json::Value::Object(root).to_string()
    }

    /// Prints the line when running on AWS Batch or asked to.
    pub fn emit(self) {
        if enabled() {
            println!("{}", self.line(chrono::Utc::now().timestamp_millis()));
        }
    }
}

fn enabled() -> bool {
    std::env::var_os("AWS_BATCH_JOB_ID").is_some()
        || std::env::var("FAVERECS_EMF").is_ok_and(|v| v == "1")
}

/// The process's peak resident memory, in MiB.
fn peak_memory_mb() -> Option<f64> {
    pipeline::runs::peak_rss_mib()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_every_metric_it_carries() {
        let line = Emf::stage("extract")
            .count("Calls", 12)
            .count("FailedUsers", 1)
            .seconds(Duration::from_millis(1500))
            .line(1_700_000_000_000);
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["Stage"], "extract");
        assert_eq!(v["Calls"], 12.0);
        assert_eq!(v["StageSeconds"], 1.5);
        let declared = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "faverecs");
        assert_eq!(declared["Dimensions"][0][0], "Stage");
        for m in declared["Metrics"].as_array().expect("metrics") {
            let name = m["Name"].as_str().expect("name");
            assert!(v[name].is_number(), "{name} is declared but not given");
        }
        assert!(!line.contains('\n'));
    }
}
