//! The registry of source and sink kinds: the pipeline language's half of a connector.
//!
//! A source or sink names its `kind` (`directory` and `lake` when absent). The kind's JSON
//! Schema, merged with the keys every source (or sink) has, checks its section with located
//! errors; the kind's resolver turns what passed into validated settings
//! ([`SourceConfig`] / [`SinkConfig`]). The runtime half (`build`) is
//! `sluice_core::connector::Connectors`. `parse`, `validate` and the JSON Schema go through this
//! registry only, so a new kind changes none of them.

use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_core::connector::{SinkConfig, SourceConfig};

use crate::raw::{RawSink, RawSinkCommon, RawSource, RawSourceCommon, schema_of};
use std::path::PathBuf;

use sluice_core::spec::{DirSpec, LakeSpec};

/// The language half of a source kind.
pub trait SourceKind: Send + Sync {
    /// The name `kind:` gives.
    fn name(&self) -> &'static str;
    /// The JSON Schema of the kind's own keys (an object schema, as `schemars::schema_for!`
    /// makes it); the keys every source has are added to it.
    fn schema(&self) -> Value;
    /// Resolve the kind's keys (checked against [`SourceKind::schema`], the common keys taken
    /// out) into validated settings, reporting problems through `cx`.
    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SourceConfig>>;
    /// `ready:` when the source names none. Files may be caught mid-write, so a directory waits
    /// for them to be stable; rows a database committed are complete, so a table's units are
    /// ready at once ([`ReadyPolicy::Renamed`]).
    fn default_ready(&self) -> sluice_core::spec::ReadyPolicy {
        sluice_core::spec::ReadyPolicy::default()
    }
}

/// The language half of a sink kind.
pub trait SinkKind: Send + Sync {
    fn name(&self) -> &'static str;
    fn schema(&self) -> Value;
    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SinkConfig>>;
}

/// What a kind's resolver is given of the resolution in progress (the resolver of the whole
/// pipeline implements it): located errors, `${VAR}` and paths.
pub(crate) trait Resolve {
    fn error(&mut self, path: &[&str], message: String, hint: Option<String>);
    fn interpolate(&mut self, path: &[&str], s: &str) -> String;
    fn path(&mut self, path: &[&str], s: &str) -> PathBuf;
    fn secret(&mut self, path: &[&str], name: &str) -> Option<sluice_core::spec::Secret>;
    fn dir_spec(&mut self, name: &str, raw: &RawSource) -> DirSpec;
    fn lake_spec(&mut self, raw: &RawSink) -> LakeSpec;
    fn nested_sink(&mut self, path: &[&str], value: Value) -> Option<Arc<dyn SinkConfig>>;
}

/// A source's or the sink's section, as its kind's resolver sees it: errors, `${VAR}` and paths
/// at keys under the section, which the resolver names relative to it (`["format", "csv"]`).
pub struct Section<'r> {
    r: &'r mut dyn Resolve,
    base: Vec<String>,
    name: String,
}

impl<'r> Section<'r> {
    pub(crate) fn new(r: &'r mut dyn Resolve, base: Vec<String>, name: String) -> Self {
        Section { r, base, name }
    }

    /// The source's name (`sink` for the sink).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Record an error at the value at `rel` under the section.
    pub fn error(&mut self, rel: &[&str], message: impl Into<String>, hint: Option<String>) {
        let path = joined(&self.base, rel);
        self.r.error(&path, message.into(), hint);
    }

    /// Expand `${VAR}` in `s`, the value at `rel`.
    pub fn interpolate(&mut self, rel: &[&str], s: &str) -> String {
        let path = joined(&self.base, rel);
        self.r.interpolate(&path, s)
    }

    /// `s`, the value at `rel`, as a path: `${VAR}` expanded, relative to the pipeline file.
    pub fn path(&mut self, rel: &[&str], s: &str) -> PathBuf {
        let path = joined(&self.base, rel);
        self.r.path(&path, s)
    }

    /// The secret in the environment variable `name`, the value at `rel` (`password_env:
    /// PG_PASSWORD`): it must be declared in the pipeline's `env:`, and set (or have a default).
    /// Its value is never shown, in errors or anywhere else.
    pub fn secret(&mut self, rel: &[&str], name: &str) -> Option<sluice_core::spec::Secret> {
        let path = joined(&self.base, rel);
        self.r.secret(&path, name)
    }

    /// A database source's `table` and `query`: exactly one of them (`kind` names the source's
    /// kind, `example` a table for the hint).
    pub fn table_or_query(&mut self, kind: &str, table: bool, query: bool, example: &str) {
        let name = self.name.clone();
        match (table, query) {
            (true, true) => self.error(
                &["query"],
                format!("source `{name}`: give `table` or `query`, not both"),
                Some("a query can select from the table: `query: SELECT ... FROM t WHERE ...`".into()),
            ),
            (false, false) => self.error(
                &[],
                format!("source `{name}`: a {kind} source needs `table` or `query`"),
                Some(format!("`table: {example}`")),
            ),
            _ => {}
        }
    }

    /// The duration at `rel` (`500ms`, `30s`, `5m`), or `default` when it is not given; a value
    /// that does not parse is an error there, and `default` stands in for it.
    pub fn duration(&mut self, rel: &[&str], text: Option<&str>, default: std::time::Duration) -> std::time::Duration {
        match text {
            None => default,
            Some(t) => match crate::units::parse_duration_or_zero(t) {
                Ok(d) => d,
                Err(e) => {
                    self.error(rel, format!("{}: {e}", rel.join(".")), Some("e.g. `500ms`, `30s`, `5m`".into()));
                    default
                }
            },
        }
    }

    /// The section's keys as the kind's raw type (they passed its schema, so this fails only
    /// where a type is stricter than its schema; the failure is reported at the section).
    pub fn deserialize<T: serde::de::DeserializeOwned>(&mut self, keys: Value) -> Option<T> {
        match serde_json::from_value(keys) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = joined(&self.base, &[]);
                self.r.error(&at, e.to_string(), None);
                None
            }
        }
    }

    /// A sink section nested at `rel` under this one (a sink's `state:`: where a sink that
    /// keeps no state of its own keeps it), resolved by its kind (`lake` when it names none)
    /// as the pipeline's sink is.
    pub fn sink_section(&mut self, rel: &[&str], value: Value) -> Option<Arc<dyn SinkConfig>> {
        let path = joined(&self.base, rel);
        self.r.nested_sink(&path, value)
    }

    /// The keys of a `kind: lake` sink, resolved as the pipeline's lake sink is (errors at
    /// `sink.<key>`), for a kind that keeps its data and state in a lake of its own
    /// (`kind: delta`). `keys` must hold `lake` and `dataset`.
    pub fn lake_keys(&mut self, keys: Value) -> Option<LakeSpec> {
        let raw: RawSink = self.deserialize(keys)?;
        Some(self.lake_spec(&raw))
    }

    /// The keys of a `kind: directory` source without its `path` (`glob`, `exclude`, `fields`,
    /// `format`, `order`, `compression`, `members`, `limits`), resolved as a directory source's
    /// are (errors at `sources.<name>.<key>`), for a kind that fetches files into `path` and
    /// reads them as a directory source would (`kind: s3`).
    pub fn file_keys(&mut self, keys: Value, path: PathBuf) -> Option<DirSpec> {
        let Value::Object(mut keys) = keys else { return None };
        keys.insert("path".into(), Value::String(".".into()));
        let raw: RawSource = self.deserialize(Value::Object(keys))?;
        Some(DirSpec { path, ..self.dir_spec(&raw) })
    }

    fn dir_spec(&mut self, raw: &RawSource) -> DirSpec {
        let name = self.name.clone();
        self.r.dir_spec(&name, raw)
    }

    fn lake_spec(&mut self, raw: &RawSink) -> LakeSpec {
        self.r.lake_spec(raw)
    }
}

/// The path of keys `rel` under the section at `base`.
fn joined<'p>(base: &'p [String], rel: &[&'p str]) -> Vec<&'p str> {
    base.iter().map(String::as_str).chain(rel.iter().copied()).collect()
}

/// A kind with its checking schema: its own keys and the common ones, `$defs` merged.
struct Entry<K: ?Sized> {
    kind: Arc<K>,
    schema: Value,
}

/// The kinds a pipeline may name.
#[derive(Clone)]
pub struct Kinds {
    sources: Vec<Arc<Entry<dyn SourceKind>>>,
    sinks: Vec<Arc<Entry<dyn SinkKind>>>,
    source_common: Value,
    sink_common: Value,
}

/// The source kind a section without `kind:` has.
pub const DEFAULT_SOURCE_KIND: &str = "directory";
/// The sink kind a section without `kind:` has.
pub const DEFAULT_SINK_KIND: &str = "lake";

/// `kind` (its own keys) with `common`'s properties appended and both `$defs` merged.
fn merged(kind: Value, common: &Value) -> Value {
    let mut out = kind;
    let obj = out.as_object_mut().expect("a kind's schema is an object");
    let props = obj.entry("properties").or_insert_with(|| Value::Object(Map::new()));
    if let (Some(props), Some(extra)) = (props.as_object_mut(), common.get("properties").and_then(Value::as_object)) {
        for (k, v) in extra {
            props.insert(k.clone(), v.clone());
        }
    }
    if let Some(defs) = common.get("$defs").and_then(Value::as_object) {
        let own = obj.entry("$defs").or_insert_with(|| Value::Object(Map::new()));
        if let Some(own) = own.as_object_mut() {
            for (k, v) in defs {
                own.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    obj.insert("additionalProperties".into(), Value::Bool(false));
    obj.insert("type".into(), Value::String("object".into()));
    out
}

/// The names of a schema's properties: the common keys, split off a section before its kind
/// resolves it.
pub(crate) fn property_names(schema: &Value) -> Vec<String> {
    schema.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

impl Default for Kinds {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Kinds {
    /// No kinds at all (see [`Kinds::builtin`]).
    pub fn empty() -> Self {
        Kinds {
            sources: Vec::new(),
            sinks: Vec::new(),
            source_common: schema_of::<RawSourceCommon>(),
            sink_common: schema_of::<RawSinkCommon>(),
        }
    }

    /// The kinds Sluice ships: `directory` sources and `lake` sinks.
    pub fn builtin() -> Self {
        Kinds::empty().with_source(Directory).with_sink(LakeKind)
    }

    pub fn with_source(mut self, kind: impl SourceKind + 'static) -> Self {
        let schema = merged(kind.schema(), &self.source_common);
        self.sources.retain(|e| e.kind.name() != kind.name());
        self.sources.push(Arc::new(Entry { kind: Arc::new(kind), schema }));
        self
    }

    pub fn with_sink(mut self, kind: impl SinkKind + 'static) -> Self {
        let schema = merged(kind.schema(), &self.sink_common);
        self.sinks.retain(|e| e.kind.name() != kind.name());
        self.sinks.push(Arc::new(Entry { kind: Arc::new(kind), schema }));
        self
    }

    pub fn source_names(&self) -> Vec<&'static str> {
        self.sources.iter().map(|e| e.kind.name()).collect()
    }

    pub fn sink_names(&self) -> Vec<&'static str> {
        self.sinks.iter().map(|e| e.kind.name()).collect()
    }

    /// A source kind and its checking schema.
    pub(crate) fn source(&self, name: &str) -> Option<(&dyn SourceKind, &Value)> {
        self.sources.iter().find(|e| e.kind.name() == name).map(|e| (e.kind.as_ref(), &e.schema))
    }

    pub(crate) fn sink(&self, name: &str) -> Option<(&dyn SinkKind, &Value)> {
        self.sinks.iter().find(|e| e.kind.name() == name).map(|e| (e.kind.as_ref(), &e.schema))
    }

    pub(crate) fn source_common(&self) -> &Value {
        &self.source_common
    }

    pub(crate) fn sink_common(&self) -> &Value {
        &self.sink_common
    }

    /// The JSON Schema of the whole language (draft 2020-12), for editors: each source and the
    /// sink is one of the registered kinds.
    pub fn json_schema(&self) -> Value {
        let mut root = crate::raw::frame_schema();
        let mut defs = root.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut branch = |schema: &Value, kind: &str, default: bool| {
            let mut s = schema.clone();
            if let Some(own) = s.as_object_mut().and_then(|o| o.remove("$defs")).and_then(|d| d.as_object().cloned()) {
                for (k, v) in own {
                    defs.entry(k).or_insert(v);
                }
            }
            let obj = s.as_object_mut().expect("an object schema");
            obj.remove("$schema");
            obj.remove("title");
            // Which branch applies is told by `kind`, which only the default may leave out.
            if let Some(k) = obj.get_mut("properties").and_then(|p| p.get_mut("kind")) {
                *k = serde_json::json!({ "const": kind, "description": format!("`{kind}`") });
            }
            if !default {
                let req = obj.entry("required").or_insert_with(|| Value::Array(Vec::new()));
                if let Some(req) = req.as_array_mut() {
                    req.push(Value::String("kind".into()));
                }
            }
            s
        };
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|e| branch(&e.schema, e.kind.name(), e.kind.name() == DEFAULT_SOURCE_KIND))
            .collect();
        let sinks: Vec<Value> =
            self.sinks.iter().map(|e| branch(&e.schema, e.kind.name(), e.kind.name() == DEFAULT_SINK_KIND)).collect();
        if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
            if let Some(s) = props.get_mut("sources").and_then(Value::as_object_mut) {
                s.insert("additionalProperties".into(), serde_json::json!({ "anyOf": sources }));
            }
            if let Some(s) = props.get_mut("sink").and_then(Value::as_object_mut) {
                let description = s.get("description").cloned();
                s.clear();
                if let Some(d) = description {
                    s.insert("description".into(), d);
                }
                s.insert("anyOf".into(), Value::Array(sinks));
            }
        }
        root.as_object_mut().expect("an object schema").insert("$defs".into(), Value::Object(defs));
        root
    }
}

/// `kind: directory`.
struct Directory;

impl SourceKind for Directory {
    fn name(&self) -> &'static str {
        DEFAULT_SOURCE_KIND
    }
    fn schema(&self) -> Value {
        schema_of::<RawSource>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SourceConfig>> {
        let raw: RawSource = cx.deserialize(keys)?;
        Some(Arc::new(cx.dir_spec(&raw)))
    }
}

/// `kind: lake`.
struct LakeKind;

impl SinkKind for LakeKind {
    fn name(&self) -> &'static str {
        DEFAULT_SINK_KIND
    }
    fn schema(&self) -> Value {
        schema_of::<RawSink>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SinkConfig>> {
        let raw: RawSink = cx.deserialize(keys)?;
        Some(Arc::new(cx.lake_spec(&raw)))
    }
}

/// `kind: duckdb`: a table or query of a DuckDB database file, read-only. The runtime half is
/// `sluice_catalog::DuckdbConnector` (DuckDB lives in that crate only).
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDuckSource {
    /// The `.duckdb` file, relative to the pipeline file. May use `${VAR}`.
    pub path: String,
    /// The table to read: `schema.table`, or `table` in `main`. Exactly one of `table` and `query`.
    pub table: Option<String>,
    /// A query to read instead of a table (read as one unit).
    pub query: Option<String>,
    /// Rows per unit of a table (ranges of its rowid). Default 500000.
    pub range_rows: Option<u64>,
}

/// The language half of `kind: duckdb` sources.
pub struct DuckdbKind;

impl SourceKind for DuckdbKind {
    fn name(&self) -> &'static str {
        "duckdb"
    }
    fn default_ready(&self) -> sluice_core::spec::ReadyPolicy {
        sluice_core::spec::ReadyPolicy::Renamed
    }
    fn schema(&self) -> Value {
        schema_of::<RawDuckSource>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SourceConfig>> {
        let raw: RawDuckSource = cx.deserialize(keys)?;
        let name = cx.name().to_string();
        cx.table_or_query("duckdb", raw.table.is_some(), raw.query.is_some(), "main.trades");
        let range_rows = raw.range_rows.unwrap_or(500_000);
        if range_rows == 0 {
            cx.error(&["range_rows"], format!("source `{name}`: range_rows must be at least 1"), None);
        }
        let path = cx.path(&["path"], &raw.path);
        let table = raw.table.as_deref().map(|t| cx.interpolate(&["table"], t));
        let query = raw.query.as_deref().map(|q| cx.interpolate(&["query"], q));
        Some(Arc::new(sluice_core::spec::DuckSourceSpec { path, table, query, range_rows }))
    }
}
