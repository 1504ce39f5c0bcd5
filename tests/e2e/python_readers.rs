//! pyarrow and DuckDB from Python (a 1.x and a 2.x release) read the lake and agree with
//! `sluice query`. Runs when `SLUICE_PYTHON` lists interpreters (colon-separated) that have
//! `duckdb` and `pyarrow`; `scripts/test.sh` sets up two venvs and sets it.

use crate::crash::{pipeline, write_ticks};
use crate::support::*;

#[test]
fn python_pyarrow_and_duckdb_read_the_lake_like_sluice_query() {
    let Some(pythons) = std::env::var_os("SLUICE_PYTHON") else {
        eprintln!("SLUICE_PYTHON is not set: skipping the Python reader check (scripts/test.sh runs it)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    write_ticks(&tmp.path().join("in"), 6, 2_000);
    let yaml = pipeline(tmp.path(), "lake");
    assert_eq!(run(&["run", "-q", yaml.to_str().unwrap()]).status.code(), Some(0));
    let lake = tmp.path().join("lake");
    let expect =
        &query(&lake, "SELECT count(*) AS n, sum(ts)::DOUBLE AS ts, sum(price)::DOUBLE AS price FROM ticks")[0];
    let script = repo().join("tests/python/check_lake.py");
    let mut majors = Vec::new();
    for py in std::env::split_paths(&pythons) {
        let out = std::process::Command::new(&py)
            .args([script.to_str().unwrap(), lake.to_str().unwrap(), "ticks", "ts", "price"])
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}: {}", py.display(), String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("{}: {got}", py.display());
        majors.push(got["duckdb"].as_str().unwrap().split('.').next().unwrap().to_string());
        for reader in ["pyarrow", "duckdb_catalog", "duckdb_glob"] {
            let r = &got[reader];
            assert_eq!(r["rows"], expect["n"], "{reader} rows");
            for c in ["ts", "price"] {
                let (a, b) = (r[c].as_f64().unwrap(), expect[c].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{reader} sum({c}): {a} vs {b}");
            }
        }
    }
    majors.sort();
    majors.dedup();
    eprintln!("DuckDB major versions checked: {majors:?}");
}

/// Glob readers (DuckDB, pyarrow, Polars) and catalog readers (an old snapshot held open, and
/// fresh connections) read the lake in a loop while runs commit late days, re-run the days after
/// them and replace changed files. No read may see a unit twice (a replaced file beside its
/// replacement) or in part, and no catalog read may fail.
#[test]
fn glob_and_catalog_readers_see_each_unit_once_while_sluice_rewrites() {
    let Some(pythons) = std::env::var_os("SLUICE_PYTHON") else {
        eprintln!("SLUICE_PYTHON is not set: skipping the glob reader check (scripts/test.sh runs it)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (all, data, lake) = (root.join("all"), root.join("in"), root.join("lake"));
    // 2 symbols x 8 days of 400 rows, one second apart; `v` says which version of a file it is.
    let day = |sym: usize, d: usize, v: u32| {
        let mut text = String::new();
        let start = 1_704_067_200_000i64 + d as i64 * 86_400_000 + sym as i64;
        for i in 0..400i64 {
            text.push_str(&format!(
                "{},{},{v}\n",
                start + i * 1000,
                100.0 + ((i * 7 + d as i64) % 13) as f64 + v as f64
            ));
        }
        text
    };
    let mut files = Vec::new();
    for (s, sym) in ["AAA", "BBB"].iter().enumerate() {
        for d in 0..8 {
            let name = format!("{sym}-1s-2024-01-{:02}.csv", d + 1);
            write(&all.join(&name), &day(s, d, 0));
            files.push((name, s, d));
        }
    }
    let yaml = root.join("p.yaml");
    write(
        &yaml,
        &format!(
            r#"
pipeline: readers
sources:
  klines:
    path: {data}
    glob: "*.csv"
    fields: "{{symbol}}-1s-{{date:date}}.csv"
    format: {{csv: {{header: false, columns: {{open_time: int64, close: float64, v: int64}}}}}}
steps:
  - plugin: indicators
    config: {{keys: [symbol], order_by: open_time, indicators: [{{kind: sma, column: close, window: 20, as: ma20}}]}}
sink: {{lake: {lake}, dataset: klines, partition_by: [symbol, date]}}
"#,
            data = data.display(),
            lake = lake.display()
        ),
    );
    let run_ok = || assert_eq!(run(&["run", "-q", yaml.to_str().unwrap()]).status.code(), Some(0));
    // The last days first, so every earlier day that arrives re-runs the committed ones after it.
    std::fs::create_dir_all(&data).unwrap();
    let copy = |name: &str| std::fs::copy(all.join(name), data.join(name)).unwrap();
    for (name, _, d) in &files {
        if *d >= 6 {
            copy(name);
        }
    }
    run_ok();

    let script = repo().join("tests/python/glob_readers.py");
    let stop = root.join("stop");
    let readers: Vec<_> = std::env::split_paths(&pythons)
        .map(|py| {
            let child = std::process::Command::new(&py)
                .args([script.to_str().unwrap(), lake.to_str().unwrap(), "klines", stop.to_str().unwrap()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("python runs");
            (py, child)
        })
        .collect();
    // Late days one at a time (each re-runs the committed days after it), then changed files.
    for d in (0..6).rev() {
        for (name, _, fd) in &files {
            if *fd == d {
                copy(name);
            }
        }
        run_ok();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for v in 1..=3 {
        for (name, s, d) in files.iter().filter(|(_, _, d)| d % 3 == v as usize % 3) {
            write(&data.join(name), &day(*s, *d, v));
        }
        run_ok();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::fs::write(&stop, "").unwrap();
    let mut polars = false;
    for (py, child) in readers {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}: {}", py.display(), String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("{}: {got}", py.display());
        for (reader, r) in got["readers"].as_object().unwrap() {
            assert_eq!(r["problems"].as_array().unwrap().len(), 0, "{}: {reader}: {}", py.display(), r["problems"]);
        }
        for reader in ["duckdb_glob", "pyarrow_glob", "catalog_old_snapshot", "catalog_fresh"] {
            assert!(got["readers"][reader]["reads"].as_u64().unwrap_or(0) > 0, "{}: {reader} never read", py.display());
        }
        polars |= got["readers"]["polars_glob"]["reads"].as_u64().unwrap_or(0) > 0;
    }
    assert!(polars, "no interpreter in SLUICE_PYTHON read with Polars (scripts/python-venvs.sh installs it)");
    // Replaced files are gone from the hive layout at once, and kept for the catalog's snapshots.
    let out = run(&["lake", "verify", "--lake", lake.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(files_under(&lake.join("klines")).len(), 16, "one visible file per day");
}
