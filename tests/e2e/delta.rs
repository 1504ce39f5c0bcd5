//! `kind: delta`: the lake writer inside the table (`<table>/_sluice`), followed by the Delta
//! log. The table's rows equal a lake sink's on the same input (append, re-runs, changed files,
//! keyed state, replace_partition, upsert, evolution); each commit carries a `txn` action with
//! the ledger's sequence number; SIGKILLs during commits leave a table equal to a clean run's,
//! with no duplicate `txn` versions; the `deltalake` Python package and Polars read what
//! `sluice query` reads; compaction commits `dataChange: false`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::crash::{PIPELINE, Rng, write_ticks};
use crate::support::*;

/// The crash test's pipeline (ticks, a keyed `sma`, partitioned by symbol) into a Delta table
/// `table` (or a lake, for comparison), with `extra` sink lines.
fn pipeline(root: &Path, name: &str, delta: bool, extra: &str) -> PathBuf {
    let sink = if delta {
        format!("sink:\n  kind: delta\n  table: {name}\n  dataset: ticks\n  partition_by: [symbol]\n{extra}")
    } else {
        format!("sink:\n  lake: {name}\n  dataset: ticks\n  partition_by: [symbol]\n{extra}")
    };
    let text =
        PIPELINE.split("sink:").next().unwrap().to_string() + &sink + "settings: {workers: 2, batch_rows: 4096}\n";
    let p = root.join(format!("{name}.yaml"));
    write(&p, &text);
    p
}

/// Every commit of the log: (version, actions as JSON values).
fn log(table: &Path) -> Vec<(u64, Vec<serde_json::Value>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(table.join("_delta_log")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(v) = name.strip_suffix(".json").and_then(|v| v.parse::<u64>().ok()) {
            let text = std::fs::read_to_string(e.path()).unwrap();
            out.push((v, text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()));
        }
    }
    out.sort_by_key(|(v, _)| *v);
    out
}

/// The txn versions of the log, in commit order; they must increase strictly.
fn txn_versions(table: &Path) -> Vec<i64> {
    let versions: Vec<i64> = log(table)
        .iter()
        .flat_map(|(_, actions)| actions.iter().filter_map(|a| a.get("txn")).map(|t| t["version"].as_i64().unwrap()))
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "txn versions repeat or go back: {versions:?}");
    versions
}

/// The files the log says are live, replaying adds and removes.
fn live_files(table: &Path) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    for (_, actions) in log(table) {
        for a in actions {
            if let Some(r) = a.get("remove") {
                live.remove(r["path"].as_str().unwrap());
            }
            if let Some(add) = a.get("add") {
                live.insert(add["path"].as_str().unwrap().to_string());
            }
        }
    }
    live
}

fn rows_of(lake_or_table: &Path) -> Vec<serde_json::Value> {
    query(lake_or_table, "SELECT ts, symbol, price, qty, ma5 FROM ticks ORDER BY ts")
}

#[test]
fn a_delta_table_holds_what_a_lake_holds_and_reruns_add_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_ticks(&root.join("in"), 6, 300);
    let (lake_p, table_p) = (pipeline(root, "lake", false, ""), pipeline(root, "table", true, ""));
    assert!(run(&["run", "-q", lake_p.to_str().unwrap()]).status.success());
    let out = run(&["run", "-q", table_p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (lake, table) = (root.join("lake"), root.join("table"));
    assert_eq!(rows_of(&table), rows_of(&lake), "same rows, ma5 included");
    let commits = log(&table).len();
    assert!(commits >= 1);
    assert_eq!(log(&table)[0].1.iter().filter(|a| a.get("protocol").is_some()).count(), 1);
    // Every add has its partition value, stats and an existing file; the txn versions are the
    // ledger's sequence numbers.
    for (_, actions) in log(&table) {
        for a in actions.iter().filter_map(|a| a.get("add")) {
            assert!(a["partitionValues"]["symbol"].as_str().unwrap().starts_with('S'), "{a}");
            let stats: serde_json::Value = serde_json::from_str(a["stats"].as_str().unwrap()).unwrap();
            assert!(stats["numRecords"].as_u64().unwrap() > 0 && stats["minValues"]["ts"].is_number(), "{stats}");
            assert!(table.join(a["path"].as_str().unwrap()).is_file());
        }
    }
    let txns = txn_versions(&table);
    assert_eq!(txns.len(), commits, "one txn per commit");
    // The lineage is in each commit's commitInfo.
    let info = log(&table).last().unwrap().1.iter().find_map(|a| a.get("commitInfo").cloned()).unwrap();
    assert_eq!(info["sluice"]["pipeline"], "crash", "{info}");
    let step = info["sluice"]["steps"].as_array().unwrap().iter().find(|s| s["plugin"] == "sma").cloned().unwrap();
    assert!(step["component_hash"].as_str().unwrap().starts_with("sha256:"), "{step}");
    assert!(info["sluice"]["sluice"].is_string(), "the Sluice version: {info}");
    let units = info["sluice"]["units"].as_array().unwrap();
    assert!(
        units.iter().all(|u| u["locator"].as_str().unwrap().ends_with(".csv") && u["content_hash"].is_string()),
        "{info}"
    );

    // A re-run commits nothing.
    assert!(run(&["run", "-q", table_p.to_str().unwrap()]).status.success());
    assert_eq!(log(&table).len(), commits, "a re-run of unchanged files adds no Delta commit");
    // A changed file: one commit removes its old files (and its keyed successors') and adds new.
    let f = root.join("in/f002.csv");
    let text = std::fs::read_to_string(&f).unwrap().replace(",S3,", ",S3X,");
    write(&f, &text);
    for p in [&lake_p, &table_p] {
        assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    }
    assert_eq!(rows_of(&table), rows_of(&lake));
    let last = log(&table).pop().unwrap().1;
    assert!(last.iter().any(|a| a.get("remove").is_some_and(|r| r["dataChange"] == true)));
    txn_versions(&table);
    // `sluice lake verify` checks the lake inside the table.
    assert!(run(&["lake", "verify", table.to_str().unwrap()]).status.success());
}

#[test]
fn replace_partition_and_upsert_and_a_new_column_match_the_lake_sink() {
    for mode in ["mode: replace_partition\n", "mode: upsert\n  key: [ts]\n"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_ticks(&root.join("in"), 4, 200);
        let extra = format!("  {mode}");
        let (lake_p, table_p) = (pipeline(root, "lake", false, &extra), pipeline(root, "table", true, &extra));
        // Every file touches every partition: under replace_partition the last commit wins, so
        // one worker keeps the commit order, and both sinks the same.
        for p in [&lake_p, &table_p] {
            let text = std::fs::read_to_string(p).unwrap().replace("workers: 2", "workers: 1");
            write(p, &text);
        }
        for p in [&lake_p, &table_p] {
            let out = run(&["run", "-q", p.to_str().unwrap()]);
            assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // A new column (schema_policy evolve): a step added to the pipeline derives it for a new
        // file; a metadata action adds it to the table.
        write(&root.join("in/f900.csv"), "ts,symbol,price,qty\n900000,S1,5.5,3\n900001,S2,6.5,1\n");
        for p in [&lake_p, &table_p] {
            let text = std::fs::read_to_string(p)
                .unwrap()
                .replace("steps:\n", "steps:\n  - plugin: derive\n    config: {columns: {w: \"price * 2\"}}\n");
            write(p, &text);
            let text = std::fs::read_to_string(p)
                .unwrap()
                .replace("columns: [ts, symbol, price, qty]", "columns: [ts, symbol, price, qty, w]");
            write(p, &text);
        }
        for p in [&lake_p, &table_p] {
            let out = run(&["run", "-q", p.to_str().unwrap()]);
            assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (lake, table) = (root.join("lake"), root.join("table"));
        assert_eq!(rows_of(&table), rows_of(&lake), "{mode}");
        let n = |p: &Path| query(p, "SELECT count(*) AS n, count(w) AS w, sum(w) AS sw FROM ticks")[0].clone();
        assert_eq!(n(&table), n(&lake), "{mode}");
        let metadata =
            log(&table).iter().rev().find_map(|(_, a)| a.iter().find_map(|x| x.get("metaData").cloned())).unwrap();
        assert!(metadata["schemaString"].as_str().unwrap().contains("\"w\""), "{mode}: {metadata}");
        txn_versions(&table);
    }
}

#[test]
fn sigkill_during_delta_commits_leaves_the_table_of_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_ticks(&root.join("in"), 24, 400);
    let clean_p = pipeline(root, "clean", true, "");
    assert!(run(&["run", "-q", clean_p.to_str().unwrap()]).status.success());
    let p = pipeline(root, "table", true, "");
    let table = root.join("table");
    let mut rng = Rng::new(0xde17a);
    let mut killed = 0;
    let lines = |t: &Path| {
        std::fs::read_to_string(t.join("_sluice/_sluice/ledger.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
    };
    for round in 0..8 {
        // Kill right after the ledger's next few lines: often between a unit's ledger append and
        // its Delta commit, sometimes inside the commit.
        let records = lines(&table) + 1 + rng.below(4) as usize;
        let mut cmd = sluice();
        cmd.args(["run", "-q", p.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if kill_after_commits(cmd, &table.join("_sluice"), records) {
            killed += 1;
        }
        eprintln!("round {round}: killed after {records} ledger lines");
    }
    // Stopped after the ledger append, before the Delta commit (the next open commits it), and
    // right after a Delta commit (the txn version says it is done).
    for fault in ["delta-after-ledger", "delta-after-commit"] {
        write(
            &root.join(format!("in/{fault}.csv")),
            &format!("ts,symbol,price,qty\n{},S1,1.5,1\n", 10_000_000 + fault.len()),
        );
        let out = sluice().args(["run", "-q", p.to_str().unwrap()]).env("SLUICE_TEST_FAULT", fault).output().unwrap();
        assert_eq!(out.status.code(), Some(99), "{fault}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let out = run(&["run", "-q", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(killed >= 2, "only {killed} kill(s) landed mid-run");
    // The clean table gets the same two late files, in one run.
    assert!(run(&["run", "-q", clean_p.to_str().unwrap()]).status.success());
    assert_eq!(rows_of(&table), rows_of(&root.join("clean")), "the table equals a clean run's");
    txn_versions(&table);
    for f in live_files(&table) {
        assert!(table.join(&f).is_file(), "{f} is in the log but not on disk");
    }
    let n = query(&table, "SELECT count(*) AS n FROM ticks")[0]["n"].as_u64().unwrap();
    assert_eq!(n, 24 * 400 + 2);
    assert!(run(&["lake", "verify", table.to_str().unwrap()]).status.success());
}

#[test]
fn python_deltalake_and_polars_read_what_sluice_query_reads() {
    let Some(pythons) = std::env::var_os("SLUICE_PYTHON") else {
        eprintln!("SLUICE_PYTHON is not set: skipping the Delta reader check (scripts/test.sh runs it)");
        return;
    };
    let py = std::env::split_paths(&pythons).find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import deltalake, polars"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(py) = py else {
        panic!("no interpreter in SLUICE_PYTHON has deltalake and polars (scripts/python-venvs.sh)")
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_ticks(&root.join("in"), 5, 500);
    let p = pipeline(root, "table", true, "  compact: {min_files: 2, target_size: 64MiB}\n");
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    // A changed file, so the log holds removes too.
    let f = root.join("in/f001.csv");
    let text = std::fs::read_to_string(&f).unwrap().replace("\n600,", "\n600999,");
    assert!(text.contains("600999,"));
    write(&f, &text);
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    let table = root.join("table");
    let expect =
        &query(&table, "SELECT count(*) AS n, sum(ts)::DOUBLE AS ts, sum(price)::DOUBLE AS price FROM ticks")[0];
    let check = |label: &str| {
        let out = std::process::Command::new(&py)
            .args([
                repo().join("tests/python/check_delta.py").to_str().unwrap(),
                table.to_str().unwrap(),
                "sluice:crash:ticks",
                "ts",
                "price",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("{label}: {got}");
        for reader in ["deltalake", "polars"] {
            assert_eq!(got[reader]["rows"], expect["n"], "{label} {reader} rows");
            for c in ["ts", "price"] {
                let (a, b) = (got[reader][c].as_f64().unwrap(), expect[c].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{label} {reader} sum({c}): {a} vs {b}");
            }
        }
        assert_eq!(got["txn"].as_i64(), txn_versions(&table).last().copied(), "{label}");
        // The files the catalog's view reads are the snapshot's.
        let files: BTreeSet<String> = got["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().trim_start_matches("file://").to_string())
            .collect();
        let logged: BTreeSet<String> =
            live_files(&table).iter().map(|f| table.canonicalize().unwrap().join(f).display().to_string()).collect();
        assert_eq!(files, logged, "{label}");
        got
    };
    check("after runs");
    // Compaction of the lake inside the table, then the next open follows it: an OPTIMIZE
    // commit whose removes and adds say dataChange false.
    let out = run(&["lake", "compact", table.to_str().unwrap(), "--target-size", "64MiB"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = check("after compaction");
    spark_reads_the_snapshot(&py, &table, expect);
    let last = log(&table).pop().unwrap().1;
    let info = last.iter().find_map(|a| a.get("commitInfo")).unwrap();
    assert_eq!(info["operation"], "OPTIMIZE", "{info}");
    assert!(last.iter().filter_map(|a| a.get("add").or(a.get("remove"))).all(|a| a["dataChange"] == false));
    assert_eq!(got["files"].as_array().unwrap().len(), 8, "one file per symbol after compaction");
}

#[test]
fn a_wider_column_type_is_refused_before_anything_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_ticks(&root.join("in"), 2, 50);
    let p = pipeline(root, "table", true, "");
    assert!(run(&["run", "-q", p.to_str().unwrap()]).status.success());
    let table = root.join("table");
    let (commits, rows) = (log(&table).len(), rows_of(&table));
    // `qty` becomes fractional: the lake would widen int64 to double; the Delta table does not.
    write(&root.join("in/f500.csv"), "ts,symbol,price,qty\n500000,S1,1.5,0.5\n");
    let out = run(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("column `qty` is Int64 in the Delta table") && err.contains("f500.csv"), "{err}");
    assert_eq!(log(&table).len(), commits, "nothing reached the log");
    assert_eq!(rows_of(&table), rows);
    assert!(run(&["lake", "verify", table.to_str().unwrap()]).status.success());
}

/// Spark (pyspark, local[2]; no Delta jars, which cannot be fetched here) reads the files the
/// snapshot lists as Parquet, with the partition column from the paths: the same rows and sums.
/// Skipped when the interpreter has no pyspark or there is no Java.
fn spark_reads_the_snapshot(py: &Path, table: &Path, expect: &serde_json::Value) {
    let has = std::process::Command::new(py).args(["-c", "import pyspark"]).output().is_ok_and(|o| o.status.success());
    let java = std::process::Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    if !has || !java {
        eprintln!("no pyspark or no Java: skipping the Spark check");
        return;
    }
    let base = table.join("_sluice/_sluice/files/ticks");
    let out = std::process::Command::new(py)
        .args([
            repo().join("tests/python/spark_delta_files.py").to_str().unwrap(),
            table.to_str().unwrap(),
            base.to_str().unwrap(),
            "ts",
            "price",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "spark: {}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').find(|l| l.starts_with(b"{")).unwrap()).unwrap();
    eprintln!("spark: {got}");
    assert_eq!(got["rows"], expect["n"]);
    assert!(got["columns"].as_array().unwrap().iter().any(|c| c == "symbol"), "the partition column from the paths");
    for c in ["ts", "price"] {
        let (a, b) = (got[c].as_f64().unwrap(), expect[c].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "spark sum({c}): {a} vs {b}");
    }
}
