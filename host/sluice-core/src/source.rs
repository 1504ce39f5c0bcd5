//! The source traits: discover units of work, then stream each as record batches.
//!
//! A *unit* is the atomic unit of ingestion and commit: a file, or one member of an archive.
//! The trait is shaped so that non-file sources (an HTTP listing with a manifest, a Postgres
//! extract) fit: `discover` lists units with fingerprints, `open` streams one unit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::SourceError;

/// Identity and fingerprint of one unit of input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceUnit {
    /// The source's name in the pipeline.
    pub source: String,
    /// Where the bytes live.
    pub path: PathBuf,
    /// Path relative to the source root, with `/` separators: the stable identity.
    pub rel_path: String,
    /// The archive member, for archives.
    pub member: Option<String>,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// A hash of the unit's content (`xxh3:<hex>` of a file's bytes, `crc32:<hex>` of a zip
    /// member), when the source knows it without reading: a zip member's CRC from the archive's
    /// directory. Other units learn it while they are read ([`SourceItem::ContentHash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

impl SourceUnit {
    /// A stable id for this unit's identity (not its content).
    pub fn id(&self) -> String {
        let member = self.member.as_deref().unwrap_or("");
        crate::sha256_hex(&[self.source.as_bytes(), self.rel_path.as_bytes(), member.as_bytes()])
    }

    /// How the unit is named in messages: `path` or `path!member`.
    pub fn display_name(&self) -> String {
        match &self.member {
            Some(m) => format!("{}!{}", self.path.display(), m),
            None => self.path.display().to_string(),
        }
    }
}

/// A file's modification time in nanoseconds since the epoch (0 when the system cannot tell), as
/// units record it in [`SourceUnit::mtime_ns`].
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64)
}

/// A row that could not be parsed or cast. It goes to the lake's `_rejects` dataset, committed
/// with the unit's good rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// 1-based line number in the (decompressed) file or member where the row starts.
    pub line: u64,
    /// The row's text (invalid UTF-8 replaced by U+FFFD).
    pub raw: String,
    pub reason: String,
    /// Which stage rejected it: `parse` (structure, encoding) or `cast` (a value of the wrong type).
    pub step: String,
}

/// One item of a unit's stream: good rows, or rows that were set aside.
#[derive(Debug, Clone)]
pub enum SourceItem {
    Batch(RecordBatch),
    Rejects(Vec<Reject>),
    /// The hash of exactly the bytes the unit was read from (`hash`, over `bytes` bytes), sent
    /// once after its last batch by sources that hash while reading. The sink records it, so a
    /// later run can tell a touched file (new mtime, same bytes) from a changed one.
    ContentHash {
        hash: String,
        bytes: u64,
    },
}

/// A stream of items from one unit. Row-level problems are `SourceItem::Rejects` and the stream
/// goes on; an `Err` item is fatal for the unit and ends it.
pub type BatchStream = Box<dyn Iterator<Item = Result<SourceItem, SourceError>> + Send>;

/// The schema of the `_rejects` dataset (the source and dataset are hive partition columns).
pub fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("member", DataType::Utf8, true),
        Field::new("line", DataType::UInt64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("step", DataType::Utf8, false),
    ]))
}

/// The rejects of one unit as a batch of [`rejects_schema`].
pub fn rejects_batch(unit: &SourceUnit, rejects: &[Reject]) -> RecordBatch {
    let n = rejects.len();
    let file = unit.path.display().to_string();
    let columns: Vec<arrow_array::ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(file.as_str(), n))),
        Arc::new(StringArray::from_iter(std::iter::repeat_n(unit.member.as_deref(), n))),
        Arc::new(UInt64Array::from_iter_values(rejects.iter().map(|r| r.line))),
        Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.raw.as_str()))),
        Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.reason.as_str()))),
        Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.step.as_str()))),
    ];
    RecordBatch::try_new(rejects_schema(), columns).expect("columns match the rejects schema")
}

/// A source of units.
pub trait Source: Send + Sync {
    fn name(&self) -> &str;
    /// The schema every unit yields, when known without reading data (explicit schema).
    fn schema(&self) -> Option<SchemaRef>;
    /// List the units available now, in processing order.
    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError>;
    /// Constant columns this unit's rows carry, known without reading it (file-name fields), as
    /// text. The runner groups units by the ones that are keys of stateful steps.
    fn unit_fields(&self, _unit: &SourceUnit) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Stream the batches of one unit.
    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError>;
    /// The unit's content hash as [`SourceItem::ContentHash`] would report it, computed now (a
    /// read of the unit). Asked only for a unit whose size is unchanged but whose mtime moved.
    /// Sources that cannot hash say `None`, and such a unit counts as changed.
    fn content_hash(&self, _unit: &SourceUnit) -> Result<Option<String>, SourceError> {
        Ok(None)
    }
    /// Directories whose changes may change what `discover` returns, for watching them. Sources
    /// that are not directories return none (a watcher then polls them).
    fn watch_roots(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Whether a change at `path` (under a watch root) may change what `discover` returns or
    /// whether a unit is complete (a marker file), so that a watcher ignores unrelated churn.
    fn affects(&self, _path: &Path) -> bool {
        true
    }
}
