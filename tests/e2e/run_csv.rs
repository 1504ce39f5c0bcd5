//! `sluice run` from folders of CSV files into hive-partitioned Parquet, read back by DuckDB.

use std::path::Path;

use crate::support::*;

const TRADES: &str = r#"
pipeline: trades
sources:
  trades:
    path: in
    glob: "**/*.csv"
    format:
      csv: {header: true}
steps:
  - plugin: select
    config: {columns: [symbol, ts, price, {qty: quantity}]}
  - plugin: sma
    config: {column: price, window: 3, as: ma3, key: symbol}
sink:
  lake: lake
  dataset: trades
  partition_by: [symbol]
"#;

/// Three CSV files, 50 rows each, symbols A and B alternating. Returns (rows, sum of prices) per symbol.
fn write_trades(dir: &Path, rows: usize) -> [(u64, f64); 2] {
    let mut totals = [(0u64, 0f64); 2];
    for (f, name) in ["2024-01-01.csv", "2024-01-02.csv", "sub/2024-01-03.csv"].iter().enumerate() {
        let mut text = String::from("ts,symbol,price,qty\n");
        for i in 0..rows {
            let sym = i % 2;
            let price = i as f64 * 0.5 + f as f64;
            text.push_str(&format!("{},{},{price},{}\n", f * 1000 + i, ["A", "B"][sym], i % 7));
            totals[sym].0 += 1;
            totals[sym].1 += price;
        }
        write(&dir.join("in").join(name), &text);
    }
    totals
}

#[test]
fn csv_folder_to_hive_partitioned_parquet_read_by_duckdb() {
    let tmp = tempfile::tempdir().unwrap();
    let totals = write_trades(tmp.path(), 50);
    let pipeline = tmp.path().join("trades.yaml");
    write(&pipeline, TRADES);
    let summary_path = tmp.path().join("summary.json");
    let out = run(&["run", pipeline.to_str().unwrap(), "--summary-json", summary_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&summary_path);
    assert_eq!(s["files_committed"], 3);
    assert_eq!(s["rows_written"], 150);
    assert_eq!(s["steps"][1]["name"], "sma");

    // Layout: hive directories, only committed part files, nothing in progress.
    let lake = tmp.path().join("lake");
    let files = files_under(&lake.join("trades"));
    assert_eq!(files.len(), 6, "{files:?}");
    assert!(
        files.iter().all(|f| (f.starts_with("symbol=A/") || f.starts_with("symbol=B/")) && f.ends_with(".parquet"))
    );

    // Through the catalog.
    let rows = query(
        &lake,
        "SELECT symbol, count(*) AS n, sum(price) AS s, count(ma3) AS m FROM trades GROUP BY 1 ORDER BY 1",
    );
    for (i, sym) in ["A", "B"].iter().enumerate() {
        assert_eq!(rows[i]["symbol"], *sym);
        assert_eq!(rows[i]["n"], totals[i].0);
        assert!((rows[i]["s"].as_f64().unwrap() - totals[i].1).abs() < 1e-9);
        // window 3 per symbol, state per file: the first two rows of each symbol in each file are NULL.
        assert_eq!(rows[i]["m"], totals[i].0 - 6);
    }
    // The renamed column, and a moving average checked by hand: A's prices in file 0 are 0, 1, 2 (rows 0, 2, 4).
    let r = query(&lake, "SELECT ma3, quantity FROM trades WHERE symbol = 'A' AND ts = 4");
    assert_eq!(r[0]["ma3"].as_f64().unwrap(), 1.0);
    assert_eq!(r[0]["quantity"], 4);

    // Straight from the hive glob, as a pandas/Polars/Spark user would.
    let glob = format!("{}/trades/**/*.parquet", lake.display());
    let r = query(
        &lake,
        &format!("SELECT count(*) AS n, sum(price) AS s FROM read_parquet('{glob}', hive_partitioning = true)"),
    );
    assert_eq!(r[0]["n"], 150);
}

#[test]
fn rerun_skips_unchanged_files_and_replaces_changed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    write_trades(tmp.path(), 20);
    let pipeline = tmp.path().join("trades.yaml");
    write(&pipeline, TRADES);
    let lake = tmp.path().join("lake");
    let snapshot = |lake: &Path| -> Vec<(String, Vec<u8>)> {
        files_under(&lake.join("trades"))
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(lake.join("trades").join(&f)).unwrap()))
            .collect()
    };
    let sj = tmp.path().join("s.json");
    assert_eq!(run(&["run", pipeline.to_str().unwrap()]).status.code(), Some(0));
    let first = snapshot(&lake);

    assert_eq!(
        run(&["run", pipeline.to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let s = summary(&sj);
    assert_eq!((s["files_unchanged"].as_u64(), s["files_committed"].as_u64()), (Some(3), Some(0)));
    assert_eq!(snapshot(&lake), first, "an unchanged re-run must leave the lake byte-identical");

    // --force rewrites every unit, producing the same bytes.
    assert_eq!(
        run(&["run", pipeline.to_str().unwrap(), "--force", "--summary-json", sj.to_str().unwrap()]).status.code(),
        Some(0)
    );
    assert_eq!(summary(&sj)["files_committed"], 3);
    assert_eq!(snapshot(&lake), first, "a replay must write the same file names and bytes");

    // A changed source replaces its own output and nothing else.
    write(&tmp.path().join("in/2024-01-02.csv"), "ts,symbol,price,qty\n1,A,10.0,1\n");
    assert_eq!(
        run(&["run", pipeline.to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]).status.code(),
        Some(0)
    );
    assert_eq!(summary(&sj)["files_committed"], 1);
    let r = query(&lake, "SELECT count(*) AS n FROM trades");
    assert_eq!(r[0]["n"], 41);
    let live: Vec<String> =
        crate::crash::ledger_files(&lake).into_iter().filter(|f| f.starts_with("trades/")).collect();
    assert_eq!(live.len(), 5, "the changed file's B partition is gone: {live:?}");
}

#[test]
fn demo_pipeline_with_explicit_schema_and_file_name_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = run(&["demo", "--dir", dir.to_str().unwrap(), "--symbols", "2", "--days", "2", "--rows-per-day", "300"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("BTCUSDT") && stdout.contains("ETHUSDT"), "{stdout}");

    let lake = dir.join("lake");
    let r = query(
        &lake,
        "SELECT count(*) AS n, count(DISTINCT date) AS days, min(typeof(date)) AS t, count(ma20) AS m FROM klines",
    );
    assert_eq!(r[0]["n"], 1200);
    assert_eq!(r[0]["days"], 2);
    assert_eq!(r[0]["t"], "DATE");
    // ma20 is continuous across a symbol's days: only each symbol's first 19 rows lack a window.
    assert_eq!(r[0]["m"], 1200 - 2 * 19);
    assert!(lake.join("klines/symbol=BTCUSDT/date=2024-01-02").is_dir());

    // A stray file that does not match the `fields` pattern is reported and skipped, never guessed.
    write(&dir.join("data/spot/daily/klines/BTCUSDT/notes.csv"), "not,a,kline\n");
    let sj = tmp.path().join("s.json");
    let out = sluice()
        .args(["run", dir.join("klines.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()])
        .env("DATA_DIR", dir.join("data"))
        .env("LAKE_DIR", &lake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the `fields` pattern"));
    let s = summary(&sj);
    assert_eq!((s["files_seen"].as_u64(), s["files_unchanged"].as_u64()), (Some(4), Some(4)));
}

/// `format.csv.not_null`: rows with an empty field (or a null token) in a listed column are
/// rejects with the column in their reason; the other rows, and empty fields elsewhere, stay.
#[test]
fn not_null_columns_send_rows_with_empty_fields_to_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "id,price,note\n1,2.5,x\n2,,y\n3,4.5,\n4,NA,z\n5,6.5,w\n");
    write(
        &root.join("p.yaml"),
        "pipeline: p\nsources:\n  s:\n    path: in\n    format:\n      csv:\n        columns: {id: int64, price: float64, note: utf8}\n        null: [NA]\n        not_null: [id, price]\nsteps: []\nsink: {lake: lake, dataset: d}\n",
    );
    let out = run_in(root, &["run", "p.yaml", "--summary-json", "s.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&root.join("s.json"));
    assert_eq!((s["rows_written"].as_u64(), s["rows_rejected"].as_u64()), (Some(3), Some(2)), "{s}");
    let kept = query(&root.join("lake"), "SELECT id, note FROM d ORDER BY id");
    assert_eq!(kept.iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 3, 5], "{kept:?}");
    assert!(kept[1]["note"].is_null(), "an empty field in a column not listed stays NULL: {kept:?}");
    let rejects = query(&root.join("lake"), "SELECT line, reason FROM _rejects ORDER BY line");
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0]["line"], serde_json::json!(3), "{rejects:?}");
    assert_eq!(
        rejects[0]["reason"].as_str().unwrap(),
        "column `price` is empty, but format.csv.not_null lists it",
        "{rejects:?}"
    );
    assert!(rejects[1]["reason"].as_str().unwrap().contains("`NA`, a null token"), "{rejects:?}");
}
