//! Hostile plugins are contained: each misbehaves on the file that has a `poison` column, and the
//! run goes on according to the step's `on_error` policy, with a typed error naming the step,
//! the plugin and the file.

use std::path::{Path, PathBuf};

use crate::support::*;

/// Two files; the hostile step misbehaves only on `a-bad.csv` (it has the trigger column).
fn setup(plugin: &str, policy: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("in/a-bad.csv"), "x,poison\n1,1\n2,2\n");
    write(&tmp.path().join("in/b-good.csv"), "x,y\n1,10\n2,20\n3,30\n");
    let yaml = format!(
        r#"
pipeline: hostile
sources:
  s: {{path: in, glob: "*.csv", format: {{csv: {{header: true}}}}}}
steps:
  - plugin: {plugin}
    name: villain
    config: {{trigger_column: poison}}
    on_error: {policy}
    limits: {{timeout: 1s, memory: 64MiB, output: 1MiB}}
sink: {{lake: lake, dataset: out}}
"#,
        plugin = test_plugin(plugin).display()
    );
    let p = tmp.path().join("p.yaml");
    write(&p, &yaml);
    (tmp, p)
}

fn run_case(plugin: &str, policy: &str) -> (Option<i32>, serde_json::Value, tempfile::TempDir) {
    let (tmp, p) = setup(plugin, policy);
    let sj = tmp.path().join("s.json");
    let out = run(&["run", p.to_str().unwrap(), "--workers", "1", "--summary-json", sj.to_str().unwrap()]);
    (out.status.code(), summary(&sj), tmp)
}

fn assert_contained(plugin: &str, expected: &str) {
    let (code, s, tmp) = run_case(plugin, "skip_file");
    assert_eq!(code, Some(1), "a failed unit exits 1 (and the host did not crash)");
    assert_eq!(s["files_failed"], 1, "{s}");
    assert_eq!(s["files_committed"], 1, "the good file still commits, through a fresh instance: {s}");
    let f = &s["failures"][0];
    assert_eq!(f["action"], "skipped");
    assert_eq!(f["step"], "villain");
    let err = f["error"].as_str().unwrap();
    assert!(err.contains(expected), "error `{err}` should contain `{expected}`");
    assert!(err.contains("step 1 `villain`") && err.contains("a-bad.csv") && err.contains(plugin), "{err}");
    let r = query(&tmp.path().join("lake"), "SELECT count(*) AS n, sum(y) AS y FROM out");
    assert_eq!((r[0]["n"].as_u64(), r[0]["y"].as_i64()), (Some(3), Some(60)));
    assert_no_leftovers(&tmp.path().join("lake"));
}

fn assert_no_leftovers(lake: &Path) {
    let files = files_under(&lake.join("out"));
    assert!(files.iter().all(|f| f.ends_with(".parquet") && !f.contains("inprogress")), "{files:?}");
}

#[test]
fn infinite_loop_hits_the_deadline() {
    assert_contained("hostile-spin", "exceeded its deadline of 1s");
}

#[test]
fn memory_hog_hits_the_memory_limit() {
    assert_contained("hostile-hog", "exceeded its memory limit of 67108864 bytes");
}

#[test]
fn panic_is_reported_with_its_message() {
    assert_contained("hostile-panic", "plugin panicked: hostile-panic: deliberate panic in process");
}

#[test]
fn malformed_ipc_is_rejected() {
    assert_contained("hostile-bad-ipc", "IPC does not decode");
}

#[test]
fn output_violating_the_declared_schema_is_rejected() {
    assert_contained("hostile-bad-schema", "differs from the declared schema");
}

#[test]
fn exploding_output_hits_the_output_cap() {
    assert_contained("hostile-explode", "exceeds the cap of 1048576 bytes");
}

#[test]
fn fail_policy_stops_the_run() {
    let (code, s, tmp) = run_case("hostile-panic", "fail");
    assert_eq!(code, Some(1));
    assert!(s["fatal"].as_str().unwrap().contains("plugin panicked"), "{s}");
    assert_eq!(s["files_committed"], 0, "nothing after the failure is taken: {s}");
    assert_eq!(s["failures"][0]["action"], "failed");
    let out = tmp.path().join("lake/out");
    assert!(!out.exists() || files_under(&out).is_empty());
}

#[test]
fn dead_letter_policy_records_the_unit_and_goes_on() {
    let (code, s, tmp) = run_case("hostile-spin", "dead_letter");
    assert_eq!(code, Some(1));
    assert_eq!(s["failures"][0]["action"], "dead_lettered");
    assert_eq!(s["files_committed"], 1);
    let letters = std::fs::read_to_string(tmp.path().join("lake/_sluice/dead_letter.jsonl")).unwrap();
    let letter: serde_json::Value = serde_json::from_str(letters.lines().next().unwrap()).unwrap();
    assert!(letter["unit"]["path"].as_str().unwrap().ends_with("a-bad.csv"));
    assert_eq!(letter["step"], "villain");
    assert!(letter["error"].as_str().unwrap().contains("deadline"));
}

/// `hostile-bad-patch` reading `x` of `x,shadow,y` in the given mode, one file, `skip_file`.
fn patch_case(mode: &str) -> (Option<i32>, serde_json::Value, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("in/a.csv"), "x,shadow,y\n1,1,10\n2,2,20\n3,3,30\n");
    let yaml = format!(
        r#"
pipeline: patches
sources:
  s: {{path: in, glob: "*.csv", format: {{csv: {{header: true}}}}}}
steps:
  - plugin: {plugin}
    name: patcher
    config: {{reads: [x], mode: {mode}}}
    on_error: skip_file
sink: {{lake: lake, dataset: out}}
"#,
        plugin = test_plugin("hostile-bad-patch").display()
    );
    let p = tmp.path().join("p.yaml");
    write(&p, &yaml);
    let sj = tmp.path().join("s.json");
    let out = run(&["run", p.to_str().unwrap(), "--workers", "1", "--summary-json", sj.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let s = if sj.exists() { summary(&sj) } else { serde_json::Value::Null };
    (out.status.code(), s, stderr, tmp)
}

#[test]
fn a_valid_patch_selects_rows_and_keeps_the_unread_columns() {
    let (code, s, stderr, tmp) = patch_case("ok");
    assert_eq!(code, Some(0), "{s} {stderr}");
    let r = query(&tmp.path().join("lake"), "SELECT x, shadow, y, first FROM out ORDER BY x");
    let rows: Vec<(i64, i64, i64, String)> = r
        .iter()
        .map(|r| {
            let i = |k: &str| r[k].as_i64().unwrap();
            (i("x"), i("shadow"), i("y"), r["first"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(rows, vec![(1, 1, 10, "row0".to_string()), (3, 3, 30, "row2".to_string())]);
}

#[test]
fn bad_patches_are_refused_with_a_reason() {
    for (mode, expected) in [
        ("out_of_range", "`_sluice_row` has row 8, but the input has 3 rows"),
        ("short", "the patches cover 2 of the input's 3 rows"),
        ("holds", "cannot hold rows, but `finish` returned 3"),
    ] {
        let (code, s, stderr, tmp) = patch_case(mode);
        assert_eq!(code, Some(1), "{mode}: {s} {stderr}");
        let err = s["failures"][0]["error"].as_str().unwrap_or_default();
        assert!(err.contains(expected) && err.contains("patcher") && err.contains("a.csv"), "{mode}: `{err}`");
        let out = tmp.path().join("lake/out");
        assert!(!out.exists() || files_under(&out).is_empty(), "{mode}: nothing is committed");
    }
}

#[test]
fn a_patch_column_that_would_shadow_an_unread_column_is_a_config_error() {
    let (code, s, stderr, _tmp) = patch_case("shadow");
    assert_ne!(code, Some(0));
    let all = format!("{s} {stderr}");
    assert!(all.contains("outputs a column `shadow`, which its input already has"), "{all}");
}

#[test]
fn a_guest_sleeping_in_a_host_call_hits_the_deadline() {
    // Each hour-long sleep (a WASI timer and a blocking poll) returns at once on virtual time, so
    // the guest spins into its 1 s timeout instead of holding the worker's thread for an hour. A
    // host whose timers sleep for real would hang here: the run is killed after 90 s.
    let (tmp, p) = setup("hostile-sleep", "skip_file");
    let sj = tmp.path().join("s.json");
    let mut child = sluice()
        .args(["run", "-q", p.to_str().unwrap(), "--workers", "1", "--summary-json", sj.to_str().unwrap()])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(90) {
            let _ = child.kill();
            panic!("a guest sleeping in a host call held the run for 90 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let s = summary(&sj);
    assert_eq!((s["files_failed"].as_u64(), s["files_committed"].as_u64()), (Some(1), Some(1)), "{s}");
    let err = s["failures"][0]["error"].as_str().unwrap();
    assert!(err.contains("exceeded its deadline of 1s") && err.contains("a-bad.csv"), "{err}");
    let r = query(&tmp.path().join("lake"), "SELECT count(*) AS n, sum(y) AS y FROM out");
    assert_eq!((r[0]["n"].as_u64(), r[0]["y"].as_i64()), (Some(3), Some(60)), "the other file lands");
}

/// What a guest sees of the host: no real time (virtual clocks from zero; a one-second sleep
/// moves them by exactly one second), the same "random" numbers in every run and for every file
/// (the sandbox starts over with each unit, even on a reused instance) that do not repeat, no
/// environment variable, argument or directory.
#[test]
fn the_sandbox_shows_no_real_time_entropy_environment_or_directory() {
    let look = || {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("in/a.csv"), "x\n1\n");
        write(&tmp.path().join("in/b.csv"), "x\n2\n");
        let yaml = format!(
            "pipeline: probe\nsources:\n  s: {{path: in, glob: \"*.csv\", format: {{csv: {{header: true}}}}}}\n\
             steps:\n  - plugin: {}\nsink: {{lake: lake, dataset: out}}\nsettings: {{workers: 1}}\n",
            test_plugin("hostile-probe").display()
        );
        let p = tmp.path().join("p.yaml");
        write(&p, &yaml);
        // The host's environment has variables; the guest must not see them.
        let out =
            sluice().args(["run", "-q", p.to_str().unwrap()]).env("SLUICE_PROBE_SECRET", "hunter2").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let rows = query(
            &tmp.path().join("lake"),
            "SELECT wall_ns, monotonic_slept_ns, random, distinct_of_2048, env, args, dirs FROM out",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], rows[1], "two files on one instance see the same sandbox");
        rows[0].clone()
    };
    let first = look();
    assert_eq!(first["wall_ns"], 0, "{first}");
    assert_eq!(first["monotonic_slept_ns"], 1_000_000_000i64, "{first}");
    assert_eq!((first["env"].as_i64(), first["args"].as_i64()), (Some(0), Some(0)), "{first}");
    assert_eq!(first["dirs"], "", "no preopened directory: {first}");
    let random = first["random"].as_str().unwrap();
    assert_eq!(random.split(' ').count(), 3, "{first}");
    assert_eq!(first["distinct_of_2048"], 2048, "the random numbers do not repeat: {first}");
    assert_eq!(look(), first, "a second run sees exactly the same");
}
