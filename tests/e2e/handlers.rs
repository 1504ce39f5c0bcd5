//! The standard handler plugins through the real CLI: each case of `tests/handlers/<case>/`
//! (generated from the handlers' native builds by `plugins/handler-fixtures`) is run with
//! `sluice run`, and `sluice query` must return the native output: WASM/native parity on
//! generated data, with state crossing batch boundaries (`batch_rows: 7`).

use std::path::Path;

use crate::support::*;

const CASES: [&str; 18] = [
    "normalize_time",
    "dedup",
    "filter",
    "derive",
    "indicators",
    "indicators_time",
    "indicators_min_periods",
    "aggregate",
    "resample",
    "sessionize",
    "sessionize_sessions",
    "normalize",
    "clean",
    "clean_types",
    "clean_any_null",
    "clean_null_rejects",
    "enrich",
    "enrich_inner",
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Whether a query result cell equals an expected CSV cell (empty = NULL; numbers to 1e-9 relative).
fn cell_matches(got: &serde_json::Value, want: &str) -> bool {
    match got {
        serde_json::Value::Null => want.is_empty(),
        serde_json::Value::Bool(b) => want == b.to_string(),
        serde_json::Value::Number(n) => {
            let (g, w) = (n.as_f64().unwrap(), want.parse::<f64>());
            w.is_ok_and(|w| (g - w).abs() <= 1e-9 * w.abs().max(1.0))
        }
        serde_json::Value::String(s) => {
            s == want || s.parse::<f64>().ok().zip(want.parse::<f64>().ok()).is_some_and(|(a, b)| a == b)
        }
        _ => false,
    }
}

/// Runs one case; returns the mismatches (empty: the WASM output equals the native one).
fn run_case(name: &str) -> Vec<String> {
    let src = repo().join("tests/handlers").join(name);
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&src, tmp.path());
    let pipeline = tmp.path().join("pipeline.yaml");
    let out = run(&["run", pipeline.to_str().unwrap()]);
    if out.status.code() != Some(0) {
        return vec![format!("{name}: sluice run exited {:?}", out.status.code())];
    }
    let sql = std::fs::read_to_string(src.join("check.sql")).unwrap();
    let rows = query(&tmp.path().join("lake"), sql.trim());
    let expected = std::fs::read_to_string(src.join("expected.csv")).unwrap();
    let mut lines = expected.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let want: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut problems = Vec::new();
    if rows.len() != want.len() {
        problems.push(format!("{name}: {} rows, expected {}", rows.len(), want.len()));
    }
    for (i, (got, want)) in rows.iter().zip(&want).enumerate() {
        for (col, w) in header.iter().zip(want) {
            if !cell_matches(&got[*col], w) {
                problems.push(format!("{name}: row {i} column {col}: got {}, expected `{w}`", got[*col]));
            }
        }
    }
    problems.truncate(20);
    problems
}

#[test]
fn wasm_builds_match_native_builds_on_every_handler_case() {
    let mut problems = Vec::new();
    for name in CASES {
        assert!(repo().join("tests/handlers").join(name).join("expected.csv").is_file(), "missing case {name}");
        problems.extend(run_case(name));
    }
    assert!(problems.is_empty(), "WASM output differs from the native fixtures:\n{}", problems.join("\n"));
}

#[test]
fn handler_config_errors_name_the_key_and_point_into_expressions() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("in/a.csv"), "symbol,close\nBTC,1.5\n");
    let pipeline = |step: &str| {
        format!(
            "pipeline: bad\nsources:\n  s:\n    path: in\n    glob: \"*.csv\"\n    format:\n      csv: {{header: true}}\n\
             steps:\n  - {step}\nsink: {{lake: lake, dataset: bad}}\n"
        )
    };
    // Errors found at construction stop the run before any data (exit 2); those that need the
    // input schema surface when the file is read (the file fails: exit 1).
    let cases = [
        (r#"{plugin: filter, config: {where: "close >> 1"}}"#, 2, "at column 8"),
        (r#"{plugin: filter, config: {where: "clse > 1"}}"#, 1, "unknown column `clse` at column 1"),
        (r#"{plugin: derive, config: {columns: {x: "upper(close)"}}}"#, 1, "key `columns.x`"),
        (r#"{plugin: dedup, config: {keys: [symbol], keep: newest}}"#, 2, "key `keep`"),
        (r#"{plugin: normalize_time, config: {columns: [close], to: ms}}"#, 1, "key `columns.0`"),
        (
            r#"{plugin: indicators, config: {order_by: close, indicators: [{kind: sma, column: close, as: m}]}}"#,
            2,
            "indicators.0.window",
        ),
        (r#"{plugin: aggregate, config: {time: close, every: 1 fortnight, aggs: [{fn: count}]}}"#, 2, "key `every`"),
        (
            r#"{plugin: aggregate, config: {time: close, every: month, tz: Europe/Berlinn, aggs: [{fn: count}]}}"#,
            2,
            "key `tz`",
        ),
        (r#"{plugin: filter, config: {where: "hour(now()) > 1"}}"#, 2, "cannot read the clock"),
        (
            r#"{plugin: filter, config: {where: "date_trunc('fortnight', close) > 1"}}"#,
            1,
            "quarter, year) at column 12",
        ),
        (
            r#"{plugin: derive, config: {columns: {t: "strptime(symbol, '%Y') > 5"}}}"#,
            1,
            "cannot compare a timestamp with an integer",
        ),
    ];
    for (step, code, needle) in cases {
        let p = tmp.path().join("bad.yaml");
        write(&p, &pipeline(step));
        let out = run(&["run", p.to_str().unwrap()]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{step}: {text}");
        assert!(text.contains(needle), "{step}: expected `{needle}` in:\n{text}");
    }
}

#[test]
fn enrich_joins_a_table_file_and_clean_sends_bad_values_to_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "symbol,qty\nBTC,1\nETH,x7\nDOGE,3\nETH,4\n");
    write(&root.join("ref/symbols.csv"), "symbol,name,tick\nBTC,Bitcoin,0.01\nETH,Ether,0.1\n");
    write(&root.join("ref/dups.csv"), "symbol,name\nBTC,Bitcoin\nETH,Ether\nBTC,Bitcoin Cash\n");
    let pipeline = |how: &str, table: &str| {
        format!(
            "pipeline: joined\nsources:\n  s:\n    path: in\n    glob: \"*.csv\"\n    format:\n      csv: {{header: true, columns: {{symbol: utf8, qty: utf8}}}}\n\
             steps:\n  - plugin: clean\n    config: {{types: {{qty: int64}}}}\n\
             \x20 - plugin: enrich\n    tables: {{symbols: {table}}}\n    config: {{on: [symbol], how: {how}, rename: {{name: symbol_name}}}}\n\
             sink: {{lake: lake-{how}, dataset: joined}}\n"
        )
    };
    let text = |out: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };

    let p = root.join("left.yaml");
    write(&p, &pipeline("left", "ref/symbols.csv"));
    let out = run(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lake = root.join("lake-left");
    let rows = query(&lake, "SELECT symbol, qty, symbol_name, tick FROM joined ORDER BY qty");
    let got: Vec<String> =
        rows.iter().map(|r| format!("{} {} {} {}", r["symbol"], r["qty"], r["symbol_name"], r["tick"])).collect();
    assert_eq!(got, vec![r#""BTC" 1 "Bitcoin" 0.01"#, r#""DOGE" 3 null null"#, r#""ETH" 4 "Ether" 0.1"#]);
    // The row whose qty is not an integer went to `_rejects`, with the step and a reason.
    let rej = query(
        &lake,
        &format!("SELECT reason, step, raw FROM read_parquet('{}/_rejects/**/*.parquet')", lake.display()),
    );
    assert_eq!(rej.len(), 1, "{rej:?}");
    assert_eq!(rej[0]["reason"], "column `qty`: `x7` is not a valid int64");
    assert_eq!(rej[0]["step"], "clean");
    assert!(rej[0]["raw"].as_str().unwrap().contains("symbol=ETH"), "{rej:?}");

    let p = root.join("inner.yaml");
    write(&p, &pipeline("inner", "ref/symbols.csv"));
    let out = run(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = query(&root.join("lake-inner"), "SELECT count(*) AS n FROM joined");
    assert_eq!(rows[0]["n"].to_string().trim_matches('"'), "2");

    // A table with a duplicate key is a config error naming the table and the key (exit 2).
    let p = root.join("dups.yaml");
    write(&p, &pipeline("left", "ref/dups.csv"));
    for cmd in ["validate", "run"] {
        let out = run(&[cmd, p.to_str().unwrap()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {t}");
        assert!(t.contains("table `symbols`") && t.contains("symbol=BTC"), "{cmd}: {t}");
    }
    // A missing table file: validate points at the entry; run refuses before any data.
    let p = root.join("missing.yaml");
    write(&p, &pipeline("left", "ref/nope.csv"));
    let out = run(&["validate", p.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("{}:12:", p.display())) && t.contains("does not exist"), "{t}");
    let out = run(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
