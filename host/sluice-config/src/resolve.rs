//! Loading: YAML text into a located tree, the structural check against the raw types' schema,
//! then resolution into validated specs. Every problem is collected in one pass, each located at
//! the offending key or value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow_schema::{DataType, TimeUnit};
use indexmap::IndexMap;
use sluice_core::connector::SinkConfig;
use sluice_core::spec::*;

use crate::check::{Checker, closest};
use crate::error::{ConfigError, ConfigErrors};
use crate::kinds::{Kinds, Section};
use crate::raw::*;
use crate::units::{parse_duration, parse_duration_or_zero, parse_size};
use crate::yaml::{Kind, Node, Pos, Scalar};

/// One pipeline document as written: its file, its text and its located YAML tree. It maps a
/// path of keys (`["steps", "1", "config", "window"]`) back to a line and column.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    text: std::sync::Arc<str>,
    root: Node,
}

/// A resolved pipeline with the document it came from, for locating later errors (plugin
/// configs, schemas) in the file.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub spec: PipelineSpec,
    pub doc: Document,
}

impl Document {
    /// The node at `path`, or the deepest node that exists along it.
    fn deepest(&self, path: &[&str]) -> &Node {
        let mut node = &self.root;
        for seg in path {
            match node.get(seg) {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// The line and column (1-based) of the value at `path`, or of the deepest part of it that
    /// exists.
    pub fn locate(&self, path: &[&str]) -> (usize, usize) {
        let n = self.deepest(path);
        (n.start.line, n.start.column)
    }

    /// Whether the whole path exists in the document.
    pub fn contains(&self, path: &[&str]) -> bool {
        let mut node = &self.root;
        for seg in path {
            match node.get(seg) {
                Some(n) => node = n,
                None => return false,
            }
        }
        true
    }

    /// An error located at the value at `path` (or the deepest part of it that exists).
    pub fn error(&self, path: &[&str], message: impl Into<String>, hint: Option<String>) -> ConfigError {
        let (line, column) = self.locate(path);
        ConfigError { file: self.file.clone(), line, column, message: message.into(), hint }
    }

    /// An error at a plugin's dotted config key (`sma.0.window`) inside step `step`'s `config:`,
    /// or at the step's `config:` (else the step) when the key is not written in the file.
    pub fn config_key_error(
        &self,
        step: usize,
        key: Option<&str>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        let step = step.to_string();
        let mut path = vec!["steps", step.as_str(), "config"];
        if let Some(k) = key {
            path.extend(k.split('.').filter(|s| !s.is_empty()));
        }
        self.error(&path, message, hint)
    }

    /// Step `step`'s config as written (before `${VAR}` expansion), as JSON.
    pub fn config_value(&self, step: usize) -> Option<serde_json::Value> {
        self.root.get("steps")?.get(&step.to_string())?.get("config").map(Node::to_json)
    }

    fn pos_of(&self, path: &[&str], needle: &str) -> Pos {
        let node = self.deepest(path);
        let start = node.start;
        let byte = self.text.char_indices().nth(start.index).map_or(self.text.len(), |(b, _)| b);
        let end_byte = self.text.char_indices().nth(node.end.index).map_or(self.text.len(), |(b, _)| b);
        let hay = &self.text[byte..end_byte.max(byte)];
        let Some(at) = hay.find(needle) else { return start };
        let before = &self.text[..byte + at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        Pos { line, column, index: 0 }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
        hint: None,
    }])
}

/// The pipeline files a path names: itself, or the `*.yaml`/`*.yml` files of a directory, sorted.
fn pipeline_files(path: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| io_error(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Load every pipeline in a file, or in every `*.yaml`/`*.yml` file of a directory.
pub fn load_path(path: &Path) -> Result<Vec<PipelineSpec>, ConfigErrors> {
    Ok(load_path_located(path, &|k| std::env::var(k).ok())?.into_iter().map(|l| l.spec).collect())
}

/// Like [`load_path`], keeping each pipeline's document for locating later errors.
pub fn load_path_located(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<LoadedPipeline>, ConfigErrors> {
    load_path_located_with(path, env, builtin())
}

/// Like [`load_path_located`], with sources and sinks of `kinds`.
pub fn load_path_located_with(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    kinds: &Kinds,
) -> Result<Vec<LoadedPipeline>, ConfigErrors> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for f in pipeline_files(path)? {
        let loaded = std::fs::read_to_string(&f)
            .map_err(|e| io_error(&f, e))
            .and_then(|t| parse_located_with(&t, &f, env, kinds));
        match loaded {
            Ok(p) => out.extend(p),
            Err(e) => errs.extend(e.0),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(ConfigErrors(errs)) }
}

/// Load every pipeline document in one file, taking `${VAR}` values from the process environment.
pub fn load_file(path: &Path) -> Result<Vec<PipelineSpec>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    parse_str(&text, path, &|k| std::env::var(k).ok())
}

/// Parse pipeline documents (separated by `---`) from text that came from `file`, with the
/// built-in kinds.
pub fn parse_str(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PipelineSpec>, ConfigErrors> {
    Ok(parse_located(text, file, env)?.into_iter().map(|l| l.spec).collect())
}

fn schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(crate::raw::frame_schema)
}

fn builtin() -> &'static Kinds {
    static KINDS: OnceLock<Kinds> = OnceLock::new();
    KINDS.get_or_init(Kinds::builtin)
}

/// Parse pipeline documents from text that came from `file`, keeping their located trees, with
/// the built-in kinds.
pub fn parse_located(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<LoadedPipeline>, ConfigErrors> {
    parse_located_with(text, file, env, builtin())
}

/// Check a source or sink section against its kind's schema (the kind named by `kind:`, else
/// `default`); returns the checked value, or `None` (with a problem) for an unknown kind.
fn check_section<'s>(
    node: &Node,
    path: &[&str],
    names: Vec<&'static str>,
    default: &str,
    find: impl Fn(&str) -> Option<&'s serde_json::Value>,
    problems: &mut Vec<crate::check::Problem>,
) -> Option<serde_json::Value> {
    let what = path[0].trim_end_matches('s');
    let kind = match node.get("kind") {
        None => default.to_string(),
        Some(k) => match k.as_str() {
            Some(k) => k.to_string(),
            None => {
                problems.push(crate::check::Problem {
                    path: path.iter().map(|p| p.to_string()).chain(["kind".to_string()]).collect(),
                    at: k.start,
                    message: format!("`{}.kind` must be a kind's name, found {}", path.join("."), k.describe()),
                    hint: Some(format!("{what} kinds: {}", names.join(", "))),
                });
                return None;
            }
        },
    };
    let Some(schema) = find(&kind) else {
        let at = node.get("kind").map_or(node.start, |k| k.start);
        let hint = match closest(&kind, &names) {
            Some(c) => format!("did you mean `{c}`? {what} kinds: {}", names.join(", ")),
            None => format!("{what} kinds: {}", names.join(", ")),
        };
        problems.push(crate::check::Problem {
            path: path.iter().map(|p| p.to_string()).chain(["kind".to_string()]).collect(),
            at,
            message: format!("`{}`: unknown {what} kind `{kind}`", path.join(".")),
            hint: Some(hint),
        });
        return None;
    };
    let mut checker = Checker::new(schema);
    let mut at: Vec<String> = path.iter().map(|p| p.to_string()).collect();
    let value = checker.check(node, schema, &mut at);
    problems.extend(checker.problems);
    Some(value)
}

/// `value`'s keys among `names`, and the others.
fn split_keys(value: serde_json::Value, names: &[String]) -> (serde_json::Value, serde_json::Value) {
    let mut common = serde_json::Map::new();
    let mut own = serde_json::Map::new();
    if let serde_json::Value::Object(o) = value {
        for (k, v) in o {
            if names.contains(&k) {
                common.insert(k, v);
            } else {
                own.insert(k, v);
            }
        }
    }
    (serde_json::Value::Object(common), serde_json::Value::Object(own))
}

/// An error at `at` in `file`.
fn located(file: &Path, at: Pos, message: String, hint: Option<String>) -> ConfigError {
    ConfigError { file: file.to_path_buf(), line: at.line, column: at.column, message, hint }
}

/// The YAML documents of `text`, or its syntax error, located in `file`.
fn documents(text: &str, file: &Path) -> Result<Vec<Node>, ConfigErrors> {
    crate::yaml::parse(text)
        .map_err(|e| ConfigErrors(vec![located(file, e.at, format!("invalid YAML: {}", e.message), None)]))
}

/// Parse pipeline documents from text that came from `file`, keeping their located trees; the
/// sources and the sink are of `kinds`.
pub fn parse_located_with(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    kinds: &Kinds,
) -> Result<Vec<LoadedPipeline>, ConfigErrors> {
    let err = |at: Pos, message: String, hint: Option<String>| located(file, at, message, hint);
    let docs = documents(text, file)?;
    let text: std::sync::Arc<str> = text.into();
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let mut empty = true;
    for root in docs {
        if matches!(root.kind, Kind::Scalar(Scalar::Null, _)) {
            continue; // an empty document, e.g. after a trailing `---`
        }
        empty = false;
        let mut checker = Checker::new(schema());
        let mut value = checker.check(&root, schema(), &mut Vec::new());
        let mut problems = checker.problems;
        // Each source and the sink against its kind's schema.
        if let Some(Kind::Map(entries)) = root.get("sources").map(|n| &n.kind) {
            for (key, node) in entries {
                let Some(name) = key.as_str() else { continue };
                let checked = check_section(
                    node,
                    &["sources", name],
                    kinds.source_names(),
                    crate::kinds::DEFAULT_SOURCE_KIND,
                    |k| kinds.source(k).map(|(_, s)| s),
                    &mut problems,
                );
                if let (Some(v), Some(sources)) = (checked, value.get_mut("sources").and_then(|s| s.as_object_mut())) {
                    sources.insert(name.to_string(), v);
                }
            }
        }
        if let Some(node) = root.get("sink").filter(|n| matches!(n.kind, Kind::Map(_))) {
            let checked = check_section(
                node,
                &["sink"],
                kinds.sink_names(),
                crate::kinds::DEFAULT_SINK_KIND,
                |k| kinds.sink(k).map(|(_, s)| s),
                &mut problems,
            );
            if let (Some(v), Some(obj)) = (checked, value.as_object_mut()) {
                obj.insert("sink".into(), v);
            }
        }
        let structural = !problems.is_empty();
        let poisoned: Vec<Vec<String>> = problems.iter().map(|p| p.path.clone()).collect();
        errs.extend(problems.into_iter().map(|p| err(p.at, p.message, p.hint)));
        // With structural problems, the offending values were dropped: resolve what is left when
        // it still has the required shape, so that every problem is reported in one pass.
        let raw: RawPipeline = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(_) if structural => continue,
            Err(e) => {
                errs.push(err(root.start, e.to_string(), None));
                continue;
            }
        };
        let doc = Document { file: file.to_path_buf(), text: text.clone(), root };
        let mut r = Resolver { doc: &doc, env, errs: Vec::new(), declared: HashMap::new(), poisoned, kinds };
        let spec = r.pipeline(raw);
        match spec {
            Some(spec) if r.errs.is_empty() && !structural => out.push(LoadedPipeline { spec, doc }),
            _ => errs.extend(r.errs),
        }
    }
    if empty {
        errs.push(err(Pos { line: 1, column: 1, index: 0 }, "no pipeline in this file".into(), None));
    }
    errs.sort_by_key(|e| (e.line, e.column));
    if errs.is_empty() { Ok(out) } else { Err(ConfigErrors(errs)) }
}

/// The steps of one pipeline document in `text` (from `file`): its `steps:`, with `env:` and
/// `settings.limits`, resolved as a pipeline's are. The document may be a whole pipeline file
/// (its sources, sink and name are ignored, so variables only they use need not be set) or a
/// map with only `steps:`. Paths of plugins and tables resolve relative to `file`'s directory.
/// What an embedder runs without a pipeline's sources and sink (the Python package's `Chain`).
pub fn parse_steps(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<StepSpec>, ConfigErrors> {
    let err = |at: Pos, message: String, hint: Option<String>| located(file, at, message, hint);
    let docs = documents(text, file)?;
    let mut docs = docs.into_iter().filter(|d| !matches!(d.kind, Kind::Scalar(Scalar::Null, _)));
    let start = Pos { line: 1, column: 1, index: 0 };
    let Some(root) = docs.next() else {
        return Err(ConfigErrors(vec![err(start, "no steps in this file".into(), None)]));
    };
    if let Some(second) = docs.next() {
        return Err(ConfigErrors(vec![err(
            second.start,
            "several pipeline documents: give the steps of one".into(),
            Some("split the file, or pass the steps as a list".into()),
        )]));
    }
    let Kind::Map(entries) = root.kind else {
        return Err(ConfigErrors(vec![err(root.start, "expected a map with `steps:`".into(), None)]));
    };
    // A pipeline's own sections are set aside; any other key is checked (a misspelt `evn:` is an
    // error, not ignored).
    let kept = entries
        .into_iter()
        .filter(|(k, _)| !k.as_str().is_some_and(|k| matches!(k, "pipeline" | "sources" | "sink")))
        .collect();
    let root = Node { kind: Kind::Map(kept), start: root.start, end: root.end };
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    let schema = SCHEMA.get_or_init(schema_of::<RawSteps>);
    let mut checker = Checker::new(schema);
    let value = checker.check(&root, schema, &mut Vec::new());
    let mut errs: Vec<ConfigError> = checker.problems.into_iter().map(|p| err(p.at, p.message, p.hint)).collect();
    let raw: RawSteps = match serde_json::from_value(value) {
        Ok(r) if errs.is_empty() => r,
        Ok(_) => return Err(ConfigErrors(errs)),
        Err(e) => {
            if errs.is_empty() {
                errs.push(err(root.start, e.to_string(), None));
            }
            return Err(ConfigErrors(errs));
        }
    };
    let doc = Document { file: file.to_path_buf(), text: text.into(), root };
    let mut r =
        Resolver { doc: &doc, env, errs: Vec::new(), declared: HashMap::new(), poisoned: Vec::new(), kinds: builtin() };
    r.declare(&raw.env);
    let settings = r.settings(&raw.settings);
    let steps: Vec<StepSpec> = raw.steps.iter().enumerate().map(|(i, s)| r.step(i, s, &settings.limits)).collect();
    let mut errs = r.errs;
    errs.sort_by_key(|e| (e.line, e.column));
    if errs.is_empty() { Ok(steps) } else { Err(ConfigErrors(errs)) }
}

struct Resolver<'a> {
    doc: &'a Document,
    env: &'a dyn Fn(&str) -> Option<String>,
    errs: Vec<ConfigError>,
    declared: HashMap<String, Option<String>>,
    /// Paths of values the structural check rejected (and dropped): errors on or around them
    /// would only be follow-on noise.
    poisoned: Vec<Vec<String>>,
    kinds: &'a Kinds,
}

impl crate::kinds::Resolve for Resolver<'_> {
    fn error(&mut self, path: &[&str], message: String, hint: Option<String>) {
        Resolver::error(self, path, message, hint)
    }
    fn interpolate(&mut self, path: &[&str], s: &str) -> String {
        Resolver::interpolate(self, path, s)
    }
    fn path(&mut self, path: &[&str], s: &str) -> PathBuf {
        Resolver::path(self, path, s)
    }
    fn secret(&mut self, path: &[&str], name: &str) -> Option<sluice_core::spec::Secret> {
        Resolver::secret(self, path, name)
    }
    fn dir_spec(&mut self, name: &str, raw: &RawSource) -> DirSpec {
        Resolver::dir_spec(self, name, raw)
    }
    fn lake_spec(&mut self, raw: &RawSink) -> LakeSpec {
        Resolver::lake_spec(self, raw)
    }
    fn nested_sink(&mut self, path: &[&str], value: serde_json::Value) -> Option<Arc<dyn SinkConfig>> {
        let kinds = self.kinds;
        if !value.is_object() {
            self.error(
                path,
                String::from("must be a sink section: `{lake: <dir>, dataset: <name>}` or `{kind: postgres, ...}`"),
                None,
            );
            return None;
        }
        let (common, own) = split_keys(value, &crate::kinds::property_names(kinds.sink_common()));
        let common: RawSinkCommon = serde_json::from_value(common).ok()?;
        let name = common.kind.as_deref().unwrap_or(crate::kinds::DEFAULT_SINK_KIND);
        let Some((kind, _)) = kinds.sink(name) else {
            let mut at: Vec<&str> = path.to_vec();
            at.push("kind");
            self.error(&at, format!("no sink kind `{name}`"), None);
            return None;
        };
        let base: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let mut cx = Section::new(self, base, "sink".into());
        kind.resolve(&mut cx, own)
    }
}

impl Resolver<'_> {
    /// Record an error at the value at `path`.
    fn error(&mut self, path: &[&str], message: impl Into<String>, hint: Option<String>) {
        let related = |p: &Vec<String>| p.iter().zip(path).all(|(a, b)| a == b);
        if self.poisoned.iter().any(related) {
            return;
        }
        self.errs.push(self.doc.error(path, message, hint));
    }

    /// Record an error at the key of the last segment of `path` (for names that are keys).
    fn error_at_key(&mut self, path: &[&str], message: impl Into<String>, hint: Option<String>) {
        let (parent, last) = path.split_at(path.len() - 1);
        let node = self.doc.deepest(parent);
        let (line, column) = match node.key(last[0]) {
            Some(k) => (k.start.line, k.start.column),
            None => (node.start.line, node.start.column),
        };
        self.errs.push(ConfigError { file: self.doc.file.clone(), line, column, message: message.into(), hint });
    }

    /// The hint for a variable not declared in `env:`: the closest declared name, or how to
    /// declare it.
    fn undeclared_hint(&self, name: &str) -> String {
        let mut names: Vec<&str> = self.declared.keys().map(String::as_str).collect();
        names.sort();
        closest(name, &names)
            .map(|c| format!("did you mean `{c}`? Only variables declared in `env:` may be used"))
            .unwrap_or_else(|| format!("declare it at the top level: `env: [{name}]`"))
    }

    /// The secret in the declared environment variable `name` (the value at `path` names it).
    fn secret(&mut self, path: &[&str], name: &str) -> Option<sluice_core::spec::Secret> {
        let key = path.last().copied().unwrap_or("password_env");
        match self.declared.get(name).cloned() {
            None => {
                let hint = self.undeclared_hint(name);
                self.error(path, format!("`{key}` names `{name}`, which is not declared in `env:`"), Some(hint));
                None
            }
            Some(default) => match (self.env)(name).or(default) {
                Some(v) => Some(sluice_core::spec::Secret::new(name, v)),
                None => {
                    self.error(
                        path,
                        format!("environment variable `{name}` (`{key}`) is not set and has no default"),
                        Some(format!("set it before running: `export {name}=...`")),
                    );
                    None
                }
            },
        }
    }

    /// Expand `${VAR}` using only declared variables; errors point at the `${VAR}` itself.
    fn interpolate(&mut self, path: &[&str], s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                let at = self.doc.pos_of(path, "${");
                self.push_at(at, format!("unclosed `${{` in `{s}`"), Some("write `${NAME}`".into()));
                return s.to_string();
            };
            let name = &rest[start + 2..start + end];
            let needle = format!("${{{name}}}");
            match self.declared.get(name).cloned() {
                None => {
                    let hint = self.undeclared_hint(name);
                    let at = self.doc.pos_of(path, &needle);
                    self.push_at(at, format!("`{needle}` uses an undeclared environment variable"), Some(hint));
                }
                Some(default) => match (self.env)(name).or(default) {
                    Some(v) => out.push_str(&v),
                    None => {
                        let at = self.doc.pos_of(path, &needle);
                        self.push_at(
                            at,
                            format!("environment variable `{name}` is not set and has no default"),
                            Some(format!("set it, or declare a default: `env: [{{{name}: value}}]`")),
                        );
                    }
                },
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn push_at(&mut self, at: Pos, message: String, hint: Option<String>) {
        self.errs.push(ConfigError { file: self.doc.file.clone(), line: at.line, column: at.column, message, hint });
    }

    fn path(&mut self, at: &[&str], s: &str) -> PathBuf {
        let p = PathBuf::from(self.interpolate(at, s));
        let p = if p.is_absolute() { p } else { self.doc.file.parent().unwrap_or(Path::new(".")).join(p) };
        // Drop `.` components: `dir/./x` reads `dir/x` in messages.
        p.components().collect()
    }

    /// Take `env:`'s variables (with their defaults) as the ones `${NAME}` may use.
    fn declare(&mut self, env: &[RawEnvVar]) {
        for (i, v) in env.iter().enumerate() {
            let names: Vec<(String, Option<String>)> = match v {
                RawEnvVar::Name(n) => vec![(n.clone(), None)],
                RawEnvVar::WithDefault(m) => m.iter().map(|(k, d)| (k.clone(), Some(d.clone()))).collect(),
            };
            for (n, d) in names {
                if !valid_env_name(&n) {
                    let i = i.to_string();
                    self.error(
                        &["env", &i],
                        format!("`{n}` is not an environment variable name"),
                        Some("use letters, digits and `_`, not starting with a digit".into()),
                    );
                }
                self.declared.insert(n, d);
            }
        }
    }

    fn pipeline(&mut self, raw: RawPipeline) -> Option<PipelineSpec> {
        self.declare(&raw.env);
        if !valid_name(&raw.pipeline) {
            self.error(
                &["pipeline"],
                format!("pipeline name `{}` must be letters, digits, `_` or `-`", raw.pipeline),
                None,
            );
        }
        if raw.sources.is_empty() {
            self.error(&["sources"], "a pipeline needs at least one source", None);
        }
        let settings = self.settings(&raw.settings);
        let sources: Vec<Option<SourceSpec>> = raw.sources.into_iter().map(|(name, s)| self.source(&name, s)).collect();
        let steps: Vec<StepSpec> =
            raw.steps.iter().enumerate().map(|(i, s)| self.step(i, s, &settings.limits)).collect();
        let sink = self.sink(raw.sink);
        let (Some(sink), Some(sources)) = (sink, sources.into_iter().collect::<Option<Vec<_>>>()) else {
            return None;
        };
        Some(PipelineSpec { name: raw.pipeline, origin: self.doc.file.clone(), sources, steps, sink, settings })
    }

    fn limits(&mut self, at: &[&str], raw: Option<&RawLimits>, base: Limits) -> Limits {
        let mut l = base;
        let Some(raw) = raw else { return l };
        let p = |k: &'static str| -> Vec<&str> { at.iter().copied().chain(["limits", k]).collect() };
        if let Some(t) = &raw.timeout {
            match parse_duration(t) {
                Ok(d) if d > Duration::from_secs(3600) => self.error(&p("timeout"), "limits.timeout: at most 1h", None),
                Ok(d) => l.timeout = d,
                Err(e) => self.error(&p("timeout"), format!("limits.timeout: {e}"), None),
            }
        }
        if let Some(m) = &raw.memory {
            match parse_size(m) {
                Ok(b) => l.memory_bytes = b,
                Err(e) => self.error(&p("memory"), format!("limits.memory: {e}"), None),
            }
        }
        if let Some(o) = &raw.output {
            match parse_size(o) {
                Ok(b) => l.output_bytes = b,
                Err(e) => self.error(&p("output"), format!("limits.output: {e}"), None),
            }
        }
        l
    }

    fn settings(&mut self, raw: &RawSettings) -> Settings {
        let mut s = Settings::default();
        if let Some(w) = raw.workers {
            if w == 0 {
                self.error(&["settings", "workers"], "settings.workers must be at least 1", None);
            }
            s.workers = w.max(1);
        }
        if let Some(b) = raw.batch_rows {
            if b == 0 {
                self.error(&["settings", "batch_rows"], "settings.batch_rows must be at least 1", None);
            }
            s.batch_rows = b.max(1);
        }
        s.limits = self.limits(&["settings"], raw.limits.as_ref(), s.limits);
        s
    }

    /// A source section: the keys every source has, then its kind's own.
    fn source(&mut self, name: &str, value: serde_json::Value) -> Option<SourceSpec> {
        if !valid_name(name) {
            self.error_at_key(
                &["sources", name],
                format!("source name `{name}` must be letters, digits, `_` or `-`"),
                None,
            );
        }
        let kinds = self.kinds;
        let (common, own) = split_keys(value, &crate::kinds::property_names(kinds.source_common()));
        let common: RawSourceCommon = serde_json::from_value(common).ok()?;
        let kind = common.kind.as_deref().unwrap_or(crate::kinds::DEFAULT_SOURCE_KIND);
        // An unknown kind was reported by the structural check.
        let (kind, _) = kinds.source(kind)?;
        let mut rejects = RejectPolicy::default();
        if let Some(r) = &common.rejects {
            rejects.max_errors = r.max_errors;
            if let Some(rate) = r.max_error_rate {
                if !(0.0..=1.0).contains(&rate) {
                    self.error(
                        &["sources", name, "rejects", "max_error_rate"],
                        "rejects.max_error_rate must be between 0 and 1",
                        Some("e.g. `0.01` for 1%".into()),
                    );
                }
                rejects.max_error_rate = Some(rate);
            }
        }
        let ready = match common.ready.as_ref() {
            None => kind.default_ready(),
            raw => self.ready(name, raw),
        };
        let watch = self.watch(name, common.watch.as_ref());
        let mut cx = Section::new(self, vec!["sources".into(), name.to_string()], name.to_string());
        let config = kind.resolve(&mut cx, own)?;
        Some(SourceSpec {
            name: name.to_string(),
            config,
            rejects,
            retries: common.retries.unwrap_or(DEFAULT_RETRIES),
            ready,
            watch,
        })
    }

    /// `kind: directory`'s own keys.
    pub(crate) fn dir_spec(&mut self, name: &str, raw: &RawSource) -> DirSpec {
        let include = match raw.glob.clone() {
            None => vec!["**/*".to_string()],
            Some(OneOrMany::One(g)) => vec![self.interpolate(&["sources", name, "glob"], &g)],
            Some(OneOrMany::Many(gs)) => gs
                .iter()
                .enumerate()
                .map(|(i, g)| self.interpolate(&["sources", name, "glob", &i.to_string()], g))
                .collect(),
        };
        let exclude = raw.exclude.clone().map(OneOrMany::into_vec).unwrap_or_default();
        let fields = raw.fields.as_ref().and_then(|f| match FieldsPattern::parse(f) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(
                    &["sources", name, "fields"],
                    format!("sources.{name}.fields: {e}"),
                    Some("e.g. `{symbol}-1s-{date:date}.csv`; field types: string, int, date".into()),
                );
                None
            }
        });
        let f = &raw.format;
        let named = usize::from(f.csv.is_some())
            + usize::from(f.jsonl.is_some())
            + usize::from(f.json.is_some())
            + usize::from(f.parquet.is_some());
        if named != 1 {
            self.error(
                &["sources", name, "format"],
                format!("sources.{name}.format: name exactly one format (`csv`, `jsonl`, `json` or `parquet`)"),
                Some("e.g. `format: {csv: {header: true}}`".into()),
            );
        }
        let format = match (&f.csv, &f.jsonl, &f.json, &f.parquet) {
            (Some(c), _, _, _) => FormatSpec::Csv(self.csv(name, c)),
            (None, Some(j), _, _) => FormatSpec::Jsonl(JsonlSpec {
                columns: self.columns(&["sources", name, "format", "jsonl", "columns"], j.columns.as_ref()),
            }),
            (None, None, Some(j), _) => FormatSpec::Json(JsonlSpec {
                columns: self.columns(&["sources", name, "format", "json", "columns"], j.columns.as_ref()),
            }),
            (None, None, None, Some(_)) => FormatSpec::Parquet,
            (None, None, None, None) => FormatSpec::Csv(self.csv(name, &RawCsv::default())),
        };
        let members = raw.members.clone().map(OneOrMany::into_vec).unwrap_or_default();
        let mut limits = SourceLimits::default();
        if let Some(l) = &raw.limits {
            if let Some(m) = l.max_members {
                limits.max_members = m;
            }
            if let Some(b) = &l.max_unit_bytes {
                match parse_size(b) {
                    Ok(b) => limits.max_unit_bytes = b,
                    Err(e) => self.error(
                        &["sources", name, "limits", "max_unit_bytes"],
                        format!("limits.max_unit_bytes: {e}"),
                        None,
                    ),
                }
            }
            if let Some(text) = &l.max_record_bytes {
                match parse_size(text) {
                    Ok(b) if b > MAX_RECORD_BYTES_CAP => self.error(
                        &["sources", name, "limits", "max_record_bytes"],
                        format!("limits.max_record_bytes: `{text}` is more than 1GiB"),
                        Some("one record is held in memory whole; e.g. `64MiB`".into()),
                    ),
                    Ok(b) => limits.max_record_bytes = b,
                    Err(e) => self.error(
                        &["sources", name, "limits", "max_record_bytes"],
                        format!("limits.max_record_bytes: {e}"),
                        None,
                    ),
                }
            }
            if let Some(r) = l.max_ratio {
                if r == 0 {
                    self.error(
                        &["sources", name, "limits", "max_ratio"],
                        "limits.max_ratio must be at least 1",
                        Some("e.g. `1000` for 1000:1".into()),
                    );
                } else {
                    limits.max_ratio = r;
                }
            }
        }
        if let (Some(p), FormatSpec::Csv(CsvSpec { columns: Some(cols), .. })) = (&fields, &format) {
            for (f, _) in p.fields() {
                if cols.iter().any(|(c, _)| c == f) {
                    self.error_at_key(
                        &["sources", name, "format", "csv", "columns", f],
                        format!("sources.{name}: file-name field `{f}` clashes with a CSV column"),
                        Some("rename one of them".into()),
                    );
                }
            }
        }
        DirSpec {
            path: self.path(&["sources", name, "path"], &raw.path),
            include,
            exclude,
            fields,
            format,
            order: raw.order.map(Into::into).unwrap_or_default(),
            compression: raw.compression.map(Into::into).unwrap_or_default(),
            members,
            limits,
        }
    }

    /// `ready:`: `renamed`, or exactly one of `stable_for` and `marker`.
    fn ready(&mut self, source: &str, raw: Option<&RawReady>) -> ReadyPolicy {
        let opts = match raw {
            None => return ReadyPolicy::default(),
            Some(RawReady::Keyword(RawReadyKeyword::Renamed)) => return ReadyPolicy::Renamed,
            Some(RawReady::Options(o)) => o,
        };
        let at = |k: &'static str| -> Vec<&str> { vec!["sources", source, "ready", k] };
        match (&opts.stable_for, &opts.marker) {
            (Some(d), None) => match parse_duration(d) {
                Ok(d) => ReadyPolicy::StableFor(d),
                Err(e) => {
                    self.error(&at("stable_for"), format!("sources.{source}.ready.stable_for: {e}"), None);
                    ReadyPolicy::default()
                }
            },
            (None, Some(m)) => match Marker::parse(m) {
                Ok(m) => ReadyPolicy::Marker(m),
                Err(e) => {
                    self.error(
                        &at("marker"),
                        format!("sources.{source}.ready.marker: {e}"),
                        Some("e.g. `{file}.done` or `_SUCCESS`".into()),
                    );
                    ReadyPolicy::default()
                }
            },
            _ => {
                self.error(
                    &["sources", source, "ready"],
                    format!(
                        "sources.{source}.ready: name exactly one of `stable_for` and `marker`, or write `renamed`"
                    ),
                    Some("e.g. `ready: {stable_for: 500ms}` or `ready: {marker: \"{file}.done\"}`".into()),
                );
                ReadyPolicy::default()
            }
        }
    }

    fn watch(&mut self, source: &str, raw: Option<&RawWatch>) -> WatchSpec {
        let mut w = WatchSpec::default();
        let Some(raw) = raw else { return w };
        if let Some(m) = raw.mode {
            w.mode = m.into();
        }
        if let Some(p) = &raw.poll_interval {
            match parse_duration(p) {
                Ok(d) if d < Duration::from_millis(10) => self.error(
                    &["sources", source, "watch", "poll_interval"],
                    format!("sources.{source}.watch.poll_interval: at least 10ms"),
                    None,
                ),
                Ok(d) => w.poll_interval = d,
                Err(e) => self.error(
                    &["sources", source, "watch", "poll_interval"],
                    format!("sources.{source}.watch.poll_interval: {e}"),
                    None,
                ),
            }
        }
        w
    }

    /// Typed columns (`name: type`), each unknown type located at its value.
    fn columns(
        &mut self,
        at: &[&str],
        cols: Option<&indexmap::IndexMap<String, String>>,
    ) -> Option<Vec<(String, DataType)>> {
        let cols = cols?;
        let mut out = Vec::with_capacity(cols.len());
        for (name, ty) in cols {
            let dt = parse_type(ty).unwrap_or_else(|hint| {
                let path: Vec<&str> = at.iter().copied().chain([name.as_str()]).collect();
                self.error(&path, format!("{}.{name}: unknown type `{ty}`", at.join(".")), Some(hint));
                DataType::Utf8
            });
            out.push((name.clone(), dt));
        }
        Some(out)
    }

    fn single_byte(&mut self, at: &[&str], what: &str, v: Option<&String>, default: u8) -> u8 {
        match v {
            None => default,
            Some(s) if s == "\\t" || s == "\t" => b'\t',
            Some(s) if s.len() == 1 => s.as_bytes()[0],
            Some(s) => {
                self.error(at, format!("{what} must be a single ASCII character, got `{s}`"), None);
                default
            }
        }
    }

    fn csv(&mut self, source: &str, raw: &RawCsv) -> CsvSpec {
        let base = ["sources", source, "format", "csv"];
        let columns = self.columns(&["sources", source, "format", "csv", "columns"], raw.columns.as_ref());
        let at = |k: &'static str| -> Vec<&str> { base.iter().copied().chain([k]).collect() };
        let defaults = CsvSpec::default();
        CsvSpec {
            header: raw.header.unwrap_or(defaults.header),
            delimiter: self.single_byte(&at("delimiter"), "delimiter", raw.delimiter.as_ref(), defaults.delimiter),
            quote: self.single_byte(&at("quote"), "quote", raw.quote.as_ref(), defaults.quote),
            not_null: self.not_null(&at("not_null"), raw.not_null.as_ref(), columns.as_deref()),
            columns,
            null_tokens: raw.null.clone().unwrap_or_default(),
        }
    }

    /// `not_null`: `"*"` or names; with declared columns, each name must be one of them (without,
    /// the reader checks the names against the header).
    fn not_null(&mut self, at: &[&str], raw: Option<&OneOrMany>, columns: Option<&[(String, DataType)]>) -> ColumnSet {
        let names = match raw {
            None => return ColumnSet::None,
            Some(OneOrMany::One(s)) if s == "*" => return ColumnSet::All,
            Some(v) => v.clone().into_vec(),
        };
        if let Some(cols) = columns {
            for (i, name) in names.iter().enumerate() {
                if !cols.iter().any(|(c, _)| c == name) {
                    let idx = i.to_string();
                    let path: Vec<&str> = at
                        .iter()
                        .copied()
                        .chain(matches!(raw, Some(OneOrMany::Many(_))).then_some(idx.as_str()))
                        .collect();
                    let known: Vec<&str> = cols.iter().map(|(c, _)| c.as_str()).collect();
                    let hint = closest(name, &known).map(|c| format!("did you mean `{c}`?"));
                    self.error(
                        &path,
                        format!("{}: `{name}` is not a column (columns: {})", at.join("."), known.join(", ")),
                        hint,
                    );
                }
            }
        }
        ColumnSet::Named(names)
    }

    fn step(&mut self, i: usize, raw: &RawStep, defaults: &Limits) -> StepSpec {
        let idx = i.to_string();
        let plugin_text = self.interpolate(&["steps", &idx, "plugin"], &raw.plugin);
        let plugin = if plugin_text.ends_with(".wasm") || plugin_text.contains('/') {
            PluginRef::Path(self.path(&["steps", &idx, "plugin"], &plugin_text))
        } else {
            PluginRef::Named(plugin_text.clone())
        };
        let config = match self.doc.deepest(&["steps", &idx]).get("config") {
            Some(node) => {
                let node = node.clone();
                self.config_json(&node, &mut vec!["steps".into(), idx.clone(), "config".into()])
            }
            None => serde_json::Value::Null,
        };
        StepSpec {
            name: raw.name.clone().unwrap_or_else(|| match &plugin {
                PluginRef::Named(n) => n.clone(),
                PluginRef::Path(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or(plugin_text),
            }),
            plugin,
            config_json: config.to_string(),
            limits: self.limits(&["steps", &idx], raw.limits.as_ref(), *defaults),
            on_error: raw.on_error.map(Into::into).unwrap_or_default(),
            tables: self.tables(&idx, raw.tables.as_ref()),
        }
    }

    /// A step's `tables:`: names are identifiers, paths resolve relative to the pipeline file
    /// and name a `.csv` or `.parquet` file. Nothing is read here (see the CLI's `validate`).
    fn tables(&mut self, idx: &str, raw: Option<&IndexMap<String, String>>) -> Vec<TableSpec> {
        let mut out = Vec::new();
        for (name, path) in raw.into_iter().flatten() {
            let at = ["steps", idx, "tables", name.as_str()];
            if !valid_name(name) {
                self.error_at_key(
                    &at,
                    format!("table name `{name}` is not valid"),
                    Some("use letters, digits, `_` and `-`".into()),
                );
                continue;
            }
            let path = self.path(&at, path);
            let Some(format) = TableFormat::of(&path) else {
                self.error(
                    &at,
                    format!("table `{name}`: {} is neither a `.csv` nor a `.parquet` file", path.display()),
                    Some("a lookup table is a CSV file with a header line, or a Parquet file".into()),
                );
                continue;
            };
            out.push(TableSpec { name: name.clone(), path, format });
        }
        out
    }

    /// The step config as JSON, with `${VAR}` expanded in its strings.
    fn config_json(&mut self, node: &Node, path: &mut Vec<String>) -> serde_json::Value {
        use serde_json::Value;
        match &node.kind {
            Kind::Scalar(Scalar::Str(s), _) => {
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                Value::String(self.interpolate(&p, s))
            }
            Kind::Seq(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        path.push(i.to_string());
                        let v = self.config_json(x, path);
                        path.pop();
                        v
                    })
                    .collect(),
            ),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, x)| {
                        let key = k.as_str().unwrap_or_default().to_string();
                        path.push(key.clone());
                        let v = self.config_json(x, path);
                        path.pop();
                        (key, v)
                    })
                    .collect(),
            ),
            Kind::Scalar(..) => node.to_json(),
        }
    }

    /// The sink section: the keys every sink has, then its kind's own.
    fn sink(&mut self, value: serde_json::Value) -> Option<SinkSpec> {
        let kinds = self.kinds;
        let (common, own) = split_keys(value, &crate::kinds::property_names(kinds.sink_common()));
        let common: RawSinkCommon = serde_json::from_value(common).ok()?;
        let kind = common.kind.as_deref().unwrap_or(crate::kinds::DEFAULT_SINK_KIND);
        let (kind, _) = kinds.sink(kind)?;
        let mut cx = Section::new(self, vec!["sink".into()], "sink".into());
        let config = kind.resolve(&mut cx, own)?;
        Some(SinkSpec { config, on_error: common.on_error.map(Into::into).unwrap_or_default() })
    }

    /// `kind: lake`'s own keys.
    pub(crate) fn lake_spec(&mut self, raw: &RawSink) -> LakeSpec {
        if !valid_name(&raw.dataset) || raw.dataset.starts_with('_') {
            self.error(
                &["sink", "dataset"],
                format!("dataset name `{}` must be letters, digits, `_` or `-`, not starting with `_`", raw.dataset),
                None,
            );
        }
        if raw.mode == RawWriteMode::Upsert && raw.key.is_empty() {
            self.error(&["sink", "mode"], "sink.mode `upsert` needs `key: [columns]`", None);
        }
        if raw.mode != RawWriteMode::Upsert && !raw.key.is_empty() {
            self.error(&["sink", "key"], "sink.key is only used by `mode: upsert`", None);
        }
        let level = raw.zstd_level.unwrap_or(3);
        if !(1..=22).contains(&level) {
            self.error(&["sink", "zstd_level"], "sink.zstd_level must be between 1 and 22", None);
        }
        let row_group_rows = raw.row_group_rows.unwrap_or(512 * 1024);
        if row_group_rows == 0 {
            self.error(&["sink", "row_group_rows"], "sink.row_group_rows must be at least 1", None);
        }
        let retain_replaced = match raw.retain_replaced.as_deref().map(parse_duration_or_zero) {
            None => DEFAULT_RETAIN_REPLACED,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error(&["sink", "retain_replaced"], format!("sink.retain_replaced: {e}"), None);
                DEFAULT_RETAIN_REPLACED
            }
        };
        if raw.on_source_deleted == Some(RawOnSourceDeleted::Delete) && raw.mode == RawWriteMode::Upsert {
            self.error(
                &["sink", "on_source_deleted"],
                "sink.on_source_deleted `delete` does not work with `mode: upsert`: a merged partition mixes \
                 the rows of many files",
                Some("use `mode: append` or `replace_partition`, or keep the rows of deleted files".into()),
            );
        }
        let compact = raw.compact.as_ref().map(|c| {
            let min_files = c.min_files.unwrap_or(20);
            if min_files < 2 {
                self.error(&["sink", "compact", "min_files"], "sink.compact.min_files must be at least 2", None);
            }
            let target_size = match c.target_size.as_deref().map(crate::units::parse_size) {
                None => 128 * 1024 * 1024,
                Some(Ok(n)) if n > 0 => n,
                Some(Ok(_)) => {
                    self.error(
                        &["sink", "compact", "target_size"],
                        "sink.compact.target_size must be more than 0",
                        None,
                    );
                    1
                }
                Some(Err(e)) => {
                    self.error(&["sink", "compact", "target_size"], format!("sink.compact.target_size: {e}"), None);
                    1
                }
            };
            sluice_core::spec::CompactSpec { min_files: min_files.max(2), target_size }
        });
        LakeSpec {
            compact,
            lake: self.path(&["sink", "lake"], &raw.lake),
            dataset: raw.dataset.clone(),
            partition_by: raw.partition_by.clone(),
            mode: raw.mode.into(),
            compression: raw.compression.map(Into::into).unwrap_or_default(),
            zstd_level: level,
            row_group_rows: row_group_rows.max(1),
            key: raw.key.clone(),
            schema_policy: raw.schema_policy.map(Into::into).unwrap_or_default(),
            time_column: raw.time_column.clone(),
            retain_replaced,
            on_source_deleted: raw.on_source_deleted.map(Into::into).unwrap_or_default(),
            sync: raw.sync.map(Into::into).unwrap_or_default(),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
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
