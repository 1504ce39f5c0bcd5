//! Sources: zipped, gzipped and zstd input, JSON lines, Parquet, row rejects into `_rejects`,
//! failed and poisoned units, zip-bomb limits and CSV edge cases, all through `sluice run`.

use std::io::Write;
use std::path::Path;

use crate::support::*;

fn zip_bytes(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn write_bytes(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// One day of 1s klines in the exchange layout: 12 unnamed columns, `open_time` in ms before
/// 2025 and in µs from 2025 on.
fn kline_day(date: &str, rows: usize, micros: bool) -> String {
    let base_ms: i64 = match date {
        "2024-12-31" => 1_735_603_200_000,
        "2025-01-01" => 1_735_689_600_000,
        other => panic!("no base for {other}"),
    };
    let mut s = String::new();
    for i in 0..rows as i64 {
        let t = base_ms + i * 1000;
        let (open, close) = if micros { (t * 1000, (t + 999) * 1000 + 999) } else { (t, t + 999) };
        let p = 100.0 + i as f64;
        s.push_str(&format!("{open},{p},{},{},{p},1.5,{close},150.0,3,0.5,50.0,0\n", p + 1.0, p - 1.0));
    }
    s
}

const KLINES: &str = r#"
pipeline: klines
sources:
  klines:
    path: in
    fields: "{symbol}-1s-{date:date}.zip"
    retries: 2
    format:
      csv:
        header: false
        columns: {open_time: int64, open: float64, high: float64, low: float64, close: float64,
                  volume: float64, close_time: int64, quote_volume: float64, trades: int64,
                  taker_buy_base: float64, taker_buy_quote: float64, ignore: int64}
steps: []
sink: {lake: lake, dataset: klines, partition_by: [symbol]}
"#;

#[test]
fn kline_corpus_lands_rows_rejects_and_reports_failed_units() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = root.join("in");
    let mut expected_rows = 0u64;
    for sym in ["BTCUSDT", "ETHUSDT"] {
        for (date, micros) in [("2024-12-31", false), ("2025-01-01", true)] {
            let mut csv = kline_day(date, 50, micros);
            expected_rows += 50;
            if sym == "BTCUSDT" && date == "2025-01-01" {
                // Line 51: a malformed price; line 52: a truncated row.
                csv.push_str("1735689650000000,abc,1,1,1,1,1,1,1,1,1,0\n");
                csv.push_str("1735689651000000,100.0,101.0\n");
                csv.push_str(&kline_day(date, 1, micros));
                expected_rows += 1;
            }
            let name = format!("{sym}-1s-{date}");
            let zip = zip_bytes(&[(&format!("{name}.csv"), csv.as_bytes())]);
            write_bytes(&data.join(sym).join(format!("{name}.zip")), &zip);
            // The exchange's checksum files sit next to the archives: not data.
            write(&data.join(sym).join(format!("{name}.zip.CHECKSUM")), "0123abcd  file.zip\n");
        }
    }
    // A truncated download and binary garbage with a data file's name.
    let full = zip_bytes(&[("SOLUSDT-1s-2025-01-01.csv", kline_day("2025-01-01", 500, true).as_bytes())]);
    write_bytes(&data.join("SOLUSDT/SOLUSDT-1s-2025-01-01.zip"), &full[..full.len() / 2]);
    write_bytes(&data.join("XRPUSDT/XRPUSDT-1s-2025-01-01.zip"), &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 255, 254]);
    write(&data.join("README.txt"), "klines from the exchange\n");

    let pipeline = root.join("klines.yaml");
    write(&pipeline, KLINES);
    let sj = root.join("summary.json");
    let out = run(&["run", pipeline.to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "failed units make the exit code 1");
    let s = summary(&sj);
    assert_eq!(s["files_committed"], 4, "{s}");
    assert_eq!(s["files_failed"], 2, "{s}");
    assert_eq!(s["rows_written"], expected_rows);
    assert_eq!(s["rows_rejected"], 2);
    let failures = s["failures"].as_array().unwrap();
    let failed: Vec<&str> = failures.iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert!(failed.iter().any(|f| f.ends_with("SOLUSDT-1s-2025-01-01.zip")), "{failed:?}");
    assert!(failed.iter().any(|f| f.ends_with("XRPUSDT-1s-2025-01-01.zip")), "{failed:?}");
    assert!(failures.iter().all(|f| f["error"].as_str().unwrap().contains("zip")), "{failures:?}");

    let lake = root.join("lake");
    let rows = query(
        &lake,
        "SELECT symbol, count(*) AS n, min(open_time) AS lo, max(open_time) AS hi FROM klines GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["symbol"], "BTCUSDT");
    assert_eq!(rows[0]["n"], 101);
    assert_eq!(rows[1]["n"], 100);
    // ms in the 2024 file, µs in the 2025 file: both landed as written.
    assert_eq!(rows[1]["lo"], 1_735_603_200_000i64);
    assert_eq!(rows[1]["hi"], (1_735_689_600_000i64 + 49_000) * 1000);
    let dates = query(&lake, "SELECT DISTINCT CAST(date AS VARCHAR) AS d FROM klines ORDER BY 1");
    assert_eq!(dates.len(), 2);

    // The rejects, with their line numbers, archive and member.
    let glob = format!("{}/_rejects/**/*.parquet", lake.display());
    let rej = query(
        &lake,
        &format!(
            "SELECT dataset, source, file, member, line, raw, reason, step FROM read_parquet('{glob}') ORDER BY line"
        ),
    );
    assert_eq!(rej.len(), 2, "{rej:?}");
    assert_eq!(rej[0]["line"], 51);
    assert_eq!(rej[0]["step"], "cast");
    assert!(rej[0]["reason"].as_str().unwrap().contains("`open`"), "{rej:?}");
    assert_eq!(rej[0]["raw"], "1735689650000000,abc,1,1,1,1,1,1,1,1,1,0");
    assert_eq!(rej[1]["line"], 52);
    assert_eq!(rej[1]["step"], "parse");
    assert!(rej[1]["reason"].as_str().unwrap().contains("expected 12 fields, found 3"));
    assert_eq!(rej[0]["member"], "BTCUSDT-1s-2025-01-01.csv");
    assert!(rej[0]["file"].as_str().unwrap().ends_with("BTCUSDT-1s-2025-01-01.zip"));
    assert_eq!(rej[0]["dataset"], "klines");
    assert_eq!(rej[0]["source"], "klines");
    // The catalog's data view never includes rejects.
    assert_eq!(query(&lake, "SELECT count(*) AS n FROM klines")[0]["n"], expected_rows);

    // Run 2: committed units are unchanged; the failed ones are retried and fail again.
    let out = run(&["run", pipeline.to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&sj);
    assert_eq!((s["files_unchanged"].as_u64(), s["files_failed"].as_u64()), (Some(4), Some(2)), "{s}");
    // Run 3: `retries: 2` reached: poisoned, not attempted, still reported.
    let out = run(&["run", pipeline.to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "poisoned units are reported, not failed again");
    let s = summary(&sj);
    assert_eq!((s["files_failed"].as_u64(), s["files_poisoned"].as_u64()), (Some(0), Some(2)), "{s}");
    assert!(s["failures"].as_array().unwrap().iter().all(|f| f["action"] == "poisoned"), "{s}");
    // A repaired download is tried again at once (its fingerprint changed).
    write_bytes(&data.join("SOLUSDT/SOLUSDT-1s-2025-01-01.zip"), &full);
    let out = run(&["run", pipeline.to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    let s = summary(&sj);
    assert_eq!((s["files_committed"].as_u64(), s["files_poisoned"].as_u64()), (Some(1), Some(1)), "{s}");
    assert_eq!(out.status.code(), Some(0));
    // `--force` retries poisoned units too.
    let out = run(&["run", pipeline.to_str().unwrap(), "--force", "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&sj);
    assert_eq!((s["files_failed"].as_u64(), s["files_poisoned"].as_u64()), (Some(1), Some(0)), "{s}");
    // Replacing a unit replaced its rejects too, not duplicated them.
    assert_eq!(query(&lake, &format!("SELECT count(*) AS n FROM read_parquet('{glob}')"))[0]["n"], 2);
}

const EDGES: &str = r#"
pipeline: edges
sources:
  edges:
    path: in
    glob: "*.csv"
    format:
      csv: {header: true, columns: {a: int64, b: utf8}}
steps: []
sink: {lake: lake, dataset: edges}
"#;

#[test]
fn csv_edge_cases_empty_header_only_crlf_bom_invalid_utf8_no_final_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let files: &[(&str, &[u8])] = &[
        ("empty.csv", b""),
        ("header_only.csv", b"a,b\n"),
        ("crlf.csv", b"a,b\r\n1,x\r\n2,y\r\n"),
        ("bom.csv", b"\xef\xbb\xbfa,b\n3,z\n"),
        ("invalid_utf8.csv", b"a,b\n4,\xff\xfe\n5,ok\n"),
        ("no_newline.csv", b"a,b\n6,w"),
    ];
    for (name, bytes) in files {
        write_bytes(&root.join("in").join(name), bytes);
    }
    write(&root.join("edges.yaml"), EDGES);
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("edges.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&sj);
    assert_eq!(s["files_committed"], 6, "every file commits, even with no rows: {s}");
    assert_eq!(s["rows_written"], 5);
    assert_eq!(s["rows_rejected"], 1);
    let lake = root.join("lake");
    let rows = query(&lake, "SELECT a, b FROM edges ORDER BY a");
    let got: Vec<(i64, String)> =
        rows.iter().map(|r| (r["a"].as_i64().unwrap(), r["b"].as_str().unwrap().to_string())).collect();
    let want: Vec<(i64, String)> =
        [(1, "x"), (2, "y"), (3, "z"), (5, "ok"), (6, "w")].iter().map(|(a, b)| (*a, b.to_string())).collect();
    assert_eq!(got, want, "no stray \\r, no BOM, the unterminated last line kept");
    let rej = query(
        &lake,
        &format!("SELECT line, raw, reason FROM read_parquet('{}/_rejects/**/*.parquet')", lake.display()),
    );
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0]["line"], 2);
    assert_eq!(rej[0]["raw"], "4,\u{FFFD}\u{FFFD}");
    assert!(rej[0]["reason"].as_str().unwrap().contains("invalid UTF-8"));
    // A re-run finds everything committed, including the empty files.
    let out = run(&["run", root.join("edges.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(summary(&sj)["files_unchanged"], 6);
}

#[test]
fn a_text_file_in_the_wrong_format_fails_as_a_unit_instead_of_landing_as_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/good.csv"), "a,b\n1,x\n2,y\n");
    // Plain text, no NUL bytes, that the CSV reader can split into records: none parses as (int64, utf8).
    write(&root.join("in/notes.csv"), "a,b\nMeeting notes;; see below\nThe quick brown fox\njumps over\n");
    write(&root.join("edges.yaml"), EDGES);
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("edges.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a failed unit exits 1");
    let s = summary(&sj);
    assert_eq!((s["files_committed"].as_u64(), s["files_failed"].as_u64()), (Some(1), Some(1)), "{s}");
    let err = s["failures"][0]["error"].as_str().unwrap();
    assert!(err.contains("notes.csv") && err.contains("none of its 3 row(s) parsed"), "{err}");
    assert!(!root.join("lake/_rejects").exists() || files_under(&root.join("lake/_rejects")).is_empty());
}

#[test]
fn gzip_and_zstd_json_lines_and_parquet_inside_a_zip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // JSON lines, gzipped (with one bad line) and zstd-compressed, schema inferred.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": \"b\"}\n{\"id\": \"oops\"\n{\"id\": 3}\n")
        .unwrap();
    write_bytes(&root.join("json/day1.jsonl.gz"), &gz.finish().unwrap());
    let zst = zstd::encode_all(&b"{\"id\": 4, \"name\": \"d\"}\n\n{\"id\": 5, \"name\": \"e\"}"[..], 3).unwrap();
    write_bytes(&root.join("json/day2.jsonl.zst"), &zst);
    let json_yaml = r#"
pipeline: events
sources:
  events: {path: json, format: {jsonl: {}}}
steps: []
sink: {lake: lake, dataset: events}
"#;
    write(&root.join("events.yaml"), json_yaml);
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("events.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&sj);
    assert_eq!((s["rows_written"].as_u64(), s["rows_rejected"].as_u64()), (Some(5), Some(1)), "{s}");
    let lake = root.join("lake");
    let rows = query(&lake, "SELECT id, name FROM events ORDER BY id");
    assert_eq!(rows.iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(rows[2]["name"], serde_json::Value::Null);
    let rej = query(&lake, &format!("SELECT line, raw FROM read_parquet('{}/_rejects/**/*.parquet')", lake.display()));
    assert_eq!((rej[0]["line"].as_u64(), rej[0]["raw"].as_str()), (Some(3), Some("{\"id\": \"oops\"")));

    // Parquet: the lake's own files, plain and zipped, read back as a source.
    let parts: Vec<String> =
        files_under(&lake.join("events")).into_iter().filter(|f| f.ends_with(".parquet")).collect();
    let first = std::fs::read(lake.join("events").join(&parts[0])).unwrap();
    write_bytes(&root.join("pq/plain.parquet"), &first);
    write_bytes(&root.join("pq/zipped.zip"), &zip_bytes(&[("inner.parquet", &first)]));
    let pq_yaml = r#"
pipeline: copy
sources:
  copy: {path: pq, format: {parquet: {}}}
steps: []
sink: {lake: lake2, dataset: copy}
"#;
    write(&root.join("copy.yaml"), pq_yaml);
    let out = run(&["run", root.join("copy.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&sj);
    let n =
        query(&lake, &format!("SELECT count(*) AS n FROM read_parquet('{}')", root.join("pq/plain.parquet").display()))
            [0]["n"]
            .as_u64()
            .unwrap();
    assert_eq!(s["files_committed"], 2);
    assert_eq!(s["rows_written"].as_u64(), Some(2 * n));
}

#[test]
fn reject_thresholds_and_zip_bomb_limits_fail_only_their_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/ok.csv"), "a\n1\nx\n3\n4\n5\n6\n7\n8\n9\n10\n");
    write(&root.join("in/bad.csv"), "a\n1\nx\ny\nz\n");
    let big = "a\n".to_string() + &"123456789\n".repeat(1000);
    write_bytes(&root.join("in/bomb.zip"), &zip_bytes(&[("big.csv", big.as_bytes()), ("small.csv", b"a\n1\n")]));
    let many: Vec<(String, Vec<u8>)> = (0..5).map(|i| (format!("m{i}.csv"), b"a\n1\n".to_vec())).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    write_bytes(&root.join("in/many.zip"), &zip_bytes(&many));
    let yaml = r#"
pipeline: limits
sources:
  nums:
    path: in
    rejects: {max_errors: 2, max_error_rate: 0.2}
    limits: {max_members: 3, max_unit_bytes: 4KiB}
    format: {csv: {columns: {a: int64}}}
steps: []
sink: {lake: lake, dataset: nums}
"#;
    write(&root.join("limits.yaml"), yaml);
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("limits.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&sj);
    // ok.csv (1 of 10 rejected) and bomb.zip!small.csv commit.
    assert_eq!(s["files_committed"], 2, "{s}");
    assert_eq!(s["rows_written"], 10);
    let errors: Vec<String> = s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} => {}", f["file"].as_str().unwrap(), f["error"].as_str().unwrap()))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("bad.csv") && e.contains("max_errors = 2")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("bomb.zip!big.csv") && e.contains("max_unit_bytes")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("many.zip") && e.contains("max_members = 3")), "{errors:?}");
    // A failed unit leaves no rejects behind.
    let rej = query(
        &root.join("lake"),
        &format!("SELECT count(*) AS n FROM read_parquet('{}/lake/_rejects/**/*.parquet')", root.display()),
    );
    assert_eq!(rej[0]["n"], 1);
}
