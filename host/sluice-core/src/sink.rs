//! The sink traits: write one unit's batches, then commit them atomically, or abort.
//!
//! `sluice-lake` implements these for a Parquet lake. The shape admits other targets (Postgres
//! COPY, Delta Lake): a unit's writes are invisible until `commit`, and `commit` is atomic.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Serialize;

use crate::error::SinkError;
use crate::source::{Source, SourceUnit};

/// What one committed unit wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommitReport {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    pub bytes: u64,
    /// Files written besides `files` (keyed-state tails, rejects kept apart), for the summary's
    /// count of files per unit.
    pub other_files: u64,
    /// Durability syncs the commit made (fsync, fdatasync, syncfs).
    pub syncs: u64,
}

/// A failed unit, kept for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub unit: SourceUnit,
    pub step: Option<String>,
    pub error: String,
}

/// A key's values at a stateful step, as text (`None` for a null value).
pub type KeyValues = Vec<Option<String>>;

/// The rows one unit fed a stateful step for one key: the span of the ordering column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeyRange {
    pub key: KeyValues,
    pub min: i64,
    pub max: i64,
    pub rows: u64,
    /// For a step with lookahead: where the unit's output assumed the key continues (the first
    /// order value of the next committed unit; none: the key ended with this unit). When the
    /// actual next unit differs, the unit's output is out of date and the unit is re-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
    /// The unit came in arrival order (an incremental source's unit: a stream's offsets).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arrival: bool,
    /// A checkpoint, in arrival order: `min` and `max` span every committed row of the key up to
    /// this unit, and its tails hold the key's whole tail as of this unit. The key's arrival
    /// ranges before it add nothing to a seed, so a store may forget them (and a tails file
    /// once no range names it). Arrival ranges that are not checkpoints hold the unit's own rows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cumulative: bool,
}

/// A unit's range for `key` among its `ranges` (a unit's ranges are in key order, as
/// [`UnitState`] gives them: a stream unit's hold about a thousand keys).
pub fn range_of<'a>(ranges: &'a [KeyRange], key: &KeyValues) -> Option<&'a KeyRange> {
    match ranges.binary_search_by(|g| g.key.cmp(key)) {
        Ok(i) => Some(&ranges[i]),
        Err(_) => ranges.iter().find(|g| &g.key == key),
    }
}

/// A state store's index of one key's committed units at a step: (range start, unit id) ->
/// whether the unit's range came in arrival order ([`KeyRange::arrival`]).
pub type KeyStarts = std::collections::BTreeMap<(i64, String), bool>;

/// Record in `starts` the range `range` of unit `unit_id`. A checkpoint
/// ([`KeyRange::cumulative`]) first takes out the arrival ranges of other units of its stream
/// (`same_stream`), which it supersedes ([`StateStore::key_history`]); their ids are returned,
/// so the store can forget their ranges of this key.
pub fn record_range(
    starts: &mut KeyStarts,
    unit_id: &str,
    range: &KeyRange,
    same_stream: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut superseded = Vec::new();
    if range.cumulative {
        starts.retain(|(_, unit), arrival| {
            let gone = *arrival && unit != unit_id && same_stream(unit);
            if gone {
                superseded.push(unit.clone());
            }
            !gone
        });
    }
    starts.insert((range.min, unit_id.to_string()), range.arrival);
    superseded
}

/// What a unit leaves behind for a stateful step, committed with its data: the key ranges it
/// covered, and each key's last `lookback` input rows (`tails`), from which a later run seeds a
/// fresh handler instance.
#[derive(Debug, Clone)]
pub struct UnitState {
    /// The step's name in the pipeline.
    pub step: String,
    /// The lookback the tails were cut for.
    pub lookback: u64,
    /// The span the step declared (`lookback_span`, in its ordering column's units), when any.
    pub span: Option<i64>,
    pub ranges: Vec<KeyRange>,
    /// The input rows (the step's input schema) of each key's tail, in order; `None` when the
    /// step needs no lookback.
    pub tails: Option<RecordBatch>,
}

/// A committed unit's range for one key at one stateful step.
#[derive(Debug, Clone)]
pub struct KeyedUnit {
    pub unit: SourceUnit,
    pub unit_id: String,
    pub range: KeyRange,
    /// The lookback the unit's tails were cut for.
    pub lookback: u64,
    /// The span the unit's step declared, when recorded.
    pub span: Option<i64>,
}

/// How a discovered unit compares with what a sink committed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Never committed.
    New,
    /// Committed with this fingerprint.
    Unchanged,
    /// Committed with another content.
    Changed,
    /// Committed with the same size but another mtime, and the sink knows the content hash:
    /// hash the unit and ask [`StateStore::confirm_unchanged`].
    Touched,
}

impl Freshness {
    /// How `now` (a discovered unit) compares with `was` (as a sink committed it): same size and
    /// version is unchanged; content hashes on both sides decide; a known committed hash with a
    /// moved version is a touch, to be confirmed by hashing.
    pub fn of(was: &SourceUnit, now: &SourceUnit) -> Freshness {
        match (&was.content_hash, &now.content_hash) {
            _ if was.size != now.size => Freshness::Changed,
            (Some(a), Some(b)) if a != b => Freshness::Changed,
            (Some(_), Some(_)) => Freshness::Unchanged,
            _ if was.version == now.version => Freshness::Unchanged,
            (Some(_), None) => Freshness::Touched,
            (None, _) => Freshness::Changed,
        }
    }
}

/// Where a pipeline's rows go, split by job: [`Sink`] writes a unit's output and commits it
/// atomically through a [`UnitWriter`]; its [`StateStore`] remembers what was committed (kept
/// in the sink's own system, so that progress commits in the same atomic step as the data);
/// publication to readers (a catalog) is a separate, optional
/// `Publication` (in `connector`). The runner and `watch` depend only on these traits.
pub trait Sink: Send + Sync {
    /// Check that the sink can accept batches of this schema (partition columns exist, etc.).
    fn check_schema(&self, schema: &SchemaRef) -> Result<(), SinkError>;
    /// Start writing one unit. Nothing is visible to readers until the writer commits.
    fn begin(&self, unit: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError>;
    /// What the sink has committed, failed and kept for stateful steps.
    fn state(&self) -> &dyn StateStore;
    /// After a full discovery of `source`, listing `present`: remove the committed outputs of
    /// units that are gone ([`Source::is_gone`]), when the sink is asked to
    /// (`on_source_deleted: delete`). Returns the units removed. Sinks that keep outputs say none.
    fn remove_deleted(&self, _source: &dyn Source, _present: &[SourceUnit]) -> Result<Vec<SourceUnit>, SinkError> {
        Ok(Vec::new())
    }
    /// Where rejected rows go and how to read them, for the run's summary (`None`: the sink
    /// keeps none).
    fn rejects_location(&self) -> Option<String> {
        None
    }
    /// Housekeeping `sluice watch` runs between passes that committed (a lake compacts its
    /// small files when `compact:` asks for it). Returns what it did, for the log; `None`:
    /// nothing to do.
    fn maintain(&self) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    /// What makes this run's output (pipeline, plugins, Sluice version), told once before the
    /// first unit: sinks that write files record it in each, with the file's units. Sinks
    /// without a place for it ignore it.
    fn set_lineage(&self, _lineage: std::sync::Arc<crate::lineage::Lineage>) {}
}

/// A sink's memory of the run's progress: committed units and their fingerprints, failures and
/// poisoning, keyed-state history and tails of stateful steps, and high-water marks of
/// incremental sources. Everything in it is written by a [`UnitWriter`]'s commit (or, for
/// failures, by the runner), so that it never disagrees with the data.
pub trait StateStore: Send + Sync {
    /// True when this unit, with this fingerprint, is already committed.
    fn is_committed(&self, unit: &SourceUnit) -> Result<bool, SinkError>;
    /// How this unit compares with what is committed. The default knows only
    /// [`StateStore::is_committed`].
    fn freshness(&self, unit: &SourceUnit) -> Result<Freshness, SinkError> {
        Ok(if self.is_committed(unit)? { Freshness::Unchanged } else { Freshness::Changed })
    }
    /// A [`Freshness::Touched`] unit, now with its `content_hash`: true when the content is what
    /// was committed (the store may remember the new version so later runs need not hash again).
    fn confirm_unchanged(&self, _unit: &SourceUnit) -> Result<bool, SinkError> {
        Ok(false)
    }
    /// The high-water mark an incremental source last committed ([`UnitWriter::high_water`]):
    /// where its next discovery starts. None: nothing committed yet, or the store keeps none.
    fn high_water(&self, _source: &str) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    /// The lineage digest ([`crate::lineage::digest`]) of the run that committed `unit`, when
    /// the store records one: a digest other than the current run's makes the unit stale.
    fn committed_lineage(&self, _unit: &SourceUnit) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
    /// Record a unit that failed under a `dead_letter` policy.
    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError>;
    /// How many earlier runs failed on this unit with its current fingerprint. Stores that keep
    /// no such record say 0, so failed units are simply retried every run.
    fn failures(&self, _unit: &SourceUnit) -> Result<u32, SinkError> {
        Ok(0)
    }
    /// Record that this unit failed (so that repeated failures poison it).
    fn record_failure(&self, _unit: &SourceUnit, _error: &str) -> Result<(), SinkError> {
        Ok(())
    }
    /// Committed units that fed `key` to the stateful step `step`, ordered by their ranges'
    /// start. Stores that keep no keyed state say none, so handlers start fresh each run.
    /// A checkpoint ([`KeyRange::cumulative`]) hides the key's arrival ranges committed before
    /// it: a seed reads the checkpoint and every arrival range still listed.
    fn key_history(&self, _step: &str, _key: &KeyValues) -> Result<Vec<KeyedUnit>, SinkError> {
        Ok(Vec::new())
    }
    /// Every key's committed units at the stateful step `step`: one list per key, ordered by
    /// their ranges' start (as [`StateStore::key_history`]).
    fn keyed_units(&self, _step: &str) -> Result<Vec<Vec<KeyedUnit>>, SinkError> {
        Ok(Vec::new())
    }
    /// The key ranges a committed unit recorded for the stateful step `step` (none when it is
    /// not committed, or the store keeps no state).
    fn unit_ranges(&self, _step: &str, _unit_id: &str) -> Result<Vec<KeyRange>, SinkError> {
        Ok(Vec::new())
    }
    /// The tails a committed unit left for `step` (see [`UnitState`]).
    fn state_tails(&self, _step: &str, _unit_id: &str) -> Result<Option<RecordBatch>, SinkError> {
        Ok(None)
    }
}

pub trait UnitWriter: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError>;
    /// Write rows the source rejected (a batch of `source::rejects_schema()`), committed together
    /// with the unit's data. Sinks without a dead-letter store log and drop them.
    fn write_rejects(&mut self, rejects: &RecordBatch) -> Result<(), SinkError> {
        tracing::warn!(rows = rejects.num_rows(), "sink keeps no rejects; rejected rows dropped");
        Ok(())
    }
    /// Keyed state of a stateful step, committed together with the unit's data. Sinks that keep
    /// no state ignore it.
    fn write_state(&mut self, _state: UnitState) -> Result<(), SinkError> {
        Ok(())
    }
    /// The content hash of the bytes the unit was read from, recorded at commit.
    fn content_hash(&mut self, _hash: &str, _bytes: u64) {}
    /// The high-water mark the unit's source reached ([`SourceItem::HighWater`]), committed with
    /// the unit's data and returned by [`StateStore::high_water`].
    ///
    /// [`SourceItem::HighWater`]: crate::source::SourceItem::HighWater
    fn high_water(&mut self, _mark: &str) {}
    /// The rows the unit read from its source and the rows set aside (source and step rejects),
    /// told before `commit` so the sink can record them next to the rows it wrote: a unit that
    /// read rows and wrote none is then visible in the sink's own records.
    fn input_rows(&mut self, _rows_in: u64, _rows_rejected: u64) {}
    /// Some of the unit's rows are in groups that later units output (a step with lookahead
    /// left them to the unit that continues them), so the unit may rightly write none.
    fn continues(&mut self) {}
    /// Make the unit's output visible, atomically and durably.
    fn commit(self: Box<Self>) -> Result<CommitReport, SinkError>;
    /// Discard everything written for this unit.
    fn abort(self: Box<Self>);
}
