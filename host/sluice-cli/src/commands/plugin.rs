//! `sluice plugin list|inspect|new|test`: the standard plugins, and tools for plugin authors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{Schema, SchemaRef};
use sluice_core::plugin::PluginRuntime;
use sluice_core::spec::{Limits, PluginRef};

use crate::Exit;
use crate::cli::{Global, PluginCommand, PluginNewArgs, PluginTestArgs};

pub fn plugin(cmd: PluginCommand, g: &Global) -> Result<u8, Exit> {
    match cmd {
        PluginCommand::New(a) => return new(&a),
        PluginCommand::Test(a) => return test(&a, g),
        _ => {}
    }
    let rt = crate::context::runtime(g.plugin_dir.clone())?;
    match cmd {
        PluginCommand::List => {
            for name in rt.builtin_names() {
                match rt.load(&PluginRef::Named(name.clone())) {
                    Ok(p) => println!("{:<14} {:<8} {}", name, p.info().version, p.info().summary),
                    Err(e) => println!("{name:<14} (cannot load: {e})"),
                }
            }
        }
        PluginCommand::Inspect { plugin } => {
            let p = rt.load(&plugin_ref(&plugin)).map_err(Exit::config)?;
            let i = p.info();
            println!(
                "name:     {}\nversion:  {}\ncontract: {}\nsummary:  {}\n",
                i.name, i.version, i.contract, i.summary
            );
            println!("{}", if i.config_doc.is_empty() { "(no config documentation)" } else { &i.config_doc });
        }
        PluginCommand::New(_) | PluginCommand::Test(_) => unreachable!("handled above"),
    }
    Ok(0)
}

fn plugin_ref(plugin: &str) -> PluginRef {
    if plugin.ends_with(".wasm") || plugin.contains('/') {
        PluginRef::Path(PathBuf::from(plugin))
    } else {
        PluginRef::Named(plugin.to_string())
    }
}

/// The plugin template, embedded: (path in the new crate, contents).
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../template/Cargo.toml.tmpl")),
    ("README.md", include_str!("../../template/README.md.tmpl")),
    (".gitignore", include_str!("../../template/gitignore.tmpl")),
    ("src/lib.rs", include_str!("../../template/src/lib.rs.tmpl")),
    ("tests/fixtures/input.csv", include_str!("../../template/tests/fixtures/input.csv")),
    ("tests/fixtures/expected.csv", include_str!("../../template/tests/fixtures/expected.csv")),
    ("tests/fixtures/config.yaml", include_str!("../../template/tests/fixtures/config.yaml")),
];

/// `sluice plugin new NAME [--dir DIR] [--sdk PATH]`.
fn new(args: &PluginNewArgs) -> Result<u8, Exit> {
    let name = &args.name;
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(Exit::config(anyhow::anyhow!(
            "plugin name `{name}`: use lowercase letters, digits, `-` and `_`, starting with a letter"
        )));
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Exit::config(anyhow::anyhow!("{} already exists and is not empty", dir.display())));
    }
    let sdk = match &args.sdk {
        Some(p) => p.clone(),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/sluice-plugin")),
    };
    let sdk = sdk.canonicalize().map_err(|e| {
        Exit::config(anyhow::anyhow!(
            "the plugin SDK {} is not there ({e}); pass --sdk PATH to a Sluice checkout's plugins/sluice-plugin",
            sdk.display()
        ))
    })?;
    let camel: String = name
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    for (rel, text) in TEMPLATE {
        let text =
            text.replace("{{name}}", name).replace("{{Camel}}", &camel).replace("{{sdk}}", &sdk.display().to_string());
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("template paths have a parent"))
            .with_context(|| format!("creating {}", path.parent().unwrap_or(&dir).display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    // Start from the standard plugins' lock file: the same dependency versions, already compiled.
    let lock = sdk.parent().map(|p| p.join("Cargo.lock"));
    if let Some(lock) = lock.filter(|l| l.is_file()) {
        let to = dir.join("Cargo.lock");
        std::fs::copy(&lock, &to).with_context(|| format!("copying {} to {}", lock.display(), to.display()))?;
    }
    println!("created plugin `{name}` in {}", dir.display());
    println!("next: cd {} && cargo test; then see its README.md to build and `sluice plugin test` it", dir.display());
    Ok(0)
}

/// `sluice plugin test PLUGIN --config C --input FILE --expect FILE`.
fn test(args: &PluginTestArgs, g: &Global) -> Result<u8, Exit> {
    let config_text = match args.config.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}")).map_err(Exit::config)?,
        None => args.config.clone(),
    };
    let config = sluice_config::yaml_value(&config_text)
        .map_err(|e| Exit::config(anyhow::anyhow!("--config: not JSON or YAML: {e}")))?;
    let (in_schema, input) = read_batches(&args.input, None).map_err(Exit::config)?;

    let rt = crate::context::runtime(g.plugin_dir.clone())?;
    let plugin = rt.load(&plugin_ref(&args.plugin)).map_err(Exit::config)?;
    let mut tables = Vec::new();
    for t in &args.tables {
        let Some((name, path)) = t.split_once('=') else {
            return Err(Exit::config(anyhow::anyhow!("--table `{t}`: expected NAME=FILE")));
        };
        let path = std::path::PathBuf::from(path);
        let format = sluice_core::spec::TableFormat::of(&path)
            .ok_or_else(|| Exit::config(anyhow::anyhow!("--table `{t}`: the file must be .csv or .parquet")))?;
        let spec = sluice_core::spec::TableSpec { name: name.to_string(), path, format };
        tables
            .push(std::sync::Arc::new(sluice_source::read_table(&spec).map_err(|e| Exit::config(anyhow::anyhow!(e)))?));
    }
    let mut h =
        plugin.instantiate_with_tables(&config.to_string(), &tables, &Limits::default()).map_err(Exit::config)?;
    let out_schema = h.output_schema(&in_schema).map_err(Exit::config)?;
    let mut output = Vec::new();
    for b in &input {
        output.extend(h.process(b).map_err(Exit::data)?);
    }
    output.extend(h.finish().map_err(Exit::data)?);

    let (want_schema, want) = match read_batches(&args.expect, Some(&out_schema)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("mismatch: the expected rows do not fit the plugin's output schema: {e:#}");
            eprintln!("output schema: {}", schema_line(&out_schema));
            return Ok(crate::EXIT_DATA);
        }
    };
    let diff = diff_batches(&out_schema, &output, &want_schema, &want)?;
    if diff.is_empty() {
        println!("ok: {} rows match {}", rows(&output), args.expect.display());
        Ok(0)
    } else {
        eprintln!("mismatch between the plugin's output (+) and {} (-):", args.expect.display());
        for line in diff {
            eprintln!("{line}");
        }
        Ok(crate::EXIT_DATA)
    }
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Read a .csv (with a header; typed by `schema` when given, else inferred) or .parquet file.
fn read_batches(path: &Path, schema: Option<&SchemaRef>) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    match ext.as_str() {
        "csv" => {
            let schema = match schema {
                Some(s) => {
                    // The header must name the schema's columns, in order.
                    let mut header = String::new();
                    std::io::BufRead::read_line(&mut std::io::BufReader::new(open()?), &mut header)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let names: Vec<&str> = header.trim_end().split(',').collect();
                    let want: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
                    if names != want {
                        bail!(
                            "{}: header `{}` is not the output columns `{}`",
                            path.display(),
                            names.join(","),
                            want.join(",")
                        );
                    }
                    s.clone()
                }
                None => {
                    let (s, _) = arrow_csv::reader::Format::default()
                        .with_header(true)
                        .infer_schema(open()?, Some(10_000))
                        .with_context(|| format!("inferring the schema of {}", path.display()))?;
                    Arc::new(s)
                }
            };
            let reader =
                arrow_csv::ReaderBuilder::new(schema.clone()).with_header(true).build(open()?).context("csv reader")?;
            let batches =
                reader.collect::<Result<Vec<_>, _>>().with_context(|| format!("reading {}", path.display()))?;
            Ok((schema, batches))
        }
        "parquet" => {
            let batches = sluice_lake::ParquetBatches::open(open()?, 65_536)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let schema = batches.schema();
            let batches =
                batches.collect::<Result<Vec<_>, _>>().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok((schema, batches))
        }
        _ => bail!("{}: use a .csv (with a header) or .parquet file", path.display()),
    }
}

fn schema_line(s: &Schema) -> String {
    s.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// Every row as text cells.
fn render(batches: &[RecordBatch]) -> anyhow::Result<Vec<String>> {
    let opts = FormatOptions::default().with_null("null");
    let mut out = Vec::new();
    for b in batches {
        let fmts =
            b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let cells: Vec<String> = fmts.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join(", "));
        }
    }
    Ok(out)
}

/// A readable diff: the schemas, then the rows that differ (at most 20), by row number.
fn diff_batches(
    got_schema: &Schema,
    got: &[RecordBatch],
    want_schema: &Schema,
    want: &[RecordBatch],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let (gs, ws) = (schema_line(got_schema), schema_line(want_schema));
    if gs != ws {
        out.push(format!("- schema: {ws}"));
        out.push(format!("+ schema: {gs}"));
    }
    let (g, w) = (render(got)?, render(want)?);
    if g.len() != w.len() {
        out.push(format!("rows: expected {}, got {}", w.len(), g.len()));
    }
    let mut shown = 0;
    for i in 0..g.len().max(w.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a == b {
            continue;
        }
        shown += 1;
        if shown > 20 {
            out.push("... (more rows differ)".into());
            break;
        }
        out.push(format!("- row {i}: {}", a.map_or("(none)", String::as_str)));
        out.push(format!("+ row {i}: {}", b.map_or("(none)", String::as_str)));
    }
    Ok(out)
}
