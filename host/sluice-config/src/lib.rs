//! Sluice pipeline YAML: parsed into a tree that keeps every position, checked against the schema
//! of the raw types (which mirror the file, unknown keys rejected), then resolved into the
//! validated [`sluice_core::spec`] types. Every problem is reported in one pass with
//! file:line:column. Parsing and resolution have no side effects; checks that touch the
//! environment (plugins load, directories exist) live in the CLI's `validate`.

mod check;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod kinds;
mod raw;
mod resolve;
mod units;
mod yaml;

pub use error::{ConfigError, ConfigErrors};
pub use kinds::{
    DEFAULT_SINK_KIND, DEFAULT_SOURCE_KIND, DuckdbKind, Kinds, RawDuckSource, Section, SinkKind, SourceKind,
};
pub use raw::{RawPipeline, schema_of};

/// The JSON schema of a `kind: lake` sink's keys (for kinds that take the same keys).
pub fn lake_sink_schema() -> serde_json::Value {
    schema_of::<raw::RawSink>()
}
/// The JSON schema of a `kind: directory` source's keys (for kinds that read files the same way,
/// from somewhere else: their `glob`, `fields`, `format`, `compression`, `members`, `limits`).
pub fn directory_source_schema() -> serde_json::Value {
    schema_of::<raw::RawSource>()
}
pub use resolve::{
    Document, LoadedPipeline, load_file, load_path, load_path_located, load_path_located_with, parse_located,
    parse_located_with, parse_steps, parse_str,
};
/// A duration as the pipeline language writes it (`15m`, `500ms`, `0s`).
pub use units::parse_duration_or_zero as duration_or_zero;
pub use units::parse_size as size;

/// The JSON Schema of the pipeline language with the built-in kinds (see [`Kinds::json_schema`]).
pub fn json_schema() -> serde_json::Value {
    Kinds::builtin().json_schema()
}

/// The closest of `candidates` to `word` within a small edit distance (for "did you mean" hints).
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    check::closest(word, candidates)
}

/// Parse one YAML (or JSON) value, e.g. a plugin config given on the command line.
pub fn yaml_value(text: &str) -> Result<serde_json::Value, String> {
    let docs = yaml::parse(text).map_err(|e| format!("{}:{}: {}", e.at.line, e.at.column, e.message))?;
    match docs.as_slice() {
        [] => Ok(serde_json::Value::Null),
        [one] => Ok(one.to_json()),
        _ => Err("expected one YAML document, found several".into()),
    }
}
