//! `sluice lake compact`: a partition's small files bin-packed into one file near the target
//! size, committed atomically through the ledger; rows and sums unchanged, each unit's rows in
//! order; a unit changed or deleted after compaction takes its rows out of the compacted file;
//! the replaced files are retained until `sluice lake vacuum` frees them.

use std::path::Path;

use crate::support::*;

fn pipeline(root: &Path, sink_extra: &str) -> String {
    let p = root.join("p.yaml");
    write(
        &p,
        &format!(
            "pipeline: cmp\nsources:\n  t:\n    path: in\n    glob: \"*.csv\"\n    fields: \"{{g}}-{{n}}.csv\"\n    format:\n      csv: {{header: true, columns: {{id: int64, v: float64}}}}\n\
             steps:\n  - plugin: passthrough\nsink:\n  lake: lake\n  dataset: t\n  partition_by: [g]\n{sink_extra}settings: {{workers: 2}}\n"
        ),
    );
    p.to_str().unwrap().to_string()
}

fn rows(from: usize, n: usize) -> String {
    let mut s = String::from("id,v\n");
    for id in from..from + n {
        s.push_str(&format!("{id},{}\n", id as f64 / 4.0));
    }
    s
}

fn totals(lake: &Path) -> (u64, u64, f64) {
    let r = query(lake, "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(v) AS s FROM t");
    let n = |k: &str| r[0][k].as_u64().or_else(|| r[0][k].as_str().and_then(|s| s.parse().ok())).unwrap();
    (n("n"), n("d"), r[0]["s"].as_f64().unwrap())
}

fn visible(lake: &Path) -> Vec<String> {
    files_under(&lake.join("t")).into_iter().filter(|f| f.ends_with(".parquet")).collect()
}

fn compact(lake: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["lake", "compact", lake.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn verify(lake: &Path) {
    let out = run(&["lake", "verify", lake.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn compaction_packs_small_files_keeps_rows_and_order_and_a_changed_unit_takes_its_rows_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for k in 0..12 {
        let g = if k % 2 == 0 { "a" } else { "b" };
        write(&root.join(format!("in/{g}-{k:02}.csv")), &rows(k * 100, 100));
    }
    let p = pipeline(root, "");
    assert!(run(&["run", &p]).status.success());
    let lake = root.join("lake");
    let before = totals(&lake);
    assert_eq!(visible(&lake).len(), 12);

    let report = compact(&lake, &["--target-size", "64MiB"]);
    assert_eq!((report["files_in"].as_u64(), report["files_out"].as_u64()), (Some(12), Some(2)), "{report}");
    assert_eq!(report["partitions"], 2);
    assert_eq!(report["rows"], 1200);
    assert_eq!(visible(&lake).len(), 2, "one file per partition in the hive layout");
    assert_eq!(totals(&lake), before, "same rows through the republished catalog");
    verify(&lake);
    // Each unit's rows are consecutive and in file order (units sorted by their locator).
    let ids: Vec<i64> =
        query(&lake, "SELECT id FROM t WHERE g = 'a'").iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "rows keep their order within and across the packed units");
    // The compacted file's footer lists every unit packed into it.
    let out = run(&["lake", "lineage", "--json", root.join("lake/t/g=a").to_str().unwrap()]);
    let lineage: serde_json::Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(lineage["lineage"]["units"].as_array().unwrap().len(), 6, "{lineage}");

    // A changed file replaces its rows: its segment leaves the compacted file.
    write(&root.join("in/a-04.csv"), &rows(10_000, 7));
    assert!(run(&["run", &p]).status.success());
    let (n, d, _) = totals(&lake);
    assert_eq!((n, d), (1200 - 100 + 7, 1200 - 100 + 7));
    assert_eq!(query(&lake, "SELECT count(*) AS n FROM t WHERE id BETWEEN 400 AND 499")[0]["n"], 0);
    verify(&lake);
    // A deleted file (on_source_deleted: delete) takes its rows out too.
    let p = pipeline(root, "  on_source_deleted: delete\n");
    std::fs::remove_file(root.join("in/a-02.csv")).unwrap();
    assert!(run(&["run", &p]).status.success());
    assert_eq!(totals(&lake).0, 1200 - 200 + 7);
    assert_eq!(query(&lake, "SELECT count(*) AS n FROM t WHERE id BETWEEN 200 AND 299")[0]["n"], 0);
    verify(&lake);
    // Compacting again packs the rewritten file with the new one; nothing to do after that.
    let again = compact(&lake, &["--target-size", "64MiB"]);
    assert!(again["files_in"].as_u64().unwrap() >= 2, "{again}");
    assert_eq!(compact(&lake, &[])["files_in"], 0);
    assert_eq!(totals(&lake).0, 1200 - 200 + 7);
    verify(&lake);
}

#[test]
fn compacted_files_are_retained_until_vacuum_and_a_rerun_skips_every_unit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for k in 0..6 {
        write(&root.join(format!("in/a-{k:02}.csv")), &rows(k * 10, 10));
    }
    let p = pipeline(root, "");
    assert!(run(&["run", &p]).status.success());
    let lake = root.join("lake");
    let compacted_at = std::time::Instant::now();
    let report = compact(&lake, &["--retain", "5s"]);
    assert_eq!(report["files_in"], 6);
    // A re-run finds every unit committed: nothing re-read, nothing duplicated.
    let out = run(&["run", &p, "--summary-json", root.join("s.json").to_str().unwrap()]);
    assert!(out.status.success());
    let s = summary(&root.join("s.json"));
    assert_eq!((s["files_unchanged"].as_u64(), s["files_committed"].as_u64()), (Some(6), Some(0)), "{s}");
    assert_eq!(totals(&lake).0, 60);
    // The replaced files are kept for readers of older snapshots until vacuumed.
    let stored = || files_under(&lake.join("_sluice/files/t")).iter().filter(|f| f.ends_with(".parquet")).count();
    assert_eq!(stored(), 7);
    let out = run(&["lake", "vacuum", lake.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("freed 0 replaced file(s)"), "still within retention");
    std::thread::sleep(
        std::time::Duration::from_secs(5).saturating_sub(compacted_at.elapsed())
            + std::time::Duration::from_millis(300),
    );
    let out = run(&["lake", "vacuum", lake.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("freed 6 replaced file(s)"));
    assert_eq!(stored(), 1);
    verify(&lake);
    assert_eq!(totals(&lake).0, 60);
    // Min files: one small file per partition is left alone.
    assert_eq!(compact(&lake, &["--min-files", "2"])["files_in"], 0);
    // A dataset the lake does not have is named.
    let out = run(&["lake", "compact", lake.to_str().unwrap(), "--dataset", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dataset `nope` (it has: t)"));
}

#[test]
fn a_compaction_killed_before_or_after_its_ledger_line_leaves_a_consistent_lake() {
    for point in ["compact-after-write", "compact-after-ledger"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for k in 0..8 {
            let g = if k % 2 == 0 { "a" } else { "b" };
            write(&root.join(format!("in/{g}-{k:02}.csv")), &rows(k * 50, 50));
        }
        let p = pipeline(root, "");
        assert!(run(&["run", &p]).status.success());
        let lake = root.join("lake");
        let before = totals(&lake);
        let out = sluice()
            .args(["lake", "compact", lake.to_str().unwrap()])
            .env("SLUICE_TEST_FAULT", point)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(99), "{point}: {}", String::from_utf8_lossy(&out.stderr));
        // The next writer repairs what the crash left: orphans swept (before the ledger line)
        // or the hive layout relinked (after it); the next compaction finishes the job.
        write(&root.join("in/a-99.csv"), &rows(100_000, 3));
        assert!(run(&["run", &p]).status.success(), "{point}");
        verify(&lake);
        let (n, d, s) = totals(&lake);
        assert_eq!((n, d), (before.0 + 3, before.1 + 3), "{point}");
        assert!((s - before.2 - (100_000..100_003).map(|i| i as f64 / 4.0).sum::<f64>()).abs() < 1e-6);
        let stored: Vec<String> =
            files_under(&lake.join("_sluice/files/t")).into_iter().filter(|f| f.contains("compact-")).collect();
        match point {
            "compact-after-write" => assert!(stored.is_empty(), "orphans of the crashed compaction: {stored:?}"),
            _ => assert_eq!(stored.len(), 2, "the committed compaction's files: {stored:?}"),
        }
        compact(&lake, &[]);
        verify(&lake);
        assert_eq!(visible(&lake).len(), 2, "{point}: one file per partition");
        assert_eq!(totals(&lake).0, before.0 + 3);
    }
}
