//! Test support: run the binary, write pipelines and CSV files, query the lake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Where the hostile test plugins are: `SLUICE_TEST_PLUGIN_DIR` (CI points it at freshly rebuilt
/// ones), else the committed `plugins/dist/test`.
pub fn test_plugin(name: &str) -> PathBuf {
    let dir = std::env::var_os("SLUICE_TEST_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("plugins/dist/test"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(p.is_file(), "missing test plugin {}; run `cargo xtask plugins build`", p.display());
    p
}

pub fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.env_remove("RUST_LOG");
    c
}

/// Run `sluice` with args; returns the output, printing it on failure to help debugging.
pub fn run(args: &[&str]) -> Output {
    report(args, sluice().args(args).output().expect("sluice runs"))
}

/// Like [`run`], in the working directory `dir` (for pipelines with relative paths).
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    report(args, sluice().current_dir(dir).args(args).output().expect("sluice runs"))
}

/// Print a finished command, to help debugging, and hand its output back.
pub fn report(args: &[&str], out: Output) -> Output {
    eprintln!(
        "$ sluice {}\n[exit {:?}]\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Run a query through `sluice query --format json`, returning one JSON object per row.
pub fn query(lake: &Path, sql: &str) -> Vec<serde_json::Value> {
    try_query(lake, sql).unwrap_or_else(|| panic!("query failed: {sql}"))
}

/// [`query`], or `None` when it fails (no catalog yet).
pub fn try_query(lake: &Path, sql: &str) -> Option<Vec<serde_json::Value>> {
    let out = run(&["query", "--lake", lake.to_str().unwrap(), "--format", "json", sql]);
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

/// Spawns `cmd` (a `sluice run`), waits until the lake's ledger has `records` lines (or the run
/// ends, or two minutes pass), then SIGKILLs it. True when it was still running: killed in the
/// middle.
pub fn kill_after_commits(mut cmd: std::process::Command, lake: &Path, records: usize) -> bool {
    let ledger = lake.join("_sluice/ledger.jsonl");
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let n = std::fs::read_to_string(&ledger).map(|t| t.lines().count()).unwrap_or(0);
        if n >= records || child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// Read the summary JSON a run wrote.
pub fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
