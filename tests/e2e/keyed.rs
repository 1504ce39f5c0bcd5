//! Keyed state across files: a 20-row moving average over daily kline files must equal a single
//! pass over the concatenated, sorted data, however the files arrive: all at once, one per run
//! in shuffled order (seeding from the lake, re-running later days when an earlier one arrives
//! late), or with the run killed and restarted in the middle.

use std::path::{Path, PathBuf};

use crate::crash::Rng;
use crate::support::{self, *};

/// Daily files per symbol; uneven row counts, some shorter than the lookback (19 rows), so a
/// day's lookback can span several earlier files.
const DAYS: [usize; 7] = [30, 8, 12, 45, 5, 27, 33];
const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];

/// One headerless kline-like file per symbol and day, named like the exchange's archives; `gap`
/// gives the milliseconds from a row to the next by (row, day, symbol).
fn write_klines(dir: &Path, gap: impl Fn(usize, usize, usize) -> i64) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (s, sym) in SYMBOLS.iter().enumerate() {
        let mut t: i64 = 1_700_000_000_000 + s as i64 * 7;
        for (d, rows) in DAYS.iter().enumerate() {
            let mut text = String::new();
            for i in 0..*rows {
                t += gap(i, d, s);
                let close = 100.0 + ((i * 37 + d * 11 + s * 5) % 97) as f64 / 4.0;
                text.push_str(&format!("{t},{close},{}\n", t + 999));
            }
            let p = dir.join(format!("{sym}-1s-2024-01-{:02}.csv", d + 1));
            write(&p, &text);
            files.push(p);
        }
    }
    files
}

/// Rows one second apart.
fn write_days(dir: &Path) -> Vec<PathBuf> {
    write_klines(dir, |_, _, _| 1000)
}

/// Writes the pipeline `name` to `p`: the day files of `data` keyed by the symbol in their
/// names, through `steps` (YAML list items), into `lake` partitioned by symbol and date.
fn keyed_pipeline(p: PathBuf, name: &str, data: &Path, lake: &str, steps: &str) -> PathBuf {
    write(
        &p,
        &format!(
            r#"
pipeline: {name}
sources:
  klines:
    path: {data}
    glob: "*.csv"
    fields: "{{symbol}}-1s-{{date:date}}.csv"
    format:
      csv:
        header: false
        columns: {{open_time: int64, close: float64, close_time: int64}}
steps:
{steps}
sink:
  lake: {lake}
  dataset: klines
  partition_by: [symbol, date]
settings: {{workers: 2, batch_rows: 9}}
"#,
            data = data.display()
        ),
    );
    p
}

fn pipeline(root: &Path, data: &Path, lake: &str) -> PathBuf {
    let steps = "  - plugin: sma
    config: {column: close, window: 20, as: ma20, key: symbol, order_by: open_time}
  - plugin: indicators
    config:
      keys: [symbol]
      order_by: open_time
      indicators:
        - {kind: rolling_max, column: close, window: 7, as: max7}
        - {kind: returns, column: close, window: 3, as: r3}";
    keyed_pipeline(root.join(format!("{lake}.yaml")), "keyed", data, lake, steps)
}

/// Rows whose indicators differ from a single window pass over the whole lake, and the totals.
fn check(lake: &Path) -> (u64, u64, u64) {
    let rows = query(
        lake,
        "WITH x AS (SELECT ma20, max7, r3, \
           CASE WHEN count(*) OVER w20 = 20 THEN avg(close) OVER w20 END AS e20, \
           CASE WHEN count(*) OVER w7 = 7 THEN max(close) OVER w7 END AS e7, \
           close / lag(close, 3) OVER (PARTITION BY symbol ORDER BY open_time) - 1 AS er3 \
         FROM klines \
         WINDOW w20 AS (PARTITION BY symbol ORDER BY open_time ROWS 19 PRECEDING), \
                w7 AS (PARTITION BY symbol ORDER BY open_time ROWS 6 PRECEDING)) \
         SELECT count(*) AS n, count(ma20) AS nn, \
           count(*) FILTER (WHERE (ma20 IS NULL) <> (e20 IS NULL) OR abs(ma20 - e20) > 1e-9 \
             OR (max7 IS NULL) <> (e7 IS NULL) OR max7 <> e7 \
             OR (r3 IS NULL) <> (er3 IS NULL) OR abs(r3 - er3) > 1e-12) AS bad FROM x",
    );
    let r = &rows[0];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| r[k].as_str().unwrap().parse().unwrap());
    (n("bad"), n("n"), n("nn"))
}

fn total_rows() -> u64 {
    (DAYS.iter().sum::<usize>() * SYMBOLS.len()) as u64
}

fn run_ok(yaml: &Path) -> serde_json::Value {
    let summary = yaml.with_extension("summary.json");
    let out = run(&["run", "-q", yaml.to_str().unwrap(), "--summary-json", summary.to_str().unwrap()]);
    let detail = std::fs::read_to_string(&summary).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{}\n{detail}", String::from_utf8_lossy(&out.stderr));
    crate::support::summary(&summary)
}

#[test]
fn moving_average_is_continuous_across_files_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_days(&root.join("in"));
    let yaml = pipeline(root, &root.join("in"), "lake");
    let s = run_ok(&yaml);
    assert_eq!(s["files_committed"], 21);
    let (bad, n, nn) = check(&root.join("lake"));
    assert_eq!((bad, n), (0, total_rows()));
    // Only the first 19 rows of each symbol have no full window.
    assert_eq!(nn, total_rows() - 19 * SYMBOLS.len() as u64);
    // The tails left for later runs live in the ledger directory, not in the dataset.
    assert!(!files_under(&root.join("lake/_sluice/state")).is_empty());
}

#[test]
fn files_arriving_one_per_run_in_shuffled_order_give_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files = write_days(&root.join("all"));
    let data = root.join("in");
    std::fs::create_dir_all(&data).unwrap();
    let yaml = pipeline(root, &data, "lake");
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut rng = Rng::new(0xD15_0A7E);
    rng.shuffle(&mut order);
    let mut reruns = 0;
    for (step, &i) in order.iter().enumerate() {
        let f = &files[i];
        std::fs::copy(f, data.join(f.file_name().unwrap())).unwrap();
        // Two files at a time now and then, so a run both seeds and carries state.
        if step % 5 == 3 {
            continue;
        }
        let s = run_ok(&yaml);
        reruns += s["files_rerun"].as_u64().unwrap_or_else(|| panic!("no files_rerun in {s}"));
    }
    run_ok(&yaml);
    assert!(reruns > 0, "late days must re-run the committed days after them");
    let (bad, n, _) = check(&root.join("lake"));
    assert_eq!((bad, n), (0, total_rows()));
    // A final re-run changes nothing.
    let s = run_ok(&yaml);
    assert_eq!((s["files_committed"].as_u64(), s["files_rerun"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn a_run_killed_in_the_middle_resumes_from_the_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_days(&root.join("in"));
    let yaml = pipeline(root, &root.join("in"), "lake");
    // Kill as soon as a few units are committed, several times, then let it finish.
    for round in 0..4 {
        let mut cmd = sluice();
        cmd.args(["run", "-q", yaml.to_str().unwrap()]);
        kill_after_commits(cmd, &root.join("lake"), 3 * (round + 1));
    }
    run_ok(&yaml);
    let (bad, n, _) = check(&root.join("lake"));
    assert_eq!((bad, n), (0, total_rows()));
}

/// Like [`write_days`], with irregular gaps between rows (1 to 3 seconds), so that a time window
/// holds a varying number of rows and often reaches back across several files.
fn write_gappy_days(dir: &Path) -> Vec<PathBuf> {
    write_klines(dir, |i, d, s| 1000 + ((i * 7 + d * 3 + s) % 5) as i64 * 500)
}

fn time_pipeline(root: &Path, data: &Path) -> PathBuf {
    let steps = "  - plugin: indicators
    config:
      keys: [symbol]
      order_by: open_time
      unit: ms
      indicators:
        - {kind: sma, column: close, window: 15s, as: ma15s}
        - {kind: rolling_max, column: close, window: 6s, as: max6s}
        - {kind: rolling_std, column: close, window: 10s, as: sd10s}";
    keyed_pipeline(root.join("time.yaml"), "keyed_time", data, "lake", steps)
}

/// Rows whose time-window indicators differ from a single SQL pass (integer RANGE windows over
/// the epoch-ms column), and the row count.
fn check_time(lake: &Path) -> (u64, u64) {
    let rows = query(
        lake,
        "WITH x AS (SELECT ma15s, max6s, sd10s, \
           avg(close) OVER (PARTITION BY symbol ORDER BY open_time RANGE BETWEEN 15000 PRECEDING AND CURRENT ROW) AS e15, \
           max(close) OVER (PARTITION BY symbol ORDER BY open_time RANGE BETWEEN 6000 PRECEDING AND CURRENT ROW) AS e6, \
           stddev_samp(close) OVER (PARTITION BY symbol ORDER BY open_time RANGE BETWEEN 10000 PRECEDING AND CURRENT ROW) AS e10 \
         FROM klines) \
         SELECT count(*) AS n, \
           count(*) FILTER (WHERE (ma15s IS NULL) <> (e15 IS NULL) OR abs(ma15s - e15) > 1e-9 \
             OR (max6s IS NULL) <> (e6 IS NULL) OR max6s <> e6 \
             OR (sd10s IS NULL) <> (e10 IS NULL) OR abs(sd10s - e10) > 1e-9) AS bad FROM x",
    );
    let r = &rows[0];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| r[k].as_str().unwrap().parse().unwrap());
    (n("bad"), n("n"))
}

#[test]
fn time_windows_are_continuous_across_files_and_late_arrivals() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // All at once: state carries from file to file of a symbol.
    write_gappy_days(&root.join("all"));
    let one = root.join("one");
    std::fs::create_dir_all(&one).unwrap();
    let yaml = time_pipeline(&one, &root.join("all"));
    run_ok(&yaml);
    assert_eq!(check_time(&one.join("lake")), (0, total_rows()));
    // One file per run in shuffled order: fresh instances are seeded with the rows within the
    // span before them, and committed later files re-run when an earlier one arrives late.
    let files: Vec<PathBuf> = {
        let mut f: Vec<PathBuf> = std::fs::read_dir(root.join("all")).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    };
    let shuffled = root.join("shuffled");
    let data = shuffled.join("in");
    std::fs::create_dir_all(&data).unwrap();
    let yaml = time_pipeline(&shuffled, &data);
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut rng = Rng::new(0x7135_5EED);
    rng.shuffle(&mut order);
    let mut reruns = 0;
    for &i in &order {
        let f = &files[i];
        std::fs::copy(f, data.join(f.file_name().unwrap())).unwrap();
        reruns += run_ok(&yaml)["files_rerun"].as_u64().unwrap();
    }
    assert!(reruns > 0, "late days must re-run the committed days within the span after them");
    assert_eq!(check_time(&shuffled.join("lake")), (0, total_rows()));
}

/// The repository's kline pipeline (`pipelines/klines.yaml`) on `sluice demo` data: ma20 equals a
/// single pass over the sorted data after one run, and after the same files arrive one per run
/// in shuffled order (symbols and days interleaved).
#[test]
fn the_kline_pipeline_computes_ma20_across_days_in_any_arrival_order() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let demo = root.join("demo");
    let out =
        run(&["demo", "-q", "--dir", demo.to_str().unwrap(), "--symbols", "2", "--days", "5", "--rows-per-day", "37"]);
    assert_eq!(out.status.code(), Some(0));
    let ma20_check = "SELECT count(*) AS n, count(*) FILTER (WHERE (ma20 IS NULL) <> (e IS NULL) OR abs(ma20 - e) > 1e-9) \
        AS bad FROM (SELECT ma20, CASE WHEN count(*) OVER w = 20 THEN avg(close) OVER w END AS e FROM klines \
        WINDOW w AS (PARTITION BY symbol ORDER BY open_time ROWS 19 PRECEDING))";
    let counts = |lake: &Path| {
        let r = query(lake, ma20_check);
        let n = |k: &str| r[0][k].as_u64().unwrap_or_else(|| r[0][k].as_str().unwrap().parse().unwrap());
        (n("bad"), n("n"))
    };
    assert_eq!(counts(&demo.join("lake")), (0, 2 * 5 * 37));

    // The same files, one (or two) per run, shuffled.
    let src = demo.join("data/spot/daily/klines");
    let mut files: Vec<PathBuf> = files_under(&src).into_iter().map(|f| src.join(f)).collect();
    files.sort();
    let mut rng = Rng::new(0x04B1_14E5);
    rng.shuffle(&mut files);
    let (data, lake) = (root.join("data"), root.join("lake"));
    let dest = data.join("spot/daily/klines");
    let pipeline = support::repo().join("pipelines/klines.yaml");
    for (i, f) in files.iter().enumerate() {
        let rel = f.strip_prefix(&src).unwrap();
        std::fs::create_dir_all(dest.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(f, dest.join(rel)).unwrap();
        if i % 3 == 1 {
            continue;
        }
        let out = sluice()
            .args(["run", "-q", pipeline.to_str().unwrap()])
            .env("DATA_DIR", &data)
            .env("LAKE_DIR", &lake)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out =
        sluice().args(["run", "-q", pipeline.to_str().unwrap()]).env("DATA_DIR", &data).env("LAKE_DIR", &lake).output();
    assert_eq!(out.unwrap().status.code(), Some(0));
    assert_eq!(counts(&lake), (0, 2 * 5 * 37));
}
