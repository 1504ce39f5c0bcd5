//! `sluice watch`: the real process watching a directory while the test writes files into it
//! the ways writers do (slowly in chunks, by rename, in bursts, with markers, across restarts),
//! then stopping it with SIGTERM. Each test checks exactly-once results through the catalog
//! (`sluice query`: counts, sums, no duplicate ids) and the ledger (one record per file
//! version). Waits are generous and nothing asserts on timing.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// How long any single wait may take on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(240);

/// A pipeline over `root/in` into `root/lake`, with `extra` lines added to the source.
fn pipeline(root: &Path, extra: &str) -> PathBuf {
    let yaml = format!(
        r#"
pipeline: w
sources:
  s:
    path: in
    glob: "**/*.csv"
    format:
      csv: {{header: true, columns: {{id: int64, v: float64}}}}
{extra}
steps:
  - plugin: select
    config: {{columns: [id, v]}}
sink: {{lake: lake, dataset: t}}
settings: {{workers: 2}}
"#
    );
    std::fs::create_dir_all(root.join("in")).unwrap();
    let p = root.join("w.yaml");
    write(&p, &yaml);
    p
}

/// The rows of file number `k`: ids `k*rows ..`, `v = id / 2`.
fn rows_of(k: usize, rows: usize) -> String {
    let mut s = String::from("id,v\n");
    for i in 0..rows {
        let id = k * rows + i;
        s.push_str(&format!("{id},{}\n", id as f64 / 2.0));
    }
    s
}

/// A running `sluice watch`, its log in a file.
pub(crate) struct Watch {
    child: std::cell::RefCell<Option<Child>>,
    log: PathBuf,
}

static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Watch {
    pub(crate) fn start(yaml: &Path, args: &[&str]) -> Self {
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = yaml.with_file_name(format!("watch-{n}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = sluice()
            .args(["--log-format", "json", "watch", yaml.to_str().unwrap()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn sluice watch");
        Watch { child: std::cell::RefCell::new(Some(child)), log }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, when the process has exited on its own.
    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.borrow_mut().as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGTERM, then wait; returns the exit code.
    pub(crate) fn stop(self) -> Option<i32> {
        let mut child = self.child.borrow_mut().take().unwrap();
        let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let code = wait_exit(&mut child);
        eprintln!("--- sluice watch log ---\n{}", tail(&self.log(), 40));
        code
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(self) {
        let mut c = self.child.borrow_mut().take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// The address of `--listen 127.0.0.1:0`, from the log.
    pub(crate) fn metrics_addr(&self) -> String {
        wait_until("the metrics endpoint to listen", self, || {
            self.log().lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["fields"]["addr"].as_str().map(str::to_string)
            })
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.borrow_mut().take() {
            let _ = c.kill();
            let _ = c.wait();
            eprintln!("--- sluice watch log (killed at the end of a failed test) ---\n{}", tail(&self.log(), 60));
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn wait_exit(c: &mut Child) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code();
        }
        assert!(started.elapsed() < PATIENCE, "sluice watch did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `f` until it returns something; panic with the watch log after `PATIENCE`.
pub(crate) fn wait_until<T>(what: &str, w: &Watch, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if let Some(status) = w.exited() {
            panic!("sluice watch exited ({status}) while waiting for {what}; log:\n{}", tail(&w.log(), 60));
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}; log:\n{}", tail(&w.log(), 60));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rows, distinct ids, and the sum of ids through the catalog; zeros before it exists.
fn totals(lake: &Path) -> (u64, u64, u64) {
    let out = sluice()
        .args([
            "query",
            "--lake",
            lake.to_str().unwrap(),
            "--format",
            "json",
            "SELECT count(*) AS n, count(DISTINCT id) AS d, coalesce(sum(id), 0) AS s FROM t",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return (0, 0, 0);
    }
    let r: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let n = |k: &str| r[k].as_u64().or_else(|| r[k].as_str().and_then(|s| s.parse().ok())).unwrap();
    (n("n"), n("d"), n("s"))
}

/// The expected totals of files `0..files` of `rows` rows each.
fn expected(files: usize, rows: usize) -> (u64, u64, u64) {
    let n = (files * rows) as u64;
    (n, n, n * (n - 1) / 2)
}

/// Wait until the catalog shows `want`, then check it stays exact.
fn wait_for_totals(w: &Watch, lake: &Path, want: (u64, u64, u64)) {
    let mut last = (0, 0, 0);
    wait_until(&format!("the catalog to show {want:?}"), w, || {
        last = totals(lake);
        assert!(last.0 == last.1, "duplicates through the catalog: {last:?}");
        assert!(last.0 <= want.0, "more rows than written: {last:?} > {want:?}");
        (last == want).then_some(())
    });
}

/// Ledger records per source file (`rel_path`).
fn ledger_records(lake: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(lake.join("_sluice/ledger.jsonl")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        *out.entry(r["unit"]["rel_path"].as_str().unwrap().to_string()).or_default() += 1;
    }
    out
}

/// Stop with SIGTERM: exit 0, and the catalog published on exit agrees with the ledger and the
/// files (`sluice lake verify`).
fn stop_cleanly(w: Watch, lake: &Path) {
    assert_eq!(w.stop(), Some(0), "sluice watch must exit 0 on SIGTERM");
    assert!(lake.join("catalog.duckdb").is_file(), "no catalog published");
    let out = run(&["lake", "verify", "--lake", lake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "lake verify after a graceful stop");
}

fn write_chunked(path: &Path, text: &str, chunks: usize, pause: Duration) {
    let mut f = std::fs::File::create(path).unwrap();
    let step = text.len().div_ceil(chunks);
    for part in text.as_bytes().chunks(step) {
        f.write_all(part).unwrap();
        f.flush().unwrap();
        std::thread::sleep(pause);
    }
}

#[test]
fn watch_slow_chunked_writes_are_ingested_once_when_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // A window far longer than the pauses, so a pause never looks like a finished file.
    let yaml = pipeline(root, "    ready: {stable_for: 2s}");
    let lake = root.join("lake");
    let w = Watch::start(&yaml, &[]);
    const FILES: usize = 4;
    const ROWS: usize = 500;
    for k in 0..FILES {
        // Chunk boundaries fall mid-line: a reader that ingested early would see a torn row.
        write_chunked(&root.join(format!("in/slow{k}.csv")), &rows_of(k, ROWS), 6, Duration::from_millis(150));
    }
    wait_for_totals(&w, &lake, expected(FILES, ROWS));
    // Each file was committed exactly once, complete: never a first, partial version.
    let records = ledger_records(&lake);
    assert_eq!(records.len(), FILES, "{records:?}");
    assert!(records.values().all(|&n| n == 1), "a file was ingested more than once: {records:?}");
    stop_cleanly(w, &lake);
}

#[test]
fn watch_rename_into_place_never_ingests_temporary_names() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "    ready: renamed");
    let lake = root.join("lake");
    let w = Watch::start(&yaml, &[]);
    const FILES: usize = 6;
    const ROWS: usize = 300;
    for k in 0..FILES {
        // Written slowly under a temporary name, then renamed into place whole.
        let tmp_name = if k % 2 == 0 { format!(".tmp-r{k}.csv") } else { format!("r{k}.csv.partial") };
        let tmp_path = root.join("in").join(tmp_name);
        write_chunked(&tmp_path, &rows_of(k, ROWS), 4, Duration::from_millis(100));
        std::fs::rename(&tmp_path, root.join(format!("in/r{k}.csv"))).unwrap();
    }
    wait_for_totals(&w, &lake, expected(FILES, ROWS));
    let records = ledger_records(&lake);
    let want: Vec<String> = (0..FILES).map(|k| format!("r{k}.csv")).collect();
    assert_eq!(records.keys().cloned().collect::<Vec<_>>(), want, "only final names are ingested");
    assert!(records.values().all(|&n| n == 1), "{records:?}");
    stop_cleanly(w, &lake);
}

#[test]
fn watch_burst_of_1000_small_files_with_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "");
    let lake = root.join("lake");
    let w = Watch::start(&yaml, &["--listen", "127.0.0.1:0"]);
    let addr = w.metrics_addr();
    const FILES: usize = 1000;
    const ROWS: usize = 3;
    for k in 0..FILES {
        // Spread over subdirectories created during the burst.
        let p = root.join(format!("in/d{}/b{k:04}.csv", k % 10));
        write(&p, &rows_of(k, ROWS));
    }
    wait_for_totals(&w, &lake, expected(FILES, ROWS));
    let records = ledger_records(&lake);
    assert_eq!(records.len(), FILES);
    assert!(records.values().all(|&n| n == 1));
    // stats.json follows the catalog while watch runs: a burst commits faster than its once-a-second
    // rewrite, and the publish after the burst writes what is left.
    wait_until("stats.json to count every row", &w, || {
        let text = std::fs::read_to_string(lake.join("_sluice/stats/t.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v["rows"].as_u64() == Some((FILES * ROWS) as u64) && v["files"].as_u64() == Some(FILES as u64)).then_some(())
    });

    // The endpoint: health, and metrics that agree with what happened.
    let health = http_get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"), "{health}");
    let metrics = wait_until("the metrics to settle", &w, || {
        let m = http_get(&addr, "/metrics");
        (metric(&m, "sluice_queue_depth{pipeline=\"w\"}") == Some(0.0)).then_some(m)
    });
    assert_eq!(metric(&metrics, "sluice_files_committed_total{pipeline=\"w\"}"), Some(FILES as f64));
    assert_eq!(metric(&metrics, "sluice_files_seen_total{pipeline=\"w\"}"), Some(FILES as f64));
    assert_eq!(metric(&metrics, "sluice_rows_written_total{pipeline=\"w\"}"), Some((FILES * ROWS) as f64));
    assert_eq!(metric(&metrics, "sluice_commit_latency_seconds_count{pipeline=\"w\"}"), Some(FILES as f64));
    // Counters exist at zero, and the body is what its content type says.
    assert_eq!(metric(&metrics, "sluice_catalog_publish_failures_total{pipeline=\"w\"}"), Some(0.0));
    assert!(metrics.contains("Content-Type: text/plain; version=0.0.4") && !metrics.contains("# EOF"));
    // At least one call of the step per file (a batch, then the end-of-file flush).
    let calls = metric(&metrics, "sluice_step_calls_total{pipeline=\"w\",step=\"select\"}").unwrap();
    assert!(calls >= FILES as f64, "{calls} step calls");
    assert!(metric(&metrics, "sluice_step_call_seconds_total{pipeline=\"w\",step=\"select\"}").unwrap() > 0.0);
    // Batched: far fewer passes than files, and far fewer catalog publishes.
    let passes = metric(&metrics, "sluice_passes_total{pipeline=\"w\"}").unwrap();
    let publishes = metric(&metrics, "sluice_catalog_publishes_total{pipeline=\"w\"}").unwrap();
    eprintln!("{FILES} files in {passes} passes and {publishes} catalog publishes");
    assert!(passes < FILES as f64 / 2.0, "a burst is batched into passes: {passes} passes");
    assert!(publishes < FILES as f64 / 2.0, "publishing is debounced: {publishes} publishes");
    stop_cleanly(w, &lake);
}

pub(crate) fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A sample's value in the Prometheus text format.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn watch_restart_in_the_middle_gives_exact_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "");
    let lake = root.join("lake");
    const ROWS: usize = 50;
    let mut written = 0;
    let mut burst = |n: usize| {
        for k in written..written + n {
            write(&root.join(format!("in/x{k:04}.csv")), &rows_of(k, ROWS));
        }
        written += n;
        written
    };

    // 1. A graceful stop mid-burst: the units in flight commit, the catalog is published.
    let w = Watch::start(&yaml, &[]);
    let total = burst(300);
    wait_until("a first commit", &w, || (totals(&lake).0 > 0).then_some(()));
    stop_cleanly(w, &lake);
    let after_term = ledger_records(&lake).len();
    eprintln!("{after_term} of {total} files committed at SIGTERM");

    // 2. More files while stopped; a restart catches up, then SIGKILL mid-way.
    let total = burst(200);
    let w = Watch::start(&yaml, &[]);
    wait_until("progress after the restart", &w, || (ledger_records(&lake).len() > after_term).then_some(()));
    w.kill();
    eprintln!("{} of {total} files committed at SIGKILL", ledger_records(&lake).len());

    // 3. More files; the last start recovers and finishes, exactly once.
    let total = burst(100);
    let w = Watch::start(&yaml, &[]);
    wait_for_totals(&w, &lake, expected(total, ROWS));
    let records = ledger_records(&lake);
    assert_eq!(records.len(), total);
    assert!(records.values().all(|&n| n == 1), "a file was committed twice across restarts");
    stop_cleanly(w, &lake);
}

#[test]
fn watch_poll_mode_with_markers_per_file_and_per_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Two sources: `{file}.done` markers in in/a, one `_SUCCESS` for the directory in/b.
    let yaml = r#"
pipeline: w
sources:
  a:
    path: in/a
    glob: "*.csv"
    format: {csv: {header: true, columns: {id: int64, v: float64}}}
    ready: {marker: "{file}.done"}
    watch: {mode: poll, poll_interval: 100ms}
  b:
    path: in/b
    glob: "*.csv"
    format: {csv: {header: true, columns: {id: int64, v: float64}}}
    ready: {marker: _SUCCESS}
    watch: {mode: poll, poll_interval: 100ms}
sink: {lake: lake, dataset: t}
settings: {workers: 2}
"#;
    std::fs::create_dir_all(root.join("in/a")).unwrap();
    std::fs::create_dir_all(root.join("in/b")).unwrap();
    let yaml_path = root.join("w.yaml");
    write(&yaml_path, yaml);
    let lake = root.join("lake");
    const ROWS: usize = 20;
    for k in 0..4 {
        let dir = if k < 2 { "a" } else { "b" };
        write(&root.join(format!("in/{dir}/m{k}.csv")), &rows_of(k, ROWS));
    }
    let w = Watch::start(&yaml_path, &["--listen", "127.0.0.1:0"]);
    let addr = w.metrics_addr();
    // Seen by the poller, yet not complete: nothing is ingested without its marker.
    wait_until("the files to be seen", &w, || {
        (metric(&http_get(&addr, "/metrics"), "sluice_files_seen_total{pipeline=\"w\"}") == Some(4.0)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500)); // a few more polls
    assert_eq!(totals(&lake).0, 0, "ingested before its marker");
    assert!(ledger_records(&lake).is_empty());
    assert!(w.log().contains("polling"), "poll mode was not used");

    // The per-file markers: only the marked file.
    write(&root.join("in/a/m0.csv.done"), "");
    wait_for_totals(&w, &lake, (ROWS as u64, ROWS as u64, (0..ROWS as u64).sum()));
    write(&root.join("in/a/m1.csv.done"), "");
    wait_for_totals(&w, &lake, expected(2, ROWS));
    // The directory marker: both files of in/b.
    write(&root.join("in/b/_SUCCESS"), "");
    wait_for_totals(&w, &lake, expected(4, ROWS));
    let records = ledger_records(&lake);
    assert_eq!(records.len(), 4, "markers are never ingested as data: {records:?}");
    stop_cleanly(w, &lake);

    // `sluice run` honours markers too: a new file without one is left alone.
    write(&root.join("in/a/m9.csv"), &rows_of(9, ROWS));
    let out = run(&["run", yaml_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ledger_records(&lake).len(), 4);
}

#[test]
fn watch_rewritten_file_replaces_its_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "    ready: {stable_for: 1s}");
    let lake = root.join("lake");
    let w = Watch::start(&yaml, &[]);
    write(&root.join("in/a.csv"), &rows_of(0, 10));
    wait_for_totals(&w, &lake, expected(1, 10));
    // Rewritten with other rows: ingested again as a changed source, replacing the old rows.
    let mut text = String::from("id,v\n");
    for id in 100..125 {
        text.push_str(&format!("{id},1.0\n"));
    }
    write(&root.join("in/a.csv"), &text);
    wait_for_totals(&w, &lake, (25, 25, (100..125).sum()));
    assert_eq!(ledger_records(&lake).get("a.csv"), Some(&2));
    stop_cleanly(w, &lake);
}

#[test]
fn watch_failed_file_is_retried_then_poisoned_until_it_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "    ready: {stable_for: 200ms}\n    retries: 2");
    let lake = root.join("lake");
    write(&root.join("in/good.csv"), &rows_of(0, 10));
    // Not a single row parses: the file fails as unreadable (and is skipped, the watch goes on).
    write(&root.join("in/bad.csv"), "id,v\nx,y\nz,w\n");
    let w = Watch::start(&yaml, &["--listen", "127.0.0.1:0"]);
    let addr = w.metrics_addr();
    wait_for_totals(&w, &lake, expected(1, 10));
    // Two attempts (the second after a backoff), then poisoned: out of the queue, not retried.
    wait_until("two failed attempts and an empty queue", &w, || {
        let m = http_get(&addr, "/metrics");
        let failed = metric(&m, "sluice_files_failed_total{pipeline=\"w\"}");
        assert!(failed <= Some(2.0), "retried past `retries`: {failed:?}");
        (failed == Some(2.0) && metric(&m, "sluice_queue_depth{pipeline=\"w\"}") == Some(0.0)).then_some(())
    });
    let failures = std::fs::read_to_string(lake.join("_sluice/failures.jsonl")).unwrap();
    assert_eq!(failures.lines().count(), 2, "{failures}");
    assert!(w.log().contains("failed too many times"), "the poisoned file is logged");
    // Fixed: a changed file starts over and is ingested.
    write(&root.join("in/bad.csv"), &rows_of(1, 10));
    wait_for_totals(&w, &lake, expected(2, 10));
    stop_cleanly(w, &lake);
}

/// Groups across files in `watch`: after every commit each (key, day) is in the lake once, with
/// the rows committed so far; the day a later file continues moves to that file's output.
#[test]
fn watch_groups_across_files_are_one_row_after_every_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("in")).unwrap();
    let yaml = root.join("w.yaml");
    write(
        &yaml,
        r#"
pipeline: w
sources:
  s:
    path: in
    glob: "*.csv"
    fields: "{k}-{part}.csv"
    format:
      csv: {header: true, columns: {ts: timestamp_ms, v: int64}}
steps:
  - plugin: aggregate
    config: {keys: [k], time: ts, every: day, tz: Europe/Berlin, aggs: [{fn: sum, column: v, as: s}, {fn: count, as: n}]}
sink: {lake: lake, dataset: t}
settings: {workers: 2}
"#,
    );
    let lake = root.join("lake");
    let w = Watch::start(&yaml, &[]);
    // Half-days of two keys; Berlin days begin at 23:00 UTC in January.
    type Part<'a> = (&'a str, &'a str, &'a [(&'a str, i64)]);
    let parts: [Part; 5] = [
        ("a", "1", &[("2024-01-01T23:00:00", 1), ("2024-01-02T05:00:00", 2)]),
        ("b", "1", &[("2024-01-02T01:00:00", 10)]),
        ("a", "2", &[("2024-01-02T12:00:00", 4), ("2024-01-02T22:59:59", 8)]),
        ("a", "3", &[("2024-01-02T23:00:00", 16)]),
        ("b", "2", &[("2024-01-02T20:00:00", 20)]),
    ];
    let mut expect: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (k, part, rows) in parts {
        let mut text = String::from("ts,v\n");
        for (ts, v) in rows {
            text.push_str(&format!("{ts},{v}\n"));
            // The Berlin date (UTC+1 in January): from 23:00 UTC on, the next day.
            let date = &ts[..10];
            let berlin = match (&ts[11..13] >= "23", date) {
                (false, d) => d,
                (true, "2024-01-01") => "2024-01-02",
                (true, _) => "2024-01-03",
            };
            *expect.entry((k.to_string(), berlin.to_string())).or_default() += v;
        }
        write(&root.join("in").join(format!("{k}-{part}.csv")), &text);
        let want: Vec<i64> = expect.values().copied().collect();
        let total: i64 = want.iter().sum();
        wait_until(&format!("{k}-{part}.csv in the lake"), &w, || {
            let rows = try_query(&lake, "SELECT k, ts, s FROM t ORDER BY k, ts")?;
            let sums: Vec<i64> = rows.iter().map(|r| r["s"].as_i64().unwrap()).collect();
            (sums.iter().sum::<i64>() == total).then_some(sums)
        });
        // Once per group, with every committed row: no (key, day) twice.
        let rows = query(&lake, "SELECT k, ts, count(*) AS c FROM t GROUP BY ALL HAVING count(*) > 1");
        assert!(rows.is_empty(), "after {k}-{part}.csv: {rows:#?}");
        let sums: Vec<i64> =
            query(&lake, "SELECT s FROM t ORDER BY k, ts").iter().map(|r| r["s"].as_i64().unwrap()).collect();
        assert_eq!(sums, want, "after {k}-{part}.csv");
    }
    stop_cleanly(w, &lake);
}

/// Source files per ledger record, counting only unit records (compactions are other lines).
fn unit_records(lake: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(lake.join("_sluice/ledger.jsonl")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("{\"unit_id\"")) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        *out.entry(r["unit"]["rel_path"].as_str().unwrap().to_string()).or_default() += 1;
    }
    out
}

#[test]
fn lake_compact_runs_while_watch_ingests_and_rewrites() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "    ready: {stable_for: 300ms}");
    let lake = root.join("lake");
    const ROWS: usize = 20;
    let w = Watch::start(&yaml, &[]);
    let mut written = 0;
    let mut compactions = 0;
    for round in 0..6 {
        for k in written..written + 40 {
            write(&root.join(format!("in/x{k:04}.csv")), &rows_of(k, ROWS));
        }
        written += 40;
        // Rewrite a file committed (and likely compacted) earlier with the same rows in
        // another order: a changed source whose rows must leave the compacted file once.
        if round > 0 {
            let k = round * 7;
            let text = rows_of(k, ROWS);
            let mut lines: Vec<&str> = text.lines().skip(1).collect();
            lines.reverse();
            write(&root.join(format!("in/x{k:04}.csv")), &format!("id,v\n{}\n", lines.join("\n")));
        }
        // Compact while the watch is committing this burst: once its first file is in (a fixed
        // pause lost the race on a loaded machine, and then the round had nothing new to pack).
        let before = written - 40;
        wait_until("the burst's first commit", &w, || (unit_records(&lake).len() > before).then_some(()));
        let out = run(&["lake", "compact", lake.to_str().unwrap(), "--json", "--retain", "0s"]);
        if out.status.success() {
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            compactions += (r["files_out"].as_u64().unwrap() > 0) as usize;
        } else {
            // Before the first commit there is no lake yet.
            assert!(round == 0, "compact failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (n, d, _) = totals(&lake);
        assert_eq!(n, d, "duplicates through the catalog after compaction round {round}: {n} rows, {d} ids");
    }
    wait_for_totals(&w, &lake, expected(written, ROWS));
    let report = run(&["lake", "compact", lake.to_str().unwrap(), "--json"]);
    assert!(report.status.success());
    wait_for_totals(&w, &lake, expected(written, ROWS));
    assert!(compactions >= 2, "only {compactions} compaction(s) had files to pack");
    let records = unit_records(&lake);
    assert_eq!(records.len(), written);
    // A vacuum beside the running watch frees the compacted-away files.
    let out = run(&["lake", "vacuum", lake.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stop_cleanly(w, &lake);
    assert_eq!(totals(&lake), expected(written, ROWS));
    let live = files_under(&lake.join("t")).iter().filter(|f| f.ends_with(".parquet")).count();
    assert!(live < written / 4, "{live} live files for {written} sources after compaction");
}

#[test]
fn watch_compacts_on_its_own_with_compact_in_the_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "");
    let text = std::fs::read_to_string(&yaml).unwrap().replace(
        "sink: {lake: lake, dataset: t}",
        "sink: {lake: lake, dataset: t, compact: {min_files: 10, target_size: 1MiB}}",
    );
    write(&yaml, &text);
    let lake = root.join("lake");
    let w = Watch::start(&yaml, &[]);
    let live = || files_under(&lake.join("t")).iter().filter(|f| f.ends_with(".parquet")).count();
    for burst in 0..3 {
        for k in burst * 30..(burst + 1) * 30 {
            write(&root.join(format!("in/x{k:04}.csv")), &rows_of(k, 10));
        }
        wait_for_totals(&w, &lake, expected((burst + 1) * 30, 10));
    }
    wait_until("the watch to compact", &w, || (live() < 10).then_some(()));
    assert!(w.log().contains("compacted"), "{}", tail(&w.log(), 20));
    stop_cleanly(w, &lake);
    assert_eq!(totals(&lake), expected(90, 10));
    assert_eq!(unit_records(&lake).len(), 90);
}

#[test]
fn watch_into_a_delta_table_commits_and_compacts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = pipeline(root, "");
    let text = std::fs::read_to_string(&yaml).unwrap().replace(
        "sink: {lake: lake, dataset: t}",
        "sink: {kind: delta, table: table, dataset: t, compact: {min_files: 10, target_size: 1MiB}}",
    );
    write(&yaml, &text);
    let table = root.join("table");
    let w = Watch::start(&yaml, &[]);
    for burst in 0..2 {
        for k in burst * 25..(burst + 1) * 25 {
            write(&root.join(format!("in/x{k:04}.csv")), &rows_of(k, 10));
        }
        wait_for_totals(&w, &table, expected((burst + 1) * 25, 10));
    }
    // The compaction reaches the log as an OPTIMIZE commit.
    let optimized = || {
        std::fs::read_dir(table.join("_delta_log"))
            .unwrap()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("\"operation\":\"OPTIMIZE\"")))
    };
    wait_until("an OPTIMIZE commit", &w, || optimized().then_some(()));
    assert_eq!(w.stop(), Some(0));
    assert_eq!(totals(&table), expected(50, 10));
    assert!(run(&["lake", "verify", table.to_str().unwrap()]).status.success());
    let mut txns = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(table.join("_delta_log")).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names.iter().filter(|p| p.extension().is_some_and(|x| x == "json")) {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(t) = v.get("txn") {
                txns.push(t["version"].as_i64().unwrap());
            }
        }
    }
    assert!(txns.windows(2).all(|w| w[0] < w[1]), "{txns:?}");
}
