//! The source traits: discover units of work, then stream each as record batches.
//!
//! A *unit* is the atomic unit of ingestion and commit. What a unit is belongs to its source: a
//! file or an archive member for a directory, and for other sources a range of a table's rows, a
//! range of a partition's offsets, or an object in a bucket. Everything downstream (the runner,
//! `watch`, the sink's state store, the run summary) keys on the unit's opaque locator and
//! compares its fingerprint, and never looks inside either.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::SourceError;

/// Identity and fingerprint of one unit of input.
///
/// The identity is (`source`, `locator`, `member`); the fingerprint is (`size`, `version`,
/// `content_hash`): a unit whose fingerprint changed is new input. The serialized names are the
/// ones the first, file-only, units had (`rel_path`, `path`, `mtime_ns`), so that ledgers written
/// then still read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceUnit {
    /// The source's name in the pipeline.
    pub source: String,
    /// The unit's identity within its source, stable across runs and opaque outside it: a path
    /// relative to a directory (with `/` separators), an object key, `orders/rows/1000-1999`.
    #[serde(rename = "rel_path")]
    pub locator: String,
    /// A unit inside the one `locator` names, when the source splits it (an archive member).
    pub member: Option<String>,
    /// Where the unit's data lives, as messages and the `_rejects` dataset show it: a file's path,
    /// a URL, a table and row range. Only the source reads it back.
    #[serde(rename = "path")]
    pub location: String,
    /// The unit's size in bytes, or an estimate (progress and scheduling use it).
    pub size: u64,
    /// The version the source saw: a file's modification time in nanoseconds since the epoch, an
    /// object's generation, a range's last change. A change with an equal size and a known
    /// content hash is confirmed by hashing (a touched file).
    #[serde(rename = "mtime_ns")]
    pub version: i64,
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
        crate::sha256_hex(&[self.source.as_bytes(), self.locator.as_bytes(), member.as_bytes()])
    }

    /// How the unit is named in messages: `location` or `location!member`.
    pub fn display_name(&self) -> String {
        match &self.member {
            Some(m) => format!("{}!{}", self.location, m),
            None => self.location.clone(),
        }
    }

    /// Whether `other` has this unit's identity (source, locator and member).
    pub fn same_unit(&self, other: &SourceUnit) -> bool {
        (&self.source, &self.locator, &self.member) == (&other.source, &other.locator, &other.member)
    }
}

/// A file's modification time in nanoseconds since the epoch (0 when the system cannot tell), as
/// file units record it in [`SourceUnit::version`].
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64)
}

pub use sluice_chain::Reject;

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
    /// How far an incremental source got with this unit (a cursor, an offset, a timestamp; opaque
    /// outside the source), sent after the batches it covers. The sink's state store commits it
    /// with the unit, and the next discovery starts from it ([`Source::discover_after`]).
    HighWater(String),
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
    let file = unit.location.as_str();
    let columns: Vec<arrow_array::ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(file, n))),
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
    /// The schema every unit yields, asked of the source itself where that means connecting to
    /// it (`validate --connect`): a database describes its table. The default is
    /// [`Source::schema`].
    fn describe(&self) -> Result<Option<SchemaRef>, SourceError> {
        Ok(self.schema())
    }
    /// List the units available now, in processing order.
    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError>;
    /// List the units available now after `high_water`, the mark the sink's state store last
    /// committed for this source ([`SourceItem::HighWater`]). Sources that keep no marks list
    /// everything ([`Source::discover`]) and let fingerprints tell what is new.
    fn discover_after(&self, _high_water: Option<&str>) -> Result<Vec<SourceUnit>, SourceError> {
        self.discover()
    }
    /// Constant columns this unit's rows carry, known without reading it (file-name fields), as
    /// text. The runner groups units by the ones that are keys of stateful steps.
    fn unit_fields(&self, _unit: &SourceUnit) -> Vec<(String, String)> {
        Vec::new()
    }
    /// A warning for a full discovery that found nothing, when that likely means a mistake (a
    /// glob that matches no file); none when it means there is nothing new.
    fn nothing_found(&self) -> Option<String> {
        None
    }
    /// Whether the source is incremental: its units follow one another (a range of rows after a
    /// range of rows, offsets after offsets) and it reports [`SourceItem::HighWater`] marks.
    /// The runner then runs its units in discovery order on one worker, and after one fails
    /// leaves the later ones to the next run, so that the committed mark never passes a unit
    /// that did not commit.
    fn incremental(&self) -> bool {
        false
    }
    /// `sluice watch` follows the source continuously (called once, before its first
    /// discovery): a stream then lets a short last range wait a little for more records, where
    /// `sluice run` reads to the end of what is there. The default does nothing.
    fn follow(&self) {}
    /// Stream the batches of one unit.
    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError>;
    /// The unit's content hash as [`SourceItem::ContentHash`] would report it, computed now (a
    /// read of the unit). Asked only for a unit whose size is unchanged but whose mtime moved.
    /// Sources that cannot hash say `None`, and such a unit counts as changed.
    fn content_hash(&self, _unit: &SourceUnit) -> Result<Option<String>, SourceError> {
        Ok(None)
    }
    /// Whether `unit`, as an earlier run committed it, still has that fingerprint now, asked
    /// without a full discovery: the runner re-runs a committed unit of an earlier run (its
    /// groups continue in a unit that arrived later) only while it does. Sources that cannot
    /// tell say no, and such a unit waits for the next run that discovers it.
    fn still_current(&self, _unit: &SourceUnit) -> bool {
        false
    }
    /// Whether `unit` is complete by the source's own signal, for a `ready: marker` policy (a
    /// marker file next to a data file). Sources without such a signal say yes.
    fn complete(&self, _unit: &SourceUnit) -> bool {
        true
    }
    /// Whether a committed `unit` that a full discovery (`present`) no longer lists is gone from
    /// the source, so that a sink asked to (`on_source_deleted: delete`) removes its outputs,
    /// rather than merely no longer selected. The default: not listed means gone.
    fn is_gone(&self, unit: &SourceUnit, present: &[SourceUnit]) -> bool {
        !present.iter().any(|u| u.same_unit(unit))
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
    /// The units this run (or watch pass) is about to open, in the order it hands them to its
    /// workers, after planning left out the unchanged and poisoned ones: a source that must
    /// fetch a unit before reading it (an object in a bucket) fetches ahead of the workers. Each
    /// call replaces the previous one's list. The default does nothing.
    fn prefetch(&self, _units: &[SourceUnit]) {}
    /// What became of a unit in this run, after the sink recorded it. The default does nothing.
    fn settled(&self, _unit: &SourceUnit, _outcome: Settled) {}
    /// The run is stopping (a signal): give up waiting for units not yet fetched, so that
    /// workers blocked in [`Source::open`] return. The next [`Source::prefetch`] starts afresh.
    /// The default does nothing.
    fn cancel(&self) {}
    /// The source's own counters and gauges (downloads, requests, retries), for the progress
    /// display and `watch`'s Prometheus metrics. The default has none.
    fn metrics(&self) -> Vec<SourceMetric> {
        Vec::new()
    }
    /// Where each unit the source knows of stands (listed, fetched, committed, failed,
    /// poisoned), for `sluice source status`, read from the source's own records without
    /// connecting to it. `None`: the source keeps no such records.
    fn status(&self) -> Result<Option<Vec<UnitStatus>>, SourceError> {
        Ok(None)
    }
}

/// What became of a unit ([`Source::settled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Its output was committed.
    Committed,
    /// It failed in this run (the failure is recorded; it is retried, then poisoned).
    Failed,
    /// It failed too many times with this fingerprint and was not run.
    Poisoned,
    /// The sink holds it with this fingerprint already.
    Unchanged,
}

/// One counter or gauge of a source ([`Source::metrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMetric {
    /// The name without the `sluice_source_` prefix, e.g. `bytes_downloaded_total`.
    pub name: &'static str,
    pub help: &'static str,
    /// A counter (only grows) or a gauge.
    pub counter: bool,
    /// Labels beyond the pipeline and the source, e.g. `("status", "500")`.
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Where one unit stands in a source's own records ([`Source::status`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatus {
    /// The unit's locator (an object key).
    pub key: String,
    /// `listed`, `fetching`, `fetched`, `committed`, `failed`, `poisoned` or `gone`.
    pub state: String,
    pub size: u64,
    /// The version the source saw (an ETag).
    pub version: String,
    /// Attempts made at fetching it since it last succeeded.
    pub attempts: u32,
    /// The last error, if its last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the state was recorded, in milliseconds since the epoch.
    pub at_ms: i64,
}
