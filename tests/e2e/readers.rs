//! Concurrent readers: while `sluice run` ingests, query the catalog and the hive glob in a loop.
//! Every query succeeds, the catalog only ever shows whole units (and follows the ingest), and
//! the glob never meets a partial file.

use std::time::{Duration, Instant};

use crate::crash::{pipeline, write_ticks};
use crate::support::*;

const FILES: usize = 48;
const ROWS: usize = 40_000;

fn try_query(lake: &std::path::Path, sql: &str) -> Result<Vec<serde_json::Value>, String> {
    let out = sluice().args(["query", "--lake", lake.to_str().unwrap(), "--format", "json", sql]).output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect())
}

#[test]
fn catalog_and_glob_readers_see_only_whole_commits_during_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write_ticks(&root.join("in"), FILES, ROWS);
    let yaml = pipeline(root, "lake");
    let lake = root.join("lake");
    let glob = lake.join("ticks/**/*.parquet");
    let glob_sql = format!(
        "SELECT filename, count(*) AS n FROM read_parquet('{}', hive_partitioning = true, filename = true) GROUP BY 1",
        glob.display()
    );

    let mut child = sluice().args(["run", "-q", yaml.to_str().unwrap()]).spawn().unwrap();
    let started = Instant::now();
    let (mut catalog_counts, mut glob_queries, mut errors) = (Vec::new(), 0, Vec::new());
    loop {
        let done = child.try_wait().unwrap().is_some();
        if lake.join("catalog.duckdb").exists() {
            match try_query(&lake, "SELECT count(*) AS n, count(DISTINCT ts) AS d FROM ticks") {
                Ok(r) => {
                    let n = r[0]["n"].as_u64().unwrap();
                    assert_eq!(r[0]["d"].as_u64().unwrap(), n, "duplicates through the catalog");
                    // Units commit whole: the catalog shows a whole number of source files.
                    assert_eq!(n % ROWS as u64, 0, "the catalog shows part of a unit: {n} rows");
                    catalog_counts.push(n);
                }
                Err(e) => errors.push(format!("catalog: {e}")),
            }
            match try_query(&lake, &glob_sql) {
                // Each part file holds one symbol's rows of one source file: 5000 rows, never fewer.
                Ok(files) => {
                    glob_queries += 1;
                    for f in files {
                        assert_eq!(f["n"], serde_json::json!(ROWS / 8), "a partial file through the glob: {f}");
                    }
                }
                Err(e) => errors.push(format!("glob: {e}")),
            }
        }
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the run did not finish");
    }
    assert!(child.wait().unwrap().success());
    eprintln!("catalog counts seen during the run: {catalog_counts:?}; {glob_queries} glob queries");
    assert!(errors.is_empty(), "reader errors: {errors:#?}");
    assert!(catalog_counts.windows(2).all(|w| w[0] <= w[1]), "the catalog went back in time: {catalog_counts:?}");
    let total = (FILES * ROWS) as u64;
    assert_eq!(catalog_counts.last(), Some(&total));
    // The catalog was published during the run, not only at its end.
    let partial: Vec<_> = catalog_counts.iter().filter(|&&n| n > 0 && n < total).collect();
    assert!(!partial.is_empty(), "the catalog was only published at the end: {catalog_counts:?}");
}
