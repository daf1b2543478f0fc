//! The runs page's chart: the served run's offline-evaluation metrics as a
//! server-rendered SVG bar chart of recall@k per algorithm, then a table.

use maud::{Markup, html};
use pipeline::model::metrics::Metric;

/// Bar colours per algorithm position (the stylesheet cannot reach SVG fills
/// under a strict CSP without classes, so they are classes too).
const BAR_CLASSES: [&str; 6] = ["bar0", "bar1", "bar2", "bar3", "bar4", "bar5"];

/// A grouped bar chart of recall@k per algorithm, server-rendered SVG, then the
/// full metrics as a table.
pub fn metrics_chart(algorithms: &[String], metrics: &[Metric]) -> Markup {
    let mut ks: Vec<i32> = metrics.iter().map(|m| m.k).collect();
    ks.sort_unstable();
    ks.dedup();
    let max = metrics
        .iter()
        .map(|m| m.recall)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (bar, gap, height, top, left) = (22.0, 18.0, 160.0, 10.0, 40.0);
    let group = algorithms.len() as f64 * bar + gap;
    let width = left + group * ks.len() as f64 + gap;
    let value = |a: &str, k: i32| metrics.iter().find(|m| m.algorithm == a && m.k == k);
    html! {
        figure.chart {
            svg role="img" aria-labelledby="chart-title" viewBox=(format!("0 0 {width} {}", height + top + 30.0)) width=(width) height=(height + top + 30.0) {
                title #chart-title { "Recall at k per algorithm" }
                line x1=(left) y1=(top + height) x2=(width) y2=(top + height) class="axis" {}
                text x="2" y=(top + 10.0) class="tick" { (format!("{max:.2}")) }
                text x="2" y=(top + height) class="tick" { "0" }
                @for (g, k) in ks.iter().enumerate() {
                    @let x0 = left + gap + g as f64 * group;
                    @for (i, a) in algorithms.iter().enumerate() {
                        @if let Some(m) = value(a, *k) {
                            @let h = height * m.recall / max;
                            rect class=(BAR_CLASSES[i % BAR_CLASSES.len()]) x=(x0 + i as f64 * bar) y=(top + height - h) width=(bar - 4.0) height=(h) {
                                title { (a) " recall@" (k) " = " (format!("{:.4}", m.recall)) }
                            }
                        }
                    }
                    text x=(x0) y=(top + height + 18.0) class="tick" { "k = " (k) }
                }
            }
            figcaption {
                "Recall@k on the held-out favourites: "
                @for (i, a) in algorithms.iter().enumerate() {
                    span class=(format!("key {}", BAR_CLASSES[i % BAR_CLASSES.len()])) { "■" } " " (a) " "
                }
            }
        }
        table.people.metrics {
            thead { tr { th { "Algorithm" } th { "k" } th { "Precision" } th { "Recall" } th { "nDCG" } th { "MAP" } th { "Hit rate" } th { "Coverage" } th { "Users" } } }
            tbody {
                @for m in metrics {
                    tr {
                        td { (m.algorithm) } td { (m.k) }
                        td { (format!("{:.4}", m.precision)) } td { (format!("{:.4}", m.recall)) }
                        td { (format!("{:.4}", m.ndcg)) } td { (format!("{:.4}", m.map)) }
                        td { (format!("{:.4}", m.hit_rate)) } td { (format!("{:.4}", m.coverage)) }
                        td { (m.users_evaluated) }
                    }
                }
            }
        }
    }
}
