//! Keyed state across units: routing keys, lookback seeding from the sink, and late-unit re-runs.
//!
//! A stateful step declares key columns, an ordering column and a lookback (`StateSpec`). The
//! runner keeps one [`KeyedStep`] per stateful step and worker, tied to the life of that step's
//! handler instance. For every batch on its way into the step it:
//! - splits the batch by key and takes each key's span of the ordering column;
//! - on a key's first rows in a unit, checks that the instance's state for that key ends right
//!   before them (nothing committed in between, nothing later already fed), or else asks the
//!   runner to redo the unit on a fresh instance ([`Prepared::Stale`]);
//! - seeds a key the instance has not seen with the last `lookback_rows` rows before it, and the
//!   rows within `lookback_span` (of the ordering column) before it, taken from the tails
//!   committed units left in the sink; the seed's output is discarded;
//! - tracks the unit's per-key ranges and tails, committed with the unit ([`UnitState`]).
//!
//! After a commit, [`KeyedStep::successors`] names the committed units whose lookback the unit
//! changed (it arrived earlier in the order than they), which the runner re-runs. A step with
//! `lookahead` (groups across units) also learns, before its `finish`, where later committed
//! units continue each key ([`KeyedStep::continuing`]), and [`KeyedStep::predecessors`] names
//! the committed units right before a new one, whose output it changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array, new_null_array};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, SchemaRef};

use crate::error::SinkError;
use crate::plugin::StateSpec;
use crate::sink::{KeyRange, KeyValues, KeyedUnit, StateStore, UnitState};

/// Why a batch could not be prepared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyedError {
    /// The batch lacks a key or ordering column, or the ordering column is not integral.
    #[error("{0}")]
    Data(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What the runner must do before passing a batch to the step.
pub(crate) enum Prepared {
    /// Feed these seed batches first (discarding their output), then the batch.
    Go { seeds: Vec<RecordBatch>, groups: Vec<Group> },
    /// The instance's state does not lead up to this unit's rows of `key`: redo the unit on a
    /// fresh instance.
    Stale { key: KeyValues },
}

/// One key's rows of a batch.
pub(crate) struct Group {
    key: KeyValues,
    /// Row indices with a non-null order value, in order; `None` when every row qualifies and
    /// the batch is already ordered.
    rows: Option<UInt32Array>,
    min: i64,
    max: i64,
    count: u64,
}

#[derive(Debug, Default)]
struct UnitKey {
    min: i64,
    max: i64,
    rows: u64,
    tail: Option<RecordBatch>,
}

/// A committed unit's tails, conformed to the step's input schema, with each key's rows.
struct IndexedTails {
    batch: RecordBatch,
    order: Int64Array,
    by_key: HashMap<KeyValues, Vec<u32>>,
}

impl IndexedTails {
    fn new(tails: &RecordBatch, schema: &SchemaRef, spec: &StateSpec) -> Result<Self, KeyedError> {
        let batch = conform(tails, schema).map_err(KeyedError::Data)?;
        let order = order_values(&batch, &spec.order_by)?;
        let mut by_key: HashMap<KeyValues, Vec<u32>> = HashMap::new();
        for (i, k) in key_strings(&batch, &spec.keys)?.into_iter().enumerate() {
            by_key.entry(k).or_default().push(i as u32);
        }
        Ok(IndexedTails { batch, order, by_key })
    }
}

/// The runner's view of one stateful step on one worker.
pub(crate) struct KeyedStep {
    pub(crate) name: String,
    pub(crate) spec: StateSpec,
    /// Highest order value fed to the current instance, per key.
    carried: HashMap<KeyValues, i64>,
    /// The current unit's ranges and tails.
    unit: BTreeMap<KeyValues, UnitKey>,
    /// Tails read from the sink during this unit, per unit id, indexed by key.
    tails_cache: HashMap<String, Option<Arc<IndexedTails>>>,
    /// The units in `tails_cache`, oldest first.
    tails_order: std::collections::VecDeque<String>,
    /// The spec was asked again after the instance saw its input schema (a handler may size its
    /// lookback in the ordering column's units, known only then).
    pub(crate) refreshed: bool,
    /// Lookahead: per key of the unit in flight, the continuation its output assumes.
    assumed: HashMap<KeyValues, i64>,
    /// The source of the unit in flight, when it came in arrival order: a stream's keyed state
    /// is its own (its checkpoints hold its rows and the files' before them, never another
    /// stream's), so it reads and supersedes only its own arrival ranges.
    stream: Option<String>,
    /// Arrival order: per key the instance holds, how many units committed its rows since its
    /// last checkpoint ([`KeyRange::cumulative`]). A key not here checkpoints at its next unit.
    since_checkpoint: HashMap<KeyValues, u32>,
}

/// In arrival order, a key's tail is written whole (a checkpoint) at least every this many of
/// its units; the units between hold only their own rows. A seed reads at most this many of a
/// key's stream units, and a state store keeps at most this many arrival ranges of a key per
/// stream (ranges of files are kept as before).
pub(crate) const CHECKPOINT_EVERY: u32 = 8;

/// In arrival order, the units whose indexed tails stay cached from one unit to the next: a
/// checkpoint reads its key's last [`CHECKPOINT_EVERY`] units, mostly the latest ones.
const TAILS_CACHED_UNITS: usize = 2 * CHECKPOINT_EVERY as usize;

impl KeyedStep {
    pub(crate) fn new(name: String, spec: StateSpec) -> Self {
        KeyedStep {
            name,
            spec,
            carried: HashMap::new(),
            unit: BTreeMap::new(),
            tails_cache: HashMap::new(),
            tails_order: std::collections::VecDeque::new(),
            refreshed: false,
            assumed: HashMap::new(),
            stream: None,
            since_checkpoint: HashMap::new(),
        }
    }

    /// Whether ranges, tails and seeds apply: the step needs history (rows or a span) and says
    /// how rows are ordered. Other stateful steps are only routed (one instance sees a key's
    /// units in order).
    pub(crate) fn tracked(&self) -> bool {
        self.spec.needs_history() && !self.spec.order_by.is_empty()
    }

    /// A step that needs history but does not say how rows are ordered cannot be seeded, so its
    /// state cannot carry across units exactly: it gets a fresh instance per unit.
    pub(crate) fn unit_scoped(&self) -> bool {
        unit_scoped(&self.spec)
    }

    /// The key's committed units as the unit in flight sees them: a file's, without any arrival
    /// range (a stream's state is not a file's history); a stream's, without other streams'.
    fn history(&self, sink: &dyn StateStore, key: &KeyValues) -> Result<Vec<KeyedUnit>, SinkError> {
        let mut history = sink.key_history(&self.name, key)?;
        match &self.stream {
            None => history.retain(|v| !v.range.arrival),
            Some(source) => history.retain(|v| !v.range.arrival || &v.unit.source == source),
        }
        Ok(history)
    }

    /// The handler instance was dropped: its state is gone.
    pub(crate) fn reset_instance(&mut self) {
        self.carried.clear();
        self.since_checkpoint.clear();
        self.refreshed = false;
    }

    /// Where later committed units continue the keys of the unit in flight (a data error when a
    /// committed unit of a key overlaps it in order): per key that one continues, the key columns
    /// and the ordering column (as in the step's input) holding that unit's first order value. `None` when the step has no lookahead or saw no rows.
    pub(crate) fn continuing(
        &mut self,
        sink: &dyn StateStore,
        unit_id: &str,
    ) -> Result<Option<RecordBatch>, KeyedError> {
        if !self.spec.lookahead {
            return Ok(None);
        }
        let mut rows: Vec<RecordBatch> = Vec::new();
        let mut next: Vec<i64> = Vec::new();
        let mut schema = None;
        for (key, u) in &self.unit {
            // Arrival order: everything committed came before, and late rows are the step's to
            // handle; no committed unit continues the key.
            let history = if self.stream.is_some() { Vec::new() } else { self.history(sink, key)? };
            // Groups across units need each key's units one after another: where two overlap,
            // neither holds all of a group's rows.
            if let Some(other) =
                history.iter().find(|v| v.unit_id != unit_id && v.range.min <= u.max && v.range.max >= u.min)
            {
                let key = if key.is_empty() {
                    String::new()
                } else {
                    format!(
                        " of key ({})",
                        key.iter().map(|v| v.as_deref().unwrap_or("null")).collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(KeyedError::Data(format!(
                    "this file's rows{key} overlap in `{}` with those of {}, already committed: groups across files \
                     need each key's files one after another in time (daily files of a symbol); group by a key \
                     that tells the files apart, or set `scope: file`",
                    self.spec.order_by,
                    other.unit.display_name()
                )));
            }
            let Some(tail) = u.tail.as_ref().filter(|t| t.num_rows() > 0) else { continue };
            schema.get_or_insert_with(|| tail.schema());
            let later = history
                .iter()
                .filter(|v| v.unit_id != unit_id && v.range.min > u.max)
                .map(|v| v.range.min)
                .min()
                .filter(|&at| within_span(self.spec.span(), u.max, at));
            if let Some(at) = later {
                rows.push(tail.slice(tail.num_rows() - 1, 1));
                next.push(at);
                self.assumed.insert(key.clone(), at);
            }
        }
        let Some(schema) = schema else { return Ok(None) };
        let mut fields = Vec::new();
        for k in self.spec.keys.iter().chain([&self.spec.order_by]) {
            let i =
                schema.index_of(k).map_err(|_| KeyedError::Data(format!("column `{k}` is not in the step's input")))?;
            fields.push(i);
        }
        let projected = schema.project(&fields).map_err(|e| KeyedError::Data(e.to_string()))?;
        let projected = Arc::new(projected);
        if rows.is_empty() {
            return Ok(Some(RecordBatch::new_empty(projected)));
        }
        let all = arrow_select::concat::concat_batches(&schema, &rows).map_err(|e| KeyedError::Data(e.to_string()))?;
        let mut cols: Vec<ArrayRef> = fields[..fields.len() - 1].iter().map(|&i| all.column(i).clone()).collect();
        let order_type = projected.field(fields.len() - 1).data_type().clone();
        cols.push(order_array(next, &order_type)?);
        RecordBatch::try_new(projected, cols).map(Some).map_err(|e| KeyedError::Data(e.to_string()))
    }

    /// For a step with `lookahead`: when a new version of a committed unit no longer starts a key
    /// where the old one did (it dropped the key, or starts later), the committed unit before the
    /// old start that assumed the old one continues it: it left out a group nobody outputs now.
    pub(crate) fn orphaned(
        &self,
        sink: &dyn StateStore,
        unit_id: &str,
        old: &[KeyRange],
        new: &[KeyRange],
    ) -> Result<Vec<KeyedUnit>, SinkError> {
        if !self.spec.lookahead {
            return Ok(Vec::new());
        }
        let mut out: Vec<KeyedUnit> = Vec::new();
        for r in old {
            if new.iter().any(|n| n.key == r.key && n.min == r.min) {
                continue;
            }
            if let Some(p) = self.unit_before(sink, unit_id, &r.key, r.min)?
                && p.range.next == Some(r.min)
                && !out.iter().any(|o| o.unit_id == p.unit_id)
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// For a step with `lookahead`: per key of a just-committed unit, the committed unit right
    /// before it (the latest that ends before the unit starts), when it ends within the span of
    /// the unit's start, so that a group may run from it into the unit. Its output may hold that
    /// group, which now belongs to the new unit: the runner re-runs it.
    pub(crate) fn predecessors(
        &self,
        sink: &dyn StateStore,
        unit_id: &str,
        ranges: &[KeyRange],
    ) -> Result<Vec<KeyedUnit>, SinkError> {
        if !self.spec.lookahead {
            return Ok(Vec::new());
        }
        let mut out: Vec<KeyedUnit> = Vec::new();
        for r in ranges {
            // Its output already assumed this unit as the key's next: nothing to redo.
            if let Some(p) = self.unit_before(sink, unit_id, &r.key, r.min)?
                && within_span(self.spec.span(), p.range.max, r.min)
                && p.range.next != Some(r.min)
                && !out.iter().any(|o| o.unit_id == p.unit_id)
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The committed unit of `key` (other than `unit_id`) that ends last before `at`.
    fn unit_before(
        &self,
        sink: &dyn StateStore,
        unit_id: &str,
        key: &KeyValues,
        at: i64,
    ) -> Result<Option<KeyedUnit>, SinkError> {
        Ok(self
            .history(sink, key)?
            .into_iter()
            .filter(|v| v.unit_id != unit_id && v.range.max < at)
            .max_by_key(|v| v.range.max))
    }

    /// A new unit starts: `stream` is its source when its rows come in arrival order.
    pub(crate) fn begin_unit(&mut self, stream: Option<&str>) {
        self.unit.clear();
        self.assumed.clear();
        let same_stream = stream.is_some() && self.stream.as_deref() == stream;
        self.stream = stream.map(str::to_string);
        if same_stream {
            // A stream's checkpoints and seeds read the same few latest units again and again
            // (a committed unit's tails never change): keep the latest ones.
            while self.tails_order.len() > TAILS_CACHED_UNITS {
                if let Some(old) = self.tails_order.pop_front() {
                    self.tails_cache.remove(&old);
                }
            }
        } else {
            self.tails_cache.clear();
            self.tails_order.clear();
        }
    }

    /// Split `batch` by key, check the instance's state per key, and gather seeds.
    ///
    /// `stream`: the unit is the next of this incremental source (a stream's offsets, a cursor's
    /// range), whose rows come in arrival order, not in the order of `order_by`. Its rows
    /// follow whatever the instance holds (a row older than the key's latest is for the step to
    /// handle: late data), a fresh instance is seeded from the key's latest committed rows, and
    /// the unit never makes committed units stale (they are not read again).
    pub(crate) fn prepare(
        &mut self,
        batch: &RecordBatch,
        sink: &dyn StateStore,
        unit_id: &str,
        stream: Option<&str>,
    ) -> Result<Prepared, KeyedError> {
        let groups = self.groups(batch)?;
        // The step's bookkeeping may have begun after the unit did (its instance is made at
        // the first batch).
        if self.stream.as_deref() != stream {
            self.stream = stream.map(str::to_string);
        }
        let arrival = stream.is_some();
        let mut seeds = Vec::new();
        for g in &groups {
            if self.unit.contains_key(&g.key) {
                continue;
            }
            if arrival {
                if !self.carried.contains_key(&g.key) {
                    // Everything committed came before, whatever its order value; seed as for a
                    // unit right after the key's latest row, so that a step gets the key's open
                    // session even when this unit's first row closes it (a step that outputs a
                    // session when it closes must see it).
                    let history: Vec<KeyedUnit> =
                        self.history(sink, &g.key)?.into_iter().filter(|v| v.unit_id != unit_id).collect();
                    let Some(max) = history.iter().map(|v| v.range.max).max() else { continue };
                    if history.iter().any(|v| v.range.cumulative) {
                        let since = history.iter().filter(|v| v.range.arrival && !v.range.cumulative).count();
                        self.since_checkpoint.insert(g.key.clone(), since as u32);
                    }
                    let before = max.saturating_add(1);
                    seeds.extend(self.seed_from(history, &g.key, before, &batch.schema(), sink, unit_id)?);
                }
                continue;
            }
            match self.carried.get(&g.key) {
                Some(&c) => {
                    let history = self.history(sink, &g.key)?;
                    let between =
                        history.iter().any(|v| v.unit_id != unit_id && v.range.max > c && v.range.min < g.min);
                    if g.min < c || between {
                        return Ok(Prepared::Stale { key: g.key.clone() });
                    }
                }
                None => {
                    if let Some(seed) = self.seed(&g.key, g.min, &batch.schema(), sink, unit_id)? {
                        seeds.push(seed);
                    }
                }
            }
        }
        Ok(Prepared::Go { seeds, groups })
    }

    /// Record that `batch` (split into `groups` by [`Self::prepare`]) went into the instance.
    pub(crate) fn fed(&mut self, batch: &RecordBatch, groups: Vec<Group>) -> Result<(), KeyedError> {
        let order = match (self.spec.span(), self.spec.gap()) {
            (None, None) => None,
            _ => Some(order_values(batch, &self.spec.order_by)?),
        };
        for g in groups {
            let c = self.carried.entry(g.key.clone()).or_insert(i64::MIN);
            *c = (*c).max(g.max);
            let entry = self.unit.entry(g.key).or_insert(UnitKey { min: g.min, max: g.max, ..Default::default() });
            entry.min = entry.min.min(g.min);
            entry.max = entry.max.max(g.max);
            entry.rows += g.count;
            // The tail: the key's last `n` rows so far, those within `span` of its latest, and
            // those after its last `gap`, in order. Each is a suffix of the key's rows in order.
            let cut = tail_cut(&self.spec, entry.max);
            let rows = match &g.rows {
                Some(idx) => {
                    let values: Option<Vec<i64>> =
                        order.as_ref().map(|o| idx.values().iter().map(|&i| o.value(i as usize)).collect());
                    let keep = suffix_len(values.as_deref().unwrap_or(&[]), idx.len(), cut);
                    take_rows(batch, &idx.slice(idx.len() - keep, keep))?
                }
                None => {
                    let all = batch.num_rows();
                    let keep = suffix_len(order.as_ref().map_or(&[][..], |o| o.values()), all, cut);
                    batch.slice(all - keep, keep)
                }
            };
            let merged = match entry.tail.take() {
                Some(prev) if prev.schema() == rows.schema() => {
                    let all = arrow_select::concat::concat_batches(&rows.schema(), [&prev, &rows])
                        .map_err(|e| KeyedError::Data(e.to_string()))?;
                    last_in_order(&all, &self.spec.order_by, cut)?
                }
                _ => rows,
            };
            entry.tail = Some(merged);
        }
        Ok(())
    }

    /// What the unit leaves for later runs, or `None` when it fed this step nothing.
    ///
    /// In arrival order a key's range is a checkpoint ([`KeyRange::cumulative`]) when it has no
    /// checkpoint yet or [`CHECKPOINT_EVERY`] of its units went by: its tail then joins the
    /// key's committed tail (read from `sink`) with the unit's rows. Otherwise it holds the
    /// unit's own rows, and seeds read it with the checkpoint before it.
    pub(crate) fn unit_state(&mut self, sink: &dyn StateStore, unit_id: &str) -> Result<Option<UnitState>, KeyedError> {
        if self.unit.is_empty() {
            return Ok(None);
        }
        let unit = std::mem::take(&mut self.unit);
        let arrival = self.stream.is_some();
        let mut ranges = Vec::with_capacity(unit.len());
        let mut tails: Vec<RecordBatch> = Vec::new();
        // The tails file holds the tails of the first key's schema (a schema that changed within
        // the unit leaves the others out): a key whose tail would be left out is no checkpoint.
        let schema = unit.values().find_map(|u| u.tail.as_ref().map(|t| t.schema()));
        for (key, mut u) in unit {
            let next = self.assumed.get(&key).copied();
            let since = self.since_checkpoint.get(&key).copied();
            let kept = u.tail.as_ref().is_some_and(|t| Some(t.schema()) == schema);
            let cumulative = arrival && kept && since.is_none_or(|n| n + 1 >= CHECKPOINT_EVERY);
            if cumulative {
                self.checkpoint(&key, &mut u, sink, unit_id)?;
                self.since_checkpoint.insert(key.clone(), 0);
            } else if arrival {
                self.since_checkpoint.insert(key.clone(), since.unwrap_or(0) + 1);
            }
            if let Some(t) = u.tail {
                tails.push(t);
            }
            ranges.push(KeyRange { key, min: u.min, max: u.max, rows: u.rows, next, arrival, cumulative });
        }
        let tails = match tails.first() {
            Some(first) => {
                let schema = first.schema();
                let same: Vec<&RecordBatch> = tails.iter().filter(|t| t.schema() == schema).collect();
                Some(arrow_select::concat::concat_batches(&schema, same).map_err(|e| KeyedError::Data(e.to_string()))?)
            }
            None => None,
        };
        Ok(Some(UnitState {
            step: self.name.clone(),
            lookback: self.spec.lookback_rows,
            span: self.spec.span(),
            ranges,
            tails,
        }))
    }

    /// Committed units whose lookback a just-committed unit with `ranges` changed: for each key,
    /// the units after it until `lookback` rows lie between, and every later unit that starts
    /// within the span of the unit's end.
    pub(crate) fn successors(
        &self,
        sink: &dyn StateStore,
        unit_id: &str,
        ranges: &[KeyRange],
    ) -> Result<Vec<KeyedUnit>, SinkError> {
        let n = self.spec.lookback_rows;
        let span = self.spec.span();
        let session_gap = self.spec.gap();
        let mut out: Vec<KeyedUnit> = Vec::new();
        for r in ranges {
            let mut gap = 0u64;
            // The end of the chain of units that follow each other without a session gap (a
            // session may run on through all of them; their internal gaps are not known here).
            let mut chain_end = session_gap.map(|_| r.max);
            for v in self.history(sink, &r.key)? {
                if v.unit_id == unit_id || v.range.min <= r.max {
                    continue;
                }
                let within_span = span.is_some_and(|s| v.range.min <= r.max.saturating_add(s));
                let in_session = match (chain_end, session_gap) {
                    (Some(end), Some(g)) => v.range.min.saturating_sub(end) <= g,
                    _ => false,
                };
                if gap >= n && !within_span && !in_session {
                    break;
                }
                gap += v.range.rows;
                chain_end = chain_end.filter(|_| in_session).map(|end| end.max(v.range.max));
                if !out.iter().any(|o| o.unit_id == v.unit_id) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// Make `u` (a key's rows in the unit in flight, in arrival order) the key's checkpoint: its
    /// range spans the key's committed ranges too, and its tail is the key's whole tail.
    fn checkpoint(
        &mut self,
        key: &KeyValues,
        u: &mut UnitKey,
        sink: &dyn StateStore,
        unit_id: &str,
    ) -> Result<(), KeyedError> {
        let history: Vec<KeyedUnit> = self.history(sink, key)?.into_iter().filter(|v| v.unit_id != unit_id).collect();
        if history.is_empty() {
            return Ok(());
        }
        u.min = history.iter().map(|v| v.range.min).fold(u.min, i64::min);
        u.max = history.iter().map(|v| v.range.max).fold(u.max, i64::max);
        let Some(own) = u.tail.take() else { return Ok(()) };
        let schema = own.schema();
        let all = match self.seed_from(history, key, u.max.saturating_add(1), &schema, sink, unit_id)? {
            Some(before) => arrow_select::concat::concat_batches(&schema, [&before, &own])
                .map_err(|e| KeyedError::Data(e.to_string()))?,
            None => own,
        };
        u.tail = Some(last_in_order(&all, &self.spec.order_by, tail_cut(&self.spec, u.max))?);
        Ok(())
    }

    /// The last `lookback_rows` rows of `key` before `before`, and those within `lookback_span`
    /// of it, from committed units' tails, conformed to `schema`.
    fn seed(
        &mut self,
        key: &KeyValues,
        before: i64,
        schema: &SchemaRef,
        sink: &dyn StateStore,
        unit_id: &str,
    ) -> Result<Option<RecordBatch>, KeyedError> {
        let history = self.history(sink, key)?;
        self.seed_from(history, key, before, schema, sink, unit_id)
    }

    /// [`Self::seed`] from the key's history, as the sink gave it.
    fn seed_from(
        &mut self,
        history: Vec<KeyedUnit>,
        key: &KeyValues,
        before: i64,
        schema: &SchemaRef,
        sink: &dyn StateStore,
        unit_id: &str,
    ) -> Result<Option<RecordBatch>, KeyedError> {
        let n = self.spec.lookback_rows as usize;
        // Rows at or after `from` are within the span.
        let from = self.spec.span().map(|s| before.saturating_sub(s));
        let gap = self.spec.gap();
        // While gathering for a session: the earliest order value of the session so far, until
        // a unit's tail shows where the session starts.
        let mut session_from = gap.map(|_| before);
        let mut history: Vec<KeyedUnit> =
            history.into_iter().filter(|v| v.unit_id != unit_id && v.range.min < before).collect();
        if history.is_empty() {
            return Ok(None);
        }
        // In arrival order: the stream's checkpoint of the key and its units after it hold the
        // key's tail (each unit's own rows cut by the step's rule, so a late row that bridges a
        // gap within an earlier unit does not bring back what that cut left out); all of them
        // are read, whatever their order values.
        let checkpointed = history.iter().any(|v| v.range.cumulative);
        if checkpointed {
            history.retain(|v| v.range.arrival);
        }
        history.sort_by_key(|v| std::cmp::Reverse(v.range.max));
        let mut parts: Vec<RecordBatch> = Vec::new();
        let mut have = 0usize;
        for v in &history {
            let in_session = match (session_from, gap) {
                (Some(s), Some(g)) => s.saturating_sub(v.range.max) <= g,
                _ => false,
            };
            if !checkpointed && have >= n && from.is_none_or(|f| v.range.max < f) && !in_session {
                break;
            }
            if v.lookback < self.spec.lookback_rows {
                tracing::warn!(
                    step = %self.name, unit = %v.unit.display_name(), kept = v.lookback, needed = self.spec.lookback_rows,
                    "the lake keeps fewer lookback rows for this unit than the step needs now; \
                     results after it are approximate until `--force` re-runs it"
                );
            }
            let cached = self.tails_cache.get(&v.unit_id).cloned().flatten();
            let indexed = match cached {
                Some(t) if &t.batch.schema() == schema => Some(t),
                _ => {
                    // Indexed once per unit: a unit's tails hold every key it fed, and a fresh
                    // instance seeds each of them (thousands, in a stream's pass).
                    let t = match sink.state_tails(&self.name, &v.unit_id)? {
                        Some(t) => Some(Arc::new(IndexedTails::new(&t, schema, &self.spec)?)),
                        None => None,
                    };
                    if self.tails_cache.insert(v.unit_id.clone(), t.clone()).is_none() {
                        self.tails_order.push_back(v.unit_id.clone());
                    }
                    t
                }
            };
            let Some(indexed) = indexed else { continue };
            let (tails, order) = (&indexed.batch, &indexed.order);
            let idx: Vec<u32> = indexed
                .by_key
                .get(key)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&i| order.is_valid(i as usize) && order.value(i as usize) < before)
                .collect();
            have += idx.len();
            if in_session {
                // A tail that does not reach back to its unit's first row was cut after a gap:
                // the session starts in this unit, and nothing earlier belongs to it.
                let first = idx.iter().map(|&i| order.value(i as usize)).min();
                session_from = match first {
                    Some(f) if f <= v.range.min => Some(f),
                    _ => None,
                };
            } else {
                session_from = None;
            }
            if !idx.is_empty() {
                parts.push(take_rows(tails, &UInt32Array::from(idx))?);
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let all = arrow_select::concat::concat_batches(schema, &parts).map_err(|e| KeyedError::Data(e.to_string()))?;
        Ok(Some(last_in_order(&all, &self.spec.order_by, Cut { n, from, gap })?))
    }

    fn groups(&self, batch: &RecordBatch) -> Result<Vec<Group>, KeyedError> {
        let order = order_values(batch, &self.spec.order_by)?;
        let n = batch.num_rows();
        // Fast path: one key in the whole batch (a file per key, the usual layout).
        let key_cols = key_columns(batch, &self.spec.keys)?;
        let single = key_cols.iter().all(|c| is_constant(c.as_ref()));
        let buckets: Vec<(KeyValues, Option<Vec<u32>>)> = if single {
            vec![(key_at(&key_cols, 0)?, None)]
        } else {
            let fields = key_cols.iter().map(|c| arrow_row::SortField::new(c.data_type().clone())).collect::<Vec<_>>();
            let conv = arrow_row::RowConverter::new(fields).map_err(|e| KeyedError::Data(e.to_string()))?;
            let rows = conv.convert_columns(&key_cols).map_err(|e| KeyedError::Data(e.to_string()))?;
            let mut by: HashMap<&[u8], usize> = HashMap::new();
            let mut out: Vec<(usize, Vec<u32>)> = Vec::new();
            for i in 0..n {
                let slot = *by.entry(rows.row(i).data()).or_insert_with(|| {
                    out.push((i, Vec::new()));
                    out.len() - 1
                });
                out[slot].1.push(i as u32);
            }
            out.into_iter()
                .map(|(first, idx)| Ok::<_, KeyedError>((key_at(&key_cols, first)?, Some(idx))))
                .collect::<Result<_, _>>()?
        };
        let mut groups = Vec::with_capacity(buckets.len());
        for (key, idx) in buckets {
            let mut idx: Vec<u32> = match idx {
                Some(v) => v.into_iter().filter(|&i| order.is_valid(i as usize)).collect(),
                None if order.null_count() == 0 => {
                    let v = order.values();
                    if v.windows(2).all(|w| w[0] <= w[1]) {
                        if n > 0 {
                            groups.push(Group { key, rows: None, min: v[0], max: v[n - 1], count: n as u64 });
                        }
                        continue;
                    }
                    (0..n as u32).collect()
                }
                None => (0..n as u32).filter(|&i| order.is_valid(i as usize)).collect(),
            };
            if idx.is_empty() {
                continue;
            }
            idx.sort_by_key(|&i| order.value(i as usize));
            let (min, max) = (order.value(idx[0] as usize), order.value(idx[idx.len() - 1] as usize));
            let count = idx.len() as u64;
            groups.push(Group { key, rows: Some(UInt32Array::from(idx)), min, max, count });
        }
        Ok(groups)
    }
}

/// Whether a unit of a key starting at `next` may continue a group of the unit ending at `end`, for
/// a lookahead step with this span: the one rule of `continuing` (what a unit records as its
/// next), `predecessors` and the runner's check for units left out of date.
pub(crate) fn within_span(span: Option<i64>, end: i64, next: i64) -> bool {
    next.saturating_sub(end) <= span.unwrap_or(i64::MAX)
}

/// See [`KeyedStep::unit_scoped`].
pub(crate) fn unit_scoped(spec: &StateSpec) -> bool {
    spec.needs_history() && spec.order_by.is_empty()
}

/// The first order value a tail keeps for a key whose latest is `max`: a later unit starts after
/// `max`, so it needs the rows after `max - span`.
fn tail_threshold(max: i64, span: i64) -> i64 {
    max.saturating_sub(span).saturating_add(1)
}

/// The rows a key's tail keeps when its latest order value is `max`.
fn tail_cut(spec: &StateSpec, max: i64) -> Cut {
    let from = spec.span().map(|s| tail_threshold(max, s));
    Cut { n: spec.lookback_rows as usize, from, gap: spec.gap() }
}

/// Which rows of a key a tail or seed keeps: the last `n`, every row whose order value is at
/// least `from`, and every row after the last gap between consecutive order values wider than
/// `gap` (the open session, at most [`SESSION_ROWS`]).
#[derive(Debug, Clone, Copy)]
struct Cut {
    n: usize,
    from: Option<i64>,
    gap: Option<i64>,
}

/// The most rows of one key's open session a tail keeps. A longer session is cut (its start is
/// lost for seeding after a restart or a late arrival), with a warning.
pub(crate) const SESSION_ROWS: usize = 100_000;

/// How many of `len` rows, in order (`values`: their order values, ascending), `cut` keeps.
fn suffix_len(values: &[i64], len: usize, cut: Cut) -> usize {
    let by_span = match cut.from {
        Some(f) => len - values.partition_point(|&v| v < f),
        None => 0,
    };
    let by_gap = match cut.gap {
        Some(g) => {
            let start = (1..values.len()).rev().find(|&i| values[i].saturating_sub(values[i - 1]) > g).unwrap_or(0);
            let open = len - start;
            static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if open > SESSION_ROWS && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    rows = open,
                    kept = SESSION_ROWS,
                    "an open session is longer than the rows kept for it: after a restart or a late file, \
                     its start and position are approximate"
                );
            }
            open.min(SESSION_ROWS)
        }
        None => 0,
    };
    cut.n.min(len).max(by_span).max(by_gap)
}

fn key_columns(batch: &RecordBatch, keys: &[String]) -> Result<Vec<ArrayRef>, KeyedError> {
    keys.iter()
        .map(|k| {
            batch
                .column_by_name(k)
                .cloned()
                .ok_or_else(|| KeyedError::Data(format!("key column `{k}` is not in the step's input")))
        })
        .collect()
}

fn is_constant(a: &dyn Array) -> bool {
    let n = a.len();
    if n <= 1 {
        return true;
    }
    if a.null_count() > 0 {
        return a.null_count() == n;
    }
    let first = a.slice(0, 1);
    all_equal(a, &first).unwrap_or_default()
}

/// Whether every value of `a` equals the single value of `first`, for the common key types.
fn all_equal(a: &dyn Array, first: &ArrayRef) -> Option<bool> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    macro_rules! prim {
        ($t:ty) => {{
            let v = a.as_primitive::<$t>().values();
            let f = first.as_primitive::<$t>().value(0);
            Some(v.iter().all(|x| *x == f))
        }};
    }
    match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            let f = first.as_string::<i32>().value(0);
            Some(s.iter().all(|x| x == Some(f)))
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            let f = first.as_string::<i64>().value(0);
            Some(s.iter().all(|x| x == Some(f)))
        }
        DataType::Utf8View => {
            let s = a.as_string_view();
            let f = first.as_string_view().value(0);
            Some(s.iter().all(|x| x == Some(f)))
        }
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Date32 => prim!(Date32Type),
        DataType::Date64 => prim!(Date64Type),
        _ => None,
    }
}

/// The key values of row `i`, as text.
fn key_at(cols: &[ArrayRef], i: usize) -> Result<KeyValues, KeyedError> {
    let opts = FormatOptions::default();
    cols.iter()
        .map(|c| {
            if c.is_null(i) {
                return Ok(None);
            }
            let f = ArrayFormatter::try_new(c.as_ref(), &opts).map_err(|e| KeyedError::Data(e.to_string()))?;
            Ok(Some(f.value(i).to_string()))
        })
        .collect()
}

/// The key values of every row (for small batches: tails).
fn key_strings(batch: &RecordBatch, keys: &[String]) -> Result<Vec<KeyValues>, KeyedError> {
    let cols = key_columns(batch, keys)?;
    (0..batch.num_rows()).map(|i| key_at(&cols, i)).collect()
}

/// Order values as an array of the ordering column's type.
fn order_array(values: Vec<i64>, t: &DataType) -> Result<ArrayRef, KeyedError> {
    let ints: ArrayRef = Arc::new(Int64Array::from(values));
    let ints = match t {
        DataType::Date32 => arrow_cast::cast(&ints, &DataType::Int32).map_err(|e| KeyedError::Data(e.to_string()))?,
        _ => ints,
    };
    arrow_cast::cast(&ints, t).map_err(|e| KeyedError::Data(format!("ordering column of type {t}: {e}")))
}

/// The ordering column as i64 (integers, timestamps and dates in their own units).
pub(crate) fn order_values(batch: &RecordBatch, column: &str) -> Result<Int64Array, KeyedError> {
    let col = batch
        .column_by_name(column)
        .ok_or_else(|| KeyedError::Data(format!("ordering column `{column}` is not in the step's input")))?;
    let ok = col.data_type().is_integer()
        || matches!(col.data_type(), DataType::Timestamp(..) | DataType::Date32 | DataType::Date64);
    if !ok {
        return Err(KeyedError::Data(format!(
            "ordering column `{column}` is {}; keyed state needs an integer, timestamp or date",
            col.data_type()
        )));
    }
    let cast = arrow_cast::cast(col, &DataType::Int64).map_err(|e| KeyedError::Data(e.to_string()))?;
    Ok(cast.as_any().downcast_ref::<Int64Array>().expect("cast to Int64").clone())
}

fn take_rows(batch: &RecordBatch, idx: &UInt32Array) -> Result<RecordBatch, KeyedError> {
    arrow_select::take::take_record_batch(batch, idx).map_err(|e| KeyedError::Data(e.to_string()))
}

/// The last `n` rows of `batch` in order of `order_by` (stable), and every row whose order value
/// is at least `from`.
fn last_in_order(batch: &RecordBatch, order_by: &str, cut: Cut) -> Result<RecordBatch, KeyedError> {
    let order = order_values(batch, order_by)?;
    let rows = batch.num_rows();
    if order.null_count() == 0 && order.values().windows(2).all(|w| w[0] <= w[1]) {
        let keep = suffix_len(order.values(), rows, cut);
        return Ok(batch.slice(rows - keep, keep));
    }
    let mut idx: Vec<u32> = (0..rows as u32).filter(|&i| order.is_valid(i as usize)).collect();
    idx.sort_by_key(|&i| order.value(i as usize));
    let values: Vec<i64> = idx.iter().map(|&i| order.value(i as usize)).collect();
    let keep = suffix_len(&values, idx.len(), cut);
    let keep = idx.split_off(idx.len() - keep);
    take_rows(batch, &UInt32Array::from(keep))
}

/// `batch` with exactly the columns of `schema`: matched by name and cast, missing ones null.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    if &batch.schema() == schema {
        return Ok(batch.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow_cast::cast(c, f.data_type()).map_err(|e| format!("lookback column `{}`: {e}", f.name())),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), cols).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray};
    use arrow_schema::{Field, Schema};

    fn batch(keys: &[&str], t: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("t", DataType::Int64, true),
            Field::new("v", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(t.to_vec())),
                Arc::new(Float64Array::from(t.iter().map(|&x| x as f64).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    /// A step keyed by `k`, ordered by `t`, with these lookbacks.
    fn spec_step(rows: u64, span: Option<i64>, gap: Option<i64>) -> KeyedStep {
        KeyedStep::new(
            "s".into(),
            StateSpec {
                keys: vec!["k".into()],
                order_by: "t".into(),
                lookback_rows: rows,
                lookback_span: span,
                lookback_gap: gap,
                lookahead: false,
            },
        )
    }

    fn step(n: u64) -> KeyedStep {
        spec_step(n, None, None)
    }

    #[test]
    fn groups_split_by_key_and_order_rows() {
        let s = step(2);
        let b = batch(&["a", "b", "a", "b", "a"], &[5, 2, 1, 9, 3]);
        let g = s.groups(&b).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].key.clone(), g[0].min, g[0].max, g[0].count), (vec![Some("a".into())], 1, 5, 3));
        assert_eq!(g[0].rows.as_ref().unwrap().values().to_vec(), vec![2, 4, 0]);
        let single = s.groups(&batch(&["a", "a", "a"], &[1, 2, 3])).unwrap();
        assert!(single[0].rows.is_none());
    }

    #[test]
    fn tails_keep_the_last_rows_per_key_in_order() {
        let mut s = step(2);
        for b in [batch(&["a", "b", "a"], &[1, 10, 2]), batch(&["a", "a", "b"], &[4, 3, 11])] {
            let g = s.groups(&b).unwrap();
            s.fed(&b, g).unwrap();
        }
        let st = s.unit_state(&History(Vec::new()), "u").unwrap().unwrap();
        assert_eq!(st.ranges.len(), 2);
        assert_eq!((st.ranges[0].min, st.ranges[0].max, st.ranges[0].rows), (1, 4, 4));
        let t = order_values(st.tails.as_ref().unwrap(), "t").unwrap();
        assert_eq!(t.values().to_vec(), vec![3, 4, 10, 11]);
    }

    fn span_step(n: u64, span: i64) -> KeyedStep {
        spec_step(n, Some(span), None)
    }

    fn tail_times(s: &mut KeyedStep, batches: &[RecordBatch]) -> Vec<i64> {
        for b in batches {
            let g = s.groups(b).unwrap();
            s.fed(b, g).unwrap();
        }
        let st = s.unit_state(&History(Vec::new()), "u").unwrap().unwrap();
        order_values(st.tails.as_ref().unwrap(), "t").unwrap().values().to_vec()
    }

    #[test]
    fn tails_keep_the_rows_within_the_span_and_the_last_rows() {
        assert!(span_step(0, 3).tracked());
        assert!(!step(0).tracked());
        // Span 3 after the latest (10): rows after 7.
        let ordered = batch(&["a"; 5], &[1, 2, 8, 9, 10]);
        assert_eq!(tail_times(&mut span_step(1, 3), std::slice::from_ref(&ordered)), vec![8, 9, 10]);
        // The last 4 rows reach further back than the span.
        assert_eq!(tail_times(&mut span_step(4, 3), std::slice::from_ref(&ordered)), vec![2, 8, 9, 10]);
        // Shuffled, several keys, and a later batch moving the key's latest forward.
        let mut s = span_step(0, 3);
        let t =
            tail_times(&mut s, &[batch(&["a", "b", "a", "a"], &[9, 50, 2, 8]), batch(&["a", "b", "a"], &[10, 40, 12])]);
        assert_eq!(t, vec![10, 12, 50]);
    }

    /// A sink that knows committed units' key ranges and tails, for seeds and successors.
    struct History(Vec<(KeyedUnit, RecordBatch)>);

    impl StateStore for History {
        fn is_committed(&self, _: &crate::source::SourceUnit) -> Result<bool, SinkError> {
            Ok(true)
        }
        fn dead_letter(&self, _: &crate::sink::DeadLetter) -> Result<(), SinkError> {
            Ok(())
        }
        fn key_history(&self, _: &str, key: &KeyValues) -> Result<Vec<KeyedUnit>, SinkError> {
            Ok(self.0.iter().filter(|(u, _)| &u.range.key == key).map(|(u, _)| u.clone()).collect())
        }
        fn state_tails(&self, _: &str, unit_id: &str) -> Result<Option<RecordBatch>, SinkError> {
            Ok(self.0.iter().find(|(u, _)| u.unit_id == unit_id).map(|(_, t)| t.clone()))
        }
    }

    /// Committed units of key `a`, one per (min, max, tail times).
    fn history(units: &[(i64, i64, &[i64])]) -> History {
        History(
            units
                .iter()
                .enumerate()
                .map(|(i, (min, max, tail))| {
                    let unit = crate::source::SourceUnit {
                        source: "src".into(),
                        location: format!("u{i}"),
                        locator: format!("u{i}"),
                        member: None,
                        size: 0,
                        version: 0,
                        content_hash: None,
                    };
                    let range = KeyRange {
                        key: vec![Some("a".into())],
                        min: *min,
                        max: *max,
                        rows: tail.len() as u64,
                        next: None,
                        arrival: false,
                        cumulative: false,
                    };
                    let keyed = KeyedUnit { unit, unit_id: format!("u{i}"), range, lookback: 0, span: None };
                    (keyed, batch(&vec!["a"; tail.len()], tail))
                })
                .collect(),
        )
    }

    fn seed_times(s: &mut KeyedStep, sink: &History, first: i64) -> Vec<i64> {
        let b = batch(&["a"], &[first]);
        match s.prepare(&b, sink, "new", None).unwrap() {
            Prepared::Go { seeds, .. } => {
                seeds.iter().flat_map(|b| order_values(b, "t").unwrap().values().to_vec()).collect()
            }
            Prepared::Stale { .. } => panic!("stale"),
        }
    }

    #[test]
    fn seeds_take_the_rows_within_the_span_before_the_boundary() {
        // Two committed units; their tails were cut for a span of 10.
        let sink = history(&[(0, 20, &[11, 15, 20]), (30, 40, &[31, 35, 40])]);
        // Boundary 45, span 10: rows at 35 and later, from the second unit only.
        assert_eq!(seed_times(&mut span_step(0, 10), &sink, 45), vec![35, 40]);
        // Boundary 32: rows at 22 and later, across both units, and only those before 32.
        assert_eq!(seed_times(&mut span_step(0, 10), &sink, 32), vec![31]);
        assert_eq!(seed_times(&mut span_step(0, 20), &sink, 32), vec![15, 20, 31]);
        // The last 4 rows reach further back than the span.
        assert_eq!(seed_times(&mut span_step(4, 5), &sink, 45), vec![20, 31, 35, 40]);
    }

    #[test]
    fn successors_of_a_late_unit_include_those_starting_within_the_span() {
        let sink = history(&[(0, 9, &[9]), (100, 109, &[109]), (115, 120, &[120]), (200, 210, &[210])]);
        let late = KeyRange {
            key: vec![Some("a".into())],
            min: 95,
            max: 99,
            rows: 5,
            next: None,
            arrival: false,
            cumulative: false,
        };
        let ids = |s: &KeyedStep| -> Vec<String> {
            s.successors(&sink, "late", std::slice::from_ref(&late)).unwrap().into_iter().map(|u| u.unit_id).collect()
        };
        // Span 20 after 99: the units starting at 100 and 115, not 200.
        assert_eq!(ids(&span_step(0, 20)), vec!["u1", "u2"]);
        // No span, one row of lookback: only the next unit.
        assert_eq!(ids(&step(1)), vec!["u1"]);
        // A span of 0 is no span: no history, no successors.
        assert_eq!(ids(&span_step(0, 0)), Vec::<String>::new());
    }

    fn gap_step(gap: i64) -> KeyedStep {
        spec_step(0, None, Some(gap))
    }

    /// Commit a unit's state as a store does: a checkpoint hides the key's earlier arrival
    /// ranges.
    fn commit(store: &mut History, unit_id: &str, st: UnitState) {
        for r in &st.ranges {
            if r.cumulative {
                store.0.retain(|(u, _)| !(u.range.key == r.key && u.range.arrival));
            }
            let unit = crate::source::SourceUnit {
                source: "src".into(),
                location: unit_id.into(),
                locator: unit_id.into(),
                member: None,
                size: 0,
                version: 0,
                content_hash: None,
            };
            let keyed = KeyedUnit { unit, unit_id: unit_id.into(), range: r.clone(), lookback: 0, span: None };
            store.0.push((keyed, st.tails.clone().unwrap()));
        }
    }

    #[test]
    fn arrival_units_checkpoint_every_few_units_and_seed_from_the_last_checkpoint_on() {
        // One key, one row per unit, all in one open session (gap 100): the whole session is
        // the tail. Units 0, 8 and 16 are checkpoints, the others hold their own row.
        let mut s = gap_step(100);
        let mut store = History(Vec::new());
        let mut kinds = Vec::new();
        for i in 0..20i64 {
            let b = batch(&["a"], &[i * 10]);
            let unit_id = format!("u{i}");
            s.begin_unit(Some("src"));
            let Prepared::Go { groups, .. } = s.prepare(&b, &store, &unit_id, Some("src")).unwrap() else { panic!() };
            s.fed(&b, groups).unwrap();
            let st = s.unit_state(&store, &unit_id).unwrap().unwrap();
            let r = &st.ranges[0];
            assert!(r.arrival);
            kinds.push((r.cumulative, r.min, r.max, st.tails.as_ref().unwrap().num_rows()));
            commit(&mut store, &unit_id, st);
        }
        assert_eq!(kinds[0], (true, 0, 0, 1));
        assert_eq!(kinds[1], (false, 10, 10, 1));
        assert_eq!(kinds[8], (true, 0, 80, 9), "the checkpoint holds the whole session so far");
        assert_eq!(kinds[16], (true, 0, 160, 17));
        assert_eq!(store.0.len(), 4, "the last checkpoint and the 3 units after it");
        // A fresh instance (a restart) is seeded with the whole open session, once each.
        let mut fresh = gap_step(100);
        fresh.begin_unit(Some("src"));
        let b = batch(&["a"], &[195]);
        let Prepared::Go { seeds, .. } = fresh.prepare(&b, &store, "u20", Some("src")).unwrap() else { panic!() };
        let seeded: Vec<i64> = seeds.iter().flat_map(|b| order_values(b, "t").unwrap().values().to_vec()).collect();
        assert_eq!(seeded, (0..20).map(|i| i * 10).collect::<Vec<_>>());
        // It goes on counting from the store: 3 units since the checkpoint, so 4 more to the next.
        fresh.fed(&b, fresh.groups(&b).unwrap()).unwrap();
        assert!(!fresh.unit_state(&store, "u20").unwrap().unwrap().ranges[0].cumulative);
        assert_eq!(fresh.since_checkpoint[&vec![Some("a".to_string())]], 4);
    }

    #[test]
    fn a_late_row_in_arrival_order_joins_the_checkpoint() {
        // Rows 100 and 110, then (a later unit) 50: late, within the gap of neither, so a
        // session of its own for the step; the key's tail is the last session in order.
        let mut s = gap_step(20);
        let mut store = History(Vec::new());
        for (i, t) in [100i64, 110, 50].into_iter().enumerate() {
            let b = batch(&["a"], &[t]);
            let unit_id = format!("u{i}");
            s.begin_unit(Some("src"));
            let Prepared::Go { groups, .. } = s.prepare(&b, &store, &unit_id, Some("src")).unwrap() else { panic!() };
            s.fed(&b, groups).unwrap();
            // Every unit a checkpoint, to see the merge.
            s.since_checkpoint.clear();
            let st = s.unit_state(&store, &unit_id).unwrap().unwrap();
            commit(&mut store, &unit_id, st);
        }
        assert_eq!(store.0.len(), 1);
        let (u, tails) = &store.0[0];
        assert_eq!((u.range.min, u.range.max), (50, 110));
        assert_eq!(order_values(tails, "t").unwrap().values().to_vec(), vec![100, 110]);
    }
}
