//! Raw pipeline types: the YAML as written, with unknown keys rejected. No validation here.
//!
//! These types are the single source of truth of the language's shape: the JSON Schema that
//! `sluice schema` prints and the structural checker in [`crate::check`] are both generated from
//! them (schemars), with the doc comments as descriptions.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use sluice_core::spec::{Compression, FileOrder, OnError, SourceCompression, WriteMode};

/// One pipeline document: sources, a chain of plugin steps, and a sink. A file may hold several
/// documents separated by `---`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Sluice pipeline")]
pub struct RawPipeline {
    /// The pipeline's name: letters, digits, `_` or `-`.
    pub pipeline: String,
    /// The environment variables that `${NAME}` may use, each `NAME` or `{NAME: default}`. Using
    /// a variable not declared here is an error.
    #[serde(default)]
    pub env: Vec<RawEnvVar>,
    /// Named sources; every source must yield the same columns. Each is of a `kind` (default
    /// `directory`), whose keys the registry of kinds checks and resolves.
    pub sources: IndexMap<String, serde_json::Value>,
    /// The handler chain, in order. Each step's output is the next step's input.
    #[serde(default)]
    pub steps: Vec<RawStep>,
    /// Where the rows go: a sink of a `kind` (default `lake`: a dataset in a Parquet lake).
    pub sink: serde_json::Value,
    /// Run settings: workers, batch size, default plugin limits.
    #[serde(default)]
    pub settings: RawSettings,
}

/// The part of a pipeline file a chain of steps needs, on its own (the Python package's
/// `Chain`): its `env:`, `steps:` and `settings:`. A whole pipeline file's other keys are set
/// aside before the check.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSteps {
    #[serde(default)]
    pub env: Vec<RawEnvVar>,
    pub steps: Vec<RawStep>,
    #[serde(default)]
    pub settings: RawSettings,
}

/// An allowed environment variable: `NAME`, or `{NAME: default}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawEnvVar {
    /// A variable that must be set.
    Name(String),
    /// Variables with the value used when they are not set.
    WithDefault(IndexMap<String, String>),
}

/// One string or a list of them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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

/// The keys every source has, whatever its kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSourceCommon {
    /// Rejected rows are set aside by default; these thresholds fail the whole unit instead.
    pub rejects: Option<RawRejects>,
    /// Failed attempts after which a unit is poisoned (skipped until it changes or `--force`).
    /// Default 3.
    pub retries: Option<u32>,
    /// When a file is complete: `{stable_for: 500ms}` (the default: size and modification time
    /// unchanged that long), `{marker: "{file}.done"}` or `{marker: _SUCCESS}` (a marker file
    /// per file or per directory), or `renamed` (writers rename complete files into place).
    pub ready: Option<RawReady>,
    /// How `sluice watch` notices new files: `{mode: auto|events|poll, poll_interval: 1s}`.
    pub watch: Option<RawWatch>,
    /// The kind of source: `directory` (the default) or another registered kind.
    pub kind: Option<String>,
}

/// `kind: directory`: a directory of files.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The directory to read, relative to the pipeline file. May use `${VAR}`.
    pub path: String,
    /// Glob(s) relative to `path` selecting files; default `**/*`.
    pub glob: Option<OneOrMany>,
    /// Glob(s) removing files from the selection.
    pub exclude: Option<OneOrMany>,
    /// File-name pattern whose `{field}` or `{field:type}` parts (types `string`, `int`, `date`)
    /// become columns, e.g. `{symbol}-1s-{date:date}.csv`.
    pub fields: Option<String>,
    /// How the files are read: exactly one format key.
    pub format: RawFormat,
    /// The order files are processed in: `name` (default) or `size_desc`.
    pub order: Option<RawFileOrder>,
    /// How files are compressed or archived: `auto` (default: by extension, `.gz`, `.zst`,
    /// `.zip`), `none`, `gzip`, `zstd` or `zip`.
    pub compression: Option<RawSourceCompression>,
    /// Glob(s) selecting the members of zip archives, matched against the member's path;
    /// default every data member.
    pub members: Option<OneOrMany>,
    /// Guards against zip bombs, huge archives and huge records.
    pub limits: Option<RawSourceLimits>,
}

/// When a file is complete: a policy name, or exactly one option.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawReady {
    /// `renamed`: writers rename complete files into place.
    Keyword(RawReadyKeyword),
    /// `{stable_for: DURATION}` or `{marker: NAME}`.
    Options(RawReadyOptions),
}

/// A readiness policy without options: `renamed` (writers rename complete files into place, so
/// a file under its final name is complete).
// No doc comments on the variants: schemars then emits a plain string enum, whose type the
// structural check matches when it explains a bad `ready:` value.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawReadyKeyword {
    Renamed,
}

/// Exactly one of `stable_for` or `marker`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReadyOptions {
    /// Size and modification time unchanged for this long, e.g. `500ms` (the default) or `2s`.
    pub stable_for: Option<String>,
    /// A marker file: `{file}.done` (one per data file, named after it) or a fixed name such as
    /// `_SUCCESS` (one per directory). It must be at least as new as the data file.
    pub marker: Option<String>,
}

/// How `sluice watch` notices new and changed files.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    /// `auto` (default: events, or polling on network and FUSE filesystems or when events cannot
    /// be set up), `events` or `poll`.
    pub mode: Option<RawWatchMode>,
    /// How often `poll` mode lists the directory, e.g. `1s` (the default).
    pub poll_interval: Option<String>,
}

/// Filesystem events or polling.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawWatchMode {
    /// Events, or polling where the filesystem has none (network mounts, FUSE).
    Auto,
    /// Filesystem events (inotify).
    Events,
    /// List the directory every `poll_interval`.
    Poll,
}

impl From<RawWatchMode> for sluice_core::spec::WatchMode {
    fn from(v: RawWatchMode) -> Self {
        match v {
            RawWatchMode::Auto => Self::Auto,
            RawWatchMode::Events => Self::Events,
            RawWatchMode::Poll => Self::Poll,
        }
    }
}

/// How a source's files are compressed.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawSourceCompression {
    /// By extension: `.gz`, `.zst`, `.zip`; anything else is read as is.
    Auto,
    None,
    Gzip,
    Zstd,
    Zip,
}

/// Limits on what one file may expand to, and on what one record may hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSourceLimits {
    /// Members per zip archive. Default 100000.
    pub max_members: Option<usize>,
    /// Decompressed bytes per unit (a zip member, or a whole `.gz`/`.zst` file), e.g. `64GiB`
    /// (the default).
    pub max_unit_bytes: Option<String>,
    /// Bytes of one CSV record or JSON line, e.g. `8MiB` (the default). A longer record is
    /// skipped without being held in memory and becomes a reject with its line number; the
    /// `rejects` thresholds decide whether its file fails.
    pub max_record_bytes: Option<String>,
    /// Decompressed bytes per compressed byte of a `.gz`/`.zst` file or zip member, checked after
    /// its first 4 MiB; a higher ratio fails the file as a decompression bomb. Default 100.
    pub max_ratio: Option<u64>,
}

/// When rejected rows fail the whole file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRejects {
    /// More rejected rows than this in one file fail it.
    pub max_errors: Option<u64>,
    /// A larger share of rejected rows (rejects / all rows, 0 to 1) fails the file.
    pub max_error_rate: Option<f64>,
}

/// Exactly one format key, e.g. `csv: {header: true}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    /// Comma-separated values.
    pub csv: Option<RawCsv>,
    /// One JSON object per line.
    pub jsonl: Option<RawJsonl>,
    /// A JSON array of objects (`[{...}, {...}]`), read streaming.
    pub json: Option<RawJsonl>,
    /// Parquet files; the schema is the file's. Write `parquet: {}`.
    pub parquet: Option<RawParquet>,
}

/// JSON lines options.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJsonl {
    /// Field names and types (as for CSV columns). Without it the schema is inferred.
    pub columns: Option<IndexMap<String, String>>,
}

/// Parquet options (none yet).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParquet {}

/// CSV options.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// The first line names the columns. Default true.
    pub header: Option<bool>,
    /// The field separator, one ASCII character (`\t` for tab). Default `,`.
    pub delimiter: Option<String>,
    /// The quote character, one ASCII character. Default `"`.
    pub quote: Option<String>,
    /// Column names and types in file order (`int64`, `float64`, `utf8`, `bool`, `date32`,
    /// `timestamp_ms`, ...). Without it the schema is inferred from the first rows.
    pub columns: Option<IndexMap<String, String>>,
    /// Values read as NULL.
    pub null: Option<Vec<String>>,
    /// Columns that may not be NULL: `"*"` (every column) or a list of names. A row with an
    /// empty field or a `null` token in one of them is a reject (set aside with the malformed
    /// rows, its reason naming the column), which is cheaper than a filter step.
    pub not_null: Option<OneOrMany>,
}

/// One handler in the chain.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// A standard plugin's name (`sluice plugin list`), or a path to a `.wasm` component relative
    /// to the pipeline file.
    pub plugin: String,
    /// A name for messages and metrics; defaults to the plugin's.
    pub name: Option<String>,
    /// The plugin's config, passed to it as JSON; `sluice plugin inspect NAME` documents it.
    pub config: Option<serde_json::Value>,
    /// Resource limits of this step's instances; default `settings.limits`.
    pub limits: Option<RawLimits>,
    /// What happens to a file when this step fails on it: `fail` (default), `skip_file` or
    /// `dead_letter`.
    pub on_error: Option<RawOnError>,
    /// Lookup tables for the plugin (e.g. `enrich`): `{name: path}`, each a `.csv` file with a
    /// header line or a `.parquet` file (at most 64 MiB), relative to the pipeline file. The host
    /// reads them and gives them to the plugin's constructor.
    pub tables: Option<IndexMap<String, String>>,
}

/// Resource limits of one plugin instance.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Deadline per call, e.g. `500ms`, `5s`, `2m` (at most `1h`). Default `5s`.
    pub timeout: Option<String>,
    /// Memory cap per instance, e.g. `512MiB`. Default `512MiB`.
    pub memory: Option<String>,
    /// Cap on the bytes one call may return, e.g. `256MiB`. Default `256MiB`.
    pub output: Option<String>,
}

/// The keys every sink has, whatever its kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSinkCommon {
    /// What happens to a file whose rows the sink rejects (a column type the `schema_policy`
    /// refuses, a partition value too long for a directory name): `fail` (default), `skip_file`
    /// or `dead_letter`.
    pub on_error: Option<RawOnError>,
    /// The kind of sink: `lake` (the default) or another registered kind.
    pub kind: Option<String>,
}

/// `kind: lake`: the lake dataset the pipeline writes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// The lake directory, relative to the pipeline file. May use `${VAR}`.
    pub lake: String,
    /// The dataset's name: letters, digits, `_` or `-`, not starting with `_`.
    pub dataset: String,
    /// Columns that become hive partition directories (`col=value/`), in order.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// The write mode: `append` (default), `replace_partition` or `upsert` (needs `key`).
    #[serde(default)]
    pub mode: RawWriteMode,
    /// Parquet compression: `zstd` (default), `snappy` or `none`.
    pub compression: Option<RawCompression>,
    /// The zstd level, 1 to 22. Default 3.
    pub zstd_level: Option<i32>,
    /// Rows per Parquet row group. Default 524288.
    pub row_group_rows: Option<usize>,
    /// The key columns of `mode: upsert`.
    #[serde(default)]
    pub key: Vec<String>,
    /// `evolve` (default), `freeze` or `discard_columns`.
    pub schema_policy: Option<RawSchemaPolicy>,
    /// A time column whose min and max the dataset's `stats.json` reports.
    pub time_column: Option<String>,
    /// How long files that a commit replaced stay on disk for readers of an older catalog
    /// snapshot, e.g. `30s`, `10m` (the default), `2h`; `0s` deletes them at once.
    pub retain_replaced: Option<String>,
    /// When a committed source file is deleted: `keep` (default) its rows, or `delete` them.
    pub on_source_deleted: Option<RawOnSourceDeleted>,
    /// How a commit makes its files durable before the ledger records it: `filesystem` (default:
    /// one `syncfs` for all of them; `files` off Linux) or `files` (fsync each file and
    /// directory).
    pub sync: Option<RawSyncMode>,
    /// Let `sluice watch` compact small files on its own, e.g. `{min_files: 50, target_size:
    /// 128MiB}`: after a pass that committed, a partition with at least `min_files` files under
    /// half the target size is bin-packed (as `sluice lake compact` does).
    pub compact: Option<RawCompact>,
}

/// `sink.compact`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCompact {
    /// Small files a partition must hold before it is compacted (at least 2). Default 20.
    pub min_files: Option<usize>,
    /// The size a compacted file aims at, e.g. `128MiB` (the default).
    pub target_size: Option<String>,
}

/// How a commit makes its files durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawSyncMode {
    /// fsync each file and each directory.
    Files,
    /// One syncfs of the lake's filesystem (Linux).
    Filesystem,
}

impl From<RawSyncMode> for sluice_core::spec::SyncMode {
    fn from(v: RawSyncMode) -> Self {
        match v {
            RawSyncMode::Files => sluice_core::spec::SyncMode::Files,
            RawSyncMode::Filesystem => sluice_core::spec::SyncMode::Filesystem,
        }
    }
}

/// What a run does with the rows of a committed source file that was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawOnSourceDeleted {
    /// Its rows stay in the dataset.
    Keep,
    /// A run removes its rows from the dataset.
    Delete,
}

impl From<RawOnSourceDeleted> for sluice_core::spec::OnSourceDeleted {
    fn from(v: RawOnSourceDeleted) -> Self {
        match v {
            RawOnSourceDeleted::Keep => Self::Keep,
            RawOnSourceDeleted::Delete => Self::Delete,
        }
    }
}

/// How the sink treats new columns and changed types.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawSchemaPolicy {
    /// Add new columns; widen types safely (int32→int64, float32→float64, int→float64).
    Evolve,
    /// Reject new columns and type changes after the first commit.
    Freeze,
    /// Drop new columns; reject type changes.
    DiscardColumns,
}

impl From<RawSchemaPolicy> for sluice_core::spec::SchemaPolicy {
    fn from(v: RawSchemaPolicy) -> Self {
        match v {
            RawSchemaPolicy::Evolve => Self::Evolve,
            RawSchemaPolicy::Freeze => Self::Freeze,
            RawSchemaPolicy::DiscardColumns => Self::DiscardColumns,
        }
    }
}

/// Run settings.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Files processed in parallel. Default: the number of CPUs.
    pub workers: Option<usize>,
    /// Rows per batch read from sources. Default 65536.
    pub batch_rows: Option<usize>,
    /// Default limits for steps that set none.
    pub limits: Option<RawLimits>,
}

/// The order files are processed in.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawFileOrder {
    /// By path, which for date-stamped names is time order.
    Name,
    /// Largest first, for load balance across workers.
    SizeDesc,
}

/// What happens to a file when a step fails on it.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawOnError {
    /// Stop the run; exit 1.
    Fail,
    /// Skip the file, record it as failed, go on.
    SkipFile,
    /// Record the file and the error in the lake's dead-letter log, go on.
    DeadLetter,
}

/// How the sink writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawWriteMode {
    /// Add the rows of new files.
    #[default]
    Append,
    /// Each commit replaces the whole content of the partitions it touches.
    ReplacePartition,
    /// Merge rows by `key` into the partitions touched: of rows with the same key, the newest is kept.
    Upsert,
}

/// Parquet compression codec.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawCompression {
    Zstd,
    Snappy,
    None,
}

impl From<RawFileOrder> for FileOrder {
    fn from(v: RawFileOrder) -> Self {
        match v {
            RawFileOrder::Name => FileOrder::Name,
            RawFileOrder::SizeDesc => FileOrder::SizeDesc,
        }
    }
}

impl From<RawSourceCompression> for SourceCompression {
    fn from(v: RawSourceCompression) -> Self {
        match v {
            RawSourceCompression::Auto => SourceCompression::Auto,
            RawSourceCompression::None => SourceCompression::None,
            RawSourceCompression::Gzip => SourceCompression::Gzip,
            RawSourceCompression::Zstd => SourceCompression::Zstd,
            RawSourceCompression::Zip => SourceCompression::Zip,
        }
    }
}

impl From<RawOnError> for OnError {
    fn from(v: RawOnError) -> Self {
        match v {
            RawOnError::Fail => OnError::Fail,
            RawOnError::SkipFile => OnError::SkipFile,
            RawOnError::DeadLetter => OnError::DeadLetter,
        }
    }
}

impl From<RawWriteMode> for WriteMode {
    fn from(v: RawWriteMode) -> Self {
        match v {
            RawWriteMode::Append => WriteMode::Append,
            RawWriteMode::ReplacePartition => WriteMode::ReplacePartition,
            RawWriteMode::Upsert => WriteMode::Upsert,
        }
    }
}

impl From<RawCompression> for Compression {
    fn from(v: RawCompression) -> Self {
        match v {
            RawCompression::Zstd => Compression::Zstd,
            RawCompression::Snappy => Compression::Snappy,
            RawCompression::None => Compression::None,
        }
    }
}

/// The JSON Schema of the pipeline's frame (draft 2020-12), from the raw types: sources and the
/// sink are any object here; [`crate::Kinds`] checks each against its kind's schema, and
/// [`crate::Kinds::json_schema`] composes the whole language.
pub(crate) fn frame_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawPipeline)).expect("a schema serializes")
}

/// The JSON Schema of one raw type (draft 2020-12), with its `$defs`.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("a schema serializes")
}
