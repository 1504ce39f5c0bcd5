//! Column types from the sources as the lake's readers see them.

use crate::support::*;

/// 2012-01-01T00:00:00Z, in microseconds since the epoch.
const NEW_YEAR_US: i64 = 1_325_376_000_000_000;

/// Every timestamp unit, seconds included (Parquet has no seconds unit), reads back as a
/// timestamp with its value: in DuckDB through `sluice query`, and in pyarrow and Polars.
#[test]
fn every_timestamp_unit_reads_back_as_a_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        &root.join("in/a.csv"),
        "t_s,t_ms,t_us,t_ns\n2012-01-01T00:00:00Z,2012-01-01T00:00:00Z,2012-01-01T00:00:00Z,2012-01-01T00:00:00Z\n",
    );
    let yaml = root.join("p.yaml");
    write(
        &yaml,
        "pipeline: ts\nsources:\n  s:\n    path: in\n    glob: \"*.csv\"\n    format:\n      csv: {header: true, \
         columns: {t_s: timestamp_s, t_ms: timestamp_ms, t_us: timestamp_us, t_ns: timestamp_ns}}\n\
         steps: []\nsink: {lake: lake, dataset: ts}\n",
    );
    assert_eq!(run(&["run", "-q", yaml.to_str().unwrap()]).status.code(), Some(0));
    let lake = root.join("lake");
    let cols = ["t_s", "t_ms", "t_us", "t_ns"];
    for c in cols {
        let row = &query(&lake, &format!("SELECT typeof({c}) AS ty, epoch_us({c}) AS us FROM ts"))[0];
        assert!(row["ty"].as_str().unwrap().starts_with("TIMESTAMP"), "{c} reads as {}", row["ty"]);
        assert_eq!(row["us"].as_i64(), Some(NEW_YEAR_US), "{c}");
    }
    // The lake's recorded schema says what the files hold.
    let schema = std::fs::read_to_string(lake.join("_sluice/schemas/ts.json")).unwrap();
    assert!(!schema.contains("Timestamp(s"), "{schema}");

    let Some(pythons) = std::env::var_os("SLUICE_PYTHON") else {
        eprintln!("SLUICE_PYTHON is not set: skipping the pyarrow and Polars check (scripts/test.sh runs it)");
        return;
    };
    let script = repo().join("tests/python/check_timestamps.py");
    for py in std::env::split_paths(&pythons) {
        let mut args = vec![script.to_str().unwrap(), lake.to_str().unwrap(), "ts"];
        args.extend(cols);
        let out = std::process::Command::new(&py).args(&args).output().expect("python runs");
        assert!(out.status.success(), "{}: {}", py.display(), String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("{}: {got}", py.display());
        for (reader, prefix) in [("pyarrow", "timestamp"), ("polars", "Datetime")] {
            let Some(r) = got.get(reader) else { continue };
            for c in cols {
                let ty = r[c]["type"].as_str().unwrap();
                assert!(ty.starts_with(prefix), "{reader} reads {c} as {ty}");
                assert_eq!(r[c]["us"].as_i64(), Some(NEW_YEAR_US), "{reader} {c}");
            }
        }
    }
}

/// JSON numbers and booleans in a column declared `utf8` are read as their text, not rejected.
#[test]
fn json_numbers_and_booleans_in_a_text_column_keep_their_text() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        &root.join("in/a.jsonl"),
        "{\"id\": 1, \"year\": \"MCMXL\"}\n{\"id\": 2, \"year\": 1776}\n{\"id\": 3, \"year\": 1.50}\n\
         {\"id\": 4, \"year\": true}\n{\"id\": 5, \"year\": null}\n",
    );
    let yaml = root.join("p.yaml");
    write(
        &yaml,
        "pipeline: j\nsources:\n  s:\n    path: in\n    glob: \"*.jsonl\"\n    format:\n      jsonl: \
         {columns: {id: int64, year: utf8}}\nsteps: []\nsink: {lake: lake, dataset: j}\n",
    );
    assert_eq!(run(&["run", "-q", yaml.to_str().unwrap()]).status.code(), Some(0));
    let rows = query(&root.join("lake"), "SELECT id, year FROM j ORDER BY id");
    let years: Vec<_> = rows.iter().map(|r| r["year"].clone()).collect();
    assert_eq!(
        years,
        [serde_json::json!("MCMXL"), "1776".into(), "1.50".into(), "true".into(), serde_json::Value::Null]
    );
}
