//! The lake through the CLI: write modes, idempotent and deterministic re-runs, schema
//! evolution, hostile partition values, touched files, retention of replaced files, deleted
//! sources, sink data errors under `on_error`, ledger compaction.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::crash::{ledger_files, ledger_replaced};
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

/// The hive layout shows exactly the ledger's live files; the stored files are those plus
/// replaced files the lake may still keep (`retain_replaced`); none is in progress.
fn assert_consistent(lake: &Path) {
    let live = ledger_files(lake);
    assert_eq!(data_files(lake), live, "the hive layout shows exactly the live files");
    let stored = stored_files(lake);
    assert!(stored.iter().all(|f| f.ends_with(".parquet")), "{stored:?}");
    assert!(live.is_subset(&stored), "live files missing: {:?}", live.difference(&stored).collect::<Vec<_>>());
    let replaced = ledger_replaced(lake);
    let orphans: Vec<_> = stored.iter().filter(|f| !live.contains(*f) && !replaced.contains(*f)).collect();
    assert!(orphans.is_empty(), "files no record names: {orphans:?}");
}

/// Every file under the dataset `t` in the hive layout (what glob readers see), relative to the
/// lake.
fn data_files(lake: &Path) -> BTreeSet<String> {
    files_under(&lake.join("t")).into_iter().map(|f| format!("t/{f}")).collect()
}

/// Every stored file of the dataset `t` (live and retained), named as the ledger names them.
fn stored_files(lake: &Path) -> BTreeSet<String> {
    files_under(&lake.join("_sluice/files/t")).into_iter().map(|f| format!("t/{f}")).collect()
}

/// Live files in one partition directory, e.g. `t/sym=A`.
fn live_in(lake: &Path, dir: &str) -> usize {
    ledger_files(lake).iter().filter(|f| f.starts_with(&format!("{dir}/"))).count()
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
    assert_eq!(live_in(&lake, "t/sym=A"), 1);
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
    // One file per partition: the touched partition was rewritten, the old file replaced.
    assert_eq!(live_in(&lake, "t/sym=A"), 1);
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
    // place: the new files take new names, the old ones are replaced once the ledger says so
    // (and kept on disk for `retain_replaced`).
    let before = ledger_files(&lake);
    let yaml = std::fs::read_to_string(&p)
        .unwrap()
        .replace("partition_by: [sym]", "partition_by: [sym]\n  compression: snappy");
    write(&p, &yaml);
    assert_eq!(run(&["run", "--force", p.to_str().unwrap()]).status.code(), Some(0));
    let after = ledger_files(&lake);
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|f| f.ends_with("-g1.parquet") && !before.contains(f)), "{before:?} -> {after:?}");
    assert!(before.is_subset(&stored_files(&lake)), "replaced files are retained");
    assert!(before.is_disjoint(&data_files(&lake)), "and gone from the hive layout");
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

    // An orphan file (stored, or in the hive layout) and a missing file are differences.
    let files = files_under(&lake.join("t/sym=A"));
    let orphan = lake.join("_sluice/files/t/sym=A").join("part-orphan.parquet");
    std::fs::copy(lake.join("t/sym=A").join(&files[0]), &orphan).unwrap();
    let out = run(&["lake", "verify", "--lake", l]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("part-orphan.parquet is on disk but no ledger record names it")
    );
    std::fs::remove_file(&orphan).unwrap();
    let orphan = lake.join("t/sym=A").join("part-orphan.parquet");
    std::fs::copy(lake.join("t/sym=A").join(&files[0]), &orphan).unwrap();
    let out = run(&["lake", "verify", "--lake", l]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("t/sym=A/part-orphan.parquet is in the hive layout but is not a live file"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_file(&orphan).unwrap();
    std::fs::remove_file(lake.join("_sluice/files/t/sym=A").join(&files[0])).unwrap();
    std::fs::remove_file(lake.join("t/sym=A").join(&files[0])).unwrap();
    let out = run(&["lake", "verify", "--lake", l]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("is in the ledger but not on disk"), "{text}");
    assert!(text.contains("the catalog cannot read the dataset") || text.contains("files vs catalog"), "{text}");
}

/// Run with `--summary-json` and return (exit code, summary).
fn run_summary(root: &Path, p: &Path) -> (Option<i32>, serde_json::Value) {
    let s = root.join("summary.json");
    let _ = std::fs::remove_file(&s);
    let out = run(&["run", p.to_str().unwrap(), "--summary-json", s.to_str().unwrap()]);
    (out.status.code(), summary(&s))
}

/// Move a file's mtime without changing its bytes, as `touch` does.
fn touch(path: &Path, secs_later: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let t = f.metadata().unwrap().modified().unwrap() + std::time::Duration::from_secs(secs_later);
    f.set_modified(t).unwrap();
}

fn ledger_lines(lake: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lake.join("_sluice/ledger.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn zip_of(members: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn a_touched_file_is_skipped_by_its_content_hash_and_a_same_size_change_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nB,2,20\n");
    write(&root.join("in/b.csv.gz"), "");
    std::fs::write(root.join("in/b.csv.gz"), gzip(b"sym,id,v\nC,3,30\n")).unwrap();
    std::fs::write(
        root.join("in/z.zip"),
        zip_of(&[("m1.csv", "sym,id,v\nD,4,40\n"), ("m2.csv", "sym,id,v\nE,5,50\n")]),
    )
    .unwrap();
    let p = pipeline(root, "sym", "");
    let yaml =
        std::fs::read_to_string(&p).unwrap().replace("glob: \"*.csv\"", "glob: [\"*.csv\", \"*.gz\", \"*.zip\"]");
    write(&p, &yaml);
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_committed"].as_u64()), (Some(0), Some(4)));
    let lake = root.join("lake");
    // The ledger records each unit's content hash: xxh3 of a file's bytes, a zip member's CRC.
    let hashes: BTreeSet<String> = ledger_lines(&lake)
        .iter()
        .map(|r| r["unit"]["content_hash"].as_str().unwrap().split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(hashes, BTreeSet::from(["xxh3".to_string(), "crc32".to_string()]));
    let files = data_files(&lake);

    // `touch` everything: the same bytes are not processed again, and the new mtimes are
    // recorded, so the next run does not even hash.
    for f in ["a.csv", "b.csv.gz", "z.zip"] {
        touch(&root.join("in").join(f), 5);
    }
    let lines = ledger_lines(&lake).len();
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_unchanged"].as_u64(), s["files_committed"].as_u64()), (Some(0), Some(4), Some(0)));
    assert_eq!(data_files(&lake), files, "a touch rewrote data");
    let refreshed = ledger_lines(&lake).len() - lines;
    assert_eq!(refreshed, 2, "a.csv and b.csv.gz get their new mtime recorded; zip members compare CRCs");
    let (_, s) = run_summary(root, &p);
    assert_eq!(s["files_unchanged"], 4);
    assert_eq!(ledger_lines(&lake).len(), lines + refreshed, "nothing to record the second time");

    // Same size, other bytes: processed. The archive rewritten with one member changed: only
    // that member is processed.
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,11\nB,2,21\n");
    touch(&root.join("in/a.csv"), 10);
    std::fs::write(
        root.join("in/z.zip"),
        zip_of(&[("m1.csv", "sym,id,v\nD,4,40\n"), ("m2.csv", "sym,id,v\nE,5,51\n")]),
    )
    .unwrap();
    touch(&root.join("in/z.zip"), 10);
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_committed"].as_u64(), s["files_unchanged"].as_u64()), (Some(0), Some(2), Some(2)));
    let r = query(&lake, "SELECT id, v FROM t ORDER BY id");
    let v: Vec<i64> = r.iter().map(|r| r["v"].as_i64().unwrap()).collect();
    assert_eq!(v, [11, 21, 30, 40, 51]);
    assert_consistent(&lake);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn replaced_files_stay_for_readers_of_an_older_catalog_then_go() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nB,2,20\n");
    let p = pipeline(root, "sym", "  retain_replaced: 3s");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let l = lake.to_str().unwrap();
    let first = ledger_files(&lake);
    // A reader opens the catalog now (a copy of the file stands for its open snapshot).
    let old = root.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(lake.join("catalog.duckdb"), old.join("catalog.duckdb")).unwrap();

    rewrite(&root.join("in/a.csv"), "sym,id,v\nA,1,11\nB,2,21\nB,3,31\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    // The replaced files are still stored; the older snapshot reads them, the new one does not.
    assert!(first.is_subset(&stored_files(&lake)));
    assert!(first.is_disjoint(&ledger_files(&lake)));
    assert_eq!(query(&old, "SELECT sum(v) AS s FROM t")[0]["s"], 30);
    assert_eq!(query(&lake, "SELECT sum(v) AS s FROM t")[0]["s"], 63);
    // They left the hive layout at once: glob readers see only the new version.
    assert!(first.is_disjoint(&data_files(&lake)));
    let glob = format!("SELECT count(*) AS n FROM read_parquet('{}/t/**/*.parquet')", lake.display());
    assert_eq!(query(&lake, &glob)[0]["n"], 3);
    // Retained files are no orphans; status lists them.
    let out = run(&["lake", "verify", "--lake", l]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 replaced file(s) retained"));
    let out = run(&["lake", "status", "--lake", l, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let retained: BTreeSet<String> =
        status[0]["retained"].as_array().unwrap().iter().map(|r| r["file"].as_str().unwrap().to_string()).collect();
    assert_eq!(retained, first);
    let out = run(&["lake", "status", "--lake", l]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 replaced file(s) kept for readers"));
    // An orphan is still an orphan.
    let orphan = lake.join("t/sym=A/part-orphan.parquet");
    std::fs::copy(lake.join("_sluice/files").join(first.iter().next().unwrap()), &orphan).unwrap();
    assert_eq!(run(&["lake", "verify", "--lake", l]).status.code(), Some(1));
    std::fs::remove_file(&orphan).unwrap();

    // Once the retention is over, the next run (here one with nothing to do) deletes them.
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_committed"].as_u64()), (Some(0), Some(0)));
    assert_eq!(data_files(&lake), ledger_files(&lake));
    let out = run(&["query", "--lake", old.to_str().unwrap(), "SELECT sum(v) FROM t"]);
    assert_ne!(out.status.code(), Some(0), "the old snapshot's files are gone now");
    assert_eq!(run(&["lake", "verify", "--lake", l]).status.code(), Some(0));

    // `0s`: replaced files go with the commit that replaces them.
    let p = pipeline(root, "sym", "  retain_replaced: 0s");
    let before = ledger_files(&lake);
    rewrite(&root.join("in/a.csv"), "sym,id,v\nA,1,12\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    assert!(before.is_disjoint(&data_files(&lake)));
    assert_eq!(data_files(&lake), ledger_files(&lake));
}

#[test]
fn deleted_sources_keep_their_rows_unless_the_sink_says_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\n");
    write(&root.join("in/b.csv"), "sym,id,v\nA,2,20\nB,3,30\n");
    write(&root.join("in/c.csv"), "sym,id,v\nC,4,40\n");
    let p = pipeline(root, "sym", "");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let sum = |lake: &Path| query(lake, "SELECT sum(v) AS s FROM t")[0]["s"].as_i64().unwrap();
    std::fs::remove_file(root.join("in/b.csv")).unwrap();
    // By default a deleted source's rows stay.
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_deleted"].as_u64(), s["files_seen"].as_u64()), (Some(0), Some(0), Some(2)));
    assert_eq!(sum(&lake), 100);

    // `on_source_deleted: delete`: the run removes them, in one ledger record for the file.
    let p = pipeline(root, "sym", "  on_source_deleted: delete");
    let files_before = ledger_files(&lake);
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_deleted"].as_u64(), s["files_committed"].as_u64()), (Some(0), Some(1), Some(0)));
    assert_eq!(sum(&lake), 50);
    let deleted: Vec<serde_json::Value> = ledger_lines(&lake).into_iter().filter(|r| r["deleted"] == true).collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["unit"]["rel_path"], "b.csv");
    assert_eq!(deleted[0]["removed"].as_array().unwrap().len(), 2, "b.csv wrote partitions A and B");
    // The removed files are retained like replaced ones; the lake verifies.
    let gone: Vec<String> = files_before.difference(&ledger_files(&lake)).cloned().collect();
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|f| lake.join("_sluice/files").join(f).exists() && !lake.join(f).exists()));
    assert_consistent(&lake);
    assert_eq!(run(&["lake", "verify", "--lake", lake.to_str().unwrap()]).status.code(), Some(0));
    // Nothing more to delete on the next run; a re-created file is new again.
    let (_, s) = run_summary(root, &p);
    assert_eq!(s["files_deleted"], 0);
    write(&root.join("in/b.csv"), "sym,id,v\nB,3,33\n");
    let (_, s) = run_summary(root, &p);
    assert_eq!(s["files_committed"], 1);
    assert_eq!(sum(&lake), 83);
    // A file that still exists but that the glob no longer selects keeps its rows.
    let yaml = std::fs::read_to_string(&p).unwrap().replace("glob: \"*.csv\"", "glob: \"[ab].csv\"");
    write(&p, &yaml);
    let (_, s) = run_summary(root, &p);
    assert_eq!((s["files_deleted"].as_u64(), sum(&lake)), (Some(0), 83));
    // A source that lists nothing at all (an unmounted volume?) deletes nothing.
    for f in ["a.csv", "b.csv", "c.csv"] {
        std::fs::remove_file(root.join("in").join(f)).unwrap();
    }
    let out = run(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lists no files at all"));
    assert_eq!(sum(&lake), 83);
}

#[test]
fn rows_the_sink_rejects_follow_the_sinks_on_error_and_io_errors_stop_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\n");
    let p = pipeline(root, "sym", "  schema_policy: freeze\n  on_error: skip_file");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    write(&root.join("in/b.csv"), "sym,id,v\nA,2,oops\n");
    write(&root.join("in/c.csv"), "sym,id,v,extra\nA,3,30,x\n");
    write(&root.join("in/d.csv"), "sym,id,v\nB,4,40\n");
    // Both rejected files are skipped with a message naming the dataset, the column and the
    // types; the good file still commits. Exit 1: some files failed.
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_committed"].as_u64(), s["files_failed"].as_u64()), (Some(1), Some(1), Some(2)));
    assert!(s["fatal"].is_null(), "{s}");
    let failures = s["failures"].as_array().unwrap();
    assert!(failures.iter().all(|f| f["action"] == "skipped"));
    let errors: Vec<&str> = failures.iter().map(|f| f["error"].as_str().unwrap()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("b.csv") && e.contains("dataset `t`: column `v` changed type from Int64 to Utf8")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("c.csv") && e.contains("new column `extra`")), "{errors:?}");
    let lake = root.join("lake");
    assert_eq!(query(&lake, "SELECT count(*) AS n FROM t")[0]["n"], 2);
    assert_consistent(&lake);

    // dead_letter: recorded in the dead-letter log.
    let p = pipeline(root, "sym", "  schema_policy: freeze\n  on_error: dead_letter");
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_failed"].as_u64()), (Some(1), Some(2)));
    let letters = std::fs::read_to_string(lake.join("_sluice/dead_letter.jsonl")).unwrap();
    assert_eq!(letters.lines().count(), 2);
    assert!(letters.contains("changed type from Int64 to Utf8"), "{letters}");

    // fail (the default): the run stops, naming the file.
    let p = pipeline(root, "sym", "  schema_policy: freeze");
    let (code, s) = run_summary(root, &p);
    assert_eq!(code, Some(1));
    let fatal = s["fatal"].as_str().unwrap();
    assert!(fatal.contains("pipeline `t`, file ") && fatal.contains("dataset `t`"), "{fatal}");

    // An I/O error is not the data's fault: it stops the run whatever `on_error` says.
    std::fs::remove_file(root.join("in/b.csv")).unwrap();
    std::fs::remove_file(root.join("in/c.csv")).unwrap();
    write(&root.join("in/e.csv"), "sym,id,v\nZ,5,50\n");
    write(&lake.join("t/sym=Z"), "a file where a partition directory goes");
    let p = pipeline(root, "sym", "  on_error: skip_file");
    let (code, s) = run_summary(root, &p);
    assert_eq!(code, Some(1));
    assert!(s["fatal"].as_str().unwrap().contains("sym=Z"), "{s}");
}

#[test]
fn a_ledger_of_mostly_superseded_records_is_compacted_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nB,2,20\n");
    write(&root.join("in/b.csv"), "sym,id,v\nA,3,30\n");
    let p = pipeline(root, "sym", "  retain_replaced: 1h");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    rewrite(&root.join("in/a.csv"), "sym,id,v\nA,1,11\nB,2,21\n");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let (live, replaced_on_disk) = (ledger_files(&lake), data_files(&lake));
    // 1500 superseded copies of a's first record, as 1500 earlier changes would leave.
    let path = lake.join("_sluice/ledger.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first_a = lines.iter().find(|l| l.contains("\"rel_path\":\"a.csv\"")).unwrap();
    let mut padded = String::new();
    for _ in 0..1500 {
        padded.push_str(first_a);
        padded.push('\n');
    }
    padded.push_str(&text);
    std::fs::write(&path, padded).unwrap();

    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_unchanged"].as_u64()), (Some(0), Some(2)));
    let compacted = ledger_lines(&lake);
    assert_eq!(compacted.len(), 3, "a snapshot line and one record per unit");
    assert!(compacted[0]["snapshot"]["retained"].as_array().unwrap().len() == 2);
    assert_eq!(ledger_files(&lake), live);
    assert_eq!(data_files(&lake), replaced_on_disk, "retained files stay retained");
    assert_eq!(run(&["lake", "verify", "--lake", lake.to_str().unwrap()]).status.code(), Some(0));
    // The compacted ledger goes on as usual.
    write(&root.join("in/c.csv"), "sym,id,v\nC,4,40\n");
    let (_, s) = run_summary(root, &p);
    assert_eq!(s["files_committed"], 1);
    assert_eq!(query(&lake, "SELECT sum(v) AS s FROM t")[0]["s"], 102);
    assert_consistent(&lake);
}

/// The hive layout is repaired from the ledger when a writer opens the lake: a missing link is
/// restored, a stray file and a link to other bytes are removed or relinked, and a lake in the
/// layout of earlier versions (committed files at their ledger names, nothing stored) is moved
/// to `_sluice/files` without losing a row.
#[test]
fn the_hive_layout_is_repaired_and_older_lakes_are_moved_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a.csv"), "sym,id,v\nA,1,10\nB,2,20\n");
    write(&root.join("in/b.csv"), "sym,id,v\nA,3,30\n");
    let p = pipeline(root, "sym", "");
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    let lake = root.join("lake");
    let live = ledger_files(&lake);
    assert_eq!(data_files(&lake), live);
    let sum = |lake: &Path| query(lake, "SELECT sum(v) AS s FROM t")[0]["s"].as_i64().unwrap();

    // A lost link, a stray file, and a visible name that holds other bytes.
    let mut it = live.iter();
    let (lost, other) = (it.next().unwrap(), it.next().unwrap());
    std::fs::remove_file(lake.join(lost)).unwrap();
    std::fs::copy(lake.join(other), lake.join("t/sym=A/part-stray.parquet")).unwrap();
    std::fs::remove_file(lake.join(other)).unwrap();
    std::fs::write(lake.join(other), b"not these bytes").unwrap();
    assert_eq!(run(&["lake", "verify", "--lake", lake.to_str().unwrap()]).status.code(), Some(1));
    assert_eq!(sluice_run(&p).status.code(), Some(0));
    assert_consistent(&lake);
    assert_eq!(run(&["lake", "verify", "--lake", lake.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(sum(&lake), 60);

    // The layout of earlier versions.
    for f in &live {
        std::fs::remove_file(lake.join(f)).unwrap();
        std::fs::rename(lake.join("_sluice/files").join(f), lake.join(f)).unwrap();
    }
    std::fs::remove_dir_all(lake.join("_sluice/files")).unwrap();
    let (code, s) = run_summary(root, &p);
    assert_eq!((code, s["files_unchanged"].as_u64()), (Some(0), Some(2)));
    assert_consistent(&lake);
    assert_eq!(stored_files(&lake), live);
    assert_eq!(run(&["lake", "verify", "--lake", lake.to_str().unwrap()]).status.code(), Some(0));
    assert_eq!(sum(&lake), 60);
}

#[test]
fn both_sync_modes_commit_the_same_lake_filesystem_with_two_syncs_per_unit() {
    let mut seen = Vec::new();
    for (mode, per_unit) in [("files", 4), ("filesystem", 2)] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for f in 0..3 {
            // One partition (`k`) per file.
            write(&root.join(format!("in/f{f}.csv")), &format!("k,v\nk{f},{f}\nk{f},{}\n", f + 10));
        }
        let p = pipeline(root, "k", &format!("  sync: {mode}"));
        let s = root.join("s.json");
        let out = run(&["run", "-q", p.to_str().unwrap(), "--summary-json", s.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let s = summary(&s);
        // Per unit: `files` fsyncs its data file, the file's directory, the hive directory it is
        // linked into and the ledger; `filesystem` makes one syncfs and the ledger's.
        assert_eq!(s["files_committed"], 3);
        assert_eq!(s["sink_files"], 3);
        assert_eq!(s["sink_syncs"], 3 * per_unit, "{mode}: {s}");
        let lake = root.join("lake");
        assert_consistent(&lake);
        seen.push(query(&lake, "SELECT k, v FROM t ORDER BY k"));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].len(), 6);
}
