//! Request counters and latency histograms, counted per matched route (never per
//! raw path, so hostile URLs cannot blow up the label set) and rendered in
//! Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Latency histogram bucket bounds, in seconds.
pub const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// One route's counters. Atomics only, so concurrent requests never wait on each
/// other to be counted.
#[derive(Debug)]
struct RouteStats {
    /// Requests by status code, indexed by `status - 100`.
    by_status: Vec<AtomicU64>,
    /// Cumulative counts per bucket bound (Prometheus `le`).
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for RouteStats {
    fn default() -> Self {
        Self {
            by_status: (100..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// Request counters and latency histograms by route.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Written once per route (the first request), read by every other request.
    routes: RwLock<BTreeMap<String, Arc<RouteStats>>>,
}

impl Metrics {
    fn route(&self, route: &str) -> Option<Arc<RouteStats>> {
        if let Some(r) = self.routes.read().ok()?.get(route) {
            return Some(r.clone());
        }
        let mut w = self.routes.write().ok()?;
        Some(w.entry(route.to_string()).or_default().clone())
    }

    /// Counts one request.
    pub fn record(&self, route: &str, status: u16, seconds: f64) {
        let Some(r) = self.route(route) else { return };
        if let Some(c) = r.by_status.get(usize::from(status.saturating_sub(100))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                r.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        r.sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
        r.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, run: Option<(&str, i64)>) -> String {
        let routes: Vec<(String, Arc<RouteStats>)> = self
            .routes
            .read()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP faverecs_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE faverecs_http_requests_total counter\n");
        for (route, r) in &routes {
            for (i, n) in r.by_status.iter().enumerate() {
                let n = load(n);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "faverecs_http_requests_total{{route=\"{route}\",status=\"{}\"}} {n}",
                        i + 100
                    );
                }
            }
        }
        out.push_str("# HELP faverecs_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE faverecs_http_request_duration_seconds histogram\n");
        for (route, r) in &routes {
            for (bound, n) in BUCKETS.iter().zip(&r.buckets) {
                let _ = writeln!(
                    out,
                    "faverecs_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                    load(n)
                );
            }
            let count = load(&r.count);
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                load(&r.sum_nanos) as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "faverecs_http_request_duration_seconds_count{{route=\"{route}\"}} {count}"
            );
        }
        out.push_str(
            "# HELP faverecs_run_info The run being served.\n# TYPE faverecs_run_info gauge\n",
        );
        out.push_str("# HELP faverecs_run_age_seconds Seconds since the served run was published.\n# TYPE faverecs_run_age_seconds gauge\n");
        match run {
            Some((id, age)) => {
                let _ = writeln!(out, "faverecs_run_info{{run_id=\"{id}\"}} 1");
                let _ = writeln!(out, "faverecs_run_age_seconds {age}");
            }
            None => out.push_str("faverecs_run_age_seconds NaN\n"),
        }
        out
    }
}
