//! `sluice validate`: check pipelines without side effects, reporting every problem in one pass,
//! each at its file:line:column.
//!
//! Beyond the file itself (syntax, keys, types, values, `${VAR}`), and unless
//! `--no-environment`: plugins load, lookup tables read, each step's config passes the plugin's
//! own constructor (given its tables), source directories exist, and the schema flows through the chain (each plugin's declared
//! output schema), so a column a previous step dropped is caught before any data moves. With
//! `--connect`, sources that are servers describe their columns, which then flow through the
//! chain too, and the sink logs in; nothing is written.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use sluice_config::{ConfigError, ConfigErrors, LoadedPipeline};
use sluice_core::error::PluginError;
use sluice_core::plugin::{Plugin, PluginRuntime, WithTables};
use sluice_core::spec::PluginRef;

use crate::Exit;
use crate::cli::{Global, ValidateArgs};

/// What `validate` found: the pipelines that passed (with warnings about what only a run can
/// check) and every error, each at its file:line:column.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: Vec<Passed>,
    pub errors: Vec<ConfigError>,
}

/// A pipeline that passed.
#[derive(Debug)]
pub struct Passed {
    pub name: String,
    pub origin: std::path::PathBuf,
    pub warnings: Vec<String>,
}

pub fn validate(args: &ValidateArgs, g: &Global) -> Result<u8, Exit> {
    let report = report(args, g)?;
    for p in &report.passed {
        println!("ok: pipeline `{}` ({})", p.name, p.origin.display());
        for warning in &p.warnings {
            eprintln!("warning: pipeline `{}`: {warning}", p.name);
        }
    }
    if report.errors.is_empty() {
        return Ok(0);
    }
    let n = report.errors.len();
    eprintln!("{}", ConfigErrors(report.errors));
    eprintln!("{n} error{}", if n == 1 { "" } else { "s" });
    Ok(crate::EXIT_CONFIG)
}

/// Check pipelines as `sluice validate` does, without printing.
pub fn report(args: &ValidateArgs, g: &Global) -> Result<Report, Exit> {
    // Without the environment, unset variables stand for themselves: only the file is checked.
    let no_env = args.no_environment;
    let env = move |k: &str| match std::env::var(k) {
        Ok(v) => Some(v),
        Err(_) if no_env => Some(format!("${{{k}}}")),
        Err(_) => None,
    };
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    let kinds = crate::context::kinds();
    for p in &args.pipelines {
        match sluice_config::load_path_located_with(p, &env, &kinds) {
            Ok(l) => loaded.extend(l),
            Err(e) => errors.extend(e.0),
        }
    }
    let rt = if no_env { None } else { Some(crate::context::runtime(g.plugin_dir.clone())?) };
    let mut passed = Vec::new();
    for lp in &loaded {
        let mut unchecked = Vec::new();
        let found = match &rt {
            Some(rt) => check_environment(lp, rt, args.connect, &mut unchecked),
            None => Vec::new(),
        };
        if found.is_empty() {
            passed.push(Passed { name: lp.spec.name.clone(), origin: lp.spec.origin.clone(), warnings: unchecked });
        }
        errors.extend(found);
    }
    Ok(Report { passed, errors })
}

/// Plugins, step configs, source directories and the schema through the chain. `unchecked`
/// gets a warning per source whose schema is only known once the run reads its files.
fn check_environment(
    lp: &LoadedPipeline,
    rt: &dyn PluginRuntime,
    connect: bool,
    unchecked: &mut Vec<String>,
) -> Vec<ConfigError> {
    let (spec, doc) = (&lp.spec, &lp.doc);
    let mut errs = Vec::new();

    let mut plugins: Vec<Option<Arc<dyn Plugin>>> = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let idx = i.to_string();
        let at = ["steps", idx.as_str(), "plugin"];
        let what = format!("step {} (`{}`)", i + 1, step.name);
        let loaded = match &step.plugin {
            PluginRef::Path(p) if !p.is_file() => {
                errs.push(doc.error(
                    &at,
                    format!("{what}: plugin file {} does not exist", p.display()),
                    Some("a plugin path is relative to the pipeline file; standard plugins go by name".into()),
                ));
                None
            }
            PluginRef::Named(name) if !rt.builtin_names().contains(name) && rt.load(&step.plugin).is_err() => {
                let names = rt.builtin_names();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = match sluice_config::did_you_mean(name, &refs) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("standard plugins: {} (or give a path to a .wasm component)", refs.join(", ")),
                };
                errs.push(doc.error(&at, format!("{what}: unknown plugin `{name}`"), Some(hint)));
                None
            }
            r => match rt.load(r) {
                Ok(p) => Some(p),
                Err(e) => {
                    errs.push(doc.error(&at, format!("{what}: {e}"), None));
                    None
                }
            },
        };
        // Lookup tables: each file exists, is small enough and reads as a table.
        let mut tables = Vec::new();
        let mut tables_ok = true;
        for t in &step.tables {
            match sluice_source::read_table(t) {
                Ok(table) => tables.push(Arc::new(table)),
                Err(e) => {
                    tables_ok = false;
                    errs.push(doc.error(
                        &["steps", idx.as_str(), "tables", t.name.as_str()],
                        format!("{what}: {e}"),
                        Some("a table path is relative to the pipeline file; a table is a CSV file with a header line or a Parquet file".into()),
                    ));
                }
            }
        }
        // A step whose tables do not read cannot be constructed as it will run.
        plugins.push(loaded.filter(|_| tables_ok).map(|p| WithTables::bind(p, tables)));
    }

    // Each source through its kind's connector: checks without side effects, then the source.
    let connectors = crate::context::connectors();
    let checked = connectors.check_sources(spec);
    let finding = |f: &sluice_core::connector::Finding| {
        let at: Vec<&str> = f.path.iter().map(String::as_str).collect();
        doc.error(&at, f.message.clone(), f.hint.clone())
    };
    errs.extend(checked.findings.iter().map(finding));
    unchecked.extend(checked.unchecked);
    let sources = checked.sources;

    // `--connect`: servers describe their sources, and the sink logs in.
    let mut described: Vec<Option<SchemaRef>> = sources.iter().map(|s| s.schema()).collect();
    if connect {
        // Every source is asked, so that a server whose columns are declared (a bucket) is
        // still reached; a declared schema stands.
        for (src, schema) in sources.iter().zip(described.iter_mut()) {
            match src.describe() {
                Ok(_) if schema.is_some() => {}
                Ok(s) => {
                    if s.is_some() {
                        unchecked.retain(|w| !w.contains(&format!("source `{}`", src.name())));
                    }
                    *schema = s;
                }
                Err(e) => errs.push(doc.error(&["sources", src.name()], e.to_string(), None)),
            }
        }
        errs.extend(connectors.probe_sink(spec).iter().map(finding));
    }

    // The schema flowing in: the sources' declared schema, when they declare one and agree.
    let mut schema: Option<SchemaRef> = None;
    let mut schema_known = sources.len() == spec.sources.len();
    for (src, described) in sources.iter().zip(described) {
        match (&schema, described) {
            (None, Some(s)) => schema = Some(s),
            (Some(first), Some(other)) if other.fields() != first.fields() => {
                errs.push(doc.error(
                    &["sources", src.name()],
                    format!("source `{}` yields different columns than source `{}`", src.name(), sources[0].name()),
                    Some("every source of a pipeline must yield the same columns".into()),
                ));
                schema_known = false;
            }
            (_, None) => schema_known = false,
            _ => {}
        }
    }

    // Every step's config through the plugin's constructor; the schema through the chain until
    // it breaks (after that, later steps' input is unknown).
    for (i, (step, plugin)) in spec.steps.iter().zip(&plugins).enumerate() {
        let Some(plugin) = plugin else {
            schema_known = false;
            continue;
        };
        let what = format!("step {} (`{}`)", i + 1, step.name);
        let mut handler = match plugin.instantiate(&step.config_json, &step.limits) {
            Ok(h) => h,
            Err(e) => {
                errs.push(plugin_error(lp, i, &what, &e, None));
                schema_known = false;
                continue;
            }
        };
        if let (true, Some(input)) = (schema_known, &schema) {
            match sluice_core::plugin::next_schema(&mut *handler, input) {
                Ok(out) => schema = Some(out),
                Err(e) => {
                    errs.push(plugin_error(lp, i, &what, &e, Some(input)));
                    schema_known = false;
                }
            }
        }
    }

    if let (true, Some(out)) = (schema_known, &schema) {
        errs.extend(connectors.check_output(spec, out).iter().map(finding));
    }
    errs
}

/// A plugin's complaint about a step, at the config key it names (else the step's `config:`).
fn plugin_error(
    lp: &LoadedPipeline,
    step: usize,
    what: &str,
    e: &PluginError,
    input: Option<&SchemaRef>,
) -> ConfigError {
    let hint = input.map(|s| {
        let cols: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        format!("this step's input columns: {}", cols.join(", "))
    });
    let idx = step.to_string();
    match e {
        PluginError::Config { key, .. } => lp.doc.config_key_error(step, key.as_deref(), format!("{what}: {e}"), hint),
        PluginError::Data { column: Some(c), .. } if lp.doc.contains(&["steps", &idx, "config"]) => {
            // A data error naming a column: point at where the config names that column, if it does.
            let at = find_value(&lp.doc, step, c).unwrap_or_else(|| vec!["steps".into(), idx.clone(), "config".into()]);
            let at: Vec<&str> = at.iter().map(String::as_str).collect();
            lp.doc.error(&at, format!("{what}: {e}"), hint)
        }
        _ => lp.doc.error(&["steps", &idx], format!("{what}: {e}"), hint),
    }
}

/// The path of the first scalar equal to `value` inside step `step`'s config, if any.
fn find_value(doc: &sluice_config::Document, step: usize, value: &str) -> Option<Vec<String>> {
    let config = doc.config_value(step)?;
    fn walk(v: &serde_json::Value, value: &str, path: &mut Vec<String>) -> bool {
        match v {
            serde_json::Value::String(s) => s == value,
            serde_json::Value::Array(a) => a.iter().enumerate().any(|(i, x)| {
                path.push(i.to_string());
                walk(x, value, path) || {
                    path.pop();
                    false
                }
            }),
            serde_json::Value::Object(o) => o.iter().any(|(k, x)| {
                path.push(k.clone());
                walk(x, value, path) || {
                    path.pop();
                    false
                }
            }),
            _ => false,
        }
    }
    let mut path = vec!["steps".to_string(), step.to_string(), "config".to_string()];
    walk(&config, value, &mut path).then_some(path)
}
