//! The pipeline language from the CLI: golden-file tests of `sluice validate` errors (exact text,
//! line and column), every example pipeline validates, `sluice schema`, and the plugin-author
//! workflow (`plugin new`, build, `plugin test`).

use std::path::Path;

use crate::support::{repo, run, sluice};

/// Run `sluice validate tests/ui/<case>.yaml` from the repo root and compare stderr with
/// `tests/ui/<case>.stderr`. `SLUICE_BLESS=1` rewrites the golden files instead.
fn golden(case: &str) {
    let root = repo();
    let file = format!("tests/ui/{case}.yaml");
    let out = sluice()
        .current_dir(&root)
        .args(["validate", &file])
        .env_remove("DATA_DIR")
        .env_remove("DATA_ROOT")
        .env_remove("LAKE")
        .env_remove("SLUICE_PLUGIN_DIR")
        .output()
        .expect("sluice runs");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{case}: validate must exit 2; stderr:\n{stderr}");
    let golden = root.join(format!("tests/ui/{case}.stderr"));
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&golden, &stderr).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e}; run with SLUICE_BLESS=1 to create it", golden.display()));
    assert_eq!(stderr, want, "{case}: stderr differs from {} (SLUICE_BLESS=1 rewrites it)", golden.display());
}

#[test]
fn golden_bad_delta() {
    golden("bad_delta");
}

#[test]
fn golden_bad_delta_type() {
    golden("bad_delta_type");
}

#[test]
fn golden_bad_s3() {
    golden("bad_s3");
}

#[test]
fn golden_bad_s3_key() {
    golden("bad_s3_key");
}

#[test]
fn golden_bad_postgres() {
    golden("bad_postgres");
}

#[test]
fn golden_bad_postgres_key() {
    golden("bad_postgres_key");
}

#[test]
fn golden_unknown_key() {
    golden("unknown_key");
}

#[test]
fn golden_wrong_type() {
    golden("wrong_type");
}

#[test]
fn golden_bad_plugin() {
    golden("bad_plugin");
}

#[test]
fn golden_undeclared_env() {
    golden("undeclared_env");
}

#[test]
fn golden_schema_mismatch() {
    golden("schema_mismatch");
}

#[test]
fn golden_bad_table() {
    golden("bad_table");
}

#[test]
fn golden_bad_table_path() {
    golden("bad_table_path");
}

#[test]
fn golden_bad_watch() {
    golden("bad_watch");
}

#[test]
fn golden_several_errors() {
    golden("several_errors");
}

#[test]
fn golden_bad_not_null() {
    golden("bad_not_null");
}

#[test]
fn golden_sink_options() {
    golden("sink_options");
}

/// Every example pipeline validates: the files alone, and with the environment (plugins load,
/// configs pass, the schema flows) against a demo data directory.
#[test]
fn every_example_pipeline_validates() {
    let root = repo();
    let pipelines = root.join("pipelines");
    let out = run(&["validate", "--no-environment", pipelines.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data/spot/daily/klines");
    std::fs::create_dir_all(&data).unwrap();
    let out = sluice()
        .args(["validate", pipelines.to_str().unwrap()])
        .env("DATA_DIR", tmp.path().join("data"))
        .env("LAKE_DIR", tmp.path().join("lake"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let files = std::fs::read_dir(&pipelines)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .count();
    assert!(files > 0 && stdout.matches("ok: pipeline").count() >= files, "{stdout}");
    assert!(!tmp.path().join("lake").exists(), "validate must not create the lake");
}

/// A pipeline that validates with no environment fails with it when its source directory is
/// missing, located at the source's `path:` value.
#[test]
fn missing_source_directory_is_located() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.yaml");
    crate::support::write(
        &file,
        "pipeline: p\nsources:\n  s:\n    path: ./nowhere\n    format: {csv: {}}\nsink: {lake: ./lake, dataset: d}\n",
    );
    assert_eq!(run(&["validate", "--no-environment", file.to_str().unwrap()]).status.code(), Some(0));
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:4:11: source `s`: directory", file.display())), "{stderr}");
}

/// A source without `columns` validates, but `validate` says plainly that the schema is
/// unchecked, which source, and how to have it checked; with `columns` it says nothing more.
#[test]
fn validate_says_when_a_source_leaves_the_schema_unchecked() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.yaml");
    std::fs::create_dir_all(tmp.path().join("in")).unwrap();
    let pipeline = |columns: &str| {
        format!(
            "pipeline: p\nsources:\n  s:\n    path: in\n    format: {{csv: {{header: true{columns}}}}}\n\
             steps:\n  - plugin: select\n    config: {{columns: [nope]}}\nsink: {{lake: ./lake, dataset: d}}\n"
        )
    };
    crate::support::write(&file, &pipeline(""));
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: pipeline `p`: the schema is unchecked: source `s` declares no `columns`"),
        "{stderr}"
    );
    assert!(stderr.contains("the steps' column references"), "{stderr}");
    assert!(stderr.contains("declare `columns` under `sources.s.format.csv`"), "{stderr}");
    // Declared, the schema is checked: the missing column is an error, and nothing is unchecked.
    crate::support::write(&file, &pipeline(", columns: {a: int64}"));
    let out = run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope") && !stderr.contains("unchecked"), "{stderr}");
}

#[test]
fn schema_is_json_and_names_the_language() {
    let out = run(&["schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let props = schema["properties"].as_object().unwrap();
    for key in ["pipeline", "env", "sources", "steps", "sink", "settings"] {
        assert!(props.contains_key(key), "missing {key}");
    }
    assert_eq!(schema["additionalProperties"], false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dead_letter") && text.contains("partition_by"));
    // Descriptions come from the doc comments.
    assert!(props["steps"]["description"].as_str().unwrap().contains("handler chain"));
}

/// `plugin test` passes on matching rows and prints a readable diff (exit 1) otherwise.
#[test]
fn plugin_test_gives_the_plugin_lookup_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).display().to_string();
    crate::support::write(&tmp.path().join("in.csv"), "symbol,close\nA,1.5\nB,2.5\n");
    crate::support::write(&tmp.path().join("names.csv"), "symbol,name\nA,Alpha\n");
    crate::support::write(&tmp.path().join("want.csv"), "symbol,close,name\nA,1.5,Alpha\n");
    let table = format!("names={}", p("names.csv"));
    let (input, want) = (p("in.csv"), p("want.csv"));
    let base = ["plugin", "test", "enrich", "--config", "{on: [symbol], how: inner}", "--input", &input];
    let out = run(&[&base[..], &["--expect", &want, "--table", &table]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the table, enrich refuses to start (a config error).
    let out = run(&[&base[..], &["--expect", &want]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tables:"));
}

#[test]
fn plugin_test_compares_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.csv");
    crate::support::write(&input, "symbol,close,extra\nA,1.5,x\nB,2.5,y\n");
    let good = tmp.path().join("good.csv");
    crate::support::write(&good, "symbol,close\nA,1.5\nB,2.5\n");
    let bad = tmp.path().join("bad.csv");
    crate::support::write(&bad, "symbol,close\nA,1.5\nB,9.0\n");
    let args = |expect: &Path| {
        vec![
            "plugin".to_string(),
            "test".into(),
            "select".into(),
            "--config".into(),
            "{drop: [extra]}".into(),
            "--input".into(),
            input.display().to_string(),
            "--expect".into(),
            expect.display().to_string(),
        ]
    };
    let a = args(&good);
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 2 rows match"));
    let a = args(&bad);
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("row 1, column close: expected 9.0, got 2.5"), "{stderr}");
    assert!(stderr.contains("- expected row 1: B, 9.0") && stderr.contains("+ got      row 1: B, 2.5"), "{stderr}");
}
