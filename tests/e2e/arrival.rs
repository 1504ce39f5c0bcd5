//! Arrival order must not change the lake. For every stateful standard handler, and every scope
//! or option that changes how it keeps state, the same day files give the same rows and values
//! whether they arrive in name order in one run, all at once, or a few at a time in random order
//! across many runs (late days re-run the committed days after them).
//!
//! The days of a symbol touch each other: a day's first rows come seconds after the previous
//! day's last ones, so moving windows and sessions run across files, and so do the buckets of
//! `aggregate` and `resample` coarser than a day (or a day on another wall clock). Duplicate keys
//! lie inside a file, never across files (`dedup` remembers keys per run or per file; neither
//! reaches into the lake).

use std::path::{Path, PathBuf};

use crate::crash::Rng;
use crate::support::*;

const SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];
const DAYS: usize = 9;
const DAY_MS: i64 = 86_400_000;
/// 2024-01-01T00:00:00Z.
const EPOCH: i64 = 1_704_067_200_000;

/// Day files `<symbol>-1s-<date>.csv` (no header: open_time, open, high, low, close, volume).
/// Each day has a morning run of rows 7 s apart from midnight and an evening run ending 10 s
/// before the next midnight; a few rows repeat an open_time with another close (duplicates
/// inside the file, away from its edges). Row counts vary by day, some below the 20-row window.
fn write_days(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (s, sym) in SYMBOLS.iter().enumerate() {
        for d in 0..DAYS {
            let day = EPOCH + d as i64 * DAY_MS;
            let (morning, evening) = (6 + (d * 5 + s * 3) % 17, 5 + (d * 7 + s) % 19);
            let mut times: Vec<i64> = (0..morning as i64).map(|i| day + i * 7_000).collect();
            times.extend((0..evening as i64).rev().map(|i| day + DAY_MS - 10_000 - i * 3_000));
            let mut text = String::new();
            for (i, t) in times.iter().enumerate() {
                let close = 100.0 + ((i * 37 + d * 11 + s * 5) % 97) as f64 / 4.0;
                let line = |c: f64| format!("{t},{},{},{},{c},{}\n", c - 0.5, c + 1.0, c - 1.0, 1 + (i + d) % 9);
                text.push_str(&line(close));
                // A duplicate of an inner row, with another close.
                if i % 5 == 2 && i + 2 < times.len() {
                    text.push_str(&line(close + 0.25));
                }
            }
            let p = dir.join(format!("{sym}-1s-2024-01-{:02}.csv", d + 1));
            write(&p, &text);
            files.push(p);
        }
    }
    files.sort();
    files
}

fn pipeline(yaml: &Path, data: &Path, lake: &Path, steps: &str, workers: usize) {
    // Steps that output other columns than their input (groups, sessions) keep `symbol` only.
    let partition_by = if steps.contains("aggregate") || steps.contains("resample") || steps.contains("sessions}") {
        "[symbol]"
    } else {
        "[symbol, date]"
    };
    write(
        yaml,
        &format!(
            r#"
pipeline: arrival
sources:
  klines:
    path: {data}
    glob: "*.csv"
    fields: "{{symbol}}-1s-{{date:date}}.csv"
    format:
      csv:
        header: false
        columns: {{open_time: int64, open: float64, high: float64, low: float64, close: float64, volume: int64}}
steps:
{steps}
sink:
  lake: {lake}
  dataset: out
  partition_by: {partition_by}
settings: {{workers: {workers}, batch_rows: 8}}
"#,
            data = data.display(),
            lake = lake.display(),
        ),
    );
}

fn run_ok(yaml: &Path) -> serde_json::Value {
    let summary = yaml.with_extension("summary.json");
    let out = run(&["run", "-q", yaml.to_str().unwrap(), "--summary-json", summary.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    crate::support::summary(&summary)
}

/// One row: its exact fields (strings, integers, nulls) as text, and its floats.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    exact: String,
    floats: Vec<(String, f64)>,
}

impl Row {
    /// Equal up to a relative 1e-7 in the floats: an `ema` seeded from its lookback (10 windows)
    /// differs from a continuous one far below that.
    fn close_to(&self, other: &Row) -> bool {
        self.exact == other.exact
            && self.floats.len() == other.floats.len()
            && self
                .floats
                .iter()
                .zip(&other.floats)
                .all(|((a, x), (b, y))| a == b && (x - y).abs() <= 1e-7 * x.abs().max(y.abs()).max(1e-300))
    }
}

/// Every row of the dataset, sorted by its exact fields, then its floats.
fn rows(lake: &Path) -> Vec<Row> {
    let mut out: Vec<Row> = query(lake, "SELECT * FROM out")
        .into_iter()
        .map(|r| {
            let obj = r.as_object().unwrap();
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            let (mut exact, mut floats) = (Vec::new(), Vec::new());
            for k in keys {
                let v = &obj[k];
                match v.as_f64() {
                    Some(f) if v.is_f64() => floats.push((k.clone(), f)),
                    _ => exact.push(format!("{k}={v}")),
                }
            }
            Row { exact: exact.join(" "), floats }
        })
        .collect();
    out.sort_by(|a, b| {
        a.exact.cmp(&b.exact).then_with(|| {
            let fa: Vec<f64> = a.floats.iter().map(|f| f.1).collect();
            let fb: Vec<f64> = b.floats.iter().map(|f| f.1).collect();
            fa.partial_cmp(&fb).unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    out
}

fn same_rows(a: &[Row], b: &[Row]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.close_to(y))
}

/// Runs `steps` over the day files: in name order in one run (the reference), all at once on two
/// workers, and in random order a few files per run; the three lakes must hold the same rows.
/// Returns the reference rows and the re-runs the random arrival caused.
fn same_lake_in_any_order(name: &str, steps: &str, seed: u64) -> (Vec<Row>, u64) {
    same_lake_in_any_order_of(name, steps, seed, true)
}

/// [`same_lake_in_any_order`]; `every_unit_writes`: every unit writes rows (not so where a
/// group runs on into the next file, which then writes it).
fn same_lake_in_any_order_of(name: &str, steps: &str, seed: u64, every_unit_writes: bool) -> (Vec<Row>, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = write_days(&root.join("all"));

    let reference = root.join("reference");
    pipeline(&reference.join("p.yaml"), &root.join("all"), &reference.join("lake"), steps, 1);
    let s = run_ok(&reference.join("p.yaml"));
    assert_eq!(s["files_committed"].as_u64(), Some(files.len() as u64), "{name}: {s}");
    let expected = rows(&reference.join("lake"));
    assert!(!expected.is_empty(), "{name}: the reference lake is empty");

    let at_once = root.join("at_once");
    pipeline(&at_once.join("p.yaml"), &root.join("all"), &at_once.join("lake"), steps, 2);
    run_ok(&at_once.join("p.yaml"));
    assert!(same_rows(&rows(&at_once.join("lake")), &expected), "{name}: all files at once on two workers differ");

    let shuffled = root.join("shuffled");
    let data = shuffled.join("in");
    std::fs::create_dir_all(&data).unwrap();
    pipeline(&shuffled.join("p.yaml"), &data, &shuffled.join("lake"), steps, 2);
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut rng = Rng::new(seed);
    rng.shuffle(&mut order);
    let mut reruns = 0;
    let mut pending = 0;
    for (n, &i) in order.iter().enumerate() {
        let f = &files[i];
        std::fs::copy(f, data.join(f.file_name().unwrap())).unwrap();
        pending += 1;
        // One to three files per run.
        if pending < 1 + rng.below(3) && n + 1 < order.len() {
            continue;
        }
        pending = 0;
        let s = run_ok(&shuffled.join("p.yaml"));
        reruns += s["files_rerun"].as_u64().unwrap();
        // No unit may read rows and write none: every day here has rows that survive.
        // (A unit whose groups a later one continues may write none: it says so.)
        for u in s["units"].as_array().unwrap().iter().filter(|u| every_unit_writes || u["continued"] != true) {
            assert!(
                u["rows_written"].as_u64().unwrap() > 0,
                "{name}: {} read {} rows and wrote none",
                u["file"],
                u["rows_in"]
            );
        }
    }
    let got = rows(&shuffled.join("lake"));
    if !same_rows(&got, &expected) {
        let missing: Vec<&Row> = expected.iter().filter(|r| !got.iter().any(|g| g.close_to(r))).take(5).collect();
        let extra: Vec<&Row> = got.iter().filter(|r| !expected.iter().any(|e| e.close_to(r))).take(5).collect();
        panic!(
            "{name}: random arrival over several runs gives another lake: {} rows vs {} in name order\n\
             missing (first 5): {missing:#?}\nextra (first 5): {extra:#?}",
            got.len(),
            expected.len()
        );
    }
    // A further run changes nothing, and the ledger agrees with the files, unit by unit.
    let s = run_ok(&shuffled.join("p.yaml"));
    assert_eq!(s["files_committed"].as_u64(), Some(0), "{name}");
    let lake = shuffled.join("lake");
    let out = run(&["lake", "verify", "--strict", "--lake", lake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stdout));
    (expected, reruns)
}

const DEDUP_FILE: &str = "  - plugin: dedup
    config: {keys: [symbol, open_time], scope: file}";

#[test]
fn dedup_per_file_then_a_moving_average_the_kline_benchmark_pipeline() {
    let steps = format!(
        "{DEDUP_FILE}
  - plugin: indicators
    config:
      keys: [symbol]
      order_by: open_time
      indicators:
        - {{kind: sma, column: close, window: 20, as: ma20}}"
    );
    let (rows, reruns) = same_lake_in_any_order("dedup scope file + sma", &steps, 0xB16_DA7A);
    assert!(reruns > 0, "late days must re-run the days after them");
    // The duplicates are gone, and full windows have their ma20.
    let keys: std::collections::HashSet<&str> = rows.iter().map(|r| r.exact.as_str()).collect();
    assert_eq!(keys.len(), rows.len(), "one row per key");
    assert!(rows.iter().any(|r| r.floats.iter().any(|(k, _)| k == "ma20")), "some ma20 values");
}

#[test]
fn dedup_keeping_the_first_per_run_or_the_last_per_file() {
    for (name, config) in [
        ("dedup first, scope run", "{keys: [symbol, open_time]}"),
        ("dedup first, scope run, order_by", "{keys: [symbol, open_time], order_by: open_time}"),
        ("dedup last, scope file", "{keys: [symbol, open_time], keep: last, scope: file}"),
        ("dedup first by date, scope run", "{keys: [symbol, date, open_time]}"),
    ] {
        let steps = format!("  - plugin: dedup\n    config: {config}");
        let (rows, _) = same_lake_in_any_order(name, &steps, 0xDED0_0001);
        let keys: std::collections::HashSet<String> = rows
            .iter()
            .map(|r| r.exact.split(' ').filter(|f| f.starts_with("open_time=") || f.starts_with("symbol=")).collect())
            .collect();
        assert_eq!(keys.len(), rows.len(), "{name}: one row per key");
    }
}

#[test]
fn indicators_over_rows_and_time_spans() {
    let steps = format!(
        "{DEDUP_FILE}
  - plugin: indicators
    config:
      keys: [symbol]
      order_by: open_time
      indicators:
        - {{kind: sma, column: close, window: 20, as: ma20}}
        - {{kind: rolling_max, column: high, window: 7, as: max7}}
        - {{kind: rolling_std, column: close, window: 5, as: sd5}}
        - {{kind: returns, column: close, window: 3, as: r3}}
        - {{kind: ema, column: close, window: 4, as: ema4}}
        - {{kind: sma, column: close, window: 45s, as: ma45s}}
  - plugin: sma
    config: {{column: close, window: 6, as: ma6, key: symbol, order_by: open_time}}"
    );
    let (_, reruns) = same_lake_in_any_order("indicators", &steps, 0x1D1C_A7E5);
    assert!(reruns > 0, "late days must re-run the days after them");
}

#[test]
fn sessions_across_day_files() {
    for (name, output) in [("sessionize events", "events"), ("sessionize sessions", "sessions")] {
        let steps = format!(
            "{DEDUP_FILE}
  - plugin: sessionize
    config: {{keys: [symbol], time: open_time, gap: 5m, output: {output}}}"
        );
        same_lake_in_any_order(name, &steps, 0x5E55_1015);
    }
}

#[test]
fn aggregates_and_resampled_bars_within_days() {
    for (name, step) in [
        (
            "aggregate at the end of the file",
            "  - plugin: aggregate
    config:
      keys: [symbol]
      time: open_time
      every: 1h
      aggs: [{fn: count, as: n}, {fn: sum, column: volume}, {fn: first, column: close}, {fn: last, column: close}, {fn: max, column: high}]",
        ),
        (
            "aggregate emitting closed buckets",
            "  - plugin: aggregate
    config:
      keys: [symbol]
      time: open_time
      every: 1m
      emit: close
      aggs: [{fn: count, as: n}, {fn: mean, column: close}, {fn: count_distinct, column: volume}]",
        ),
        (
            "resample",
            "  - plugin: resample
    config: {keys: [symbol], time: open_time, every: 1m}",
        ),
        (
            "resample emitting closed bars",
            "  - plugin: resample
    config: {keys: [symbol], time: open_time, every: 30s, emit: close}",
        ),
    ] {
        same_lake_in_any_order(name, step, 0xA66_0001);
    }
}

#[test]
fn groups_across_day_files_are_one_row_in_any_arrival_order() {
    for (name, step) in [
        (
            "aggregate over two-day buckets",
            "  - plugin: aggregate
    config:
      keys: [symbol]
      time: open_time
      every: 2d
      aggs: [{fn: count, as: n}, {fn: sum, column: volume}, {fn: first, column: close}, {fn: last, column: close}, {fn: mean, column: close}, {fn: count_distinct, column: volume}]",
        ),
        (
            "aggregate over ISO weeks, emitting closed buckets",
            "  - plugin: aggregate
    config:
      keys: [symbol]
      time: open_time
      every: week
      emit: close
      aggs: [{fn: count, as: n}, {fn: min, column: low}, {fn: max, column: high}]",
        ),
        (
            "aggregate over 5 s buckets (a day's last row is 10 s before the next day's first: the files \
             are further apart than a bucket, and a further run must find nothing to redo)",
            "  - plugin: aggregate
    config: {keys: [symbol], time: open_time, every: 5s, aggs: [{fn: count, as: n}, {fn: sum, column: volume}]}",
        ),
        (
            "weekly sums over a date derived in an earlier step (the span is asked again in days once \
             the step sees its input)",
            "  - plugin: derive
    config: {columns: {day: \"date(epoch_ms(open_time))\"}}
  - plugin: aggregate
    config: {keys: [symbol], time: day, every: week, aggs: [{fn: count, as: n}, {fn: sum, column: volume}]}",
        ),
        (
            "daily bars on New York's wall clock (each spans two UTC day files)",
            "  - plugin: resample
    config: {keys: [symbol], time: open_time, every: day, tz: America/New_York}",
        ),
    ] {
        let (rows, reruns) = same_lake_in_any_order_of(name, step, 0xA66_0002, false);
        if step.contains("every: 5s") {
            assert_eq!(reruns, 0, "{name}: no group spans two files, so nothing needs a re-run");
        } else {
            assert!(reruns > 0, "{name}: random arrival re-ran nothing");
        }
        // One row per group: no (key, bucket) twice.
        let mut groups: Vec<String> = rows
            .iter()
            .map(|r| {
                let group = |f: &&str| ["symbol=", "open_time=", "day="].iter().any(|p| f.starts_with(p));
                r.exact.split(' ').filter(group).collect::<Vec<_>>().join(" ")
            })
            .collect();
        let n = groups.len();
        groups.sort();
        groups.dedup();
        assert_eq!(groups.len(), n, "{name}: a group is in the lake twice: {rows:#?}");
    }
}

/// Groups across files need a key's files one after another: a global aggregate over files per
/// symbol (whose times overlap) fails the first file that overlaps, saying why, and writes
/// nothing wrong.
#[test]
fn groups_across_files_that_overlap_in_time_fail_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_days(&root.join("in"));
    let yaml = root.join("p.yaml");
    let lake = root.join("lake");
    pipeline(
        &yaml,
        &root.join("in"),
        &lake,
        "  - plugin: aggregate
    config: {time: open_time, every: 3d, aggs: [{fn: count, as: n}]}",
        1,
    );
    let text = std::fs::read_to_string(&yaml).unwrap().replace("partition_by: [symbol]", "partition_by: []");
    write(&yaml, &text);
    let out = run(&["run", yaml.to_str().unwrap()]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("ETHUSDT-1s-2024-01-01.csv: bad data: this file's rows overlap in `open_time` with those of"),
        "{all}"
    );
    assert!(all.contains("1 failed") && all.contains("run stopped"), "{all}");
    // What was committed (the first symbol's days) holds each 3-day bucket once.
    let rows = query(&lake, "SELECT open_time, count(*) AS c FROM out GROUP BY ALL HAVING count(*) > 1");
    assert!(rows.is_empty(), "{rows:#?}");
}

/// DuckDB's `GROUP BY` of the day files in `dir` per symbol and ISO week (epoch ms of its Monday):
/// `n`, `sum_volume`, then `more` (select expressions), ordered by all columns.
fn weekly_by_duckdb(lake: &Path, dir: &Path, more: &str) -> Vec<serde_json::Value> {
    let more = if more.is_empty() { String::new() } else { format!(", {more}") };
    query(
        lake,
        &format!(
            "SELECT regexp_extract(filename, '([A-Z]+)-1s-', 1) AS symbol, \
             epoch_ms(date_trunc('week', make_timestamp(open_time * 1000))) AS open_time, count(*) AS n, \
             sum(volume) AS sum_volume{more} FROM read_csv('{}/*.csv', header = false, filename = true, \
             columns = {{'open_time': 'BIGINT', 'open': 'DOUBLE', 'high': 'DOUBLE', 'low': 'DOUBLE', \
             'close': 'DOUBLE', 'volume': 'BIGINT'}}) GROUP BY ALL ORDER BY ALL",
            dir.display()
        ),
    )
}

/// Weekly aggregates over the day files, arriving a few at a time in random order, equal a DuckDB
/// `GROUP BY` of the same CSV files exactly (floats to 1e-9).
#[test]
fn weekly_aggregates_across_files_match_a_duckdb_group_by() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = write_days(&root.join("all"));
    let data = root.join("in");
    std::fs::create_dir_all(&data).unwrap();
    let yaml = root.join("p.yaml");
    let lake = root.join("lake");
    pipeline(
        &yaml,
        &data,
        &lake,
        "  - plugin: aggregate
    config:
      keys: [symbol]
      time: open_time
      every: week
      aggs: [{fn: count, as: n}, {fn: sum, column: volume}, {fn: min, column: low}, {fn: max, column: high}, {fn: mean, column: close}, {fn: count_distinct, column: volume}]",
        2,
    );
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut rng = Rng::new(0xD0C_0001);
    rng.shuffle(&mut order);
    for chunk in order.chunks(4) {
        for &i in chunk {
            let f = &files[i];
            std::fs::copy(f, data.join(f.file_name().unwrap())).unwrap();
        }
        run_ok(&yaml);
    }
    let ours = query(
        &lake,
        "SELECT symbol, open_time, n, sum_volume, min_low, max_high, round(mean_close, 9) AS mean_close, \
         count_distinct_volume FROM out ORDER BY ALL",
    );
    let duck = weekly_by_duckdb(
        &lake,
        &root.join("all"),
        "min(low) AS min_low, max(high) AS max_high, round(avg(close), 9) AS mean_close, \
         count(DISTINCT volume) AS count_distinct_volume",
    );
    assert_eq!(duck.len(), 4, "2 symbols x 2 weeks: {duck:#?}");
    assert_eq!(ours, duck, "the lake's weekly aggregates differ from DuckDB's GROUP BY");
}

/// A run killed (SIGKILL) again and again while it commits weekly groups, then let finish: each
/// group once, equal to DuckDB's `GROUP BY`. Units committed before their deferred re-run are
/// found out of date by the next run (their recorded next file is not the committed one).
#[test]
fn groups_across_files_survive_kills_in_the_middle_of_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_days(&root.join("in"));
    let yaml = root.join("p.yaml");
    let lake = root.join("lake");
    pipeline(
        &yaml,
        &root.join("in"),
        &lake,
        "  - plugin: aggregate
    config: {keys: [symbol], time: open_time, every: week, aggs: [{fn: count, as: n}, {fn: sum, column: volume}]}",
        1,
    );
    let mut killed = 0;
    let log = root.join("runs.log");
    for round in 0..4 {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut cmd = sluice();
        cmd.args(["run", yaml.to_str().unwrap()]).stderr(err);
        killed += usize::from(kill_after_commits(cmd, &lake, 3 * (round + 1)));
    }
    assert!(killed > 0, "no run was killed in the middle");
    let s = run_ok(&yaml);
    // Some run found what a killed one left out of date, and re-ran it.
    let repaired = std::fs::read_to_string(&log).unwrap() + &s["warnings"].to_string();
    assert!(repaired.contains("re-run, its groups continue in a file committed after it"), "{repaired}");
    let ours = query(&lake, "SELECT symbol, open_time, n, sum_volume FROM out ORDER BY ALL");
    let duck = weekly_by_duckdb(&lake, &root.join("in"), "");
    assert_eq!(ours, duck);
    // A further run finds nothing out of date.
    let s = run_ok(&yaml);
    assert_eq!(s["files_committed"].as_u64(), Some(0), "{s}");
}

/// A file rewritten without a key it had: the file before it had left that key's month to it, so
/// the same run re-runs the earlier file, and the month is in the lake once, with its rows.
#[test]
fn a_rewritten_file_that_drops_a_key_gives_its_group_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let yaml = root.join("p.yaml");
    write(
        &yaml,
        "pipeline: drop\nsources:\n  s: {path: in, glob: \"*.csv\", format: {csv: {header: true, columns: {k: utf8, ts: int64, v: int64}}}}\n\
         steps:\n  - plugin: aggregate\n    config: {keys: [k], time: ts, every: month, aggs: [{fn: sum, column: v, as: s}]}\n\
         sink: {lake: lake, dataset: out}\nsettings: {workers: 1}\n",
    );
    // 2024-01-01 and 2024-01-02, in ms.
    let (d1, d2) = (1_704_067_200_000i64, 1_704_153_600_000i64);
    write(&root.join("in/1.csv"), &format!("k,ts,v\na,{d1},1\n"));
    write(&root.join("in/2.csv"), &format!("k,ts,v\na,{d2},2\nb,{d2},10\n"));
    let sums = || {
        query(&root.join("lake"), "SELECT k, s FROM out ORDER BY k")
            .iter()
            .map(|r| (r["k"].as_str().unwrap().to_string(), r["s"].as_i64().unwrap()))
            .collect::<Vec<_>>()
    };
    run_ok(&yaml);
    assert_eq!(sums(), [("a".to_string(), 3), ("b".to_string(), 10)]);
    // The new 2.csv has no `a`: 1.csv's January of `a` belongs to 1.csv again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&root.join("in/2.csv"), &format!("k,ts,v\nb,{d2},20\n"));
    let s = run_ok(&yaml);
    assert_eq!(sums(), [("a".to_string(), 1), ("b".to_string(), 20)], "{s}");
    assert_eq!(s["files_rerun"].as_u64(), Some(1), "{s}");
    // Nothing left to redo.
    assert_eq!(run_ok(&yaml)["files_committed"].as_u64(), Some(0));
}
