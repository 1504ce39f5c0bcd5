//! The migration seeds: a monolithic `.duckdb` file moved into the lake by a `kind: duckdb`
//! source (a table read in rowid ranges, and a query), then `sluice lake compare` against the
//! old table: equal after the move, a difference named by partition after one update, and a
//! writer holding the file named.

use std::path::Path;

use crate::support::*;

fn old_store(path: &Path, rows: i64) {
    let conn = duckdb::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE stock_daily AS SELECT 'S' || (i % 7) AS symbol, DATE '2024-01-01' + (i // 7)::INTEGER AS date, \
         (i * 37 % 1000)::DECIMAL(12,2) / 10 AS amount, i AS id FROM range({rows}) t(i);"
    ))
    .unwrap();
}

#[test]
fn a_duckdb_table_moves_to_the_lake_in_ranges_and_compare_finds_a_changed_partition() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quant.duckdb");
    old_store(&db, 7 * 40);
    write(
        &dir.path().join("move.yaml"),
        r#"
pipeline: move
sources:
  old:
    kind: duckdb
    path: quant.duckdb
    table: stock_daily
    range_rows: 50
sink:
  lake: lake
  dataset: stock_daily
  partition_by: [symbol]
settings: {workers: 2, batch_rows: 16}
"#,
    );
    let summary_path = dir.path().join("s.json");
    let out = run_in(dir.path(), &["run", "move.yaml", "--summary-json", summary_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&summary_path);
    assert_eq!(s["files_committed"], 6, "280 rows in ranges of 50 rowids: {s}");
    let rows = query(&dir.path().join("lake"), "SELECT count(*) AS n, count(DISTINCT id) AS d FROM stock_daily");
    assert_eq!((rows[0]["n"].as_i64(), rows[0]["d"].as_i64()), (Some(280), Some(280)));
    // Unchanged file: nothing to do.
    let out = run_in(dir.path(), &["run", "move.yaml", "--summary-json", summary_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(summary(&summary_path)["files_committed"], 0);

    let compare = |extra: &[&str]| {
        let mut args = vec!["lake", "compare", "lake", "--dataset", "stock_daily", "--duckdb", "quant.duckdb"];
        args.extend_from_slice(&["--table", "stock_daily", "--by", "symbol", "--sum", "amount,id"]);
        args.extend_from_slice(extra);
        run_in(dir.path(), &args)
    };
    let out = compare(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("280 rows") && text.contains("same"), "{text}");

    // One update in the old store: compare exits 1 and names the partition and the column.
    let conn = duckdb::Connection::open(&db).unwrap();
    conn.execute_batch("UPDATE stock_daily SET amount = amount + 1 WHERE id = 10").unwrap();
    drop(conn);
    let out = compare(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("symbol=S3: sum(amount)"), "{text}");
    assert!(text.contains("1 group(s) differ"), "{text}");

    // The file changed: the next run reads it again, and the stores agree again.
    let out = run_in(dir.path(), &["run", "move.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(compare(&[]).status.code(), Some(0));
}

#[test]
fn a_query_is_one_unit_and_a_writer_holding_the_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.duckdb");
    old_store(&db, 70);
    write(
        &dir.path().join("q.yaml"),
        r#"
pipeline: q
sources:
  old:
    kind: duckdb
    path: old.duckdb
    query: SELECT symbol, sum(amount) AS amount FROM stock_daily GROUP BY symbol
sink: {lake: lake, dataset: totals}
"#,
    );
    // Another process holds the file open for writing (this test's own connection).
    let writer = duckdb::Connection::open(&db).unwrap();
    let out = run_in(dir.path(), &["run", "q.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("is open for writing by another process"), "{err}");
    drop(writer);
    let out = run_in(dir.path(), &["run", "q.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let rows = query(&dir.path().join("lake"), "SELECT count(*) AS n FROM totals");
    assert_eq!(rows[0]["n"].as_i64(), Some(7));
    // validate checks the file is there without opening it.
    write(
        &dir.path().join("bad.yaml"),
        &std::fs::read_to_string(dir.path().join("q.yaml")).unwrap().replace("old.duckdb", "gone.duckdb"),
    );
    let out = run_in(dir.path(), &["validate", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no DuckDB file at"));
}
