//! The reference job as SQL and pandas write it: rows with an empty field dropped
//! (`clean` `nulls: {"*": drop}`, pandas `dropna()`), then a 20-row moving average with partial
//! windows for each symbol's first rows (`min_periods: 1`, pandas `rolling(20, min_periods=1)`).
//! The lake must equal DuckDB's `avg(close) OVER (PARTITION BY symbol ORDER BY open_time ROWS 19
//! PRECEDING)` over the same rows, whether the day files arrive at once or one per run in
//! shuffled order (lookback seeding from the lake, late days re-running their successors).

use std::path::{Path, PathBuf};

use crate::crash::Rng;
use crate::support::*;

/// Rows per daily file, some shorter than the window.
const DAYS: [usize; 6] = [7, 26, 4, 31, 12, 22];
const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];

/// Headerless `open_time,close,volume` day files; every 9th row of a symbol has an empty close,
/// every 13th an empty volume. Returns the files and the number of rows without an empty field.
fn write_days(dir: &Path) -> (Vec<PathBuf>, u64) {
    let (mut files, mut complete) = (Vec::new(), 0);
    for (s, sym) in SYMBOLS.iter().enumerate() {
        let mut t: i64 = 1_700_000_000_000 + s as i64 * 3;
        let mut i = 0usize;
        for (d, rows) in DAYS.iter().enumerate() {
            let mut text = String::new();
            for _ in 0..*rows {
                t += 1000;
                i += 1;
                let close = if i % 9 == 4 {
                    String::new()
                } else {
                    format!("{}", 100.0 + ((i * 37 + s * 5) % 97) as f64 / 4.0)
                };
                let volume = if i % 13 == 6 { String::new() } else { format!("{}", (i * 7) % 50) };
                if !close.is_empty() && !volume.is_empty() {
                    complete += 1;
                }
                text.push_str(&format!("{t},{close},{volume}\n"));
            }
            let p = dir.join(format!("{sym}-1s-2024-01-{:02}.csv", d + 1));
            write(&p, &text);
            files.push(p);
        }
    }
    (files, complete)
}

fn pipeline(root: &Path, data: &Path) -> PathBuf {
    let p = root.join("windows.yaml");
    write(
        &p,
        &format!(
            r#"
pipeline: windows
sources:
  klines:
    path: {data}
    glob: "*.csv"
    fields: "{{symbol}}-1s-{{date:date}}.csv"
    format:
      csv:
        header: false
        null: [""]
        columns: {{open_time: int64, close: float64, volume: float64}}
steps:
  - plugin: clean
    config:
      nulls: {{"*": drop}}
  - plugin: indicators
    config:
      keys: [symbol]
      order_by: open_time
      indicators:
        - {{kind: sma, column: close, window: 20, min_periods: 1, as: ma20}}
        - {{kind: rolling_max, column: volume, window: 5, min_periods: 1, as: vmax5}}
        - {{kind: rolling_std, column: close, window: 8, min_periods: 3, as: sd8}}
sink:
  lake: lake
  dataset: klines
  partition_by: [symbol, date]
settings: {{workers: 2, batch_rows: 9}}
"#,
            data = data.display()
        ),
    );
    p
}

/// Rows of the lake, rows whose values differ from DuckDB's window functions over the lake,
/// rows with a null ma20, and rows with a null close or volume.
fn check(lake: &Path) -> (u64, u64, u64, u64) {
    let rows = query(
        lake,
        "WITH x AS (SELECT close, volume, ma20, vmax5, sd8, \
           avg(close) OVER (PARTITION BY symbol ORDER BY open_time ROWS 19 PRECEDING) AS e20, \
           max(volume) OVER (PARTITION BY symbol ORDER BY open_time ROWS 4 PRECEDING) AS e5, \
           CASE WHEN count(close) OVER w8 >= 3 THEN stddev_samp(close) OVER w8 END AS e8 \
         FROM klines WINDOW w8 AS (PARTITION BY symbol ORDER BY open_time ROWS 7 PRECEDING)) \
         SELECT count(*) AS n, count(*) FILTER (WHERE ma20 IS NULL) AS null_ma20, \
           count(*) FILTER (WHERE close IS NULL OR volume IS NULL) AS holes, \
           count(*) FILTER (WHERE (ma20 IS NULL) <> (e20 IS NULL) OR abs(ma20 - e20) > 1e-9 \
             OR (vmax5 IS NULL) <> (e5 IS NULL) OR vmax5 <> e5 \
             OR (sd8 IS NULL) <> (e8 IS NULL) OR abs(sd8 - e8) > 1e-9) AS bad FROM x",
    );
    let r = &rows[0];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| r[k].as_str().unwrap().parse().unwrap());
    (n("n"), n("bad"), n("null_ma20"), n("holes"))
}

fn run_ok(yaml: &Path) -> serde_json::Value {
    let path = yaml.with_extension("summary.json");
    let out = run(&["run", "-q", yaml.to_str().unwrap(), "--summary-json", path.to_str().unwrap()]);
    let detail = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{}\n{detail}", String::from_utf8_lossy(&out.stderr));
    summary(&path)
}

#[test]
fn partial_windows_and_dropped_empty_fields_match_duckdb_in_any_arrival_order() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (files, complete) = write_days(&root.join("all"));
    let total: u64 = (DAYS.iter().sum::<usize>() * SYMBOLS.len()) as u64;
    assert!(complete < total && complete > total / 2);

    // All at once.
    let one = root.join("one");
    std::fs::create_dir_all(&one).unwrap();
    let yaml = pipeline(&one, &root.join("all"));
    run_ok(&yaml);
    // Every complete row is there, with a mean: partial for each symbol's first 19.
    assert_eq!(check(&one.join("lake")), (complete, 0, 0, 0));

    // One or two files per run, shuffled: fresh instances are seeded with the 19 rows before
    // a day, and later days re-run when an earlier one arrives.
    let shuffled = root.join("shuffled");
    let data = shuffled.join("in");
    std::fs::create_dir_all(&data).unwrap();
    let yaml = pipeline(&shuffled, &data);
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut rng = Rng::new(0x3141_5926);
    rng.shuffle(&mut order);
    let mut reruns = 0;
    for (step, &i) in order.iter().enumerate() {
        let f = &files[i];
        std::fs::copy(f, data.join(f.file_name().unwrap())).unwrap();
        if step % 4 == 2 {
            continue;
        }
        reruns += run_ok(&yaml)["files_rerun"].as_u64().unwrap();
    }
    run_ok(&yaml);
    assert!(reruns > 0, "late days must re-run the committed days after them");
    assert_eq!(check(&shuffled.join("lake")), (complete, 0, 0, 0));
}
