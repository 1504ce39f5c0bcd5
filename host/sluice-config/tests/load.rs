//! Loading pipelines from text: one-pass errors with exact positions, and what resolves.

use std::path::Path;

use sluice_core::spec::DirSpec;

use sluice_config::{ConfigErrors, parse_str};

fn errors(text: &str) -> Vec<String> {
    let env = |k: &str| (k == "SET").then(|| "/data".to_string());
    match parse_str(text, Path::new("p.yaml"), &env) {
        Ok(_) => Vec::new(),
        Err(ConfigErrors(es)) => es.iter().map(|e| e.to_string()).collect(),
    }
}

const GOOD: &str = "\
pipeline: p
env: [SET, {DIR: ./d}]
sources:
  s:
    path: ${DIR}/x
    glob: \"**/*.csv\"
    fields: \"{symbol}-{date:date}.csv\"
    format:
      csv: {header: false, columns: {t: int64, close: float64}}
steps:
  - plugin: sma
    config: {column: close, window: 20, as: ma20, dir: \"${SET}\"}
    on_error: dead_letter
sink: {lake: ./lake, dataset: d, partition_by: [symbol]}
settings: {workers: 2, limits: {timeout: 2s}}
";

#[test]
fn a_good_pipeline_resolves() {
    let specs = parse_str(GOOD, Path::new("dir/p.yaml"), &|k| (k == "SET").then(|| "/data".to_string())).unwrap();
    assert_eq!(specs.len(), 1);
    let p = &specs[0];
    let dir = p.sources[0].config_as::<DirSpec>().expect("a directory source");
    assert_eq!(p.sources[0].kind(), "directory");
    assert_eq!(dir.path, Path::new("dir/d/x"));
    let config: serde_json::Value = serde_json::from_str(&p.steps[0].config_json).unwrap();
    assert_eq!(config, serde_json::json!({"as": "ma20", "column": "close", "dir": "/data", "window": 20}));
    assert_eq!(p.settings.workers, 2);
    // CSV columns keep file order (not sorted): `t` before `close`.
    let sluice_core::spec::FormatSpec::Csv(csv) = &dir.format else { panic!("csv") };
    let names: Vec<&str> = csv.columns.as_ref().unwrap().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["t", "close"]);
}

#[test]
fn every_problem_in_one_pass_with_positions() {
    let text = "\
pipeline: p
sourcs: {}
sources:
  s:
    path: ./x
    format: {csv: {header: nope}}
steps:
  - plugin: sma
    on_eror: fail
  - plugin: select
    on_error: dead-letter
sink: {lake: ./lake}
settings: {workers: four}
";
    let errs = errors(text);
    assert_eq!(
        errs,
        vec![
            "p.yaml:2:1: unknown key `sourcs` at the top level\n  hint: did you mean `sources`?",
            "p.yaml:6:28: `sources.s.format.csv.header`: expected `true` or `false`, found the string `nope`",
            "p.yaml:9:5: unknown key `on_eror` in `steps[0]`\n  hint: did you mean `on_error`?",
            "p.yaml:11:15: `steps[1].on_error`: `dead-letter` is not one of `fail`, `skip_file`, `dead_letter`\n  hint: did you mean `dead_letter`?",
            "p.yaml:12:7: missing required key `dataset` in `sink`\n  hint: `dataset`: The dataset's name: letters, digits, `_` or `-`, not starting with `_`.",
            "p.yaml:13:21: `settings.workers`: expected a whole number (0 or more), found the string `four`",
        ],
        "{errs:#?}"
    );
}

#[test]
fn undeclared_and_unset_variables_point_at_the_use() {
    let text = "pipeline: p\nenv: [DIR, UNSET]\nsources:\n  s: {path: \"a/${DRI}/b\", format: {csv: {}}}\nsink: {lake: \"${UNSET}\", dataset: d}\n";
    assert_eq!(
        errors(text),
        vec![
            "p.yaml:4:16: `${DRI}` uses an undeclared environment variable\n  hint: did you mean `DIR`? Only variables declared in `env:` may be used",
            "p.yaml:5:15: environment variable `UNSET` is not set and has no default\n  hint: set it, or declare a default: `env: [{UNSET: value}]`",
        ]
    );
}

#[test]
fn multi_document_files_and_value_checks() {
    let text = "pipeline: a\nsources: {s: {path: x, format: {csv: {}}}}\nsink: {lake: l, dataset: a}\n---\npipeline: b\nsources: {s: {path: x, format: {csv: {columns: {c: flaot64}}}}}\nsink: {lake: l, dataset: b, zstd_level: 30}\n";
    assert_eq!(
        errors(text),
        vec![
            "p.yaml:6:52: sources.s.format.csv.columns.c: unknown type `flaot64`\n  hint: did you mean `float64`?",
            "p.yaml:7:41: sink.zstd_level must be between 1 and 22",
        ]
    );
    let two = text.replace("flaot64", "float64").replace(", zstd_level: 30", "");
    assert_eq!(parse_str(&two, Path::new("p.yaml"), &|_| None).unwrap().len(), 2);
}

#[test]
fn yaml_syntax_errors_are_located() {
    let errs = errors("pipeline: p\nsources: [a, b\nsink: {}\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("p.yaml:"), "{errs:?}");
    assert!(errs[0].contains("invalid YAML"), "{errs:?}");
}

#[test]
fn the_schema_describes_the_language() {
    let s = sluice_config::json_schema();
    let props = s["properties"].as_object().unwrap();
    for k in ["pipeline", "env", "sources", "steps", "sink", "settings"] {
        assert!(props.contains_key(k), "{k}");
    }
    assert!(s["required"].as_array().unwrap().contains(&"sink".into()));
}

#[test]
fn source_limits_on_records_and_compression_ratio() {
    let with = |limits: &str| {
        format!(
            "pipeline: p\nsources:\n  s: {{path: x, format: {{csv: {{}}}}, limits: {limits}}}\nsink: {{lake: l, dataset: d}}\n"
        )
    };
    let specs = parse_str(&with("{max_record_bytes: 64MiB, max_ratio: 5000}"), Path::new("p.yaml"), &|_| None).unwrap();
    let limits = specs[0].sources[0].config_as::<DirSpec>().unwrap().limits;
    assert_eq!((limits.max_record_bytes, limits.max_ratio, limits.max_members), (64 << 20, 5000, 100_000));
    let defaults = parse_str(&with("{}"), Path::new("p.yaml"), &|_| None).unwrap()[0].sources[0]
        .config_as::<DirSpec>()
        .unwrap()
        .limits;
    assert_eq!((defaults.max_record_bytes, defaults.max_ratio), (8 << 20, 100));
    assert_eq!(
        errors(&with("{max_record_bytes: 2GiB, max_ratio: 0}")),
        vec![
            "p.yaml:3:62: limits.max_record_bytes: `2GiB` is more than 1GiB\n  hint: one record is held in memory whole; e.g. `64MiB`",
            "p.yaml:3:79: limits.max_ratio must be at least 1\n  hint: e.g. `1000` for 1000:1",
        ]
    );
    assert!(errors(&with("{max_record_bytes: lots}"))[0].contains("limits.max_record_bytes: `lots` is not a size"));
}

#[test]
fn steps_alone_resolve_from_a_pipeline_file_or_a_steps_map() {
    use sluice_config::parse_steps;
    // A whole pipeline: its sources and sink are ignored, so `DIR` (used only there) need not be
    // set; the steps' own `${SET}` must be.
    let env = |k: &str| (k == "SET").then(|| "/data".to_string());
    let steps = parse_steps(
        &GOOD.replace("./d}", "~}").replace("[SET, {DIR: ~}]", "[SET, DIR]"),
        Path::new("dir/p.yaml"),
        &env,
    )
    .unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].name, "sma");
    assert!(steps[0].config_json.contains("\"/data\""), "{}", steps[0].config_json);
    assert_eq!(steps[0].limits.timeout, std::time::Duration::from_secs(2));
    // A steps map (what the Python package writes for a list of step dicts), as JSON.
    let text = r#"{"steps": [{"plugin": "x/y.wasm", "name": "mine"}, {"plugin": "sma", "config": {"window": 3}}]}"#;
    let steps = parse_steps(text, Path::new("base/<steps>"), &|_| None).unwrap();
    assert_eq!(steps[0].plugin, sluice_core::spec::PluginRef::Path("base/x/y.wasm".into()));
    assert_eq!(steps[1].name, "sma");
    // Errors keep their positions, all in one pass.
    let bad = "steps:\n  - plugin: sma\n    limts: {}\n  - name: x\n";
    let Err(ConfigErrors(es)) = parse_steps(bad, Path::new("s.yaml"), &|_| None) else { panic!("accepted") };
    let es: Vec<String> = es.iter().map(|e| e.to_string()).collect();
    assert!(es.iter().any(|e| e.starts_with("s.yaml:3:5")), "{es:?}");
    assert!(es.iter().any(|e| e.starts_with("s.yaml:4:")), "{es:?}");
    // An undeclared variable in a step is an error; one only the source uses is not.
    let Err(ConfigErrors(es)) =
        parse_steps("steps: [{plugin: sma, config: {x: '${NOPE}'}}]", Path::new("s.yaml"), &|_| None)
    else {
        panic!("accepted")
    };
    assert!(es[0].to_string().contains("undeclared"), "{es:?}");
}
