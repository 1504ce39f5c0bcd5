//! Raw pipeline types: the YAML as written, with unknown keys rejected. No validation here.

use indexmap::IndexMap;
use serde::Deserialize;
use sluice_core::spec::{Compression, FileOrder, OnError, WriteMode};

/// One pipeline document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// The pipeline's name.
    pub pipeline: String,
    /// Environment variables that `${...}` may use: `NAME`, or `{NAME: default}`.
    #[serde(default)]
    pub env: Vec<RawEnvVar>,
    /// Named sources.
    pub sources: IndexMap<String, RawSource>,
    /// The handler chain, in order.
    #[serde(default)]
    pub steps: Vec<RawStep>,
    pub sink: RawSink,
    #[serde(default)]
    pub settings: RawSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawEnvVar {
    Name(String),
    WithDefault(IndexMap<String, String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The directory to read, relative to the pipeline file.
    pub path: String,
    /// Glob(s) relative to `path` selecting files; default `**/*`.
    pub glob: Option<OneOrMany>,
    /// Glob(s) removing files from the selection.
    pub exclude: Option<OneOrMany>,
    /// File-name pattern whose `{fields}` become columns, e.g. `{symbol}-1s-{date:date}.csv`.
    pub fields: Option<String>,
    pub format: RawFormat,
    pub order: Option<FileOrder>,
}

/// Exactly one format key: `csv: {...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    pub csv: Option<RawCsv>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// The first line names the columns. Default true.
    pub header: Option<bool>,
    pub delimiter: Option<String>,
    pub quote: Option<String>,
    /// Column names and types in file order (`int64`, `float64`, `utf8`, `bool`, `date32`,
    /// `timestamp_ms`, ...). Without it the schema is inferred from the first rows.
    pub columns: Option<IndexMap<String, String>>,
    /// Values read as NULL.
    pub null: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// A standard plugin's name, or a path to a `.wasm` component.
    pub plugin: String,
    /// A name for messages and metrics; defaults to the plugin's.
    pub name: Option<String>,
    /// The plugin's config, passed to it as JSON.
    pub config: Option<serde_json::Value>,
    pub limits: Option<RawLimits>,
    pub on_error: Option<OnError>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Deadline per call, e.g. `5s`.
    pub timeout: Option<String>,
    /// Memory cap per instance, e.g. `512MiB`.
    pub memory: Option<String>,
    /// Cap on the bytes one call may return, e.g. `256MiB`.
    pub output: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// The lake directory, relative to the pipeline file.
    pub lake: String,
    pub dataset: String,
    #[serde(default)]
    pub partition_by: Vec<String>,
    #[serde(default)]
    pub mode: WriteMode,
    pub compression: Option<Compression>,
    pub zstd_level: Option<i32>,
    pub row_group_rows: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub workers: Option<usize>,
    pub batch_rows: Option<usize>,
    pub limits: Option<RawLimits>,
}
