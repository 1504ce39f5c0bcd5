//! The lake through the CLI: write modes, idempotent and deterministic re-runs, schema
//! evolution, hostile partition values.

use std::path::{Path, PathBuf};

use crate::crash::ledger_files;
use crate::support::*;

/// A one-step pipeline over `in/*.csv` into `lake`, dataset `t`; `sink_extra` adds sink keys.
fn pipeline(root: &Path, partition_by: &str, sink_extra: &str) -> PathBuf {
    let p = root.join("p.yaml");
    write(
        &p,
        &format!(
            r#"
pipeline: t
sources:
  t:
    path: in
    glob: "*.csv"
    format:
      csv: {{header: true}}
steps:
  - plugin: passthrough
sink:
  lake: lake
  dataset: t
  partition_by: [{partition_by}]
{sink_extra}
settings: {{workers: 1}}
"#
        ),
    );
    p
}

fn sluice_run(p: &Path) -> std::process::Output {
    run(&["run", p.to_str().unwrap()])
}

/// The lake's data files are exactly the ledger's live files, and none is in progress.
fn assert_consistent(lake: &Path) {
    let on_disk: std::collections::BTreeSet<String> =
        files_under(&lake.join("t")).into_iter().map(|f| format!("t/{f}")).collect();
    assert!(on_disk.iter().all(|f| f.ends_with(".parquet")), "{on_disk:?}");
    assert_eq!(on_disk, ledger_files(lake));
}

/// Bump a file's content and make sure its mtime moves.
fn rewrite(path: &Path, text: &str) {
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(path, text);
}

#[test]
fn replace_partition_replaces_each_touched_partition_in_one_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nA,2,20\nB,3,30\n");
    let p = pipeline(root, "sym", "  mode: replace_partition");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    write(&root.join("in/b.csv"), "sym,id,v\nA,7,70\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    // Partition A now holds only b.csv's rows; B keeps a.csv's.
    let r = query(&lake, "SELECT sym, id, v FROM t ORDER BY id");
    assert_eq!(
        r,
        vec![serde_json::json!({"sym": "B", "id": 3, "v": 30}), serde_json::json!({"sym": "A", "id": 7, "v": 70})]
    );
    assert_consistent(&lake);
    assert_eq!(files_under(&lake.join("t/sym=A")).len(), 1);
    // An unchanged re-run commits nothing and changes nothing.
    let before = files_under(&lake.join("t"));
    let s = root.join("s.json");
    assert_eq!(run(&["run", p.to_str().unwrap(), "--summary-json", s.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(summary(&s)["files_committed"], 0);
    assert_eq!(files_under(&lake.join("t")), before);
}

#[test]
fn upsert_keeps_the_newest_row_per_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nA,2,20\nA,3,30\nB,4,40\nA,2,21\n");
    write(&root.join("in/b.csv"), "sym,id,v\nA,3,300\nA,5,500\n");
    let p = pipeline(root, "sym", "  mode: upsert\n  key: [id]");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let ids = |lake: &Path| -> Vec<(i64, i64)> {
        query(lake, "SELECT id, v FROM t ORDER BY id")
            .iter()
            .map(|r| (r["id"].as_i64().unwrap(), r["v"].as_i64().unwrap()))
            .collect()
    };
    // Within a file the last row wins (id 2); across files the later commit wins (id 3).
    assert_eq!(ids(&lake), [(1, 10), (2, 21), (3, 300), (4, 40), (5, 500)]);
    assert_consistent(&lake);
    // One file per partition: the touched partition was rewritten, the old file removed.
    assert_eq!(files_under(&lake.join("t/sym=A")).len(), 1);
    // A changed source upserts again: its rows are now the newest.
    rewrite(&root.join("in/a.csv"), "sym,id,v\nA,1,11\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    assert_eq!(ids(&lake), [(1, 11), (2, 21), (3, 300), (4, 40), (5, 500)]);
    assert_consistent(&lake);
}

#[test]
fn upsert_without_a_key_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("in/a.csv"), "sym,id\nA,1\n");
    let p = pipeline(tmp.path(), "sym", "  mode: upsert");
    let out = sluice_run(&p);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key"));
}

#[test]
fn append_reruns_are_idempotent_deterministic_and_replace_changed_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nB,2,20\n");
    write(&root.join("in/b.csv"), "sym,id,v\nA,3,30\n");
    let p = pipeline(root, "sym", "");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let snapshot = |lake: &Path| -> Vec<(String, Vec<u8>)> {
        files_under(&lake.join("t"))
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(lake.join("t").join(&f)).unwrap()))
            .collect()
    };
    let first = snapshot(&lake);
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    assert_eq!(snapshot(&lake), first, "an unchanged re-run changed the lake");
    // Byte-identical: the same inputs into a fresh lake give the same files.
    std::fs::rename(&lake, root.join("lake1")).unwrap();
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    assert_eq!(snapshot(&lake), first, "a second lake from the same inputs differs");
    // A changed source replaces its rows (no duplicates); `--force` re-commits without duplicates.
    rewrite(&root.join("in/a.csv"), "sym,id,v\nB,2,22\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let r = query(&lake, "SELECT id, v FROM t ORDER BY id");
    assert_eq!(r, vec![serde_json::json!({"id": 2, "v": 22}), serde_json::json!({"id": 3, "v": 30})]);
    assert!(
        !lake.join("t/sym=A").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".inprogress"))
    );
    assert_consistent(&lake);
    assert_eq!(run(&["run", "--force", p.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(query(&lake, "SELECT id, v FROM t ORDER BY id"), r);
    assert_consistent(&lake);
    // `--force` with different bytes (another codec) never overwrites a committed file in
    // place: the new files take new names, the old ones go once the ledger says so.
    let before = files_under(&lake.join("t"));
    let yaml = std::fs::read_to_string(&p)
        .unwrap()
        .replace("partition_by: [sym]", "partition_by: [sym]\n  compression: snappy");
    write(&p, &yaml);
    assert_eq!(run(&["run", "--force", p.to_str().unwrap()]).status.code(), Some(0));
    let after = files_under(&lake.join("t"));
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|f| f.ends_with("-g1.parquet") && !before.contains(f)), "{before:?} -> {after:?}");
    assert_eq!(query(&lake, "SELECT id, v FROM t ORDER BY id"), r);
    assert_consistent(&lake);
}

#[test]
fn schema_evolution_adds_columns_widens_types_and_rejects_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\n");
    let p = pipeline(root, "sym", "");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    // A new column, and v widened from int64 to float64.
    write(&root.join("in/b.csv"), "sym,id,v,note\nA,2,2.5,hi\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let r = query(&lake, "SELECT id, v, coalesce(note, '<null>') AS note, typeof(v) AS tv FROM t ORDER BY id");
    assert_eq!(r[0], serde_json::json!({"id": 1, "v": 10.0, "note": "<null>", "tv": "DOUBLE"}));
    assert_eq!(r[1], serde_json::json!({"id": 2, "v": 2.5, "note": "hi", "tv": "DOUBLE"}));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lake.join("_sluice/schemas/t.json")).unwrap()).unwrap();
    assert_eq!(schema[1], serde_json::json!({"name": "v", "type": "Float64"}));
    assert_eq!(schema[2], serde_json::json!({"name": "note", "type": "Utf8"}));
    // Narrower data is written as the dataset's type.
    write(&root.join("in/c.csv"), "sym,id,v\nA,3,7\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    // An unsafe change is rejected, naming the dataset, the column and both types.
    write(&root.join("in/d.csv"), "sym,id,v\nA,4,oops\n");
    let out = sluice_run(&p);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dataset `t`") && err.contains("column `v` changed type from Float64 to Utf8"), "{err}");
    assert_eq!(query(&lake, "SELECT count(*) AS n FROM t")[0]["n"], 3);
    assert_consistent(&lake);
}

#[test]
fn frozen_and_discarding_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id\nA,1\n");
    let p = pipeline(root, "sym", "  schema_policy: freeze");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    write(&root.join("in/b.csv"), "sym,id,extra\nA,2,x\n");
    let out = sluice_run(&p);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("new column `extra`"));
    let p = pipeline(root, "sym", "  schema_policy: discard_columns");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let r = query(&root.join("lake"), "SELECT * FROM t ORDER BY id");
    assert_eq!(r, vec![serde_json::json!({"id": 1, "sym": "A"}), serde_json::json!({"id": 2, "sym": "A"})]);
}

#[test]
fn hostile_partition_values_come_back_through_duckdb() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let long = "L".repeat(240);
    let values = ["a/b", "..", "x=1", "100%", "q?*:", "nul\u{0}byte", "über", long.as_str()];
    // JSON lines, so that the values can hold anything (NUL included).
    let mut lines = String::new();
    for (i, v) in values.iter().enumerate() {
        lines.push_str(&format!("{}\n", serde_json::json!({"id": i, "sym": v})));
    }
    lines.push_str("{\"id\": 99, \"sym\": \"\"}\n"); // empty: Hive's default partition, NULL
    write(&root.join("in/a.jsonl"), &lines);
    let p = pipeline(root, "sym", "");
    let yaml =
        std::fs::read_to_string(&p).unwrap().replace("*.csv", "*.jsonl").replace("csv: {header: true}", "jsonl: {}");
    write(&p, &yaml);
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    // Every value stays inside the dataset directory, one directory per value.
    let dirs: Vec<String> = std::fs::read_dir(lake.join("t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs.len(), values.len() + 1, "{dirs:?}");
    assert!(dirs.iter().all(|d| d.starts_with("sym=")), "{dirs:?}");
    for sql in [
        "SELECT id, sym FROM t ORDER BY id".to_string(),
        format!(
            "SELECT id, sym FROM read_parquet('{}/t/**/*.parquet', hive_partitioning = true) ORDER BY id",
            lake.display()
        ),
    ] {
        let r = query(&lake, &sql);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(r[i]["id"], i);
            assert_eq!(r[i]["sym"].as_str(), Some(*v), "value {i} came back wrong through {sql}");
        }
        assert_eq!(r[values.len()]["sym"], serde_json::Value::Null);
    }
    // Too long for one directory name: the unit fails with a clear message, nothing is written.
    write(&root.join("in/b.jsonl"), &format!("{}\n", serde_json::json!({"id": 100, "sym": "Z".repeat(300)})));
    let out = sluice_run(&p);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("partition directory name is at most 255 bytes"));
    assert_consistent(&lake);
}

#[test]
fn lake_status_and_verify_report_the_lake_and_its_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nB,2,20\nC,3,30\n");
    write(&root.join("in/b.csv"), "sym,id,v,note\nA,4,1.5,x\n");
    let p = pipeline(root, "sym", "  time_column: id");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let l = lake.to_str().unwrap();
    // stats.json, updated at each commit from the live files' footers.
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lake.join("_sluice/stats/t.json")).unwrap()).unwrap();
    assert_eq!(
        (stats["rows"].as_u64(), stats["files"].as_u64(), stats["partitions"].as_u64()),
        (Some(4), Some(4), Some(3))
    );
    assert_eq!((stats["time_min"].as_i64(), stats["time_max"].as_i64()), (Some(1), Some(4)));
    assert_eq!(stats["null_rate"]["id"], 0.0);
    assert_eq!(stats["null_rate"]["note"], 0.75, "{stats}");
    let out = run(&["lake", "status", "--lake", l, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["dataset"], "t");
    assert_eq!(
        (status[0]["partitions"].as_u64(), status[0]["files"].as_u64(), status[0]["rows"].as_u64()),
        (Some(3), Some(4), Some(4))
    );
    let out = run(&["lake", "verify", "--lake", l]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 column sum(s) checked"), "id and v");

    // An orphan file and a missing file are both differences.
    let files = files_under(&lake.join("t/sym=A"));
    let orphan = lake.join("t/sym=A").join("part-orphan.parquet");
    std::fs::copy(lake.join("t/sym=A").join(&files[0]), &orphan).unwrap();
    let out = run(&["lake", "verify", "--lake", l]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("part-orphan.parquet is on disk but no ledger record names it")
    );
    std::fs::remove_file(&orphan).unwrap();
    std::fs::remove_file(lake.join("t/sym=A").join(&files[0])).unwrap();
    let out = run(&["lake", "verify", "--lake", l]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is in the ledger but not on disk"), "{text}");
    assert!(text.contains("the catalog cannot read the dataset") || text.contains("files vs catalog"), "{text}");
}
