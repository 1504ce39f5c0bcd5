//! Crash safety: SIGKILL `sluice run` at many random moments, restart it, and check that the
//! final lake equals a clean run's (same rows and bytes, no duplicates, no partial or orphan files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

pub const PIPELINE: &str = r#"
pipeline: crash
sources:
  ticks:
    path: in
    glob: "*.csv"
    format:
      csv: {header: true}
steps:
  - plugin: select
    config: {columns: [ts, symbol, price, qty]}
  - plugin: sma
    config: {column: price, window: 5, as: ma5, key: symbol}
sink:
  lake: LAKE
  dataset: ticks
  partition_by: [symbol]
settings: {workers: 2, batch_rows: 4096}
"#;

/// A small seeded generator (xorshift64*), so a failing schedule can be replayed.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Shuffle `v` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// `files` CSV files of `rows` rows each, 8 symbols; `ts` is unique across the dataset.
pub fn write_ticks(dir: &Path, files: usize, rows: usize) {
    for f in 0..files {
        let mut text = String::with_capacity(rows * 32);
        text.push_str("ts,symbol,price,qty\n");
        for i in 0..rows {
            let ts = f * rows + i;
            let sym = (i * 7 + f) % 8;
            text.push_str(&format!("{ts},S{sym},{}.{:02},{}\n", (ts % 977) + 10, ts % 100, ts % 13));
        }
        write(&dir.join(format!("f{f:03}.csv")), &text);
    }
}

/// Write the pipeline for a lake directory name and return its path.
pub fn pipeline(root: &Path, lake: &str) -> std::path::PathBuf {
    let p = root.join(format!("{lake}.yaml"));
    write(&p, &PIPELINE.replace("LAKE", lake));
    p
}

/// The files the ledger says are live: apply each record's additions and removals in order (a
/// compacted ledger starts with a snapshot line listing live files no record lists).
pub fn ledger_files(lake: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(lake.join("_sluice/ledger.jsonl")).unwrap_or_default();
    let mut by_unit: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: serde_json::Value = serde_json::from_str(line).expect("every ledger line is complete JSON");
        if let Some(snapshot) = r.get("snapshot") {
            let live = snapshot["live"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap().to_string());
            by_unit.entry((String::new(), "snapshot".into())).or_default().extend(live);
            continue;
        }
        let files: Vec<String> = r["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().into()).collect();
        if let Some(removed) = r.get("removed").and_then(|v| v.as_array()) {
            let removed: BTreeSet<&str> = removed.iter().map(|f| f.as_str().unwrap()).collect();
            for v in by_unit.values_mut() {
                v.retain(|f| !removed.contains(f.as_str()));
            }
            let key = (r["dataset"].as_str().unwrap().to_string(), r["unit_id"].as_str().unwrap().to_string());
            by_unit.entry(key).or_default().extend(files);
        } else {
            by_unit.insert((r["dataset"].as_str().unwrap().into(), r["unit_id"].as_str().unwrap().into()), files);
        }
    }
    by_unit.into_values().flatten().collect()
}

/// Every file a ledger record ever replaced or removed, or a snapshot lists as retained: files a
/// lake may keep on disk, outside the dataset, during `retain_replaced`.
pub fn ledger_replaced(lake: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(lake.join("_sluice/ledger.jsonl")).unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let lists = [r.get("removed"), r.get("snapshot").and_then(|s| s.get("retained"))];
        for f in lists.into_iter().flatten().flat_map(|v| v.as_array().unwrap().iter()) {
            out.insert(f.as_str().or_else(|| f["file"].as_str()).unwrap().to_string());
        }
    }
    out
}

/// Data files on disk (relative to the lake), and anything in progress.
fn disk_files(lake: &Path, dataset: &str) -> (BTreeSet<String>, Vec<String>) {
    let all = files_under(&lake.join(dataset));
    let inprogress = all.iter().filter(|f| f.contains(".inprogress")).cloned().collect();
    let parquet = all.iter().filter(|f| f.ends_with(".parquet")).map(|f| format!("{dataset}/{f}")).collect();
    (parquet, inprogress)
}

fn per_partition(lake: &Path) -> Vec<serde_json::Value> {
    query(
        lake,
        "SELECT symbol, count(*) AS n, count(DISTINCT ts) AS distinct_ts, sum(ts) AS st, \
         round(sum(price), 2) AS sp, sum(qty) AS sq, round(sum(ma5), 4) AS sm FROM ticks GROUP BY 1 ORDER BY 1",
    )
}

/// Enough files that at least 15 of the kills land mid-ingest: every optimization of the run makes
/// a clean ingest shorter, so a restart is likelier to finish the whole dataset before its kill.
const FILES: usize = 96;
const ROWS: usize = 40_000;

#[test]
fn sigkill_at_random_moments_then_restart_equals_a_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_ticks(&root.join("in"), FILES, ROWS);

    // The reference: one clean run, timed to spread the kills over a run's duration.
    let clean_yaml = pipeline(root, "clean");
    let text = std::fs::read_to_string(&clean_yaml).unwrap();
    write(&clean_yaml, &text.replace("  dataset: ticks\n", "  dataset: ticks\n  sync: files\n"));
    assert!(std::fs::read_to_string(&clean_yaml).unwrap().contains("sync: files"));
    let t0 = Instant::now();
    let out = run(&["run", "-q", clean_yaml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let clean_ms = t0.elapsed().as_millis() as u64;
    eprintln!("clean run: {clean_ms} ms");

    // The crashed lake commits with one syncfs per unit (`sync: filesystem`, the default), the
    // clean one with an fsync per file and directory: the byte-for-byte comparison below covers
    // both modes.
    let crash_yaml = pipeline(root, "crashed");
    let crashed = root.join("crashed");
    let mut rng = Rng::new(0x5EED_0004);
    let (mut kills, mut mid_ingest) = (0, 0);
    let mut committed_at_kill: Vec<usize> = Vec::new();
    // Kill delays adapt to this machine's speed: aim for a few units of progress per restart.
    let mut bound = (clean_ms / 12).max(50);
    while kills < 80 {
        let mut child = sluice().args(["run", "-q", crash_yaml.to_str().unwrap()]).spawn().expect("spawn sluice");
        // Each restart gets a random slice of a clean run's duration: some kills land in startup
        // and recovery, most mid-write or mid-commit, so the work advances in small random steps.
        let delay = 20 + rng.below(bound);
        std::thread::sleep(Duration::from_millis(delay));
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "an interrupted-and-restarted run failed: {status}");
                break; // this restart finished the ingest
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                let ledger = std::fs::read_to_string(crashed.join("_sluice/ledger.jsonl")).unwrap_or_default();
                let committed = ledger.lines().count();
                let before = committed_at_kill.last().copied().unwrap_or(0);
                committed_at_kill.push(committed);
                if committed - before > FILES / 10 {
                    bound = (bound / 2).max(30);
                } else if committed_at_kill.len() >= 3 && committed_at_kill[committed_at_kill.len() - 3] == committed {
                    bound *= 2; // three kills in a row during startup: give the runs more time
                }
                if committed < FILES {
                    mid_ingest += 1;
                }
            }
        }
    }
    eprintln!("{kills} kills ({mid_ingest} mid-ingest); ledger lines at each kill: {committed_at_kill:?}");
    assert!(mid_ingest >= 15, "only {mid_ingest} kills landed mid-ingest; the dataset is too small for this machine");

    // Between crashes a lake may hold leftovers; the next start recovers them.
    let out = run(&["run", "-q", crash_yaml.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));

    let clean = root.join("clean");
    // Same rows, partition by partition; no duplicates.
    let expect = per_partition(&clean);
    assert_eq!(expect.len(), 8);
    for r in &expect {
        assert_eq!(r["n"], r["distinct_ts"], "clean run has duplicates: {r}");
    }
    assert_eq!(per_partition(&crashed), expect);
    let total = query(&crashed, "SELECT count(*) AS n, count(DISTINCT ts) AS d FROM ticks");
    assert_eq!(total[0]["n"], serde_json::json!(FILES * ROWS));
    assert_eq!(total[0]["d"], serde_json::json!(FILES * ROWS));

    // No partial or orphan files: every data file on disk is named by the ledger, and vice versa.
    for lake in [&clean, &crashed] {
        let (on_disk, inprogress) = disk_files(lake, "ticks");
        assert!(inprogress.is_empty(), "in-progress files left: {inprogress:?}");
        assert_eq!(on_disk, ledger_files(lake), "files on disk differ from the ledger in {}", lake.display());
    }
    // Deterministic names and bytes: the crashed-and-recovered lake's data pages are
    // byte-identical. (The footers differ only in their lineage: the two pipelines' definitions
    // differ, in the lake path and the sync mode.)
    let (clean_files, _) = disk_files(&clean, "ticks");
    let (crashed_files, _) = disk_files(&crashed, "ticks");
    assert_eq!(clean_files, crashed_files);
    let pages = |b: &[u8]| -> Vec<u8> {
        let footer = u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap()) as usize;
        b[..b.len() - 8 - footer].to_vec()
    };
    for f in &clean_files {
        let a = std::fs::read(clean.join(f)).unwrap();
        let b = std::fs::read(crashed.join(f)).unwrap();
        assert!(pages(&a) == pages(&b), "{f} differs between the clean and the crashed lake");
    }

    // The catalog agrees with the hive glob over the files.
    let glob = crashed.join("ticks/**/*.parquet");
    let via_glob = query(
        &crashed,
        &format!(
            "SELECT count(*) AS n, sum(ts) AS st FROM read_parquet('{}', hive_partitioning = true)",
            glob.display()
        ),
    );
    let via_catalog = query(&crashed, "SELECT count(*) AS n, sum(ts) AS st FROM ticks");
    assert_eq!(via_glob, via_catalog);
    // And `sluice lake verify` agrees: ledger, files and catalog by rows and per-column sums.
    let out = run(&["lake", "verify", "--lake", crashed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
}
