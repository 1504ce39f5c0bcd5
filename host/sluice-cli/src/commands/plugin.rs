//! `sluice plugin list|inspect|new|build|test`: the standard plugins, and tools for plugin
//! authors, which work without a Sluice checkout: the templates and the Python SDK are embedded,
//! the Rust SDK is a crate dependency, and the build routes are `sluice_toolchain`'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{Schema, SchemaRef};
use sluice_core::plugin::PluginRuntime;
use sluice_core::spec::{Limits, PluginRef};

use crate::Exit;
use crate::cli::{Global, PluginBuildArgs, PluginCommand, PluginLang, PluginNewArgs, PluginTestArgs};

pub fn plugin(cmd: PluginCommand, g: &Global) -> Result<u8, Exit> {
    match cmd {
        PluginCommand::New(a) => return new(&a),
        PluginCommand::Build(a) => return build(&a),
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
            let sdk = if i.sdk.is_empty() { "(not recorded)" } else { &i.sdk };
            println!(
                "name:     {}\nversion:  {}\ncontract: {} (this host implements {}@{})\nsdk:      {sdk}\nhash:     {}\nsummary:  {}\n",
                i.name,
                i.version,
                i.contract,
                sluice_wasm::CONTRACT_PACKAGE,
                sluice_wasm::CONTRACT_VERSION,
                i.component_hash,
                i.summary
            );
            println!("{}", if i.config_doc.is_empty() { "(no config documentation)" } else { &i.config_doc });
        }
        PluginCommand::New(_) | PluginCommand::Build(_) | PluginCommand::Test(_) => unreachable!("handled above"),
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

/// The templates, embedded: (path in the new plugin, contents). The fixtures are shared: the
/// Rust and the Python template are the same handler.
const FIXTURES: &[(&str, &str)] = &[
    ("tests/fixtures/input.csv", include_str!("../../template/tests/fixtures/input.csv")),
    ("tests/fixtures/expected.csv", include_str!("../../template/tests/fixtures/expected.csv")),
    ("tests/fixtures/config.yaml", include_str!("../../template/tests/fixtures/config.yaml")),
];
const RUST_TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../template/Cargo.toml.tmpl")),
    ("README.md", include_str!("../../template/README.md.tmpl")),
    (".gitignore", include_str!("../../template/gitignore.tmpl")),
    ("src/lib.rs", include_str!("../../template/src/lib.rs.tmpl")),
];
const PYTHON_TEMPLATE: &[(&str, &str)] = &[
    // A real Python file (its tests import it): `plugin new` renames `scale` and `Scale`.
    ("app.py", include_str!("../../template/python/app.py")),
    ("README.md", include_str!("../../template/python/README.md.tmpl")),
    (".gitignore", include_str!("../../template/gitignore.tmpl")),
];

/// The SDK crate version the Rust template depends on (the one this `sluice` was built beside).
const RUST_SDK_VERSION: &str = env!("SLUICE_PLUGIN_SDK_VERSION");

/// `sluice plugin new NAME [--dir DIR] [--lang rust|python] [--sdk PATH]`.
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
    let camel: String = name
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let (template, patch, sdk_version, lock) = match args.lang {
        PluginLang::Rust => {
            let sdk = sdk_source(args.sdk.as_deref())?;
            if !sdk.local {
                eprintln!(
                    "note: the plugin depends on sluice-plugin {} from crates.io; `--sdk PATH` builds against a \
                     local copy instead (see Cargo.toml)",
                    sdk.version
                );
            }
            (RUST_TEMPLATE, sdk.patch, sdk.version, sdk.lock)
        }
        PluginLang::Python => {
            if args.sdk.is_some() {
                return Err(Exit::config(anyhow::anyhow!(
                    "--sdk is for Rust plugins: the Python SDK is built into `sluice plugin build`"
                )));
            }
            (PYTHON_TEMPLATE, String::new(), String::new(), None)
        }
    };
    // `plugin build` names a Python plugin's component after its directory.
    let wasm = match args.lang {
        PluginLang::Rust => format!("{name}.wasm"),
        PluginLang::Python => {
            let abs = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
            format!("{}.wasm", abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name.clone()))
        }
    };
    for (rel, text) in template.iter().chain(FIXTURES) {
        let text = if *rel == "app.py" {
            text.replace("class Scale(", &format!("class {camel}("))
                .replace("export(Scale)", &format!("export({camel})"))
                .replace("name = \"scale\"", &format!("name = \"{name}\""))
                .replace("`scale`:", &format!("`{name}`:"))
        } else {
            text.to_string()
        };
        let text = text
            .replace("{{name}}", name)
            .replace("{{Camel}}", &camel)
            .replace("{{sdk_version}}", &sdk_version)
            .replace("{{wasm}}", &wasm)
            .replace("{{patch}}", &patch);
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("template paths have a parent"))
            .with_context(|| format!("creating {}", path.parent().unwrap_or(&dir).display()))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    // Start from the standard plugins' lock file: the same dependency versions, already compiled.
    if let Some(lock) = lock {
        let to = dir.join("Cargo.lock");
        std::fs::copy(&lock, &to).with_context(|| format!("copying {} to {}", lock.display(), to.display()))?;
    }
    println!(
        "created {} plugin `{name}` in {}",
        if args.lang == PluginLang::Rust { "Rust" } else { "Python" },
        dir.display()
    );
    let d = dir.display();
    match args.lang {
        PluginLang::Rust => {
            println!("next: cd {d} && cargo test && sluice plugin build && sluice plugin test ... (see README.md)")
        }
        PluginLang::Python => println!("next: cd {d} && sluice plugin build && sluice plugin test ... (see README.md)"),
    }
    Ok(0)
}

/// Where a Rust plugin's SDK comes from: the text for the template's `{{patch}}`, the SDK
/// version to depend on, and a lock file to start from.
struct SdkSource {
    /// Whether the patch points at local crates (else it is left commented out).
    local: bool,
    patch: String,
    version: String,
    lock: Option<PathBuf>,
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `version = "..."` of a crate's `[package]` (a plain scan of its Cargo.toml).
fn package_version(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(v) = line.strip_prefix("version") {
            let v = v.trim_start().strip_prefix('=')?.split('#').next()?.trim();
            return Some(v.trim_matches(['"', '\'']).to_string()).filter(|v| !v.is_empty());
        }
    }
    None
}

/// The `[patch.crates-io]` section that points the template's `sluice-plugin` (and the
/// `sluice-contract` it depends on) at local crates, and a lock file to start from. With no
/// `--sdk`, a `sluice` built from a checkout uses that checkout's SDK; an installed one depends
/// on the published crate, with the patch left commented out.
fn sdk_source(sdk: Option<&Path>) -> Result<SdkSource, Exit> {
    let checkout = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/sluice-plugin"));
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None if checkout.join("Cargo.toml").is_file() => checkout,
        None => {
            return Ok(SdkSource {
                local: false,
                patch: "\n# Development: to build against local SDK crates (a Sluice checkout, or unpacked \
                        .crate files)\n# instead of the published ones, uncomment and fill in:\n\
                        # [patch.crates-io]\n# sluice-plugin = { path = \"/path/to/sluice/plugins/sluice-plugin\" }\n\
                        # sluice-contract = { path = \"/path/to/sluice/sluice-contract\" }\n"
                    .into(),
                version: RUST_SDK_VERSION.to_string(),
                lock: None,
            });
        }
    };
    let sdk = sdk.canonicalize().map_err(|e| {
        Exit::config(anyhow::anyhow!(
            "--sdk {}: {e}; give the sluice-plugin crate's directory (a Sluice checkout's \
             plugins/sluice-plugin, or an unpacked sluice-plugin-*.crate)",
            sdk.display()
        ))
    })?;
    let Some(version) = package_version(&sdk.join("Cargo.toml")) else {
        return Err(Exit::config(anyhow::anyhow!(
            "--sdk {}: no Cargo.toml with a [package] version there; give the sluice-plugin crate's directory",
            sdk.display()
        )));
    };
    // The contract crate: a checkout's sluice-contract, or the unpacked sluice-contract of the
    // same version beside the SDK's (their versions move together).
    let parent = sdk.parent().unwrap_or(&sdk);
    let in_checkout = parent.parent().map(|p| p.join("sluice-contract")).filter(|p| p.join("Cargo.toml").is_file());
    let unpacked = parent.join(format!("sluice-contract-{version}"));
    let contract = match in_checkout {
        Some(c) => c,
        None if unpacked.join("Cargo.toml").is_file() => unpacked,
        None => {
            return Err(Exit::config(anyhow::anyhow!(
                "--sdk {}: the sluice-contract crate it depends on is not beside it (a checkout's \
                 sluice-contract, or an unpacked sluice-contract-{version}.crate: {})",
                sdk.display(),
                unpacked.display()
            )));
        }
    };
    let patch = format!(
        "\n# Development: build against local SDK crates instead of the published ones.\n[patch.crates-io]\n\
         sluice-plugin = {{ path = {} }}\nsluice-contract = {{ path = {} }}\n",
        toml_string(&sdk.display().to_string()),
        toml_string(&contract.display().to_string())
    );
    // A lock file to start from: the packaged crate's own, or a checkout's plugins/Cargo.lock.
    let own = sdk.join("Cargo.lock");
    let workspace = parent.join("Cargo.lock");
    let lock = if own.is_file() {
        Some(own)
    } else {
        Some(workspace).filter(|l| l.is_file() && parent.join("Cargo.toml").is_file())
    };
    Ok(SdkSource { local: true, patch, version, lock })
}

/// `sluice plugin build [DIR] [--out FILE] [--target-dir DIR]`.
fn build(args: &PluginBuildArgs) -> Result<u8, Exit> {
    use sluice_toolchain::{BuildError, Language};
    let lang = Language::of(&args.dir).map_err(Exit::config)?;
    let built = match lang {
        Language::Rust => {
            sluice_toolchain::rust::build_crate(&args.dir, args.out.as_deref(), args.target_dir.as_deref())
        }
        Language::Python => sluice_toolchain::python::build(&args.dir, args.out.as_deref()),
    };
    let built = built.map_err(|e| match e {
        BuildError::NoToolchain(_) | BuildError::NotAPlugin(_) => Exit::config(e),
        _ => Exit::data(e),
    })?;
    println!(
        "built {} ({} bytes) -> {} in {:.1}s via {}",
        built.name,
        built.bytes,
        built.path.display(),
        built.seconds,
        built.route
    );
    Ok(0)
}

/// `sluice plugin test PLUGIN --config C --input FILE... --expect FILE... [--state]`.
fn test(args: &PluginTestArgs, g: &Global) -> Result<u8, Exit> {
    let config_text = match args.config.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}")).map_err(Exit::config)?,
        None => args.config.clone(),
    };
    let config = sluice_config::yaml_value(&config_text)
        .map_err(|e| Exit::config(anyhow::anyhow!("--config: not JSON or YAML: {e}")))?;
    if args.expect.len() != 1 && args.expect.len() != args.input.len() {
        return Err(Exit::config(anyhow::anyhow!(
            "{} --expect files for {} --input files: give one per input, or one for all of them",
            args.expect.len(),
            args.input.len()
        )));
    }
    // With --state one instance sees every input: the later ones are read with the first's
    // schema, as a pipeline's source gives each file the same columns.
    let mut inputs: Vec<(SchemaRef, Vec<RecordBatch>)> = Vec::new();
    for path in &args.input {
        let schema = if args.state { inputs.first().map(|(s, _)| s.clone()) } else { None };
        inputs.push(read_batches(path, schema.as_ref()).map_err(Exit::config)?);
    }

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
    let instantiate =
        || plugin.instantiate_with_tables(&config.to_string(), &tables, &Limits::default()).map_err(Exit::config);
    // Each input is a unit: a fresh instance, or with --state the same one, finished after each.
    let mut shared = if args.state { Some(instantiate()?) } else { None };
    let mut outputs: Vec<(SchemaRef, Vec<RecordBatch>)> = Vec::new();
    for ((in_schema, input), path) in inputs.iter().zip(&args.input) {
        let mut fresh;
        let h = match shared.as_mut() {
            Some(h) => h,
            None => {
                fresh = instantiate()?;
                &mut fresh
            }
        };
        let at = |e| Exit::data(anyhow::anyhow!("{}: {e}", path.display()));
        let out_schema = h.output_schema(in_schema).map_err(Exit::config)?;
        let mut output = Vec::new();
        for b in input {
            output.extend(h.process(b).map_err(at)?);
        }
        output.extend(h.finish().map_err(at)?);
        outputs.push((out_schema, output));
    }
    // One expectation for all inputs: their outputs together.
    if args.expect.len() == 1 && outputs.len() > 1 {
        let schema = outputs[0].0.clone();
        let all = outputs.drain(..).flat_map(|(_, b)| b).collect();
        outputs.push((schema, all));
    }

    let mut failed = false;
    for ((out_schema, output), expect) in outputs.iter().zip(&args.expect) {
        let (want_schema, want) = match read_batches(expect, Some(out_schema)) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("mismatch: {} does not fit the plugin's output schema: {e:#}", expect.display());
                eprintln!("output schema: {}", schema_line(out_schema));
                failed = true;
                continue;
            }
        };
        let diff = diff_batches(out_schema, output, &want_schema, &want)?;
        if diff.is_empty() {
            println!("ok: {} rows match {}", rows(output), expect.display());
        } else {
            eprintln!("mismatch between the plugin's output and {}:", expect.display());
            for line in diff {
                eprintln!("{line}");
            }
            failed = true;
        }
    }
    Ok(if failed { crate::EXIT_DATA } else { 0 })
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Read a .csv (with a header), .jsonl/.ndjson (JSON lines) or .parquet file; typed by `schema`
/// when given (the plugin's output schema, for expected rows), else inferred (inputs).
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
        "jsonl" | "ndjson" => {
            let schema = match schema {
                Some(s) => s.clone(),
                None => {
                    let mut r = std::io::BufReader::new(open()?);
                    let (s, _) = arrow_json::reader::infer_json_schema(&mut r, Some(10_000))
                        .with_context(|| format!("inferring the schema of {}", path.display()))?;
                    Arc::new(s)
                }
            };
            let reader = arrow_json::ReaderBuilder::new(schema.clone())
                .with_strict_mode(true)
                .build(std::io::BufReader::new(open()?))
                .context("json reader")?;
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
        _ => bail!("{}: use a .csv (with a header), .jsonl (JSON lines) or .parquet file", path.display()),
    }
}

fn schema_line(s: &Schema) -> String {
    s.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// Every row as text cells.
fn render(batches: &[RecordBatch]) -> anyhow::Result<Vec<Vec<String>>> {
    let opts = FormatOptions::default().with_null("null");
    let mut out = Vec::new();
    for b in batches {
        let fmts =
            b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            out.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    Ok(out)
}

/// A readable diff: the schemas when they differ, then each row that differs (at most 20) by
/// row number, column and value: `row 1, column close: expected 9.0, got 2.5`, with the whole
/// rows beneath.
fn diff_batches(
    got_schema: &Schema,
    got: &[RecordBatch],
    want_schema: &Schema,
    want: &[RecordBatch],
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let (gs, ws) = (schema_line(got_schema), schema_line(want_schema));
    if gs != ws {
        out.push(format!("schema: expected {ws}"));
        out.push(format!("        got      {gs}"));
    }
    let names: Vec<&str> = got_schema.fields().iter().map(|f| f.name().as_str()).collect();
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
        match (a, b) {
            (Some(a), Some(b)) => {
                for (c, (x, y)) in a.iter().zip(b).enumerate() {
                    if x != y {
                        let name = names.get(c).copied().unwrap_or("?");
                        out.push(format!("row {i}, column {name}: expected {x}, got {y}"));
                    }
                }
                out.push(format!("  - expected row {i}: {}", a.join(", ")));
                out.push(format!("  + got      row {i}: {}", b.join(", ")));
            }
            (Some(a), None) => out.push(format!("row {i}: expected {}, got no row", a.join(", "))),
            (None, Some(b)) => out.push(format!("row {i}: expected no row, got {}", b.join(", "))),
            (None, None) => {}
        }
    }
    Ok(out)
}
