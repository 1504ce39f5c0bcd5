//! Resolution: raw YAML types into validated specs, collecting every error in one pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow_schema::{DataType, TimeUnit};
use serde::Deserialize;
use sluice_core::spec::*;

use crate::error::{ConfigError, ConfigErrors};
use crate::raw::*;
use crate::units::{parse_duration, parse_size};

/// Load every pipeline in a file, or in every `*.yaml`/`*.yml` file of a directory.
pub fn load_path(path: &Path) -> Result<Vec<PipelineSpec>, ConfigErrors> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| io_error(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        let mut errs = Vec::new();
        for f in files {
            match load_file(&f) {
                Ok(p) => out.extend(p),
                Err(e) => errs.extend(e.0),
            }
        }
        if errs.is_empty() { Ok(out) } else { Err(ConfigErrors(errs)) }
    } else {
        load_file(path)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> ConfigErrors {
    ConfigErrors(vec![ConfigError { file: path.to_path_buf(), line: 0, column: 0, message: e.to_string(), hint: None }])
}

/// Load every pipeline document in one file, taking `${VAR}` values from the process environment.
pub fn load_file(path: &Path) -> Result<Vec<PipelineSpec>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    parse_str(&text, path, &|k| std::env::var(k).ok())
}

/// Parse pipeline documents (separated by `---`) from text that came from `file`.
pub fn parse_str(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PipelineSpec>, ConfigErrors> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        match RawPipeline::deserialize(doc) {
            Ok(raw) => {
                let mut r = Resolver { file, text, env, errs: Vec::new(), declared: HashMap::new() };
                let spec = r.pipeline(raw);
                errs.extend(r.errs);
                out.extend(spec);
            }
            Err(e) => errs.push(yaml_error(file, &e)),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(ConfigErrors(errs)) }
}

const TOP_KEYS: &[&str] = &["pipeline", "env", "sources", "steps", "sink", "settings"];

fn yaml_error(file: &Path, e: &yaml_serde::Error) -> ConfigError {
    let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let message = e.to_string();
    // serde reports unknown keys as "unknown field `x`, expected one of `a`, `b`".
    let hint = message.split_once("unknown field `").and_then(|(_, rest)| {
        let (bad, rest) = rest.split_once('`')?;
        let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let candidates = if expected.is_empty() { TOP_KEYS.to_vec() } else { expected };
        closest(bad, &candidates).map(|c| format!("did you mean `{c}`?"))
    });
    let message = message.split(" at line ").next().unwrap_or(&message).to_string();
    ConfigError { file: file.to_path_buf(), line, column, message, hint }
}

/// The closest candidate within a small edit distance.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().map(|c| (distance(word, c), *c)).filter(|(d, c)| *d <= 2.max(c.len() / 3)).min().map(|(_, c)| c)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

struct Resolver<'a> {
    file: &'a Path,
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    errs: Vec<ConfigError>,
    declared: HashMap<String, Option<String>>,
}

impl Resolver<'_> {
    /// Record an error at the first place `needle` appears in the file (best effort).
    fn error(&mut self, needle: &str, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = self
            .text
            .find(needle)
            .map(|at| {
                let before = &self.text[..at];
                let line = before.matches('\n').count() + 1;
                let column = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, column)
            })
            .unwrap_or((0, 0));
        self.errs.push(ConfigError { file: self.file.to_path_buf(), line, column, message: message.into(), hint });
    }

    /// Expand `${VAR}` using only declared variables.
    fn interpolate(&mut self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                self.error(s, format!("unclosed `${{` in `{s}`"), None);
                return s.to_string();
            };
            let name = &rest[start + 2..start + end];
            match self.declared.get(name).cloned() {
                None => {
                    let names: Vec<&str> = self.declared.keys().map(String::as_str).collect();
                    let hint = closest(name, &names)
                        .map(|c| format!("did you mean `{c}`?"))
                        .unwrap_or_else(|| format!("declare it: `env: [{name}]`"));
                    self.error(
                        &format!("${{{name}}}"),
                        format!("`${{{name}}}` uses an undeclared environment variable"),
                        Some(hint),
                    );
                }
                Some(default) => match (self.env)(name).or(default) {
                    Some(v) => out.push_str(&v),
                    None => self.error(
                        &format!("${{{name}}}"),
                        format!("environment variable `{name}` is not set and has no default"),
                        Some(format!("set it, or declare a default: `env: [{{{name}: value}}]`")),
                    ),
                },
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn path(&mut self, s: &str) -> PathBuf {
        let p = PathBuf::from(self.interpolate(s));
        if p.is_absolute() { p } else { self.file.parent().unwrap_or(Path::new(".")).join(p) }
    }

    fn pipeline(&mut self, raw: RawPipeline) -> Option<PipelineSpec> {
        for v in &raw.env {
            match v {
                RawEnvVar::Name(n) => {
                    self.declared.insert(n.clone(), None);
                }
                RawEnvVar::WithDefault(m) => {
                    for (k, d) in m {
                        self.declared.insert(k.clone(), Some(d.clone()));
                    }
                }
            }
        }
        if !valid_name(&raw.pipeline) {
            self.error(
                &raw.pipeline,
                format!("pipeline name `{}` must be letters, digits, `_` or `-`", raw.pipeline),
                None,
            );
        }
        if raw.sources.is_empty() {
            self.error("sources", "a pipeline needs at least one source", None);
        }
        let settings = self.settings(&raw.settings);
        let sources: Vec<SourceSpec> = raw.sources.iter().map(|(name, s)| self.source(name, s)).collect();
        let steps: Vec<StepSpec> = raw.steps.iter().map(|s| self.step(s, &settings.limits)).collect();
        let sink = self.sink(&raw.sink);
        Some(PipelineSpec { name: raw.pipeline, origin: self.file.to_path_buf(), sources, steps, sink, settings })
    }

    fn limits(&mut self, raw: Option<&RawLimits>, base: Limits) -> Limits {
        let mut l = base;
        let Some(raw) = raw else { return l };
        if let Some(t) = &raw.timeout {
            match parse_duration(t) {
                Ok(d) => l.timeout = d,
                Err(e) => self.error(t, format!("limits.timeout: {e}"), None),
            }
        }
        if let Some(m) = &raw.memory {
            match parse_size(m) {
                Ok(b) => l.memory_bytes = b,
                Err(e) => self.error(m, format!("limits.memory: {e}"), None),
            }
        }
        if let Some(o) = &raw.output {
            match parse_size(o) {
                Ok(b) => l.output_bytes = b,
                Err(e) => self.error(o, format!("limits.output: {e}"), None),
            }
        }
        if l.timeout > Duration::from_secs(3600) {
            self.error("timeout", "limits.timeout: at most 1h", None);
        }
        l
    }

    fn settings(&mut self, raw: &RawSettings) -> Settings {
        let mut s = Settings::default();
        if let Some(w) = raw.workers {
            if w == 0 {
                self.error("workers", "settings.workers must be at least 1", None);
            }
            s.workers = w.max(1);
        }
        if let Some(b) = raw.batch_rows {
            if b == 0 {
                self.error("batch_rows", "settings.batch_rows must be at least 1", None);
            }
            s.batch_rows = b.max(1);
        }
        s.limits = self.limits(raw.limits.as_ref(), s.limits);
        s
    }

    fn source(&mut self, name: &str, raw: &RawSource) -> SourceSpec {
        if !valid_name(name) {
            self.error(name, format!("source name `{name}` must be letters, digits, `_` or `-`"), None);
        }
        let include = raw.glob.clone().map(OneOrMany::into_vec).unwrap_or_else(|| vec!["**/*".into()]);
        let include = include.iter().map(|g| self.interpolate(g)).collect();
        let exclude = raw.exclude.clone().map(OneOrMany::into_vec).unwrap_or_default();
        let fields = raw.fields.as_ref().and_then(|f| match FieldsPattern::parse(f) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(f, format!("sources.{name}.fields: {e}"), None);
                None
            }
        });
        let format = match &raw.format {
            RawFormat { csv: Some(c) } => FormatSpec::Csv(self.csv(name, c)),
            RawFormat { csv: None } => {
                self.error(
                    "format",
                    format!("sources.{name}.format: name one format, e.g. `csv: {{header: true}}`"),
                    None,
                );
                FormatSpec::Csv(self.csv(name, &RawCsv::default()))
            }
        };
        if let (Some(p), FormatSpec::Csv(CsvSpec { columns: Some(cols), .. })) = (&fields, &format) {
            for (f, _) in p.fields() {
                if cols.iter().any(|(c, _)| c == f) {
                    self.error(f, format!("sources.{name}: file-name field `{f}` clashes with a CSV column"), None);
                }
            }
        }
        SourceSpec {
            name: name.to_string(),
            path: self.path(&raw.path),
            include,
            exclude,
            fields,
            format,
            order: raw.order.unwrap_or_default(),
        }
    }

    fn single_byte(&mut self, what: &str, v: Option<&String>, default: u8) -> u8 {
        match v {
            None => default,
            Some(s) if s == "\\t" => b'\t',
            Some(s) if s.len() == 1 => s.as_bytes()[0],
            Some(s) => {
                self.error(s, format!("{what} must be a single ASCII character, got `{s}`"), None);
                default
            }
        }
    }

    fn csv(&mut self, source: &str, raw: &RawCsv) -> CsvSpec {
        let columns = raw.columns.as_ref().map(|cols| {
            cols.iter()
                .map(|(name, ty)| {
                    let dt = parse_type(ty).unwrap_or_else(|hint| {
                        self.error(
                            ty,
                            format!("sources.{source}.format.csv.columns.{name}: unknown type `{ty}`"),
                            Some(hint),
                        );
                        DataType::Utf8
                    });
                    (name.clone(), dt)
                })
                .collect()
        });
        CsvSpec {
            header: raw.header.unwrap_or(true),
            delimiter: self.single_byte("delimiter", raw.delimiter.as_ref(), b','),
            quote: self.single_byte("quote", raw.quote.as_ref(), b'"'),
            columns,
            null_tokens: raw.null.clone().unwrap_or_default(),
        }
    }

    fn step(&mut self, raw: &RawStep, defaults: &Limits) -> StepSpec {
        let plugin_text = self.interpolate(&raw.plugin);
        let plugin = if plugin_text.ends_with(".wasm") || plugin_text.contains('/') {
            PluginRef::Path(self.path(&plugin_text))
        } else {
            PluginRef::Named(plugin_text.clone())
        };
        let config = raw.config.clone().map(|v| self.interpolate_json(v)).unwrap_or(serde_json::Value::Null);
        StepSpec {
            name: raw.name.clone().unwrap_or_else(|| match &plugin {
                PluginRef::Named(n) => n.clone(),
                PluginRef::Path(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or(plugin_text),
            }),
            plugin,
            config_json: config.to_string(),
            limits: self.limits(raw.limits.as_ref(), *defaults),
            on_error: raw.on_error.unwrap_or_default(),
        }
    }

    fn interpolate_json(&mut self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.interpolate(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| self.interpolate_json(x)).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, self.interpolate_json(x))).collect()),
            other => other,
        }
    }

    fn sink(&mut self, raw: &RawSink) -> SinkSpec {
        if !valid_name(&raw.dataset) || raw.dataset.starts_with('_') {
            self.error(
                &raw.dataset,
                format!("dataset name `{}` must be letters, digits, `_` or `-`, not starting with `_`", raw.dataset),
                None,
            );
        }
        if raw.mode != WriteMode::Append {
            self.error("mode", format!("sink.mode `{:?}` is not supported yet; use `append`", raw.mode), None);
        }
        let level = raw.zstd_level.unwrap_or(3);
        if !(1..=22).contains(&level) {
            self.error("zstd_level", "sink.zstd_level must be between 1 and 22", None);
        }
        let row_group_rows = raw.row_group_rows.unwrap_or(512 * 1024);
        if row_group_rows == 0 {
            self.error("row_group_rows", "sink.row_group_rows must be at least 1", None);
        }
        SinkSpec {
            lake: self.path(&raw.lake),
            dataset: raw.dataset.clone(),
            partition_by: raw.partition_by.clone(),
            mode: raw.mode,
            compression: raw.compression.unwrap_or_default(),
            zstd_level: level,
            row_group_rows: row_group_rows.max(1),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The column types a CSV schema may declare.
pub const TYPE_NAMES: &[&str] = &[
    "utf8",
    "string",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "bool",
    "date32",
    "timestamp_s",
    "timestamp_ms",
    "timestamp_us",
    "timestamp_ns",
];

pub(crate) fn parse_type(s: &str) -> Result<DataType, String> {
    Ok(match s {
        "utf8" | "string" => DataType::Utf8,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "bool" | "boolean" => DataType::Boolean,
        "date32" | "date" => DataType::Date32,
        "timestamp_s" => DataType::Timestamp(TimeUnit::Second, None),
        "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp_ns" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        other => {
            return Err(match closest(other, TYPE_NAMES) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("types: {}", TYPE_NAMES.join(", ")),
            });
        }
    })
}
