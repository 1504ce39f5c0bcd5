//! Plugin authors outside the repository: `sluice plugin new`, `build`, `test` and `inspect`,
//! for a Rust and a Python plugin, with fixtures in every format and `--state`.

use std::path::{Path, PathBuf};

use crate::support::{query, run, run_in, write};

/// The componentize-py to build Python plugins with: `$SLUICE_COMPONENTIZE_PY`, else the venv
/// `scripts/componentize-venv.sh` makes. Missing: fails under `CI=true`, else skips.
fn componentize_py() -> Option<PathBuf> {
    let p = std::env::var_os("SLUICE_COMPONENTIZE_PY").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("HOME")?;
        Some(PathBuf::from(home).join(".cache/sluice/venv/cpy/bin/componentize-py"))
    });
    if let Some(p) = p.filter(|p| p.is_file()) {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("componentize-py is missing under CI=true: scripts/componentize-venv.sh installs it");
    }
    eprintln!("skipped: componentize-py is missing (scripts/componentize-venv.sh installs it)");
    None
}

/// `sluice plugin build` in `dir` with componentize-py `cpy`; asserts it succeeds.
fn build_python(dir: &Path, cpy: &Path) -> std::process::Output {
    let mut c = crate::support::sluice();
    c.current_dir(dir).args(["plugin", "build"]).env("SLUICE_COMPONENTIZE_PY", cpy);
    let out = crate::support::report(&["plugin", "build"], c.output().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

/// The template's fixtures pass, and a wrong expectation is caught naming the row and column.
fn assert_template_fixtures(wasm: &Path, dir: &Path) {
    let out = test_fixtures(wasm, dir, &dir.join("tests/fixtures/expected.csv"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let wrong = dir.join("wrong.csv");
    write(&wrong, "symbol,price\nAAA,3.0\nBBB,-4.5\nCCC,1.0\n");
    let out = test_fixtures(wasm, dir, &wrong);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("row 2, column price: expected 1.0, got null"), "{}", stderr(&out));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a Parquet file from a DuckDB query.
fn parquet(path: &Path, select: &str) {
    let db = duckdb::Connection::open_in_memory().unwrap();
    db.execute_batch(&format!("COPY ({select}) TO '{}' (FORMAT parquet)", path.display())).unwrap();
}

/// `plugin test` reads JSON-lines and Parquet fixtures as well as CSV, as input and as expected
/// rows, and its diff names the row, the column, and the expected and actual values.
#[test]
fn plugin_test_reads_jsonl_and_parquet_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        &d.join("in.jsonl"),
        "{\"symbol\":\"A\",\"close\":1.5,\"extra\":\"x\"}\n{\"symbol\":\"B\",\"close\":2.5,\"extra\":\"y\"}\n",
    );
    write(&d.join("want.jsonl"), "{\"symbol\":\"A\",\"close\":1.5}\n{\"symbol\":\"B\",\"close\":2.5}\n");
    write(&d.join("bad.jsonl"), "{\"symbol\":\"A\",\"close\":1.5}\n{\"symbol\":\"B\",\"close\":7.25}\n");
    parquet(
        &d.join("in.parquet"),
        "SELECT * FROM (VALUES ('A', 1.5::DOUBLE, 'x'), ('B', 2.5::DOUBLE, 'y')) t(symbol, close, extra)",
    );
    parquet(&d.join("want.parquet"), "SELECT * FROM (VALUES ('A', 1.5::DOUBLE), ('B', 2.5::DOUBLE)) t(symbol, close)");
    parquet(&d.join("bad.parquet"), "SELECT * FROM (VALUES ('A', 1.5::DOUBLE), ('C', 2.5::DOUBLE)) t(symbol, close)");
    let test = |input: &str, expect: &str| {
        run(&[
            "plugin",
            "test",
            "select",
            "--config",
            "{drop: [extra]}",
            "--input",
            s(&d.join(input)),
            "--expect",
            s(&d.join(expect)),
        ])
    };
    for (input, expect) in [
        ("in.jsonl", "want.jsonl"),
        ("in.parquet", "want.parquet"),
        ("in.jsonl", "want.parquet"),
        ("in.parquet", "want.jsonl"),
    ] {
        let out = test(input, expect);
        assert_eq!(out.status.code(), Some(0), "{input} -> {expect}: {}", stderr(&out));
        assert!(stdout(&out).contains("ok: 2 rows match"), "{}", stdout(&out));
    }
    let out = test("in.jsonl", "bad.jsonl");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("row 1, column close: expected 7.25, got 2.5"), "{}", stderr(&out));
    let out = test("in.parquet", "bad.parquet");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("row 1, column symbol: expected C, got B"), "{}", stderr(&out));
    // A missing row and an extra one are told apart from a changed one.
    write(&d.join("short.jsonl"), "{\"symbol\":\"A\",\"close\":1.5}\n");
    let out = test("in.jsonl", "short.jsonl");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("rows: expected 1, got 2") && err.contains("row 1: expected no row, got B, 2.5"), "{err}");
}

/// `--state` feeds the inputs in order through one instance, finishing after each, as a keyed
/// step does with a key's units; without it each file gets a fresh instance.
#[test]
fn plugin_test_state_carries_an_instance_across_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(&d.join("day1.csv"), "symbol,ts,close\nA,1,1.0\nA,2,3.0\n");
    write(&d.join("day2.csv"), "symbol,ts,close\nA,3,5.0\nA,4,7.0\n");
    // A two-row moving average: day 2's first row averages with day 1's last under --state.
    write(&d.join("want1.csv"), "symbol,ts,close,sma\nA,1,1.0,\nA,2,3.0,2.0\n");
    write(&d.join("want2_state.csv"), "symbol,ts,close,sma\nA,3,5.0,4.0\nA,4,7.0,6.0\n");
    write(&d.join("want2_fresh.csv"), "symbol,ts,close,sma\nA,3,5.0,\nA,4,7.0,6.0\n");
    write(&d.join("want_all.csv"), "symbol,ts,close,sma\nA,1,1.0,\nA,2,3.0,2.0\nA,3,5.0,4.0\nA,4,7.0,6.0\n");
    let config = "{column: close, window: 2, as: sma, key: symbol, order_by: ts}";
    let test = |more: &[&str], expects: &[&str]| {
        let mut args = vec!["plugin", "test", "sma", "--config", config];
        let (i1, i2) = (d.join("day1.csv"), d.join("day2.csv"));
        args.extend(["--input", s(&i1), "--input", s(&i2)]);
        let paths: Vec<String> = expects.iter().map(|e| d.join(e).display().to_string()).collect();
        for p in &paths {
            args.extend(["--expect", p.as_str()]);
        }
        args.extend(more);
        run(&args)
    };
    let out = test(&["--state"], &["want1.csv", "want2_state.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = test(&["--state"], &["want_all.csv"]);
    assert_eq!(out.status.code(), Some(0), "one expectation for all the inputs: {}", stderr(&out));
    let out = test(&[], &["want1.csv", "want2_fresh.csv"]);
    assert_eq!(out.status.code(), Some(0), "without --state each file is fresh: {}", stderr(&out));
    let out = test(&[], &["want1.csv", "want2_state.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("row 0, column sma: expected 4.0, got null"), "{}", stderr(&out));
    let out = test(&[], &["want1.csv", "want2_state.csv", "want_all.csv"]);
    assert_eq!(out.status.code(), Some(2), "three expectations for two inputs is a usage error");
}

/// Runs the template's fixtures through `plugin test` with `wasm`; returns the output.
fn test_fixtures(wasm: &Path, dir: &Path, expect: &Path) -> std::process::Output {
    let fixtures = dir.join("tests/fixtures");
    let config = format!("@{}", fixtures.join("config.yaml").display());
    run(&[
        "plugin",
        "test",
        s(wasm),
        "--config",
        &config,
        "--input",
        s(&fixtures.join("input.csv")),
        "--expect",
        s(expect),
    ])
}

/// A Rust plugin from `sluice plugin new` builds with `sluice plugin build` (the toolchain
/// route the standard plugins use), passes `sluice plugin test` on its fixture, notices a wrong
/// one, and `plugin inspect` shows its contract, SDK and hash.
#[test]
fn scaffolded_rust_plugin_builds_tests_and_inspects() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("double-it");
    let out = run(&["plugin", "new", "double-it", "--dir", s(&dir)]);
    assert_eq!(out.status.code(), Some(0));
    for f in ["Cargo.toml", "Cargo.lock", "README.md", "src/lib.rs", "tests/fixtures/input.csv"] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("sluice-plugin = \"0.5.0\""), "the SDK by version:\n{manifest}");
    assert!(manifest.contains("[patch.crates-io]"), "a checkout build patches in its SDK:\n{manifest}");
    // The wasm target directory the standard plugins use: their compiled dependencies are reused.
    // The plugin's directory is given relative to where sluice runs.
    let target = xtask::plugins::wasm_target_dir();
    let out = run_in(tmp.path(), &["plugin", "build", "double-it", "--target-dir", s(&target)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let wasm = dir.join("double-it.wasm");
    assert!(stdout(&out).contains("built double-it") && wasm.is_file(), "{}", stdout(&out));
    assert_template_fixtures(&wasm, &dir);
    let out = run(&["plugin", "inspect", s(&wasm)]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("name:     double-it") && text.contains("contract: sluice:plugin@0.5.0"), "{text}");
    assert!(text.contains("sdk:      sluice-plugin 0.5.0") && text.contains("hash:     sha256:"), "{text}");
}

/// A Python plugin from `sluice plugin new --lang python` builds with componentize-py, passes
/// the same fixtures as the Rust template, runs sandboxed in a pipeline, reports its config
/// errors with their key, and `plugin inspect` names its SDK.
#[test]
fn scaffolded_python_plugin_builds_tests_and_runs_in_a_pipeline() {
    let Some(cpy) = componentize_py() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scale_py");
    let out = run(&["plugin", "new", "scale_py", "--lang", "python", "--dir", s(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.join("app.py").is_file() && dir.join("tests/fixtures/expected.csv").is_file());
    let out = build_python(&dir, &cpy);
    let wasm = dir.join("scale_py.wasm");
    assert!(stdout(&out).contains("via componentize-py"), "{}", stdout(&out));
    assert_template_fixtures(&wasm, &dir);

    let out = run(&["plugin", "inspect", s(&wasm)]);
    let text = stdout(&out);
    assert!(text.contains("name:     scale_py") && text.contains("contract: sluice:plugin@0.5.0"), "{text}");
    assert!(text.contains("sdk:      sluice-plugin-py 0.5.0") && text.contains("hash:     sha256:"), "{text}");

    // A config error names its key, as the Rust SDK's do.
    let fixtures = dir.join("tests/fixtures");
    let input = fixtures.join("input.csv");
    let expect = fixtures.join("expected.csv");
    let out = run(&[
        "plugin",
        "test",
        s(&wasm),
        "--config",
        "{column: price, factor: lots}",
        "--input",
        s(&input),
        "--expect",
        s(&expect),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("factor"), "{}", stderr(&out));

    // In a pipeline: CSV in, the Python step, the lake out.
    let work = tmp.path().join("work");
    write(&work.join("in/a.csv"), "symbol,price\nAAA,1.5\nBBB,-2.25\nCCC,\n");
    write(
        &work.join("p.yaml"),
        &format!(
            "pipeline: py\nsources:\n  s:\n    path: in\n    format:\n      csv:\n        columns: {{symbol: utf8, \
             price: float64}}\nsteps:\n  - plugin: {}\n    config: {{column: price, factor: 10}}\n\
             sink: {{lake: lake, dataset: prices}}\n",
            wasm.display()
        ),
    );
    let out = run_in(&work, &["run", "p.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = query(&work.join("lake"), "SELECT symbol, price FROM prices ORDER BY symbol");
    let got: Vec<String> = rows.iter().map(|r| format!("{}={}", r["symbol"], r["price"])).collect();
    assert_eq!(got, ["\"AAA\"=15.0", "\"BBB\"=-22.5", "\"CCC\"=null"]);
}

/// A Python plugin is sandboxed like a Rust one: no files, and a virtual clock (at the epoch).
/// The probe reports what it could see as columns. (`os.environ` is the snapshot componentize-py
/// took at build time, where there is no environment either; the host gives none at run time.)
#[test]
fn python_plugins_see_no_files_or_real_clock() {
    let Some(cpy) = componentize_py() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("probe");
    write(
        &dir.join("app.py"),
        r#"import os, time
from sluice_plugin import Handler, export

def _try(f):
    try:
        return str(f())
    except Exception as e:
        return type(e).__name__

class Probe(Handler):
    name = "probe"
    version = "0.1.0"
    summary = "what a plugin can see"

    def output_schema(self, schema):
        return schema + [self.field("home"), self.field("file"), self.field("year")]

    def field(self, name):
        from sluice_plugin import Field
        return Field(name, "utf8")

    def process(self, batch):
        n = batch.num_rows
        home = _try(lambda: os.environ.get("HOME"))
        passwd = _try(lambda: open("/etc/passwd").read()[:10])
        year = _try(lambda: time.gmtime().tm_year)
        return (batch.with_column("home", "utf8", [home] * n)
                     .with_column("file", "utf8", [passwd] * n)
                     .with_column("year", "utf8", [year] * n))

Handler = export(Probe)
"#,
    );
    build_python(&dir, &cpy);
    write(&tmp.path().join("in.csv"), "a\n1\n");
    write(&tmp.path().join("want.csv"), "a,home,file,year\n1,None,FileNotFoundError,1970\n");
    let out = run(&[
        "plugin",
        "test",
        s(&dir.join("probe.wasm")),
        "--input",
        s(&tmp.path().join("in.csv")),
        "--expect",
        s(&tmp.path().join("want.csv")),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A component built against an older contract is refused with both versions, its SDK, and
/// what to do.
#[test]
fn an_old_contract_component_is_refused_with_both_versions() {
    let Some(cpy) = componentize_py() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (wit, sdk) = sluice_toolchain::python::write_sdk(tmp.path()).unwrap();
    let text = std::fs::read_to_string(wit.join("sluice.wit")).unwrap();
    std::fs::write(
        wit.join("sluice.wit"),
        text.replace("package sluice:plugin@0.5.0;", "package sluice:plugin@0.4.0;"),
    )
    .unwrap();
    let app = tmp.path().join("app");
    write(
        &app.join("app.py"),
        "from sluice_plugin import Handler, export\nclass Old(Handler):\n    name = 'old'\nHandler = export(Old)\n",
    );
    let wasm = tmp.path().join("old.wasm");
    sluice_toolchain::python::componentize(&cpy, &wit, &sdk, &app, &wasm).unwrap();
    // As `sluice plugin build` would stamp it, with the SDK of that day.
    let mut bytes = std::fs::read(&wasm).unwrap();
    sluice_toolchain::component::append_custom_section(&mut bytes, "sluice:sdk", b"sluice-plugin-py 0.4.0");
    std::fs::write(&wasm, bytes).unwrap();
    let out = run(&["plugin", "inspect", s(&wasm)]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("was built against sluice:plugin@0.4.0, with SDK sluice-plugin-py 0.4.0"), "{err}");
    assert!(err.contains("this host implements sluice:plugin@0.5.0") && err.contains("rebuild it"), "{err}");
}

/// A Python plugin with keyed state (`StateSpec`): a key's rows go through one instance across
/// files, a second run seeds a fresh instance from the lake (the SDK's `seed`), and a late file
/// re-runs the committed files its key continues into. The sums equal a DuckDB window over the
/// same rows.
#[test]
fn python_keyed_state_carries_across_files_runs_and_late_arrivals() {
    let Some(cpy) = componentize_py() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        &root.join("sum3/app.py"),
        r#"from collections import deque
from sluice_plugin import Field, Handler, StateSpec, export

class Sum3(Handler):
    name, version, summary = "sum3", "0.1.0", "Sum of a column over a key's last three rows"

    def __init__(self, config, tables):
        super().__init__(config, tables)
        self.key, self.order, self.column = config["key"], config["order_by"], config["column"]
        self.windows = {}

    def state(self):
        return StateSpec([self.key], self.order, lookback_rows=2)

    def output_schema(self, schema):
        return schema + [Field("sum3", "float64")]

    def process(self, batch):
        out = []
        for k, v in zip(batch.column(self.key), batch.column(self.column)):
            w = self.windows.setdefault(k, deque(maxlen=3))
            w.append(v)
            out.append(float(sum(w)))
        return batch.with_column("sum3", "float64", out)

Handler = export(Sum3)
"#,
    );
    build_python(&root.join("sum3"), &cpy);
    write(
        &root.join("p.yaml"),
        "pipeline: k\nsources:\n  s:\n    path: in\n    format:\n      csv:\n        columns: {k: utf8, ts: int64, \
         v: float64}\nsteps:\n  - plugin: ./sum3/sum3.wasm\n    config: {key: k, order_by: ts, column: v}\n\
         sink: {lake: lake, dataset: d}\n",
    );
    let days = [
        ("in/d1.csv", "k,ts,v\nA,1,1\nB,1,10\nA,2,2\nA,3,3\n"),
        ("in/d2.csv", "k,ts,v\nA,4,4\nB,2,20\nA,5,5\n"),
        // Arrives last, before everything else in time: d1 is re-run with it.
        ("in/d0.csv", "k,ts,v\nA,0,100\n"),
    ];
    let check = |n: usize| {
        let sql = "SELECT k, ts, sum3 = sum(v) OVER (PARTITION BY k ORDER BY ts ROWS 2 PRECEDING) AS same \
                   FROM d ORDER BY k, ts";
        let rows = query(&root.join("lake"), sql);
        assert_eq!(rows.len(), n, "{rows:?}");
        assert!(rows.iter().all(|r| r["same"] == true), "sum3 differs from the window: {rows:?}");
    };
    // One run per file: each later run seeds the keys' instances from the lake.
    let mut n = 0;
    for (file, text) in days {
        write(&root.join(file), text);
        n += text.lines().count() - 1;
        let out = run_in(root, &["run", "p.yaml"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        check(n);
    }
    let rows = query(&root.join("lake"), "SELECT sum3 FROM d WHERE k = 'A' AND ts = 2");
    assert_eq!(rows[0]["sum3"], 103.0, "the late row reached the committed file after it");
}

/// Without the toolchain a plugin needs, `plugin build` says what to install; a directory that
/// is no plugin is named.
#[test]
fn plugin_build_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["plugin", "new", "nopy", "--lang", "python", "--dir", s(&tmp.path().join("nopy"))]);
    assert_eq!(out.status.code(), Some(0));
    let mut c = crate::support::sluice();
    c.current_dir(tmp.path().join("nopy"))
        .args(["plugin", "build"])
        .env("SLUICE_COMPONENTIZE_PY", tmp.path().join("no-such-componentize-py"));
    let out = crate::support::report(&["plugin", "build"], c.output().unwrap());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pip install componentize-py==0.25.1"), "{}", stderr(&out));
    let out = run(&["plugin", "build", s(tmp.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds neither a Cargo.toml"), "{}", stderr(&out));
}

/// A misbehaving Python plugin is contained like a hostile Rust one: a loop hits the step's
/// deadline, a huge allocation its memory cap, an exception is the plugin's error with its type,
/// and in each case the other file still commits.
#[test]
fn python_plugins_are_held_to_the_step_limits() {
    let Some(cpy) = componentize_py() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        &root.join("villain/app.py"),
        r#"from sluice_plugin import Handler, export

class Villain(Handler):
    name, version, summary = "villain", "0.1.0", "misbehaves on a batch with a `poison` column"

    def __init__(self, config, tables):
        super().__init__(config, tables)
        self.mode = config["mode"]

    def process(self, batch):
        if "poison" not in batch.names:
            return batch
        if self.mode == "spin":
            while True:
                pass
        if self.mode == "hog":
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))
        raise ZeroDivisionError("deliberate")

Handler = export(Villain)
"#,
    );
    build_python(&root.join("villain"), &cpy);
    write(&root.join("in/a-bad.csv"), "x,poison\n1,1\n");
    write(&root.join("in/b-good.csv"), "x,y\n1,10\n2,20\n");
    for (mode, expected) in [
        ("spin", "exceeded its deadline of 2s"),
        ("hog", "exceeded its memory limit of 268435456 bytes"),
        ("raise", "ZeroDivisionError: deliberate"),
    ] {
        let _ = std::fs::remove_dir_all(root.join("lake"));
        write(
            &root.join("p.yaml"),
            &format!(
                "pipeline: v\nsources:\n  s: {{path: in, glob: \"*.csv\", format: {{csv: {{header: true}}}}}}\nsteps:\n  \
                 - plugin: ./villain/villain.wasm\n    name: villain\n    config: {{mode: {mode}}}\n    on_error: \
                 skip_file\n    limits: {{timeout: 2s, memory: 256MiB}}\nsink: {{lake: lake, dataset: out}}\n"
            ),
        );
        let sj = root.join("s.json");
        let out = run_in(root, &["run", "p.yaml", "--workers", "1", "--summary-json", s(&sj)]);
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&sj).unwrap()).unwrap();
        assert_eq!((summary["files_failed"].as_u64(), summary["files_committed"].as_u64()), (Some(1), Some(1)));
        let err = summary["failures"][0]["error"].as_str().unwrap();
        assert!(err.contains(expected) && err.contains("a-bad.csv"), "{mode}: `{err}` should contain `{expected}`");
        let rows = query(&root.join("lake"), "SELECT sum(y) AS y FROM out");
        assert_eq!(rows[0]["y"], 30, "{mode}");
    }
}
