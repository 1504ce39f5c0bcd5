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
