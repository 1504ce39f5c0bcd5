//! The source's counters, read by the progress display and `watch`'s Prometheus endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::source::SourceMetric;

#[derive(Debug, Default)]
pub struct Metrics {
    pub objects_listed: AtomicU64,
    pub objects_fetched: AtomicU64,
    pub objects_skipped: AtomicU64,
    pub fetch_failures: AtomicU64,
    pub bytes_downloaded: AtomicU64,
    pub retries: AtomicU64,
    pub throttled_ms: AtomicU64,
    pub in_flight: AtomicU64,
    pub queued: AtomicU64,
    pub list_ms: AtomicU64,
    /// Requests by status (0: no response), with their summed latency in microseconds.
    pub requests: Mutex<BTreeMap<u16, (u64, u64)>>,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn request(&self, status: u16, latency: std::time::Duration) {
        let mut g = self.requests.lock().expect("metrics lock");
        let e = g.entry(status).or_default();
        e.0 += 1;
        e.1 += latency.as_micros() as u64;
    }

    pub fn snapshot(&self) -> Vec<SourceMetric> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let m = |name, help, counter, value| SourceMetric { name, help, counter, labels: Vec::new(), value };
        let mut out = vec![
            m("objects_listed", "Objects the last listing selected.", false, get(&self.objects_listed)),
            m("objects_fetched_total", "Objects downloaded and checked.", true, get(&self.objects_fetched)),
            m(
                "objects_skipped_total",
                "Objects already in the mirror with the listed ETag and size.",
                true,
                get(&self.objects_skipped),
            ),
            m("fetch_failures_total", "Objects whose every download attempt failed.", true, get(&self.fetch_failures)),
            m("bytes_downloaded_total", "Bytes received in object bodies.", true, get(&self.bytes_downloaded)),
            m("retries_total", "Download attempts retried.", true, get(&self.retries)),
            m(
                "throttled_seconds_total",
                "Time downloads waited on a server's Retry-After.",
                true,
                get(&self.throttled_ms) / 1000.0,
            ),
            m("downloads_in_flight", "Downloads in progress.", false, get(&self.in_flight)),
            m("downloads_queued", "Objects waiting to be downloaded.", false, get(&self.queued)),
            m("list_duration_seconds", "How long the last full listing took.", false, get(&self.list_ms) / 1000.0),
        ];
        for (status, (n, micros)) in self.requests.lock().expect("metrics lock").iter() {
            let label = if *status == 0 { "none".to_string() } else { status.to_string() };
            out.push(SourceMetric {
                name: "http_requests_total",
                help: "HTTP requests by response status (`none`: no response).",
                counter: true,
                labels: vec![("status", label.clone())],
                value: *n as f64,
            });
            out.push(SourceMetric {
                name: "http_request_seconds_total",
                help: "Time until the response's headers, summed, by status.",
                counter: true,
                labels: vec![("status", label)],
                value: *micros as f64 / 1e6,
            });
        }
        out
    }
}
