//! `kind: s3`: a bucket on a real S3-compatible server (moto), behind a proxy that injects
//! faults, listed and fetched into a mirror and cleaned into a lake by the real binary. Every
//! good object's rows land once; a bad checksum fails, then is poisoned; interrupted downloads
//! resume by range; a SIGKILL changes nothing; `watch` picks up new objects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest;
use sluice_testkit::{Action, FaultProxy, MotoServer, PathMatch, Rule};

use crate::support::*;
use crate::watch::{Watch, http_get, metric, wait_until};

const BUCKET: &str = "binance-data";
const PREFIX: &str = "data/spot/daily/klines/";

/// `sluice bench generate` kline zips: `(symbol, file path)` sorted.
fn generate(dir: &Path, symbols: u32, days: u32, rows: u32, seed: u64) -> Vec<(String, PathBuf)> {
    let out = run(&[
        "bench",
        "generate",
        "--out",
        dir.to_str().unwrap(),
        "--symbols",
        &symbols.to_string(),
        "--days",
        &days.to_string(),
        "--rows-per-day",
        &rows.to_string(),
        "--zip",
        "--threads",
        "1",
        "--seed",
        &seed.to_string(),
    ]);
    assert!(out.status.success());
    let mut files = Vec::new();
    for sym in std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for f in std::fs::read_dir(sym.path()).unwrap().flatten() {
            files.push((sym.file_name().to_string_lossy().into_owned(), f.path()));
        }
    }
    files.sort();
    files
}

fn key_of(symbol: &str, file: &Path) -> String {
    format!("{PREFIX}{symbol}/1s/{}", file.file_name().unwrap().to_string_lossy())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Upload a zip and its `.CHECKSUM` (of `checksum_of`'s bytes, to make a wrong one).
fn upload(s3: &MotoServer, symbol: &str, file: &Path, checksum_of: Option<&[u8]>) -> String {
    let key = key_of(symbol, file);
    let bytes = std::fs::read(file).unwrap();
    s3.put_bytes(&key, &bytes);
    let name = file.file_name().unwrap().to_string_lossy();
    let sum = sha256(checksum_of.unwrap_or(&bytes));
    s3.put_bytes(&format!("{key}.CHECKSUM"), format!("{sum}  {name}\n").as_bytes());
    key
}

const FORMAT: &str = r#"    glob: "*/1s/*.zip"
    fields: "{symbol}-1s-{date:date}.zip"
    format:
      csv:
        header: false
        columns: {open_time: int64, open: float64, high: float64, low: float64, close: float64,
                  volume: float64, close_time: int64, quote_volume: float64, trades: int64,
                  taker_buy_base: float64, taker_buy_quote: float64, ignore: utf8}
"#;

/// The kline cleaning pipeline over `source` (its kind-specific lines), into `lake`.
fn pipeline(root: &Path, name: &str, source: &str, lake: &str) -> PathBuf {
    let env = if source.contains("_env:") { "env:\n  - S3_KEY\n  - S3_SECRET\n" } else { "" };
    let text = format!(
        "pipeline: {name}\n{env}sources:\n  klines:\n{source}{FORMAT}steps:\n  - plugin: select\n    \
         config: {{drop: [ignore]}}\nsink:\n  lake: {lake}\n  dataset: klines\n  partition_by: [symbol, date]\n\
         settings: {{workers: 2}}\n"
    );
    let p = root.join(format!("{name}.yaml"));
    write(&p, &text);
    p
}

/// An s3 source's lines: the endpoint and bucket, `mirror`, and `extra` keys.
fn s3_source(endpoint: &str, extra: &str) -> String {
    format!(
        "    kind: s3\n    endpoint: {endpoint}\n    allow_http: true\n    bucket: {BUCKET}\n    prefix: {PREFIX}\n    \
         mirror: mirror\n{extra}"
    )
}

/// Rows and the sum of `close` per (symbol, date), from a lake.
fn per_day(lake: &Path) -> Vec<serde_json::Value> {
    query(
        lake,
        "SELECT symbol, CAST(date AS VARCHAR) AS date, count(*) AS n, round(sum(close), 4) AS close \
         FROM klines GROUP BY ALL ORDER BY ALL",
    )
}

/// The same rows read by a directory source from the generated files (those `keep` accepts).
fn reference(root: &Path, files: &[(String, PathBuf)], keep: impl Fn(&str) -> bool) -> Vec<serde_json::Value> {
    let dir = root.join("reference-data");
    for (sym, f) in files {
        let key = key_of(sym, f);
        if keep(&key) {
            let to = dir.join(&key);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(f, to).unwrap();
        }
    }
    let source = format!("    path: reference-data/{PREFIX}\n");
    let p = pipeline(root, "reference", &source, "reference-lake");
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    per_day(&root.join("reference-lake"))
}

fn status(p: &Path) -> serde_json::Value {
    // No request is made: the credentials' variables need not be set.
    let args = ["source", "status", "--json", p.to_str().unwrap()];
    let out = report(&args, sluice().env_remove("S3_KEY").env_remove("S3_SECRET").args(args).output().unwrap());
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

fn json_logs(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn partials(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    files_under(dir).into_iter().filter(|f| f.ends_with(".partial")).collect()
}

#[test]
fn s3_faults_are_retried_a_bad_checksum_is_poisoned_and_good_objects_land_once() {
    let Some(s3) = MotoServer::start(BUCKET) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = generate(&root.join("gen"), 3, 3, 1500, 42);
    let mut keys = Vec::new();
    for (i, (sym, f)) in files.iter().enumerate() {
        // The fifth object's checksum file is of other bytes.
        let wrong = (i == 4).then_some(&b"other bytes"[..]);
        keys.push(upload(&s3, sym, f, wrong));
    }
    let bad = keys[4].clone();
    let proxy = FaultProxy::start(s3.port());
    let path = |k: &str| s3.object_path(k);
    proxy.add_rule(Rule::get(PathMatch::List, 1..=1, Action::Status(500)));
    proxy.add_rule(Rule::get(PathMatch::Exact(path(&keys[0])), 1..=1, Action::DropAfter(5000)));
    proxy.add_rule(Rule::get(PathMatch::Exact(path(&keys[1])), 1..=2, Action::Status(500)));
    proxy.add_rule(Rule::get(PathMatch::Exact(path(&keys[2])), 1..=1, Action::TooMany { retry_after: "1".into() }));
    proxy.add_rule(Rule::get(PathMatch::Exact(path(&keys[3])), 1..=1, Action::Truncate(3000)));
    proxy.add_rule(Rule::get(PathMatch::Exact(path(&keys[5])), 1..=1, Action::ShortConsistent(4000)));
    proxy.add_rule(Rule::get(PathMatch::Exact(path(&keys[6])), 1..=1, Action::ResetAfter(2000)));
    proxy.add_rule(Rule::get(PathMatch::Exact(path(&keys[7])), 1..=1, Action::Corrupt { offset: 100 }));
    // The last object's server fails every time: an outage, which says nothing about the object.
    let down = keys[8].clone();
    let outage = || Rule::get(PathMatch::Exact(path(&down)), 1..=1000, Action::Status(503));
    proxy.add_rule(outage());

    let source = s3_source(
        &proxy.endpoint(),
        "    retries: 2\n    list: {page_size: 4}\n    download: {concurrency: 3, attempts: 4, backoff: {initial: 50ms, max: 200ms}}\n",
    );
    let p = pipeline(root, "klines", &source, "lake");
    let yaml = p.to_str().unwrap();
    let sum1 = root.join("run1.json");
    let out = run(&["--log-format", "json", "run", yaml, "--summary-json", sum1.to_str().unwrap()]);
    let s = summary(&sum1);
    assert_eq!((s["files_committed"].as_u64(), s["files_failed"].as_u64()), (Some(7), Some(2)), "{s}");
    let failures = s["failures"].as_array().unwrap();
    let failure = failures.iter().map(|f| f["error"].as_str().unwrap()).find(|e| e.contains(&bad)).unwrap();
    assert!(
        failure.contains(&bad) && failure.contains("checksum mismatch") && failure.contains("4 attempt"),
        "{failure}"
    );

    // Each fault was met and retried, as the logs and the proxy's log tell.
    let logs = json_logs(&out.stderr);
    let retried: Vec<&serde_json::Value> =
        logs.iter().filter(|l| l["fields"]["message"] == "download failed; retrying").collect();
    for k in [&keys[0], &keys[1], &keys[2], &keys[3], &keys[5], &keys[6], &keys[7], &bad] {
        assert!(
            retried.iter().any(|l| l["fields"]["key"] == k.as_str() && l["fields"]["attempt"].as_u64().is_some()),
            "no retry logged for {k}"
        );
    }
    assert!(logs.iter().any(|l| l["fields"]["message"] == "listing failed; retrying"));
    let seen = proxy.seen();
    let gets = |k: &str| seen.iter().filter(|r| r.path == path(k)).cloned().collect::<Vec<_>>();
    // The dropped download resumed from where it stopped, only while the ETag is the same.
    let resumed = gets(&keys[0]);
    assert_eq!(resumed.len(), 2);
    let range = resumed[1].range.as_deref().expect("the second GET asks for a range");
    let from: u64 = range.strip_prefix("bytes=").unwrap().trim_end_matches('-').parse().unwrap();
    assert!(from > 0 && from <= 5000, "{range}");
    assert!(resumed[1].if_match.is_some());
    // Retry-After: 1 paused the source for a second.
    let throttled = gets(&keys[2]);
    assert!(throttled[1].at.duration_since(throttled[0].at) >= Duration::from_millis(950));
    assert_eq!(gets(&keys[1]).len(), 3);
    assert_eq!(gets(&bad).len(), 4, "a checksum mismatch is fetched again, up to `attempts`");
    assert_eq!(gets(&down).len(), 4);
    assert!(partials(&root.join("mirror")).is_empty(), "{:?}", partials(&root.join("mirror")));
    assert!(proxy.max_in_flight() <= 3, "download.concurrency: 3, yet {} at once", proxy.max_in_flight());

    // The lake holds exactly what a directory source reads from the good files.
    let expected = reference(root, &files, |k| k != bad && k != down);
    assert_eq!(per_day(&root.join("lake")), expected);
    std::fs::remove_dir_all(root.join("reference-data")).unwrap();
    std::fs::remove_dir_all(root.join("reference-lake")).unwrap();

    // Unchanged objects are neither fetched nor read again; the bad one fails again, then is
    // poisoned (retries: 2); the one behind the outage fails every run, but is never poisoned.
    proxy.clear_rules();
    proxy.add_rule(outage());
    proxy.clear_seen();
    let sum2 = root.join("run2.json");
    run(&["run", yaml, "--summary-json", sum2.to_str().unwrap()]);
    let s = summary(&sum2);
    assert_eq!((s["files_unchanged"].as_u64(), s["files_failed"].as_u64()), (Some(7), Some(2)), "{s}");
    let object_gets: Vec<String> =
        proxy.seen().iter().filter(|r| !r.path.contains("list-type")).map(|r| r.path.clone()).collect();
    assert!(
        object_gets.iter().all(|p| p.starts_with(&path(&bad)) || p.starts_with(&path(&down))),
        "only the failed objects are fetched: {object_gets:?}"
    );
    let sum3 = root.join("run3.json");
    run(&["run", yaml, "--summary-json", sum3.to_str().unwrap()]);
    let s = summary(&sum3);
    assert_eq!((s["files_unchanged"].as_u64(), s["files_poisoned"].as_u64()), (Some(7), Some(1)), "{s}");
    assert_eq!(s["files_failed"].as_u64(), Some(1), "the outage's object is tried again: {s}");
    let st = status(&p);
    assert_eq!(st["counts"], serde_json::json!({"committed": 7, "failed": 1, "poisoned": 1}), "{st}");
    let failed = st["units"].as_array().unwrap().iter().find(|u| u["state"] == "failed").unwrap();
    assert_eq!(failed["key"], down.as_str());
    assert!(failed["error"].as_str().unwrap().contains("HTTP 503"), "{failed}");
    let poisoned = st["units"].as_array().unwrap().iter().find(|u| u["state"] == "poisoned").unwrap();
    assert_eq!(poisoned["key"], bad.as_str());
    assert!(poisoned["error"].as_str().unwrap().contains("checksum mismatch"), "{poisoned}");

    // The server is back, and a changed object (new bytes, new checksum) replaces its rows.
    proxy.clear_rules();
    let other = generate(&root.join("gen2"), 3, 3, 700, 7);
    let (sym, f) = &other[0];
    assert_eq!(key_of(sym, f), keys[0]);
    upload(&s3, sym, f, None);
    let sum4 = root.join("run4.json");
    run(&["run", yaml, "--summary-json", sum4.to_str().unwrap()]);
    let s = summary(&sum4);
    assert_eq!(s["files_committed"].as_u64(), Some(2), "{s}");
    let mut files2 = files.clone();
    files2[0] = other[0].clone();
    assert_eq!(per_day(&root.join("lake")), reference(root, &files2, |k| k != bad));
    assert!(run(&["lake", "verify", root.join("lake").to_str().unwrap()]).status.success());
}

#[test]
fn s3_sigkill_mid_download_resumes_by_range_and_changes_nothing() {
    let Some(s3) = MotoServer::start(BUCKET) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = generate(&root.join("gen"), 2, 2, 20_000, 42);
    let keys: Vec<String> = files.iter().map(|(s, f)| upload(&s3, s, f, None)).collect();
    let proxy = FaultProxy::start(s3.port());
    let slow = s3_source(&proxy.endpoint(), "    download: {concurrency: 1, bytes_per_second: 256KiB}\n");
    let p = pipeline(root, "klines", &slow, "lake");
    let mirror = root.join("mirror");

    let partial = mirror.join(format!("{}.partial", keys[0]));
    let grown = |child: &mut std::process::Child, bytes: u64| {
        let started = Instant::now();
        while std::fs::metadata(&partial).map_or(0, |m| m.len()) < bytes {
            assert!(started.elapsed() < Duration::from_secs(60), "the download never got going");
            assert!(child.try_wait().unwrap().is_none(), "the run ended before it was stopped");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Ctrl-C while a worker waits for a slow download: the run stops promptly, committing nothing
    // of the object, and its partial download stays for the next run.
    let mut child = sluice().args(["run", "-q", p.to_str().unwrap()]).spawn().unwrap();
    grown(&mut child, 100_000);
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(signalled.elapsed() < Duration::from_secs(15), "the run did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("the run stopped {:?} after SIGINT", signalled.elapsed());
    assert!(partial.exists());

    // Killed while the first object is half downloaded.
    let mut child = sluice().args(["run", "-q", p.to_str().unwrap()]).spawn().unwrap();
    let started = Instant::now();
    while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 300_000 {
        assert!(started.elapsed() < Duration::from_secs(60), "the download never got going");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = std::fs::metadata(&partial).unwrap().len();
    assert!(left < std::fs::metadata(&files[0].1).unwrap().len());
    assert!(!mirror.join(&keys[0]).exists(), "an incomplete download never has its final name");

    // The rerun resumes it by range, and the lake equals an uninterrupted run's.
    proxy.clear_seen();
    let fast = s3_source(&proxy.endpoint(), "");
    let p = pipeline(root, "klines", &fast, "lake");
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    let first = proxy.seen().into_iter().find(|r| r.path == s3.object_path(&keys[0])).unwrap();
    let from: u64 =
        first.range.as_deref().unwrap().strip_prefix("bytes=").unwrap().trim_end_matches('-').parse().unwrap();
    assert!(from > 0 && from <= left, "resumed from {from} of {left} bytes");
    assert_eq!(per_day(&root.join("lake")), reference(root, &files, |_| true));
    assert!(partials(&mirror).is_empty());
    for (k, (_, f)) in keys.iter().zip(&files) {
        assert_eq!(std::fs::read(mirror.join(k)).unwrap(), std::fs::read(f).unwrap(), "{k}");
    }
}

#[test]
fn s3_credentials_keep_mirror_validate_and_a_large_listing() {
    let Some(s3) = MotoServer::start_with_auth(BUCKET) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = generate(&root.join("gen"), 2, 2, 500, 42);
    for (s, f) in &files {
        upload(&s3, s, f, None);
    }
    // Tens of thousands of other keys under the prefix: listed page by page, not selected.
    s3.seed_many(&format!("{PREFIX}other/"), 20_000);
    let proxy = FaultProxy::start(s3.port());
    let creds = "    access_key_id_env: S3_KEY\n    secret_access_key_env: S3_SECRET\n    keep_mirror: false\n    \
                 download: {requests_per_second: 10}\n";
    let source = s3_source(&proxy.endpoint(), creds);
    let p = pipeline(root, "klines", &source, "lake");
    let yaml = p.to_str().unwrap();

    // Plain validation makes no request; --connect lists one key.
    let env = |c: &mut std::process::Command| {
        c.env("S3_KEY", s3.access_key()).env("S3_SECRET", s3.secret_key());
    };
    let mut c = sluice();
    env(&mut c);
    assert!(report(&["validate"], c.args(["validate", yaml]).output().unwrap()).status.success());
    assert!(proxy.seen().is_empty(), "validate made a request: {:?}", proxy.seen());
    let mut c = sluice();
    env(&mut c);
    assert!(
        report(&["validate --connect"], c.args(["validate", "--connect", yaml]).output().unwrap()).status.success()
    );
    let other = root.join("other-bucket.yaml");
    write(
        &other,
        &std::fs::read_to_string(&p).unwrap().replace(&format!("bucket: {BUCKET}"), "bucket: no-such-bucket"),
    );
    let mut c = sluice();
    env(&mut c);
    let out =
        report(&["validate --connect"], c.args(["validate", "--connect", other.to_str().unwrap()]).output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("no-such-bucket") && stderr.contains("NoSuchBucket"), "{stderr}");

    // A wrong secret is refused by the server, and never shown.
    let wrong = "wrong-secret-value-123";
    let out = sluice().env("S3_KEY", s3.access_key()).env("S3_SECRET", wrong).args(["run", yaml]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(!out.status.success());
    assert!(text.contains("SignatureDoesNotMatch") && text.contains("403"), "{text}");
    assert!(!text.contains(wrong));

    proxy.clear_seen();
    let mut c = sluice();
    env(&mut c);
    let started = Instant::now();
    let out = report(&["run"], c.args(["run", yaml]).output().unwrap());
    assert!(out.status.success());
    eprintln!("listing 20,004 keys and fetching 4 took {:?}", started.elapsed());
    let lists = proxy.seen().iter().filter(|r| r.path.contains("list-type=2") && r.status == 200).count();
    assert!(lists >= 21, "20,000 keys in pages of 1000: {lists} list requests");
    let seen = proxy.seen();
    assert!(seen.iter().all(|r| r.authorization), "every request is signed");
    // requests_per_second: 10 (a burst of 10, then one every 100 ms), over the pages and objects.
    let last = seen.iter().rev().find(|r| r.status == 200).unwrap();
    let first = seen.iter().find(|r| r.status == 200 && r.path.contains("list-type")).unwrap();
    let spread = last.at.duration_since(first.at);
    let limited = (lists + 4 - 10) as f64 / 10.0;
    assert!(spread.as_secs_f64() >= limited * 0.9, "{} requests in {spread:?}", lists + 4);
    assert_eq!(per_day(&root.join("lake")), reference(root, &files, |_| true));
    // keep_mirror: false: the committed objects are gone from the mirror; the manifest stays.
    let left: Vec<String> =
        files_under(&root.join("mirror")).into_iter().filter(|f| !f.starts_with(".sluice")).collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(status(&p)["counts"], serde_json::json!({"committed": 4}));
}

#[test]
fn s3_watch_picks_up_a_new_object_and_exports_download_metrics() {
    let Some(s3) = MotoServer::start(BUCKET) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = generate(&root.join("gen"), 1, 3, 500, 42);
    for (s, f) in &files[..2] {
        upload(&s3, s, f, None);
    }
    let source = s3_source(&s3.endpoint(), "    list: {interval: 500ms}\n");
    let p = pipeline(root, "klines", &source, "lake");
    let lake = root.join("lake");
    let w = Watch::start(&p, &["--listen", "127.0.0.1:0"]);
    let count = || try_query(&lake, "SELECT count(DISTINCT date) AS n FROM klines").and_then(|r| r[0]["n"].as_u64());
    wait_until("the first two objects", &w, || (count() == Some(2)).then_some(()));
    let (sym, f) = &files[2];
    let added = Instant::now();
    upload(&s3, sym, f, None);
    wait_until("the new object", &w, || (count() == Some(3)).then_some(()));
    let took = added.elapsed();
    eprintln!("a new object was queryable {took:?} after its upload");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let addr = w.metrics_addr();
    let m = http_get(&addr, "/metrics");
    let label = "{pipeline=\"klines\",source=\"klines\"}";
    let bytes = metric(&m, &format!("sluice_source_bytes_downloaded_total{label}")).unwrap();
    let total: u64 = files.iter().map(|(_, f)| std::fs::metadata(f).unwrap().len()).sum();
    assert_eq!(bytes as u64, total, "{m}");
    assert_eq!(metric(&m, &format!("sluice_source_objects_fetched_total{label}")), Some(3.0));
    assert!(m.contains("sluice_source_http_requests_total{pipeline=\"klines\",source=\"klines\",status=\"200\"}"));
    // A second pipeline on the same mirror is refused while the watch holds it.
    let other = pipeline(root, "other", &source, "lake2");
    let out = run(&["run", other.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is in use by another running pipeline"), "{stderr}");
    assert_eq!(w.stop(), Some(0));
    assert_eq!(per_day(&lake), reference(root, &files, |_| true));
}

#[test]
fn s3_a_deleted_object_is_gone_but_one_no_longer_selected_is_kept() {
    let Some(s3) = MotoServer::start(BUCKET) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = generate(&root.join("gen"), 2, 2, 300, 42);
    let keys: Vec<String> = files.iter().map(|(s, f)| upload(&s3, s, f, None)).collect();
    let write_pipeline = |glob: &str| {
        let p = pipeline(root, "klines", &s3_source(&s3.endpoint(), ""), "lake");
        let text =
            std::fs::read_to_string(&p).unwrap().replace("glob: \"*/1s/*.zip\"", &format!("glob: \"{glob}\"")).replace(
                "  partition_by: [symbol, date]\n",
                "  partition_by: [symbol, date]\n  on_source_deleted: delete\n",
            );
        write(&p, &text);
        p
    };
    let p = write_pipeline("*/1s/*.zip");
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    let days = || query(&root.join("lake"), "SELECT count(DISTINCT (symbol, date)) AS n FROM klines")[0]["n"].as_u64();
    assert_eq!(days(), Some(4));
    // Deleted from the bucket: its rows go.
    s3.delete(&keys[0]);
    let sum = root.join("deleted.json");
    run(&["run", "-q", p.to_str().unwrap(), "--summary-json", sum.to_str().unwrap()]);
    assert_eq!(summary(&sum)["files_deleted"].as_u64(), Some(1));
    assert_eq!(days(), Some(3));
    // No longer selected (a narrower glob), but still in the bucket: its rows stay.
    let (other_symbol, _) = &files[2];
    let p = write_pipeline(&format!("{}/1s/*.zip", files[0].0));
    let sum = root.join("narrowed.json");
    run(&["run", "-q", p.to_str().unwrap(), "--summary-json", sum.to_str().unwrap()]);
    assert_eq!(summary(&sum)["files_deleted"].as_u64(), Some(0));
    assert_eq!(days(), Some(3), "the rows of {other_symbol} stay");
}

#[test]
fn s3_listing_by_directory_walks_only_where_the_globs_look() {
    let Some(s3) = MotoServer::start(BUCKET) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = generate(&root.join("gen"), 2, 2, 300, 42);
    for (s, f) in &files {
        upload(&s3, s, f, None);
        // Other intervals of the same symbols: never listed.
        s3.seed_many(&format!("{PREFIX}{s}/1m/"), 300);
    }
    let proxy = FaultProxy::start(s3.port());
    let source = s3_source(&proxy.endpoint(), "    list: {by_directory: true, page_size: 100}\n");
    let p = pipeline(root, "klines", &source, "lake");
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    assert_eq!(per_day(&root.join("lake")), reference(root, &files, |_| true));
    let lists: Vec<String> =
        proxy.seen().iter().filter(|r| r.path.contains("list-type=2")).map(|r| r.path.clone()).collect();
    assert!(lists.iter().all(|l| l.contains("delimiter=%2F")), "{lists:?}");
    assert!(lists.iter().all(|l| !l.contains("%2F1m%2F")), "a directory the glob cannot match was listed: {lists:?}");
    // The root, each symbol, and each symbol's 1s directory.
    assert_eq!(lists.len(), 1 + 2 + 2, "{lists:?}");
    // A re-run lists the same way and fetches nothing.
    proxy.clear_seen();
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    assert!(proxy.seen().iter().all(|r| r.path.contains("list-type=2")));
}
