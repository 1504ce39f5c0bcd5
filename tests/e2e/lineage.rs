//! Lineage in every file: `sluice lake lineage` reads back, from each file's Parquet footer, the
//! pipeline and its definition hash, each step's plugin with its component hash, the Sluice
//! version and the source units (locator, content hash); upsert-merged files list every unit
//! merged into them, and rejects files carry it too. And `sluice lake vacuum`, which deletes the
//! replaced files whose retention has passed.

use std::path::Path;

use crate::support::*;

fn pipeline(root: &Path, sink_extra: &str) -> String {
    let p = root.join("p.yaml");
    write(
        &p,
        &format!(
            "pipeline: lin\nsources:\n  t:\n    path: in\n    glob: \"*.csv\"\n    format:\n      csv: {{header: true, columns: {{k: utf8, v: int64}}}}\n\
             steps:\n  - plugin: passthrough\nsink:\n  lake: lake\n  dataset: t\n{sink_extra}settings: {{workers: 1}}\n"
        ),
    );
    p.to_str().unwrap().to_string()
}

fn lineage(path: &Path) -> Vec<serde_json::Value> {
    let out = run(&["lake", "lineage", "--json", path.to_str().unwrap()]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_file_records_the_pipeline_the_plugins_and_its_units() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("in/a.csv"), "k,v\nx,1\ny,2\n");
    write(&dir.path().join("in/b.csv"), "k,v\nx,3\nz,oops\n");
    let p = pipeline(dir.path(), "");
    assert!(run(&["run", &p]).status.success());
    let files = lineage(&dir.path().join("lake/t"));
    assert_eq!(files.len(), 2, "{files:?}");
    // The component the run loaded: from $SLUICE_PLUGIN_DIR (CI's rebuilt plugins), else the
    // embedded copy of plugins/dist.
    let rebuilt = std::env::var_os("SLUICE_PLUGIN_DIR").map(|d| Path::new(&d).join("passthrough.wasm"));
    let component = rebuilt.filter(|p| p.is_file()).unwrap_or_else(|| repo().join("plugins/dist/passthrough.wasm"));
    let plugin_bytes = std::fs::read(component).unwrap();
    let want_hash = format!("sha256:{}", sluice_core::sha256_hex(&[&plugin_bytes]));
    let mut locators = Vec::new();
    for f in &files {
        let l = &f["lineage"];
        assert_eq!(l["v"], 1, "{f}");
        assert_eq!(l["pipeline"], "lin");
        assert_eq!(l["definition"].as_str().unwrap().len(), 16, "{f}");
        assert_eq!(l["sluice"], env!("CARGO_PKG_VERSION"));
        assert_eq!(l["steps"][0]["name"], "passthrough");
        assert_eq!(l["steps"][0]["plugin"], "passthrough");
        assert_eq!(l["steps"][0]["component_hash"], want_hash.as_str(), "the component's own hash");
        let unit = &l["units"][0];
        assert!(unit["content_hash"].as_str().unwrap().starts_with("xxh3:"), "{f}");
        locators.push(unit["locator"].as_str().unwrap().to_string());
    }
    locators.sort();
    assert_eq!(locators, ["a.csv", "b.csv"]);
    // The rejects file of b.csv carries it too.
    let rejects = lineage(&dir.path().join("lake/_rejects"));
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["lineage"]["units"][0]["locator"], "b.csv");

    // The text form names the same.
    let out = run(&["lake", "lineage", dir.path().join("lake/t").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pipeline lin (definition ") && text.contains(&want_hash), "{text}");
    assert!(text.contains("unit t:a.csv (xxh3:"), "{text}");
}

#[test]
fn an_upsert_merged_file_lists_every_unit_merged_into_it() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("in/a.csv"), "k,v\nx,1\ny,2\n");
    let p = pipeline(dir.path(), "  mode: upsert\n  key: [k]\n");
    assert!(run(&["run", &p]).status.success());
    write(&dir.path().join("in/b.csv"), "k,v\nx,3\n");
    assert!(run(&["run", &p]).status.success());
    let files = lineage(&dir.path().join("lake/t"));
    assert_eq!(files.len(), 1, "{files:?}");
    let mut units: Vec<&str> =
        files[0]["lineage"]["units"].as_array().unwrap().iter().map(|u| u["locator"].as_str().unwrap()).collect();
    units.sort();
    assert_eq!(units, ["a.csv", "b.csv"]);
}

#[test]
fn vacuum_deletes_replaced_files_past_their_retention_and_dry_run_only_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("in/a.csv"), "k,v\nx,1\n");
    let p = pipeline(dir.path(), "  retain_replaced: 4s\n");
    assert!(run(&["run", &p]).status.success());
    write(&dir.path().join("in/a.csv"), "k,v\nx,1\ny,2\n");
    assert!(run(&["run", &p]).status.success());
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_str().unwrap();
    // Within its retention the replaced file stays.
    let out = run(&["lake", "vacuum", lake_arg, "--dry-run"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 replaced file(s)"));
    std::thread::sleep(std::time::Duration::from_millis(4300));
    let stored = |lake: &Path| -> usize {
        files_under(&lake.join("_sluice/files")).iter().filter(|f| f.ends_with(".parquet")).count()
    };
    assert_eq!(stored(&lake), 2, "the live file and the replaced one");
    let out = run(&["lake", "vacuum", lake_arg, "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would delete t/") && text.contains("1 replaced file(s) past their retention"), "{text}");
    assert_eq!(stored(&lake), 2, "a dry run deletes nothing");
    let out = run(&["lake", "vacuum", lake_arg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("freed 1 replaced file(s)"), "{text}");
    assert_eq!(stored(&lake), 1);
    assert!(run(&["lake", "verify", lake_arg]).status.success());
    let rows = query(&lake, "SELECT count(*) AS n FROM t");
    assert_eq!(rows[0]["n"], 2);
    // Nothing left to do.
    let out = run(&["lake", "vacuum", lake_arg]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("freed 0 replaced file(s)"));
}

#[test]
fn a_changed_definition_makes_committed_files_stale_and_rerun_stale_rewrites_them_once() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("in/a.csv"), "k,v\nx,1\ny,2\n");
    write(&dir.path().join("in/b.csv"), "k,v\nz,3\n");
    let p = pipeline(dir.path(), "");
    assert!(run(&["run", &p]).status.success());
    // The pipeline changes: a derived column.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("  - plugin: passthrough\n", "  - plugin: derive\n    config: {columns: {w: \"v * 2\"}}\n");
    write(Path::new(&p), &text);
    let summary_at = dir.path().join("s.json");
    let s = summary_at.to_str().unwrap();
    let out = run(&["run", &p, "--summary-json", s]);
    assert!(out.status.success());
    let sum = summary(&summary_at);
    assert_eq!((sum["files_stale"].as_u64(), sum["files_committed"].as_u64()), (Some(2), Some(0)), "{sum}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rerun-stale"), "the run says how to re-run them");

    let out = run(&["run", &p, "--rerun-stale", "--summary-json", s]);
    assert!(out.status.success());
    assert_eq!(summary(&summary_at)["files_committed"], 2);
    let lake = dir.path().join("lake");
    let rows = query(&lake, "SELECT count(*) AS n, count(w) AS w, sum(w) AS s FROM t");
    assert_eq!((rows[0]["n"].as_i64(), rows[0]["w"].as_i64(), rows[0]["s"].as_i64()), (Some(3), Some(3), Some(12)));
    for f in lineage(&lake.join("t")) {
        assert_eq!(f["lineage"]["steps"][0]["plugin"], "derive", "{f}");
    }
    // Nothing is stale any more, and run settings (workers) do not make files stale.
    let text = std::fs::read_to_string(&p).unwrap().replace("workers: 1", "workers: 2");
    write(Path::new(&p), &text);
    assert!(run(&["run", &p, "--summary-json", s]).status.success());
    let sum = summary(&summary_at);
    assert_eq!((sum["files_stale"].as_u64(), sum["files_committed"].as_u64()), (Some(0), Some(0)), "{sum}");
}
