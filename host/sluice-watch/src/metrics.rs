//! Prometheus metrics of a watch, labelled by pipeline (and step): files seen, committed and
//! failed; rows and bytes; call time per step and plugin time; commit and visibility latency
//! histograms; queue depth; catalog publishes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sluice_core::source::{Source, SourceMetric};
use sluice_core::summary::RunSummary;

/// The sources' metrics in the text format, each metric's samples under one `HELP` and `TYPE`.
fn encode_source_metrics(sources: &[(String, Arc<dyn Source>)]) -> String {
    use std::fmt::Write;
    let mut by_name: std::collections::BTreeMap<&'static str, (SourceMetric, Vec<String>)> = Default::default();
    for (pipeline, src) in sources {
        for m in src.metrics() {
            let mut labels = format!("pipeline=\"{}\",source=\"{}\"", escape(pipeline), escape(src.name()));
            for (k, v) in &m.labels {
                let _ = write!(labels, ",{k}=\"{}\"", escape(v));
            }
            let sample = format!("sluice_source_{}{{{labels}}} {}\n", m.name, m.value);
            by_name.entry(m.name).or_insert_with(|| (m.clone(), Vec::new())).1.push(sample);
        }
    }
    let mut out = String::new();
    for (name, (m, samples)) in by_name {
        // OpenMetrics names a counter family without its `_total` suffix.
        let family = if m.counter { name.strip_suffix("_total").unwrap_or(name) } else { name };
        let kind = if m.counter { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP sluice_source_{family} {}", m.help);
        let _ = writeln!(out, "# TYPE sluice_source_{family} {kind}");
        for s in samples {
            out.push_str(&s);
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

type PipelineLabel = [(&'static str, String); 1];
type StepLabel = [(&'static str, String); 2];
type Seconds = Counter<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 10 ms to ~82 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

fn publish_histogram() -> Histogram {
    // 1 ms to ~8 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// Every metric of the process; cheap to share.
pub struct Metrics {
    registry: Registry,
    files_seen: Family<PipelineLabel, Counter>,
    files_committed: Family<PipelineLabel, Counter>,
    files_failed: Family<PipelineLabel, Counter>,
    rows_in: Family<PipelineLabel, Counter>,
    rows_written: Family<PipelineLabel, Counter>,
    bytes_in: Family<PipelineLabel, Counter>,
    bytes_written: Family<PipelineLabel, Counter>,
    step_calls: Family<StepLabel, Counter>,
    step_seconds: Family<StepLabel, Seconds>,
    plugin_seconds: Family<PipelineLabel, Seconds>,
    commit_latency: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    visible_latency: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    queue_depth: Family<PipelineLabel, Gauge>,
    passes: Family<PipelineLabel, Counter>,
    publishes: Family<PipelineLabel, Counter>,
    publish_failures: Family<PipelineLabel, Counter>,
    publish_seconds: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    /// Sources with metrics of their own ([`Source::metrics`]), by pipeline.
    sources: std::sync::Mutex<Vec<(String, Arc<dyn Source>)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("sluice");
        let m = Metrics {
            files_seen: Family::default(),
            files_committed: Family::default(),
            files_failed: Family::default(),
            rows_in: Family::default(),
            rows_written: Family::default(),
            bytes_in: Family::default(),
            bytes_written: Family::default(),
            step_calls: Family::default(),
            step_seconds: Family::default(),
            plugin_seconds: Family::default(),
            commit_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            visible_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            queue_depth: Family::default(),
            passes: Family::default(),
            publishes: Family::default(),
            publish_failures: Family::default(),
            publish_seconds: Family::new_with_constructor(publish_histogram as fn() -> Histogram),
            registry: Registry::default(),
            sources: Default::default(),
        };
        r.register("files_seen", "Files seen (again when rewritten after their commit)", m.files_seen.clone());
        r.register("files_committed", "Files committed to the lake", m.files_committed.clone());
        r.register("files_failed", "Failed attempts at files", m.files_failed.clone());
        r.register("rows_in", "Rows read from committed and failed files", m.rows_in.clone());
        r.register("rows_written", "Rows committed to the lake", m.rows_written.clone());
        r.register_with_unit("input", "Input bytes of committed files", Unit::Bytes, m.bytes_in.clone());
        r.register_with_unit("written", "Parquet bytes committed", Unit::Bytes, m.bytes_written.clone());
        r.register("step_calls", "Handler calls per step", m.step_calls.clone());
        r.register_with_unit("step_call", "Time in handler calls per step", Unit::Seconds, m.step_seconds.clone());
        r.register_with_unit("plugin", "Time in handler calls, all steps", Unit::Seconds, m.plugin_seconds.clone());
        r.register_with_unit(
            "commit_latency",
            "From a file's first sighting to its commit",
            Unit::Seconds,
            m.commit_latency.clone(),
        );
        r.register_with_unit(
            "visible_latency",
            "From a file's first sighting to the catalog publish that shows it",
            Unit::Seconds,
            m.visible_latency.clone(),
        );
        r.register(
            "queue_depth",
            "Files seen and not yet committed (waiting, ready or in flight)",
            m.queue_depth.clone(),
        );
        r.register("passes", "Ingestion passes run", m.passes.clone());
        r.register("catalog_publishes", "Catalog publishes", m.publishes.clone());
        r.register("catalog_publish_failures", "Catalog publishes that failed", m.publish_failures.clone());
        r.register_with_unit(
            "catalog_publish",
            "Time to publish the catalog",
            Unit::Seconds,
            m.publish_seconds.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The Prometheus text exposition (OpenMetrics), the sources' own metrics included.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        let sources = self.sources.lock().expect("sources lock").clone();
        let extra = encode_source_metrics(&sources);
        if !extra.is_empty() {
            let at = out.rfind("# EOF").unwrap_or(out.len());
            out.insert_str(at, &extra);
        }
        out
    }

    /// Export the metrics of `pipeline`'s sources (`sluice_source_*`, labelled by pipeline and
    /// source) for as long as the process runs.
    pub fn sources(&self, pipeline: &str, sources: &[Arc<dyn Source>]) {
        let mut g = self.sources.lock().expect("sources lock");
        g.retain(|(p, _)| p != pipeline);
        g.extend(sources.iter().map(|s| (pipeline.to_string(), s.clone())));
    }

    /// The metrics of one pipeline.
    pub fn pipeline(self: &Arc<Self>, name: &str) -> PipelineMetrics {
        let p = PipelineMetrics { metrics: self.clone(), label: [("pipeline", name.to_string())] };
        // Export zeros from the start, so rates work from the first scrape.
        for f in [
            &self.files_seen,
            &self.files_committed,
            &self.files_failed,
            &self.rows_in,
            &self.rows_written,
            &self.bytes_in,
            &self.bytes_written,
            &self.passes,
            &self.publishes,
            &self.publish_failures,
        ] {
            let _ = f.get_or_create(&p.label);
        }
        let _ = self.plugin_seconds.get_or_create(&p.label);
        let _ = self.queue_depth.get_or_create(&p.label);
        p
    }
}

/// The metrics of one pipeline.
#[derive(Clone)]
pub struct PipelineMetrics {
    metrics: Arc<Metrics>,
    label: PipelineLabel,
}

impl PipelineMetrics {
    pub fn seen(&self, n: u64) {
        self.metrics.files_seen.get_or_create(&self.label).inc_by(n);
    }

    pub fn committed(&self, rows: u64, input_bytes: u64, bytes: u64, latency: Option<Duration>) {
        let m = &self.metrics;
        m.files_committed.get_or_create(&self.label).inc();
        m.rows_written.get_or_create(&self.label).inc_by(rows);
        m.bytes_in.get_or_create(&self.label).inc_by(input_bytes);
        m.bytes_written.get_or_create(&self.label).inc_by(bytes);
        if let Some(l) = latency {
            m.commit_latency.get_or_create(&self.label).observe(l.as_secs_f64());
        }
    }

    pub fn failed(&self) {
        self.metrics.files_failed.get_or_create(&self.label).inc();
    }

    pub fn queue_depth(&self, n: usize) {
        self.metrics.queue_depth.get_or_create(&self.label).set(n as i64);
    }

    /// Fold in a pass's summary: rows read and per-step call counts and times.
    pub fn pass(&self, summary: &RunSummary) {
        let m = &self.metrics;
        m.passes.get_or_create(&self.label).inc();
        m.rows_in.get_or_create(&self.label).inc_by(summary.rows_in);
        let mut plugin = 0.0;
        for st in &summary.steps {
            let label = [self.label[0].clone(), ("step", st.name.clone())];
            m.step_calls.get_or_create(&label).inc_by(st.calls);
            let secs = st.plugin_ns as f64 / 1e9;
            m.step_seconds.get_or_create(&label).inc_by(secs);
            plugin += secs;
        }
        m.plugin_seconds.get_or_create(&self.label).inc_by(plugin);
    }

    pub(crate) fn published(&self, took: Duration, ok: bool) {
        let m = &self.metrics;
        m.publishes.get_or_create(&self.label).inc();
        if !ok {
            m.publish_failures.get_or_create(&self.label).inc();
        }
        m.publish_seconds.get_or_create(&self.label).observe(took.as_secs_f64());
    }

    pub(crate) fn visible_after(&self, latency: Duration) {
        self.metrics.visible_latency.get_or_create(&self.label).observe(latency.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_every_metric_with_its_pipeline() {
        let m = Metrics::new();
        let p = m.pipeline("ticks");
        p.seen(3);
        p.committed(100, 2048, 1024, Some(Duration::from_millis(700)));
        p.failed();
        p.queue_depth(2);
        let summary = RunSummary {
            rows_in: 120,
            steps: vec![sluice_core::summary::StepStats {
                name: "sma".into(),
                calls: 4,
                plugin_ns: 2_000_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        p.pass(&summary);
        p.published(Duration::from_millis(20), true);
        p.visible_after(Duration::from_millis(800));
        let text = m.encode();
        for line in [
            "sluice_files_seen_total{pipeline=\"ticks\"} 3",
            "sluice_files_committed_total{pipeline=\"ticks\"} 1",
            "sluice_files_failed_total{pipeline=\"ticks\"} 1",
            "sluice_rows_written_total{pipeline=\"ticks\"} 100",
            "sluice_rows_in_total{pipeline=\"ticks\"} 120",
            "sluice_input_bytes_total{pipeline=\"ticks\"} 2048",
            "sluice_written_bytes_total{pipeline=\"ticks\"} 1024",
            "sluice_step_calls_total{pipeline=\"ticks\",step=\"sma\"} 4",
            "sluice_step_call_seconds_total{pipeline=\"ticks\",step=\"sma\"} 0.002",
            "sluice_queue_depth{pipeline=\"ticks\"} 2",
            "sluice_commit_latency_seconds_count{pipeline=\"ticks\"} 1",
            "sluice_visible_latency_seconds_count{pipeline=\"ticks\"} 1",
            "sluice_catalog_publishes_total{pipeline=\"ticks\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;
    use sluice_core::error::SourceError;
    use sluice_core::source::{BatchStream, SourceUnit};

    struct Counting;

    impl Source for Counting {
        fn name(&self) -> &str {
            "bucket"
        }
        fn schema(&self) -> Option<sluice_core::SchemaRef> {
            None
        }
        fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
            Ok(Vec::new())
        }
        fn open(&self, _unit: &SourceUnit) -> Result<BatchStream, SourceError> {
            Ok(Box::new(std::iter::empty()))
        }
        fn metrics(&self) -> Vec<SourceMetric> {
            let m = |name, counter, labels, value| SourceMetric { name, help: "h", counter, labels, value };
            vec![
                m("bytes_downloaded_total", true, vec![], 2048.0),
                m("http_requests_total", true, vec![("status", "200".to_string())], 3.0),
                m("http_requests_total", true, vec![("status", "429".to_string())], 1.0),
                m("downloads_in_flight", false, vec![], 2.0),
            ]
        }
    }

    #[test]
    fn sources_export_their_own_metrics_before_the_end_marker() {
        let m = Metrics::new();
        let _ = m.pipeline("klines");
        m.sources("klines", &[Arc::new(Counting) as Arc<dyn Source>]);
        let text = m.encode();
        for line in [
            "# TYPE sluice_source_bytes_downloaded counter",
            "sluice_source_bytes_downloaded_total{pipeline=\"klines\",source=\"bucket\"} 2048",
            "sluice_source_http_requests_total{pipeline=\"klines\",source=\"bucket\",status=\"429\"} 1",
            "# TYPE sluice_source_downloads_in_flight gauge",
            "sluice_source_downloads_in_flight{pipeline=\"klines\",source=\"bucket\"} 2",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert_eq!(text.matches("# TYPE sluice_source_http_requests counter").count(), 1);
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
