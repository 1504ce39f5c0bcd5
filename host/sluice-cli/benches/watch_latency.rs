//! Benchmark: `sluice watch` latency from a file's arrival to its being queryable through the
//! published catalog, and sustained throughput for a burst of small files.
//!
//! Run: `cargo bench -p sluice-cli --bench watch_latency` (release profile; options after `--`:
//! `--files N` spaced files, default 200; `--spacing-ms MS`, default 200; `--burst N`, default
//! 2000; `--ready POLICY`, a YAML `ready:` value, default the built-in `{stable_for: 500ms}`).
//!
//! It starts the real binary on a fresh directory and lake, writes small CSV files (10 rows, one
//! step) one at a time with spacing, and watches `catalog.duckdb`: each time a new catalog is
//! renamed into place it notes the moment and asks the new catalog which files it shows. A
//! file's latency is from the end of its write to the first catalog showing it. Then it writes
//! a burst and reports files per second until the last one is queryable, and the commit rate
//! from the ledger. Prints a Markdown table for docs/benchmarks.md.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::Array;
use sluice_core::catalog::Catalog;

struct Args {
    files: usize,
    spacing: Duration,
    burst: usize,
    ready: Option<String>,
}

fn args() -> Args {
    let mut a = Args { files: 200, spacing: Duration::from_millis(200), burst: 2000, ready: None };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--files" => a.files = it.next().and_then(|v| v.parse().ok()).expect("--files N"),
            "--spacing-ms" => {
                a.spacing = Duration::from_millis(it.next().and_then(|v| v.parse().ok()).expect("--spacing-ms MS"))
            }
            "--burst" => a.burst = it.next().and_then(|v| v.parse().ok()).expect("--burst N"),
            "--ready" => a.ready = it.next(),
            _ => {} // `--bench` and the like, from cargo
        }
    }
    a
}

fn sluice_bin() -> PathBuf {
    std::env::var_os("SLUICE_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// A file of 10 rows: its number `f`, a row id and a value.
fn file_text(f: usize) -> String {
    let mut s = String::from("f,id,v\n");
    for i in 0..10 {
        s.push_str(&format!("{f},{},{}\n", f * 10 + i, i as f64 * 0.5));
    }
    s
}

/// The catalog file's identity: it changes when a new catalog is renamed into place.
fn catalog_id(p: &Path) -> Option<(u64, i64, i64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.ino(), m.mtime(), m.mtime_nsec()))
}

/// The file numbers the published catalog shows.
fn visible(lake: &Path) -> Vec<usize> {
    let cat = sluice_catalog::DuckCatalog::for_lake(lake);
    let Ok(batches) = cat.query("SELECT DISTINCT f FROM t") else { return Vec::new() };
    let mut out = Vec::new();
    for b in batches {
        let col = arrow_cast::cast(b.column(0), &arrow_schema::DataType::Int64).expect("f is an integer");
        let col = col.as_any().downcast_ref::<arrow_array::Int64Array>().expect("int64");
        out.extend(col.iter().flatten().map(|v| v as usize));
    }
    out
}

/// Follows catalog publishes: for each file number, when it first became queryable.
struct Follower {
    lake: PathBuf,
    last: Option<(u64, i64, i64)>,
    seen_at: BTreeMap<usize, Instant>,
    publishes: usize,
}

impl Follower {
    /// Check once for a new catalog; returns true when one was found.
    fn poll(&mut self) -> bool {
        let id = catalog_id(&self.lake.join("catalog.duckdb"));
        if id.is_none() || id == self.last {
            return false;
        }
        let at = Instant::now();
        self.last = id;
        self.publishes += 1;
        for f in visible(&self.lake) {
            self.seen_at.entry(f).or_insert(at);
        }
        true
    }

    fn wait_for(&mut self, f: usize, timeout: Duration) {
        let started = Instant::now();
        while !self.seen_at.contains_key(&f) {
            if !self.poll() {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(started.elapsed() < timeout, "file {f} never became queryable");
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let a = args();
    let tmp = tempfile::tempdir().expect("a temp dir");
    let root = tmp.path();
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let ready = a.ready.as_deref().map(|r| format!("    ready: {r}\n")).unwrap_or_default();
    let yaml = format!(
        "pipeline: bench\nsources:\n  s:\n    path: in\n    glob: \"*.csv\"\n    format:\n      csv: {{header: true, \
         columns: {{f: int64, id: int64, v: float64}}}}\n{ready}steps:\n  - plugin: select\n    config: {{columns: [f, \
         id, v]}}\nsink: {{lake: lake, dataset: t}}\n"
    );
    std::fs::write(root.join("p.yaml"), yaml).unwrap();
    let lake = root.join("lake");
    let log_path = root.join("watch.log");
    let mut child: Child = Command::new(sluice_bin())
        .args(["--log-format", "json", "watch", root.join("p.yaml").to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start sluice watch");
    let mut follower = Follower { lake: lake.clone(), last: None, seen_at: BTreeMap::new(), publishes: 0 };
    // The first (empty) catalog: the watch is up.
    let started = Instant::now();
    while !follower.poll() {
        assert!(started.elapsed() < Duration::from_secs(120), "no catalog: did sluice watch start?");
        std::thread::sleep(Duration::from_millis(5));
    }

    // 1. Latency: files one at a time, with spacing.
    eprintln!("latency: {} files, one every {:?}", a.files, a.spacing);
    let mut written_at = BTreeMap::new();
    let mut next = Instant::now();
    for f in 0..a.files {
        while Instant::now() < next {
            if !follower.poll() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::fs::write(input.join(format!("lat{f:05}.csv")), file_text(f)).unwrap();
        written_at.insert(f, Instant::now());
        next += a.spacing;
    }
    for f in 0..a.files {
        follower.wait_for(f, Duration::from_secs(120));
    }
    let metrics_lat = scrape(&log_path);
    let mut lat: Vec<f64> = (0..a.files)
        .map(|f| follower.seen_at[&f].saturating_duration_since(written_at[&f]).as_secs_f64() * 1e3)
        .collect();
    lat.sort_by(f64::total_cmp);
    let publishes_lat = follower.publishes;

    // 2. Throughput: a burst of small files, as fast as they can be written.
    eprintln!("burst: {} files", a.burst);
    let base = 1_000_000;
    let t0 = Instant::now();
    for i in 0..a.burst {
        std::fs::write(input.join(format!("burst{i:06}.csv")), file_text(base + i)).unwrap();
    }
    let written = t0.elapsed();
    for i in 0..a.burst {
        follower.wait_for(base + i, Duration::from_secs(600));
    }
    let all_visible = follower.seen_at.range(base..).map(|(_, t)| *t).max().unwrap().duration_since(t0);
    // The commit rate, from the ledger: first to last commit of the burst.
    let ledger = std::fs::read_to_string(lake.join("_sluice/ledger.jsonl")).unwrap();
    let commits: Vec<u64> = ledger
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["unit"]["rel_path"].as_str().is_some_and(|p| p.starts_with("burst")))
        .map(|r| r["committed_at_ms"].as_u64().unwrap())
        .collect();
    let span_ms = (commits.iter().max().unwrap() - commits.iter().min().unwrap()).max(1);

    let metrics_all = scrape(&log_path);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "sluice watch exited with {exit}");

    let policy = a.ready.as_deref().unwrap_or("{stable_for: 500ms} (default)");
    println!("| measurement (`ready: {policy}`) | value |");
    println!("|---|---|");
    println!(
        "| arrival → queryable, {} files of 10 rows written {} ms apart: p50 / p90 / p99 / max | {:.0} / {:.0} / {:.0} / {:.0} ms |",
        a.files,
        a.spacing.as_millis(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!("| catalog publishes during those {} files | {} |", a.files, publishes_lat - 1);
    println!(
        "| burst of {} files (written in {:.2} s): all queryable after | {:.2} s ({:.0} files/s) |",
        a.burst,
        written.as_secs_f64(),
        all_visible.as_secs_f64(),
        a.burst as f64 / all_visible.as_secs_f64()
    );
    println!(
        "| burst commit rate (ledger, first to last commit) | {:.0} files/s |",
        commits.len() as f64 / (span_ms as f64 / 1e3)
    );
    println!("| catalog publishes in total | {} |", follower.publishes);
    // Where the spaced files' time went, from the watch's own histograms (means).
    let mean = |m: &str, name: &str| {
        let sum = metric(m, &format!("sluice_{name}_sum{{pipeline=\"bench\"}}")).unwrap_or(0.0);
        let n = metric(m, &format!("sluice_{name}_count{{pipeline=\"bench\"}}")).unwrap_or(0.0).max(1.0);
        sum / n * 1e3
    };
    println!(
        "| spaced files, means from `/metrics`: first sighting → commit; → publish; one publish | {:.0} ms; {:.0} ms; {:.0} ms |",
        mean(&metrics_lat, "commit_latency_seconds"),
        mean(&metrics_lat, "visible_latency_seconds"),
        mean(&metrics_lat, "catalog_publish_seconds")
    );
    println!(
        "| one catalog publish (mean over the whole run, up to {} files in the lake) | {:.0} ms |",
        a.files + a.burst,
        mean(&metrics_all, "catalog_publish_seconds")
    );
}

/// The watch's `/metrics`, at the address its log names.
fn scrape(log: &Path) -> String {
    use std::io::{Read, Write};
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let Some(addr) = text.lines().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        v["fields"]["addr"].as_str().map(str::to_string)
    }) else {
        return String::new();
    };
    let Ok(mut s) = std::net::TcpStream::connect(&addr) else { return String::new() };
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
