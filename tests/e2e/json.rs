//! JSON input that is not JSON lines: rows with no columns never reach the lake, a failed
//! catalog publish cleans up and still reports, and JSON arrays are refused by `jsonl` and read,
//! streaming, by `json`.

use std::path::Path;

use crate::support::*;

fn pipeline(root: &Path, format: &str) -> std::path::PathBuf {
    let p = root.join("p.yaml");
    write(
        &p,
        &format!(
            "pipeline: p\nsources:\n  s: {{path: in, format: {format}}}\nsteps: []\nsink: {{lake: lake, dataset: d}}\n"
        ),
    );
    p
}

fn parquet_files(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    files_under(dir).into_iter().filter(|f| f.ends_with(".parquet")).collect()
}

#[test]
fn rows_with_no_columns_fail_their_unit_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Objects with no keys: the inferred schema has no columns.
    write(&root.join("in/a.jsonl"), "{}\n{}\n");
    pipeline(root, "{jsonl: {}}");
    let out = run_in(root, &["run", "p.yaml", "--summary-json", "s.json"]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&root.join("s.json"));
    assert_eq!((s["files_committed"].as_u64(), s["files_failed"].as_u64()), (Some(0), Some(1)), "{s}");
    let error = s["failures"][0]["error"].as_str().unwrap();
    assert!(error.contains("in/a.jsonl"), "{error}");
    assert!(error.contains("the rows had no columns"), "{error}");
    assert!(error.contains("use `format: json`"), "{error}");
    assert_eq!(parquet_files(&root.join("lake/d")), Vec::<String>::new());
    assert_eq!(parquet_files(&root.join("lake/_sluice/files/d")), Vec::<String>::new());

    // The lake stays usable: a good file commits and the catalog publishes.
    std::fs::remove_file(root.join("in/a.jsonl")).unwrap();
    write(&root.join("in/b.jsonl"), "{\"a\": 1}\n");
    let out = run_in(root, &["run", "p.yaml", "--summary-json", "s2.json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(summary(&root.join("s2.json"))["files_committed"].as_u64(), Some(1));
    assert_eq!(query(&root.join("lake"), "SELECT a FROM d"), vec![serde_json::json!({"a": 1})]);
}

fn catalog_temps(lake: &Path) -> Vec<String> {
    std::fs::read_dir(lake)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".catalog.duckdb."))
        .collect()
}

#[test]
fn a_failed_publish_leaves_no_temporary_files_and_still_reports_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let lake = root.join("lake");
    write(&root.join("in/a.jsonl"), "{\"a\": 1}\n");
    pipeline(root, "{jsonl: {}}");
    let out = run_in(root, &["run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let catalog = std::fs::read(lake.join("catalog.duckdb")).unwrap();

    // DuckDB fails to build the catalog: a committed file it cannot read.
    let stored = parquet_files(&lake.join("_sluice/files/d"));
    assert_eq!(stored.len(), 1);
    std::fs::write(lake.join("_sluice/files/d").join(&stored[0]), b"not parquet").unwrap();
    write(&root.join("in/b.jsonl"), "{\"a\": 2}\n");
    let out = run_in(root, &["run", "p.yaml", "--summary-json", "s.json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 committed"), "the summary is printed: {stderr}");
    assert!(stderr.contains("catalog not published"), "{stderr}");
    let s = summary(&root.join("s.json"));
    assert_eq!(s["files_committed"].as_u64(), Some(1), "{s}");
    let error = s["catalog_error"].as_str().unwrap();
    assert!(error.contains("catalog.duckdb") && error.contains(&stored[0]), "{error}");
    assert_eq!(catalog_temps(&lake), Vec::<String>::new());
    assert_eq!(std::fs::read(lake.join("catalog.duckdb")).unwrap(), catalog, "the old catalog stays");

    // The catalog cannot be renamed into place: its path is a directory.
    let tmp = tempfile::tempdir().unwrap();
    let (root, lake) = (tmp.path(), tmp.path().join("lake"));
    write(&root.join("in/a.jsonl"), "{\"a\": 1}\n");
    pipeline(root, "{jsonl: {}}");
    std::fs::create_dir_all(lake.join("catalog.duckdb")).unwrap();
    let out = run_in(root, &["run", "p.yaml", "--summary-json", "s2.json"]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&root.join("s2.json"));
    assert_eq!(s["files_committed"].as_u64(), Some(1), "{s}");
    assert!(s["catalog_error"].as_str().unwrap().contains("catalog.duckdb"), "{s}");
    assert_eq!(catalog_temps(&lake), Vec::<String>::new());
}

#[test]
fn jsonl_refuses_a_json_array_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // As most JSON is published: an array of objects, one per line with commas.
    write(&root.join("in/a.jsonl"), "  \n[{\"a\": 1},\n{\"a\": 2},\n{\"a\": 3}]\n");
    for format in ["{jsonl: {}}", "{jsonl: {columns: {a: int64}}}"] {
        pipeline(root, format);
        let out = run_in(root, &["run", "p.yaml", "--summary-json", "s.json"]);
        assert_eq!(out.status.code(), Some(1), "{format}");
        let s = summary(&root.join("s.json"));
        assert_eq!((s["files_committed"].as_u64(), s["rows_rejected"].as_u64()), (Some(0), Some(0)), "{s}");
        let error = s["failures"][0]["error"].as_str().unwrap();
        assert!(error.contains("in/a.jsonl"), "{error}");
        assert!(error.contains("a JSON array, not JSON lines"), "{error}");
        assert!(error.contains("use `format: json`"), "{error}");
        assert_eq!(parquet_files(&root.join("lake")), Vec::<String>::new());
    }
}

#[test]
fn json_reads_an_array_streaming_with_and_without_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Pretty-printed, as published: elements over several lines, commas and brackets in strings.
    let rows: Vec<serde_json::Value> = (0..2500)
        .map(|i| serde_json::json!({"id": i, "title": format!("t,]{{\"{i}"), "tags": ["a", "b"], "n": {"x": i}}))
        .collect();
    let mut text = serde_json::to_string_pretty(&rows).unwrap();
    // Element 3 (index 2 from 0) is not an object: a reject with its element number.
    text = text.replacen("[\n  {", "[\n  {\"id\": 1000000, \"title\": \"first\"},\n  42,\n  {", 1);
    write(&root.join("in/a.json"), &text);
    for format in ["{json: {}}", "{json: {columns: {id: int64, title: utf8}}}"] {
        let _ = std::fs::remove_dir_all(root.join("lake"));
        pipeline(root, format);
        let out = run_in(root, &["run", "p.yaml", "--summary-json", "s.json"]);
        assert_eq!(out.status.code(), Some(0), "{format}");
        let s = summary(&root.join("s.json"));
        assert_eq!((s["rows_written"].as_u64(), s["rows_rejected"].as_u64()), (Some(2501), Some(1)), "{format}: {s}");
        let lake = root.join("lake");
        let got = query(&lake, "SELECT count(*) AS n, sum(id) AS s, max(length(title)) AS l FROM d WHERE id < 1000000");
        assert_eq!(got, vec![serde_json::json!({"n": 2500, "s": 2500 * 2499 / 2, "l": 9})], "{format}");
        let t = query(&lake, "SELECT title FROM d WHERE id = 7");
        assert_eq!(t, vec![serde_json::json!({"title": "t,]{\"7"})]);
        let rejects = query(&lake, "SELECT line, raw FROM _rejects");
        assert_eq!(rejects.len(), 1, "{rejects:?}");
        assert_eq!(rejects[0]["line"], serde_json::json!(2), "the element's number: {rejects:?}");
    }
}

#[test]
fn json_refuses_what_is_not_an_array_and_limits_elements() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.json"), "{\"a\": 1}\n{\"a\": 2}\n");
    write(&root.join("in/b.json"), "[{\"a\": 1}, {\"a\": 2}");
    pipeline(root, "{json: {}}");
    let out = run_in(root, &["run", "p.yaml", "--summary-json", "s.json"]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&root.join("s.json"));
    let errors: Vec<&str> = s["failures"].as_array().unwrap().iter().map(|f| f["error"].as_str().unwrap()).collect();
    assert!(errors.iter().any(|e| e.contains("in/a.json") && e.contains("not a JSON array")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("in/b.json") && e.contains("`]` is missing")), "{errors:?}");

    // `limits.max_record_bytes` applies per element.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let big = "x".repeat(2000);
    write(&root.join("in/a.json"), &format!("[{{\"a\": \"s\"}}, {{\"a\": \"{big}\"}}, {{\"a\": \"t\"}}]"));
    write(
        &root.join("p.yaml"),
        "pipeline: p\nsources:\n  s: {path: in, format: {json: {}}, limits: {max_record_bytes: 1000}}\nsteps: []\nsink: {lake: lake, dataset: d}\n",
    );
    let out = run_in(root, &["run", "p.yaml", "--summary-json", "s.json"]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&root.join("s.json"));
    assert_eq!((s["rows_written"].as_u64(), s["rows_rejected"].as_u64()), (Some(2), Some(1)), "{s}");
    let rejects = query(&root.join("lake"), "SELECT line, reason FROM _rejects");
    assert_eq!(rejects[0]["line"], serde_json::json!(2), "{rejects:?}");
    assert!(rejects[0]["reason"].as_str().unwrap().contains("max_record_bytes = 1000"), "{rejects:?}");
}
