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
            (tiny_http::Method::Get, "/metrics") => Response::from_string(metrics.encode())
                .with_header(header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")),
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
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
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        shutdown.trigger();
        assert!(get(addr, "/healthz").starts_with("HTTP/1.1 503"));
        ep.stop();
    }
}
