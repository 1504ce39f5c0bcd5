//! The operations endpoint (off by default): `GET /metrics` (Prometheus text format) and
//! `GET /healthz` (200 `ok` while watching, 503 `stopping` once a stop was requested), served
//! by `tiny_http` from one thread that `stop` joins.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tiny_http::{Header, Response, Server};

use crate::{Metrics, Shutdown, WatchError};

pub struct Endpoint {
    server: Arc<Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

impl Endpoint {
    /// Listen on `addr` (port 0 picks a free port; see [`Endpoint::addr`]).
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>, shutdown: Arc<Shutdown>) -> Result<Self, WatchError> {
        let server =
            Server::http(addr).map_err(|e| WatchError::Listen { addr: addr.to_string(), message: e.to_string() })?;
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-http".into())
            .spawn(move || serve(&s, &metrics, &shutdown))
            .map_err(|e| WatchError::Listen { addr: addr.to_string(), message: e.to_string() })?;
        tracing::info!(addr = %bound, "serving /metrics and /healthz");
        Ok(Endpoint { server, addr: bound, thread: Some(thread) })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and join the thread.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.server.unblock();
            let _ = t.join();
        }
    }
}

fn serve(server: &Server, metrics: &Metrics, shutdown: &Shutdown) {
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let resp = match (req.method(), path.as_str()) {
            (tiny_http::Method::Get, "/metrics") => {
                // OpenMetrics to the scrapers that ask for it, the Prometheus text format (0.0.4)
                // to the others, each under its own content type.
                let accept = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map(|h| h.value.as_str().to_ascii_lowercase())
                    .unwrap_or_default();
                if accept.contains("application/openmetrics-text") {
                    Response::from_string(metrics.encode()).with_header(header(
                        "Content-Type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ))
                } else {
                    Response::from_string(prometheus_text(&metrics.encode()))
                        .with_header(header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"))
                }
            }
            (tiny_http::Method::Get, "/healthz") if shutdown.is_triggered() => {
                Response::from_string("stopping\n").with_status_code(503)
            }
            (tiny_http::Method::Get, "/healthz") => Response::from_string("ok\n"),
            _ => Response::from_string("not found: try /metrics or /healthz\n").with_status_code(404),
        };
        if let Err(e) = req.respond(resp) {
            tracing::debug!("metrics endpoint: {e}");
        }
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition: no `# EOF` or `# UNIT`
/// lines, and counters' `HELP`/`TYPE` under the name their samples carry (`_total`).
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        get_with(addr, path, "")
    }

    fn get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_health_on_loopback() {
        let metrics = Metrics::new();
        metrics.pipeline("p").seen(2);
        let shutdown = Shutdown::new();
        let ep = Endpoint::start("127.0.0.1:0".parse().unwrap(), metrics, shutdown.clone()).unwrap();
        let addr = ep.addr();
        let m = get(addr, "/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("sluice_files_seen_total{pipeline=\"p\"} 2"), "{m}");
        // Prometheus text by default: its content type, no OpenMetrics-only lines, counters
        // typed under their sample name; every counter of the pipeline is there from the start.
        assert!(m.contains("Content-Type: text/plain; version=0.0.4"), "{m}");
        assert!(!m.contains("# EOF") && !m.contains("# UNIT"), "{m}");
        assert!(m.contains("# TYPE sluice_files_seen_total counter"), "{m}");
        assert!(m.contains("sluice_catalog_publish_failures_total{pipeline=\"p\"} 0"), "{m}");
        assert!(m.contains("sluice_rows_written_total{pipeline=\"p\"} 0"), "{m}");
        // OpenMetrics to a scraper that asks for it.
        let m = get_with(addr, "/metrics", "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n");
        assert!(m.contains("Content-Type: application/openmetrics-text; version=1.0.0"), "{m}");
        assert!(m.trim_end().ends_with("# EOF"), "{m}");
        assert!(m.contains("# TYPE sluice_files_seen counter"), "{m}");
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        shutdown.trigger();
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 503"));
        ep.stop();
    }
}
