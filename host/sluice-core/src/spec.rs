//! The validated pipeline model: what `sluice-config` resolves YAML into and the runner executes.
//!
//! Every value here has been checked; the runner never re-validates. Defaults live here too, so
//! that YAML, the JSON Schema and the docs all agree on them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::DataType;
use serde::{Serialize, Serializer};

impl PipelineSpec {
    /// What decides whether a committed unit is stale ([`crate::lineage::digest`]): the
    /// definition without `settings` (workers, batch sizes and limits change how a run goes,
    /// not what it writes; `workers` defaults to the machine's cores).
    pub fn output_hash(&self) -> String {
        let text = serde_json::to_string(&(&self.name, &self.sources, &self.steps, &self.sink)).unwrap_or_default();
        crate::sha256_hex(&[text.as_bytes()])[..16].to_string()
    }

    /// A hash of what the pipeline does (sources, steps and their configs, sink, settings; not
    /// the file it was read from): a unit that failed under one definition is retried under
    /// another.
    pub fn definition_hash(&self) -> String {
        let text = serde_json::to_string(&(&self.name, &self.sources, &self.steps, &self.sink, &self.settings))
            .unwrap_or_default();
        crate::sha256_hex(&[text.as_bytes()])[..16].to_string()
    }
}

/// A source kind's validated settings (`kind: directory` resolves to a
/// [`DirSpec`]).
pub trait SourceConfig: std::fmt::Debug + Send + Sync + 'static {
    /// The kind's name in the pipeline language.
    fn kind(&self) -> &'static str;
    /// The settings as data, for the pipeline's definition hash.
    fn definition(&self) -> serde_json::Value;
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A sink kind's validated settings (`kind: lake` resolves to a
/// [`LakeSpec`]).
pub trait SinkConfig: std::fmt::Debug + Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    fn definition(&self) -> serde_json::Value;
    fn as_any(&self) -> &dyn std::any::Any;
}

/// One pipeline: sources, a chain of steps, and a sink.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineSpec {
    pub name: String,
    /// The file the pipeline was read from, for messages.
    pub origin: PathBuf,
    pub sources: Vec<SourceSpec>,
    pub steps: Vec<StepSpec>,
    pub sink: SinkSpec,
    pub settings: Settings,
}

impl PipelineSpec {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceSpec> {
        self.sources.iter().find(|s| s.name == name)
    }
}

/// A named source: its kind's own settings, and what every kind shares.
#[derive(Debug, Clone, Serialize)]
pub struct SourceSpec {
    pub name: String,
    /// The kind's validated settings (`kind: directory` is a [`DirSpec`]).
    #[serde(serialize_with = "source_definition")]
    pub config: Arc<dyn SourceConfig>,
    /// When rejected rows make a whole unit fail instead.
    pub rejects: RejectPolicy,
    /// Failed attempts after which a unit is poisoned (skipped until it changes or `--force`).
    pub retries: u32,
    /// When a unit is complete and may be ingested.
    pub ready: ReadyPolicy,
    /// How `sluice watch` learns about new and changed units.
    pub watch: WatchSpec,
}

fn source_definition<S: Serializer>(c: &Arc<dyn SourceConfig>, s: S) -> Result<S::Ok, S::Error> {
    (c.kind(), c.definition()).serialize(s)
}

fn sink_definition<S: Serializer>(c: &Arc<dyn SinkConfig>, s: S) -> Result<S::Ok, S::Error> {
    (c.kind(), c.definition()).serialize(s)
}

impl SourceSpec {
    /// The source's kind (`directory`, ...).
    pub fn kind(&self) -> &'static str {
        self.config.kind()
    }

    /// The kind's settings as their own type, when they are of type `T`.
    pub fn config_as<T: 'static>(&self) -> Option<&T> {
        self.config.as_any().downcast_ref()
    }
}

/// `kind: directory`: the files of a directory.
#[derive(Debug, Clone, Serialize)]
pub struct DirSpec {
    pub path: PathBuf,
    /// Glob patterns, relative to `path`, that select files. Matched against the relative path.
    pub include: Vec<String>,
    /// Glob patterns that remove files from the selection.
    pub exclude: Vec<String>,
    /// A pattern such as `{symbol}-1s-{date}.csv` whose parts become columns.
    pub fields: Option<FieldsPattern>,
    pub format: FormatSpec,
    pub order: FileOrder,
    /// How files are compressed or archived; `Auto` decides by extension.
    pub compression: SourceCompression,
    /// Glob patterns selecting the members of zip archives (matched against the member's path).
    pub members: Vec<String>,
    /// Guards against zip bombs and huge archives.
    pub limits: SourceLimits,
}

impl SourceConfig for DirSpec {
    fn kind(&self) -> &'static str {
        "directory"
    }
    fn definition(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// When a file is complete. Temporary names (`.*`, `_*`, `*.partial`, `*.tmp`, ...) are never
/// complete, whatever the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyPolicy {
    /// Size and modification time unchanged for this long (`sluice watch`; `sluice run` takes
    /// files as they are).
    StableFor(Duration),
    /// A marker file says the data is complete.
    Marker(Marker),
    /// Writers rename complete files into place: a file under its final name is complete.
    Renamed,
}

/// Default `ready`: size and modification time unchanged for 500 ms.
pub const DEFAULT_STABLE_FOR: Duration = Duration::from_millis(500);

impl Default for ReadyPolicy {
    fn default() -> Self {
        ReadyPolicy::StableFor(DEFAULT_STABLE_FOR)
    }
}

/// A marker file name: with `{file}` (e.g. `{file}.done`) one marker per data file, named after
/// it; without (e.g. `_SUCCESS`) one marker per directory, for every file in it. Either way the
/// marker sits in the data file's directory, must be at least as new as the data file, and is
/// never data itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Marker {
    pub template: String,
}

impl Marker {
    /// The placeholder for the data file's name.
    pub const FILE: &'static str = "{file}";

    /// Check a template: a file name (no `/`), `{file}` at most once and not alone.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.is_empty() || template.contains('/') || template.contains('\\') {
            return Err(format!("marker `{template}` must be a file name, without directories"));
        }
        if template.matches(Self::FILE).count() > 1 {
            return Err(format!("marker `{template}` may use `{{file}}` once"));
        }
        if template == Self::FILE {
            return Err("marker `{file}` names the data file itself; add a suffix such as `{file}.done`".into());
        }
        if template.replacen(Self::FILE, "", 1).contains(['{', '}']) {
            return Err(format!("marker `{template}`: the only placeholder is `{{file}}`"));
        }
        Ok(Marker { template: template.to_string() })
    }

    /// One marker per data file (the template uses `{file}`).
    pub fn per_file(&self) -> bool {
        self.template.contains(Self::FILE)
    }

    /// The marker of a data file.
    pub fn path_for(&self, file: &std::path::Path) -> PathBuf {
        let name = file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        file.with_file_name(self.template.replacen(Self::FILE, &name, 1))
    }

    /// True when a file name is a marker's (so never data).
    pub fn matches(&self, name: &str) -> bool {
        match self.template.split_once(Self::FILE) {
            Some((pre, post)) => name.len() > pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post),
            None => name == self.template,
        }
    }
}

/// How `sluice watch` learns about new and changed files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WatchSpec {
    pub mode: WatchMode,
    /// How often `poll` mode lists the directory.
    pub poll_interval: Duration,
}

/// Default `watch.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

impl Default for WatchSpec {
    fn default() -> Self {
        WatchSpec { mode: WatchMode::Auto, poll_interval: DEFAULT_POLL_INTERVAL }
    }
}

/// Filesystem events, polling, or the right one for the directory's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    /// Events, unless the directory is on a network or FUSE filesystem (NFS, SMB, 9p, ...) or
    /// events cannot be set up: then polling.
    #[default]
    Auto,
    /// Filesystem events (inotify on Linux).
    Events,
    /// List the directory every `poll_interval`.
    Poll,
}

/// How a source's files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceCompression {
    /// By extension: `.gz`, `.zst`, `.zip`; anything else is read as is.
    #[default]
    Auto,
    None,
    Gzip,
    Zstd,
    Zip,
}

/// Limits on what one file may expand to, and on what one record may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SourceLimits {
    /// Members per zip archive.
    pub max_members: usize,
    /// Decompressed bytes per unit (a zip member, or a whole `.gz`/`.zst` file).
    pub max_unit_bytes: u64,
    /// Bytes of one CSV record or JSON line: a longer one is skipped without being held in
    /// memory and becomes a reject (so the `rejects` policy decides whether the unit fails).
    pub max_record_bytes: u64,
    /// Decompressed bytes per compressed byte of a `.gz`/`.zst` file or a zip member, checked
    /// once [`RATIO_GRACE_BYTES`] have come out: a higher ratio fails the unit as a bomb.
    pub max_ratio: u64,
}

/// Default `limits.max_record_bytes` (like DuckDB's `max_line_size`, a few MiB).
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 8 << 20;

/// The largest `limits.max_record_bytes` a pipeline may set (a record is held whole).
pub const MAX_RECORD_BYTES_CAP: u64 = 1 << 30;

/// Default `limits.max_ratio`: Apache POI's zip-bomb guard refuses more than 100:1 too.
/// Ordinary text compresses 3:1 to 20:1; deflate's limit on any input is about 1030:1.
pub const DEFAULT_MAX_RATIO: u64 = 100;

/// Decompressed bytes of a unit before its compression ratio is checked: small, very
/// compressible files are never bombs.
pub const RATIO_GRACE_BYTES: u64 = 4 << 20;

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            max_members: 100_000,
            max_unit_bytes: 64 << 30,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_ratio: DEFAULT_MAX_RATIO,
        }
    }
}

/// Rejected rows are set aside by default; these thresholds fail the whole unit instead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct RejectPolicy {
    /// More rejects than this in one unit fail it.
    pub max_errors: Option<u64>,
    /// A larger share of rejected rows (rejects / all rows) fails the unit.
    pub max_error_rate: Option<f64>,
}

impl RejectPolicy {
    /// Whether `rejects` rejected rows exceed `max_errors`: the message saying so. `by` names
    /// who rejected them, when not only the reader (`"the source and steps"`).
    pub fn over_max_errors(&self, rejects: u64, by: Option<&str>) -> Option<String> {
        let max = self.max_errors.filter(|&max| rejects > max)?;
        let by = by.map(|b| format!(" (by {b})")).unwrap_or_default();
        Some(format!("{rejects} rejected rows{by}, more than max_errors = {max}"))
    }

    /// Whether `rejects` of `rows` rows exceed `max_error_rate`: the message saying so.
    pub fn over_max_error_rate(&self, rejects: u64, rows: u64, by: Option<&str>) -> Option<String> {
        let rate = if rows == 0 { 0.0 } else { rejects as f64 / rows as f64 };
        let max = self.max_error_rate.filter(|&max| rate > max)?;
        let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
        Some(format!("{rejects} of {rows} rows rejected{by} ({:.2}%), more than max_error_rate = {max}", rate * 100.0))
    }
}

/// Default `retries`: failed attempts before a unit is poisoned.
pub const DEFAULT_RETRIES: u32 = 3;

/// A parsed file-name pattern.
#[derive(Debug, Clone, Serialize)]
pub struct FieldsPattern {
    pub pattern: String,
    /// Alternating literal text and typed captures.
    pub parts: Vec<PatternPart>,
}

#[derive(Debug, Clone, Serialize)]
pub enum PatternPart {
    Literal(String),
    Field { name: String, kind: FieldKind },
}

/// The type of a file-name field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    Int,
    Date,
}

impl FieldKind {
    pub fn data_type(self) -> DataType {
        match self {
            FieldKind::String => DataType::Utf8,
            FieldKind::Int => DataType::Int64,
            FieldKind::Date => DataType::Date32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileOrder {
    /// By path, which for date-stamped names is time order.
    #[default]
    Name,
    /// Largest first, for load balance across workers.
    SizeDesc,
}

#[derive(Debug, Clone, Serialize)]
pub enum FormatSpec {
    Csv(CsvSpec),
    /// One JSON object per line.
    Jsonl(JsonlSpec),
    /// A JSON array of objects, read streaming; options as for JSON lines.
    Json(JsonlSpec),
    /// Parquet files; the schema is the file's.
    Parquet,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct JsonlSpec {
    /// Explicit typed fields. `None` means: infer from a sample.
    pub columns: Option<Vec<(String, DataType)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CsvSpec {
    pub header: bool,
    pub delimiter: u8,
    pub quote: u8,
    /// Explicit typed columns, in file order. `None` means: infer from a sample.
    pub columns: Option<Vec<(String, DataType)>>,
    /// Values read as NULL.
    pub null_tokens: Vec<String>,
    /// Columns that may not be NULL: a row with an empty field (or a null token) in one of them
    /// is a reject, set aside with the others (`format.csv.not_null`).
    pub not_null: ColumnSet,
}

impl Default for CsvSpec {
    /// What `format: {csv: {}}` means: a header line, `,` and `"`, inferred columns, only empty
    /// fields read as NULL, and no column required.
    fn default() -> Self {
        CsvSpec {
            header: true,
            delimiter: b',',
            quote: b'"',
            columns: None,
            null_tokens: Vec::new(),
            not_null: ColumnSet::None,
        }
    }
}

/// A set of columns named in config: none, every column (`"*"`), or these names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnSet {
    #[default]
    None,
    All,
    Named(Vec<String>),
}

impl ColumnSet {
    /// Whether the set holds the column `name`.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            ColumnSet::None => false,
            ColumnSet::All => true,
            ColumnSet::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

pub use sluice_chain::spec::{Limits, PluginRef};

/// What happens to a source unit when a step fails on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the run; exit 1.
    #[default]
    Fail,
    /// Skip the unit, record it as failed, go on.
    SkipFile,
    /// Record the unit and the error in the lake's dead-letter log, go on.
    DeadLetter,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepSpec {
    /// Display name: the step's `name`, else the plugin's.
    pub name: String,
    pub plugin: PluginRef,
    /// The step's config as JSON text (`null` when absent).
    pub config_json: String,
    pub limits: Limits,
    pub on_error: OnError,
    /// Lookup tables read by the host and given to the handler's constructor, in YAML order.
    pub tables: Vec<TableSpec>,
}

/// A step's lookup table: `tables: {name: path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    /// The name the plugin knows the table by.
    pub name: String,
    /// The file, resolved relative to the pipeline file.
    pub path: PathBuf,
    pub format: TableFormat,
}

/// The format of a lookup table file, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// `.csv`: comma-separated with a header line; types inferred; empty fields are null.
    Csv,
    /// `.parquet`.
    Parquet,
}

impl TableFormat {
    /// The format of a file name, by extension.
    pub fn of(path: &std::path::Path) -> Option<TableFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(TableFormat::Csv),
            "parquet" => Some(TableFormat::Parquet),
            _ => None,
        }
    }
}

/// The largest lookup table file a step may name: tables are held in memory and copied into
/// every instance of the step.
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    #[default]
    Append,
    ReplacePartition,
    Upsert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    None,
}

/// The pipeline's sink: its kind's own settings, and what every kind shares.
#[derive(Debug, Clone, Serialize)]
pub struct SinkSpec {
    /// The kind's validated settings (`kind: lake` is a [`LakeSpec`]).
    #[serde(serialize_with = "sink_definition")]
    pub config: Arc<dyn SinkConfig>,
    /// What happens to a unit whose rows the sink rejects (a schema the policy refuses, a
    /// partition value that cannot be a directory name). I/O errors always stop the run.
    pub on_error: OnError,
}

impl SinkSpec {
    /// The sink's kind (`lake`, ...).
    pub fn kind(&self) -> &'static str {
        self.config.kind()
    }

    /// The kind's settings as their own type, when they are of type `T`.
    pub fn config_as<T: 'static>(&self) -> Option<&T> {
        self.config.as_any().downcast_ref()
    }
}

/// `kind: lake`: a dataset in a hive-partitioned Parquet lake.
#[derive(Debug, Clone, Serialize)]
pub struct LakeSpec {
    pub lake: PathBuf,
    pub dataset: String,
    pub partition_by: Vec<String>,
    pub mode: WriteMode,
    pub compression: Compression,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// The key columns of `upsert` (of rows with the same key, the newest is kept).
    pub key: Vec<String>,
    /// What happens when a unit's columns differ from the dataset's.
    pub schema_policy: SchemaPolicy,
    /// A time column whose min and max the dataset's `stats.json` reports.
    pub time_column: Option<String>,
    /// How long files a commit replaced or removed stay on disk, for readers still holding an
    /// older catalog snapshot. Zero deletes them right after the commit.
    pub retain_replaced: Duration,
    /// What a run does with the outputs of committed files that no longer exist.
    pub on_source_deleted: OnSourceDeleted,
    /// How a commit makes the unit's files durable before its ledger record.
    pub sync: SyncMode,
    /// `sluice watch` compacts the dataset's small files on its own (see `sluice lake compact`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compact: Option<CompactSpec>,
}

/// When `sluice watch` compacts a lake dataset: after a pass that committed, once a partition
/// holds `min_files` files smaller than half of `target_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CompactSpec {
    pub min_files: usize,
    pub target_size: u64,
}

/// How a lake makes a unit's files durable before its ledger record says they are committed.
/// Both are durable; they differ in how many syncs a commit costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// fsync each file, then each directory a rename changed, then the ledger; and the hive
    /// directories after linking.
    Files,
    /// One `syncfs` of the lake's filesystem (every file, rename and directory entry the commit
    /// made), then the ledger. Hive links are not synced: they are derived from the ledger and
    /// repaired on open. Linux; elsewhere the same as `files`.
    #[default]
    Filesystem,
}

impl SinkConfig for LakeSpec {
    fn kind(&self) -> &'static str {
        "lake"
    }
    fn definition(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Default `retain_replaced`.
pub const DEFAULT_RETAIN_REPLACED: Duration = Duration::from_secs(600);

/// What a run does with the outputs of a committed source file that was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnSourceDeleted {
    /// Its rows stay in the dataset.
    #[default]
    Keep,
    /// Its files are removed from the dataset (one commit per deleted file).
    Delete,
}

/// How a sink treats new columns and changed types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchemaPolicy {
    /// Add new columns; widen changed types safely (int32→int64, float32→float64, int→float64).
    #[default]
    Evolve,
    /// The first commit fixes the schema: new columns and widened types are rejected.
    Freeze,
    /// Drop columns the dataset does not have; types follow `freeze`.
    DiscardColumns,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Files processed in parallel, each with its own handler instances.
    pub workers: usize,
    /// Rows per batch read from sources.
    pub batch_rows: usize,
    /// Default limits for steps that set none.
    pub limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            batch_rows: 65_536,
            limits: Limits::default(),
        }
    }
}

impl FieldsPattern {
    /// Parse `{name}` / `{name:type}` captures between literal text. Types: `string` (default),
    /// `int`, `date` (`YYYY-MM-DD`). Two captures must be separated by literal text.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let close = rest.find('}').ok_or_else(|| format!("unclosed `{{` in `{pattern}`"))?;
                    let inner = &rest[1..close];
                    let (name, kind) = match inner.split_once(':') {
                        Some((n, k)) => (n.trim(), k.trim()),
                        None => (inner.trim(), "string"),
                    };
                    let kind = match kind {
                        "string" | "str" => FieldKind::String,
                        "int" => FieldKind::Int,
                        "date" => FieldKind::Date,
                        other => return Err(format!("unknown field type `{other}` (expected string, int or date)")),
                    };
                    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(format!("bad field name `{name}`: use letters, digits and `_`"));
                    }
                    if matches!(parts.last(), Some(PatternPart::Field { .. })) {
                        return Err(format!("fields `{{...}}{{{name}}}` need literal text between them"));
                    }
                    parts.push(PatternPart::Field { name: name.to_string(), kind });
                    rest = &rest[close + 1..];
                }
                Some(i) => {
                    parts.push(PatternPart::Literal(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(PatternPart::Literal(rest.to_string()));
                    rest = "";
                }
            }
        }
        Ok(FieldsPattern { pattern: pattern.to_string(), parts })
    }

    /// The fields in order, with their types.
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldKind)> {
        self.parts.iter().filter_map(|p| match p {
            PatternPart::Field { name, kind } => Some((name.as_str(), *kind)),
            PatternPart::Literal(_) => None,
        })
    }

    /// Match a whole string; each capture takes the shortest text up to the next literal.
    pub fn captures(&self, s: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut rest = s;
        let mut i = 0;
        while i < self.parts.len() {
            match &self.parts[i] {
                PatternPart::Literal(lit) => rest = rest.strip_prefix(lit.as_str())?,
                PatternPart::Field { name, .. } => {
                    let value = match self.parts.get(i + 1) {
                        Some(PatternPart::Literal(next)) => {
                            let at = rest.find(next.as_str())?;
                            let v = &rest[..at];
                            rest = &rest[at..];
                            v
                        }
                        _ => std::mem::take(&mut rest),
                    };
                    if value.is_empty() {
                        return None;
                    }
                    out.push((name.clone(), value.to_string()));
                }
            }
            i += 1;
        }
        rest.is_empty().then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_pattern_captures_typed_parts() {
        let p = FieldsPattern::parse("{symbol}-1s-{date:date}.csv").unwrap();
        assert_eq!(
            p.captures("BTCUSDT-1s-2024-01-02.csv").unwrap(),
            vec![("symbol".into(), "BTCUSDT".into()), ("date".into(), "2024-01-02".into())]
        );
        assert!(p.captures("BTCUSDT-1m-2024-01-02.csv").is_none());
        assert!(p.captures("BTCUSDT-1s-2024-01-02.csv.bak").is_none());
        assert!(FieldsPattern::parse("{a}{b}").is_err());
        assert!(FieldsPattern::parse("{a:float}").is_err());
    }

    #[test]
    fn markers_per_file_and_per_directory() {
        let done = Marker::parse("{file}.done").unwrap();
        assert!(done.per_file());
        assert_eq!(done.path_for(std::path::Path::new("/in/a.csv")), PathBuf::from("/in/a.csv.done"));
        assert!(done.matches("a.csv.done"));
        assert!(!done.matches(".done"));
        assert!(!done.matches("a.csv"));
        let success = Marker::parse("_SUCCESS").unwrap();
        assert!(!success.per_file());
        assert_eq!(success.path_for(std::path::Path::new("/in/d/a.csv")), PathBuf::from("/in/d/_SUCCESS"));
        assert!(success.matches("_SUCCESS") && !success.matches("a.csv"));
        for bad in ["", "{file}", "d/{file}.done", "{file}.{file}", "{name}.done"] {
            assert!(Marker::parse(bad).is_err(), "{bad}");
        }
    }
}

/// A secret a connector needs (a database password), read from an environment variable the
/// pipeline declares in `env:`. Only the variable's name is ever shown or serialized (so the
/// definition hash, logs, errors, summaries and the lake never hold the value).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    env: String,
    value: String,
}

impl Secret {
    pub fn new(env: impl Into<String>, value: impl Into<String>) -> Self {
        Secret { env: env.into(), value: value.into() }
    }
    /// The environment variable it came from.
    pub fn env(&self) -> &str {
        &self.env
    }
    /// The value, for the connection that needs it (never for a message).
    pub fn expose(&self) -> &str {
        &self.value
    }
    /// `text` with every occurrence of the value replaced by `***` (a server may quote what it
    /// was sent); values shorter than 4 bytes are left alone, as they would mask ordinary words.
    pub fn redact(&self, text: &str) -> String {
        if self.value.len() < 4 { text.to_string() } else { text.replace(&self.value, "***") }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}=***)", self.env)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("${{{}}}", self.env))
    }
}

/// `kind: duckdb`: a table or query of a DuckDB database file, read-only (a migration source).
#[derive(Debug, Clone, Serialize)]
pub struct DuckSourceSpec {
    /// The `.duckdb` file (resolved against the pipeline file).
    pub path: PathBuf,
    /// A table (`schema.table` or `table`), or
    pub table: Option<String>,
    /// a query (one unit: a query's rows have no stable order to split by).
    pub query: Option<String>,
    /// Rows per unit of a table (ranges of its `rowid`).
    pub range_rows: u64,
}

impl SourceConfig for DuckSourceSpec {
    fn kind(&self) -> &'static str {
        "duckdb"
    }
    fn definition(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
