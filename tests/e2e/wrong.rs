//! Data mistakes that used to end with exit 0 and a wrong or stuck lake (issue 14): a poisoned
//! file stays skipped after the pipeline is fixed, reject limits ignore the rows steps reject, a
//! glob that matches nothing says nothing; and the small things around them.

use std::path::{Path, PathBuf};

use crate::support::*;

fn pipeline(root: &Path, ty: &str, extra_source: &str, steps: &str) -> PathBuf {
    let p = root.join("p.yaml");
    write(
        &p,
        &format!(
            r#"
pipeline: wrong
sources:
  days:
    path: {data}
    glob: "*.csv"
    format: {{csv: {{header: true, columns: {{day: utf8, temp: {ty}}}}}}}
{extra_source}
steps:
{steps}
sink: {{lake: {lake}, dataset: weather}}
"#,
            data = root.join("in").display(),
            lake = root.join("lake").display(),
        ),
    );
    p
}

const PASS: &str = "  - plugin: passthrough";

fn run_summary(p: &Path) -> (Option<i32>, serde_json::Value, String) {
    let s = p.with_extension("summary.json");
    let _ = std::fs::remove_file(&s);
    let out = run(&["run", p.to_str().unwrap(), "--summary-json", s.to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), crate::support::summary(&s), text)
}

#[test]
fn a_poisoned_file_is_retried_once_the_pipeline_is_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/temps.csv"), "day,temp\nmon,warm\ntue,cold\nwed,mild\n");
    // `temp` declared as a number: no row parses, the file fails, three times, then is poisoned.
    let p = pipeline(root, "int64", "", PASS);
    for _ in 0..3 {
        let (code, s, _) = run_summary(&p);
        assert_eq!((code, s["files_failed"].as_u64()), (Some(1), Some(1)), "{s}");
        // No row parsed: the message names the column and the first bad value.
        let error = s["failures"][0]["error"].as_str().unwrap();
        assert!(error.contains("none of its 3 row(s) parsed") && error.contains("column `temp`"), "{error}");
        assert!(error.contains("`warm`") && error.contains("line 2"), "{error}");
    }
    let (code, s, text) = run_summary(&p);
    assert_eq!((code, s["files_poisoned"].as_u64(), s["files_committed"].as_u64()), (Some(0), Some(1), Some(0)));
    assert!(text.contains("poisoned") && text.contains("or the pipeline changes"), "{text}");
    assert_eq!(s["failures"][0]["action"], "poisoned");

    // The fixed pipeline retries the file and commits it.
    let p = pipeline(root, "utf8", "", PASS);
    let (code, s, _) = run_summary(&p);
    assert_eq!((code, s["files_committed"].as_u64(), s["files_poisoned"].as_u64()), (Some(0), Some(1), Some(0)), "{s}");
    assert_eq!(query(&root.join("lake"), "SELECT count(*) AS n FROM weather")[0]["n"], 3);
}

#[test]
fn reject_limits_count_the_rows_steps_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/temps.csv"), "day,temp\nmon,warm\ntue,cold\nwed,mild\nthu,12\n");
    let clean = r#"  - plugin: clean
    config: {types: {temp: int64}, on_fail: reject}"#;
    // 3 of 4 rows rejected by `clean`: over a 10% limit, the file fails.
    let p = pipeline(root, "utf8", "    rejects: {max_error_rate: 0.1}", clean);
    let (code, s, text) = run_summary(&p);
    assert_eq!((code, s["files_failed"].as_u64(), s["files_committed"].as_u64()), (Some(1), Some(1), Some(0)), "{s}");
    let error = s["failures"][0]["error"].as_str().unwrap();
    assert!(error.contains("3 of 4 rows rejected by the source and steps (75.00%)"), "{error}");
    assert!(error.contains("steps that rejected rows: clean"), "{error}");
    // Said once per line: the path is not repeated after itself.
    let file = s["failures"][0]["file"].as_str().unwrap();
    assert!(!text.contains(&format!("{file}: {file}")), "{text}");
    // Within the limit, the file commits and its rejects are kept.
    let p = pipeline(root, "utf8", "    rejects: {max_error_rate: 0.8}", clean);
    let (code, s, text) = run_summary(&p);
    assert_eq!((code, s["files_committed"].as_u64(), s["rows_rejected"].as_u64()), (Some(0), Some(1), Some(3)), "{s}");
    // The summary says where the rejected rows are and how to read them; that query works.
    assert!(text.contains("rejected rows: ") && text.contains("_rejects/dataset=weather"), "{text}");
    let rejects = query(&root.join("lake"), "SELECT count(*) AS n FROM _rejects");
    assert_eq!(rejects[0]["n"], 3);
    // max_errors too.
    std::fs::remove_dir_all(root.join("lake")).unwrap();
    let p = pipeline(root, "utf8", "    rejects: {max_errors: 2}", clean);
    let (_, s, _) = run_summary(&p);
    let error = s["failures"][0]["error"].as_str().unwrap();
    assert!(error.contains("3 rejected rows (by the source and steps), more than max_errors = 2"), "{error}");
}

#[test]
fn a_glob_that_matches_nothing_is_a_warning_naming_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/temps.json"), "{}\n");
    let p = pipeline(root, "utf8", "", PASS);
    let (code, s, text) = run_summary(&p);
    assert_eq!(code, Some(0));
    let warning = s["warnings"][0].as_str().unwrap_or_else(|| panic!("no warning in {s}"));
    assert!(warning.contains("source `days`") && warning.contains("`*.csv`"), "{warning}");
    assert!(warning.contains(&root.join("in").display().to_string()), "{warning}");
    assert!(text.contains("warning: source `days`"), "{text}");
}

#[test]
fn lake_status_takes_the_lake_as_an_argument_and_aligns_its_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/temps.csv"), "day,temp\nmon,1\ntue,2\n");
    let p = pipeline(root, "int64", "", PASS);
    assert_eq!(run_summary(&p).0, Some(0));
    let lake = root.join("lake");
    let out = run(&["lake", "status", lake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("dataset") || l.starts_with("weather")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].len(), lines[1].len(), "header and row line up:\n{text}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((cells[0], cells[2], cells[3]), ("weather", "1", "2"), "dataset, files, rows:\n{text}");
    let out = run(&["lake", "verify", lake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn watching_two_pipelines_into_one_lake_says_what_to_do_instead() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = pipeline(root, "utf8", "", PASS);
    let b = root.join("b.yaml");
    std::fs::write(&b, std::fs::read_to_string(&a).unwrap().replace("pipeline: wrong", "pipeline: other")).unwrap();
    let out = run(&["watch", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("write to the same lake") && err.contains("Give `other` another `sink.lake`"), "{err}");
    assert!(err.contains("sluice run"), "{err}");
}

#[test]
fn a_sum_of_integers_stays_an_exact_integer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Two values whose sum a Float64 cannot hold exactly (2^53 + 1 + 2).
    write(&root.join("in/temps.csv"), "day,temp\nmon,9007199254740993\nmon,2\ntue,5\n");
    let steps = r#"  - plugin: derive
    config: {columns: {t: "0"}}
  - plugin: aggregate
    config: {keys: [day], time: t, every: 1d, aggs: [{fn: sum, column: temp, as: total}, {fn: count, as: n}]}"#;
    let p = pipeline(root, "int64", "", steps);
    let (code, s, _) = run_summary(&p);
    assert_eq!(code, Some(0), "{s}");
    let rows =
        query(&root.join("lake"), "SELECT day, typeof(total) AS ty, total::VARCHAR AS total FROM weather ORDER BY day");
    assert_eq!(rows[0]["ty"], "BIGINT", "{rows:?}");
    assert_eq!(rows[0]["total"], "9007199254740995", "{rows:?}");
    assert_eq!(rows[1]["total"], "5", "{rows:?}");
}
