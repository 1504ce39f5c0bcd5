//! The grouping engine of `aggregate` and `resample`: rows grouped by key
//! columns plus a time bucket, accumulated across batches, emitted at the end
//! of the input or when a key's bucket closes (rows arrive in time order per key).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sluice_plugin::arrow_array::types::{
    ArrowTimestampType, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use sluice_plugin::arrow_array::{Float64Array, Int64Array, PrimitiveArray, UInt32Array};
use sluice_plugin::arrow_buffer::{NullBuffer, ScalarBuffer};
use sluice_plugin::arrow_select;
use sluice_plugin::prelude::*;

use crate::cal::{self, CalUnit, Zone};
use crate::keys::{KeyMap, check_key_columns, key_columns};
use crate::num::{is_numeric, to_f64, to_i64};
use crate::time::{Unit, parse_duration_ms};

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggFn {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    First,
    Last,
    CountDistinct,
}

/// When groups are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// All groups at the end of the input (of each file).
    #[default]
    Finish,
    /// A key's groups as soon as a row of that key falls into a later bucket.
    Close,
}

/// Whether a group may collect rows from several files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A group collects its rows from every file of the run and of earlier runs: one row per
    /// group (keyed state; a late file re-runs the files whose groups it changes).
    #[default]
    Run,
    /// Groups end with each file: a group cut by a file boundary gives one row per file.
    File,
}

/// One output aggregate: function, input column (optional for `count`), output name.
#[derive(Debug, Clone)]
pub struct AggDef {
    pub func: AggFn,
    pub column: Option<String>,
    pub output: String,
    /// The config key of this aggregate, for errors.
    pub key: String,
    /// The config key of its input column, for errors (`aggs.0.column`; `open` in `resample`).
    pub column_key: String,
}

/// The bucket width: a fixed duration, or a calendar unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Milliseconds, aligned to the epoch (to local midnight of 1970-01-01 in a time zone).
    Fixed(i64),
    /// `day`, `week` (ISO, from Monday), `month`, `quarter`, `year`, on the wall clock.
    Calendar(CalUnit),
}

impl Every {
    /// `1s`, `5m`, `1h`, `1d`, `2w`, or `day`, `week`, `month`, `quarter`, `year`
    /// (also `1 month`, `1mo`, `1y`, `1q`).
    pub fn parse(s: &str) -> Result<Every, String> {
        let t = s.trim();
        let word = t.trim_start_matches('1').trim();
        let cal = match word.to_ascii_lowercase().as_str() {
            "day" => Some(CalUnit::Day),
            "week" => Some(CalUnit::Week),
            "month" | "mo" => Some(CalUnit::Month),
            "quarter" | "q" => Some(CalUnit::Quarter),
            "year" | "y" => Some(CalUnit::Year),
            _ => None,
        };
        if let Some(c) = cal
            && (t == word || t.strip_prefix('1').is_some_and(|r| r.trim() == word))
        {
            return Ok(Every::Calendar(c));
        }
        parse_duration_ms(t).map(Every::Fixed).map_err(|m| {
            if t.chars().any(|c| c.is_ascii_alphabetic()) && t.len() > 3 {
                format!("{m}; or one calendar unit: day, week, month, quarter, year")
            } else {
                m
            }
        })
    }
}

/// The engine's settings.
#[derive(Debug, Clone)]
pub struct Spec {
    pub keys: Vec<String>,
    pub time: String,
    /// Bucket width.
    pub every: Every,
    /// Where day (and coarser) boundaries fall for a timestamp time column.
    pub zone: Zone,
    /// Unit of an integer time column (timestamps carry their own).
    pub unit: Unit,
    /// Name of the bucket column (default: the time column's name).
    pub bucket_as: String,
    pub aggs: Vec<AggDef>,
    pub emit: Emit,
    pub scope: Scope,
}

#[derive(Debug, Clone)]
enum Acc {
    Count(i64),
    Sum(f64, bool),
    /// The sum of an integer column, exact (any value seen).
    SumInt(i64, bool),
    Min(Option<f64>),
    Max(Option<f64>),
    Mean(f64, i64),
    First(Option<(i64, f64)>),
    Last(Option<(i64, f64)>),
    DistinctNum(HashSet<u64>),
    DistinctStr(HashSet<String>),
}

#[derive(Debug)]
struct Group {
    slot: u32,
    bucket: i64,
    accs: Vec<Acc>,
    /// Holds rows of the unit in flight (not only history from `seed` or earlier units).
    own: bool,
}

/// How the time column counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    Epoch(Unit),
    Days,
}

/// Per-batch views of the aggregate inputs.
enum Input {
    Rows,
    Num(Float64Array),
    /// An integer column summed exactly.
    Int(Int64Array),
    Str(ArrayRef),
}

/// Whether `sum` of a column of type `t` stays an integer (Int64): signed integers and the
/// unsigned ones that fit an i64.
fn sums_as_int(t: &DataType) -> bool {
    t.is_integer() && *t != DataType::UInt64
}

/// The grouping state.
pub struct Engine {
    spec: Spec,
    keymap: KeyMap,
    /// Rows holding each slot's key values (chunks, concatenated on output).
    key_chunks: Vec<Vec<ArrayRef>>,
    groups: Vec<Group>,
    index: HashMap<(u32, i64), usize>,
    /// Per slot, the latest bucket seen (close mode).
    latest: Vec<i64>,
    ready: Vec<usize>,
    slots: Vec<u32>,
    /// Feeding history (`seed`): groups touched are not the unit's own.
    seeding: bool,
    /// Per key slot, the bucket a later unit continues (`continuing`).
    hold: HashMap<u32, i64>,
    /// The time column's kind, once the input schema is known.
    kind: Cell<Option<TimeKind>>,
    /// The output schema for the input schema of the first batch.
    out_schema: Option<SchemaRef>,
}

impl Engine {
    pub fn new(spec: Spec) -> Self {
        let nkeys = spec.keys.len();
        Engine {
            spec,
            keymap: KeyMap::default(),
            key_chunks: vec![Vec::new(); nkeys],
            groups: Vec::new(),
            index: HashMap::new(),
            latest: Vec::new(),
            ready: Vec::new(),
            slots: Vec::new(),
            seeding: false,
            hold: HashMap::new(),
            kind: Cell::new(None),
            out_schema: None,
        }
    }

    /// The keyed state of `scope: run`: history as a span of the time column as long as the
    /// longest bucket (in the time column's units), and the lookahead that keeps a bucket the
    /// next file continues out of this file's output.
    pub fn state(&self) -> Option<StateSpec> {
        if self.spec.scope == Scope::File {
            return None;
        }
        let kind = self.kind.get().unwrap_or(TimeKind::Epoch(self.spec.unit));
        const DAY: i64 = 86_400_000;
        let ms = match self.spec.every {
            Every::Fixed(ms) => ms,
            Every::Calendar(CalUnit::Week) => 7 * DAY,
            Every::Calendar(CalUnit::Month) => 31 * DAY,
            Every::Calendar(CalUnit::Quarter) => 92 * DAY,
            Every::Calendar(CalUnit::Year) => 366 * DAY,
            Every::Calendar(_) => DAY,
        };
        // A day on a wall clock can last 25 hours.
        let ms = if self.spec.zone == Zone::Utc { ms } else { ms + 3_600_000 };
        let span = match kind {
            TimeKind::Days => (ms + DAY - 1) / DAY,
            TimeKind::Epoch(u) => ms.saturating_mul(u.per_second()) / 1000,
        };
        Some(StateSpec {
            keys: self.spec.keys.clone(),
            order_by: self.spec.time.clone(),
            lookback_rows: 0,
            lookback_span: Some(span.max(1)),
            lookback_gap: None,
            lookahead: true,
        })
    }

    /// History rows (see [`Handler::seed`](sluice_plugin::Handler::seed)): they fill groups but
    /// make none of them this unit's, so no output comes of them alone.
    pub fn seed(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.seeding = true;
        let r = self.process(batch);
        self.seeding = false;
        r.map(drop)
    }

    /// Where the keys of the unit in flight continue: a key's group in the bucket of the next
    /// unit's first row is left out of this unit's output (the next unit's output has it).
    pub fn continuing(&mut self, keys: &RecordBatch) -> Result<(), Error> {
        self.hold.clear();
        if keys.num_rows() == 0 {
            return Ok(());
        }
        let cols = key_columns(keys, &self.spec.keys)?;
        let mut slots = Vec::new();
        self.keymap.lookup(&cols, keys.num_rows(), true, &mut slots)?;
        let tcol = keys
            .column_by_name(&self.spec.time)
            .ok_or_else(|| Error::data("time column not found").column(&self.spec.time))?;
        let times = to_i64(tcol.as_ref())
            .ok_or_else(|| Error::data("time column is not an integer or timestamp").column(&self.spec.time))?;
        let mut bucketer = Bucketer::new(&self.spec, tcol.data_type());
        for (row, slot) in slots.into_iter().enumerate() {
            if let (Some(slot), true) = (slot, times.is_valid(row))
                && let Some(b) = bucketer.bucket(times.value(row))
            {
                self.hold.insert(slot, b);
            }
        }
        Ok(())
    }

    /// The output schema: keys, bucket, aggregates.
    pub fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        let s = &self.spec;
        check_key_columns(input, &s.keys, "keys")?;
        let mut fields: Vec<FieldRef> =
            s.keys.iter().map(|k| Arc::new(input.field_with_name(k).expect("checked").clone())).collect();
        let tf = input
            .field_with_name(&s.time)
            .map_err(|_| Error::config(format!("time column `{}` not found in the input", s.time)).key("time"))?;
        self.kind.set(Some(match tf.data_type() {
            DataType::Timestamp(u, _) => TimeKind::Epoch(Unit::of(*u)),
            DataType::Date32 => TimeKind::Days,
            _ => TimeKind::Epoch(s.unit),
        }));
        let bucket_type = match tf.data_type() {
            DataType::Timestamp(u, tz) => {
                let per = Unit::of(*u).per_second();
                if let Every::Fixed(ms) = s.every
                    && (ms * per) % 1000 != 0
                {
                    return Err(
                        Error::config(format!("`every` is finer than the time column's unit ({u:?})")).key("every")
                    );
                }
                DataType::Timestamp(*u, tz.clone())
            }
            DataType::Date32 => {
                if let Every::Fixed(ms) = s.every
                    && ms % 86_400_000 != 0
                {
                    return Err(Error::config(format!(
                        "`every` is finer than a day, but time column `{}` is a date",
                        s.time
                    ))
                    .key("every"));
                }
                if s.zone != Zone::Utc {
                    return Err(Error::config(format!(
                        "time column `{}` is a date, which has no time zone: drop `tz`",
                        s.time
                    ))
                    .key("tz"));
                }
                DataType::Date32
            }
            t if t.is_integer() => DataType::Int64,
            t => {
                return Err(Error::config(format!(
                    "time column `{}` is {t}: use an integer epoch, a timestamp or a date",
                    s.time
                ))
                .key("time"));
            }
        };
        fields.push(Arc::new(Field::new(&s.bucket_as, bucket_type, false)));
        for a in &s.aggs {
            if let Some(c) = &a.column {
                let f = input.field_with_name(c).map_err(|_| {
                    Error::config(format!("column `{c}` not found in the input")).key(a.column_key.clone())
                })?;
                let t = f.data_type();
                let ok = match a.func {
                    AggFn::Count => true,
                    AggFn::CountDistinct => is_numeric(t) || Ty::is_str(t),
                    _ => is_numeric(t),
                };
                if !ok {
                    return Err(Error::config(
                        format!("`{:?}` cannot aggregate column `{c}` of type {t}", a.func).to_lowercase(),
                    )
                    .key(a.column_key.clone()));
                }
            } else if a.func != AggFn::Count {
                return Err(Error::config("`column` is required except for count").key(a.key.clone()));
            }
            let int_sum = a.func == AggFn::Sum
                && a.column
                    .as_ref()
                    .and_then(|c| input.field_with_name(c).ok())
                    .is_some_and(|f| sums_as_int(f.data_type()));
            let t = match a.func {
                AggFn::Count | AggFn::CountDistinct => DataType::Int64,
                AggFn::Sum if int_sum => DataType::Int64,
                _ => DataType::Float64,
            };
            if fields.iter().any(|f| f.name() == &a.output) {
                return Err(Error::config(format!("output column `{}` is defined twice", a.output))
                    .key(format!("{}.as", a.key)));
            }
            fields.push(Arc::new(Field::new(&a.output, t, !matches!(a.func, AggFn::Count | AggFn::CountDistinct))));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn new_accs(&self, inputs: &[Input]) -> Vec<Acc> {
        self.spec
            .aggs
            .iter()
            .zip(inputs)
            .map(|(a, i)| match a.func {
                AggFn::Count => Acc::Count(0),
                AggFn::Sum if matches!(i, Input::Int(_)) => Acc::SumInt(0, false),
                AggFn::Sum => Acc::Sum(0.0, false),
                AggFn::Min => Acc::Min(None),
                AggFn::Max => Acc::Max(None),
                AggFn::Mean => Acc::Mean(0.0, 0),
                AggFn::First => Acc::First(None),
                AggFn::Last => Acc::Last(None),
                AggFn::CountDistinct => match i {
                    Input::Str(_) => Acc::DistinctStr(HashSet::new()),
                    _ => Acc::DistinctNum(HashSet::new()),
                },
            })
            .collect()
    }

    /// Accumulates one batch; returns the groups closed by it (close mode).
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>, Error> {
        let out_schema = match &self.out_schema {
            Some(s) => s.clone(),
            None => {
                let s = self.output_schema(&batch.schema())?;
                self.out_schema = Some(s.clone());
                s
            }
        };
        let out_schema = &out_schema;
        let n = batch.num_rows();
        let keys = key_columns(batch, &self.spec.keys)?;
        let mut slots = std::mem::take(&mut self.slots);
        let before = self.keymap.len();
        self.keymap.slots(&keys, n, &mut slots)?;
        if self.keymap.len() > before {
            // Remember the first row of every new key.
            let mut firsts = Vec::new();
            let mut seen = before as u32;
            for (row, &s) in slots.iter().enumerate() {
                if s >= seen {
                    firsts.push(row as u32);
                    seen = s + 1;
                }
            }
            let idx = UInt32Array::from(firsts);
            for (chunks, col) in self.key_chunks.iter_mut().zip(&keys) {
                chunks.push(arrow_select::take::take(col.as_ref(), &idx, None)?);
            }
            self.latest.resize(self.keymap.len(), i64::MIN);
        }
        let tcol = batch
            .column_by_name(&self.spec.time)
            .ok_or_else(|| Error::data("time column not found").column(&self.spec.time))?;
        let mut bucketer = Bucketer::new(&self.spec, tcol.data_type());
        let times = to_i64(tcol.as_ref())
            .ok_or_else(|| Error::data("time column is not an integer or timestamp").column(&self.spec.time))?;
        let inputs = self
            .spec
            .aggs
            .iter()
            .map(|a| match &a.column {
                None => Ok(Input::Rows),
                Some(c) => {
                    let col = batch.column_by_name(c).ok_or_else(|| Error::data("column not found").column(c))?;
                    if a.func == AggFn::Sum
                        && sums_as_int(col.data_type())
                        && let Some(ints) = crate::num::to_i64(col.as_ref())
                    {
                        return Ok(Input::Int(ints));
                    }
                    Ok(match to_f64(col.as_ref()) {
                        Some(f) if a.func != AggFn::CountDistinct || !Ty::is_str(col.data_type()) => Input::Num(f),
                        _ => Input::Str(crate::expr::normalize_column(col)?),
                    })
                }
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let tv = times.values();
        let mut cache: Option<((u32, i64), usize)> = None;
        for row in 0..n {
            if times.is_null(row) {
                return Err(Error::data("null time").row(row).column(&self.spec.time));
            }
            let t = tv[row];
            let slot = slots[row];
            let bucket = bucketer
                .bucket(t)
                .ok_or_else(|| Error::data(format!("time {t} is out of range")).row(row).column(&self.spec.time))?;
            let g = match cache {
                Some((k, g)) if k == (slot, bucket) => g,
                _ => {
                    if self.spec.emit == Emit::Close {
                        let latest = &mut self.latest[slot as usize];
                        if bucket < *latest {
                            return Err(Error::data(format!(
                                "row out of time order for its key (bucket {bucket} after {latest}); emit: close needs rows in time order"
                            ))
                            .row(row)
                            .column(&self.spec.time));
                        }
                        if bucket > *latest {
                            if let Some(&g) = self.index.get(&(slot, *latest)) {
                                self.ready.push(g);
                            }
                            *latest = bucket;
                        }
                    }
                    let g = match self.index.get(&(slot, bucket)) {
                        Some(&g) => g,
                        None => {
                            let accs = self.new_accs(&inputs);
                            self.groups.push(Group { slot, bucket, accs, own: false });
                            self.index.insert((slot, bucket), self.groups.len() - 1);
                            self.groups.len() - 1
                        }
                    };
                    if !self.seeding {
                        self.groups[g].own = true;
                    }
                    cache = Some(((slot, bucket), g));
                    g
                }
            };
            let group = &mut self.groups[g];
            for (acc, input) in group.accs.iter_mut().zip(&inputs) {
                let v = match input {
                    Input::Rows => {
                        if let Acc::Count(c) = acc {
                            *c += 1;
                        }
                        continue;
                    }
                    Input::Str(a) => {
                        if let Acc::DistinctStr(set) = acc
                            && !a.is_null(row)
                        {
                            let s = a.as_string::<i32>().value(row);
                            if !set.contains(s) {
                                set.insert(s.to_owned());
                            }
                        } else if let Acc::Count(c) = acc
                            && !a.is_null(row)
                        {
                            *c += 1;
                        }
                        continue;
                    }
                    Input::Int(a) => {
                        if let Acc::SumInt(s, any) = acc
                            && a.is_valid(row)
                        {
                            *s = s
                                .checked_add(a.value(row))
                                .ok_or_else(|| Error::data("an integer sum overflows Int64").row(row))?;
                            *any = true;
                        }
                        continue;
                    }
                    Input::Num(f) => {
                        if f.is_null(row) {
                            continue;
                        }
                        f.value(row)
                    }
                };
                match acc {
                    Acc::Count(c) => *c += 1,
                    // Fed by `Input::Int` above.
                    Acc::SumInt(..) => {}
                    Acc::Sum(s, any) => {
                        *s += v;
                        *any = true;
                    }
                    Acc::Min(m) => *m = Some(m.map_or(v, |m| m.min(v))),
                    Acc::Max(m) => *m = Some(m.map_or(v, |m| m.max(v))),
                    Acc::Mean(s, c) => {
                        *s += v;
                        *c += 1;
                    }
                    Acc::First(f) => {
                        if f.is_none_or(|(ft, _)| t < ft) {
                            *f = Some((t, v));
                        }
                    }
                    Acc::Last(l) => {
                        if l.is_none_or(|(lt, _)| t >= lt) {
                            *l = Some((t, v));
                        }
                    }
                    Acc::DistinctNum(set) => {
                        set.insert(if v == 0.0 { 0 } else { v.to_bits() });
                    }
                    Acc::DistinctStr(_) => {}
                }
            }
        }
        self.slots = slots;
        if self.ready.is_empty() {
            return Ok(None);
        }
        // Closed groups: this unit's are output; history's (seeded, or held by an earlier unit
        // that a later one did not continue) belong to other units' output.
        let (ready, history): (Vec<usize>, Vec<usize>) =
            std::mem::take(&mut self.ready).into_iter().partition(|&g| self.groups[g].own);
        let out = if ready.is_empty() { None } else { Some(self.emit(ready.clone(), out_schema)?) };
        self.remove(ready.into_iter().chain(history).collect());
        Ok(out)
    }

    /// End of a unit. `scope: file`: emits every group and resets them (keys are kept).
    /// `scope: run`: emits the unit's own groups except those a later unit continues, then keeps
    /// each key's latest group (the next unit in this instance may go on filling it) as history.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, Error> {
        self.ready.clear();
        // No batch yet: no group either.
        let Some(out_schema) = self.out_schema.clone() else { return Ok(None) };
        let out_schema = &out_schema;
        if self.spec.scope == Scope::File {
            let all: Vec<usize> = (0..self.groups.len()).collect();
            let r = if all.is_empty() { None } else { Some(self.emit(all.clone(), out_schema)?) };
            self.remove(all);
            self.latest.iter_mut().for_each(|l| *l = i64::MIN);
            return Ok(r);
        }
        let hold = std::mem::take(&mut self.hold);
        let out: Vec<usize> = (0..self.groups.len())
            .filter(|&g| {
                let grp = &self.groups[g];
                grp.own && hold.get(&grp.slot) != Some(&grp.bucket)
            })
            .collect();
        let r = if out.is_empty() { None } else { Some(self.emit(out, out_schema)?) };
        let mut latest: HashMap<u32, (i64, usize)> = HashMap::new();
        for (g, grp) in self.groups.iter().enumerate() {
            let e = latest.entry(grp.slot).or_insert((grp.bucket, g));
            if grp.bucket > e.0 {
                *e = (grp.bucket, g);
            }
        }
        let keep: HashSet<usize> = latest.values().map(|&(_, g)| g).collect();
        self.remove((0..self.groups.len()).filter(|g| !keep.contains(g)).collect());
        self.groups.iter_mut().for_each(|g| g.own = false);
        Ok(r)
    }

    /// Drops groups (by index) and rebuilds the index.
    fn remove(&mut self, which: Vec<usize>) {
        if which.is_empty() {
            return;
        }
        let mut gone = vec![false; self.groups.len()];
        for g in which {
            gone[g] = true;
        }
        let mut i = 0;
        self.groups.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
        self.index = self.groups.iter().enumerate().map(|(i, g)| ((g.slot, g.bucket), i)).collect();
    }

    /// The output rows of groups `which` (ordered by bucket, then key); the groups stay.
    fn emit(&mut self, mut which: Vec<usize>, schema: &SchemaRef) -> Result<RecordBatch, Error> {
        which.sort_by_key(|&g| (self.groups[g].bucket, self.groups[g].slot));
        let groups = &self.groups;
        let slot_idx = UInt32Array::from_iter_values(which.iter().map(|&g| groups[g].slot));
        let mut cols: Vec<ArrayRef> = Vec::new();
        for chunks in &self.key_chunks {
            let refs: Vec<&dyn Array> = chunks.iter().map(|c| c.as_ref()).collect();
            let all = arrow_select::concat::concat(&refs)?;
            cols.push(arrow_select::take::take(all.as_ref(), &slot_idx, None)?);
        }
        let buckets = Int64Array::from_iter_values(which.iter().map(|&g| groups[g].bucket));
        let bucket_field = schema.field(self.spec.keys.len());
        cols.push(match bucket_field.data_type() {
            DataType::Timestamp(u, tz) => {
                let v = buckets.values().clone();
                match u {
                    TimeUnit::Second => ts::<TimestampSecondType>(v, tz),
                    TimeUnit::Millisecond => ts::<TimestampMillisecondType>(v, tz),
                    TimeUnit::Microsecond => ts::<TimestampMicrosecondType>(v, tz),
                    TimeUnit::Nanosecond => ts::<TimestampNanosecondType>(v, tz),
                }
            }
            DataType::Date32 => Arc::new(sluice_plugin::arrow_array::Date32Array::from_iter_values(
                buckets.values().iter().map(|&d| d as i32),
            )),
            _ => Arc::new(buckets),
        });
        for i in 0..self.spec.aggs.len() {
            let mut vals = Vec::with_capacity(which.len());
            let mut valid = Vec::with_capacity(which.len());
            let mut ints = Vec::new();
            let mut int_valid = Vec::new();
            for &g in &which {
                match &groups[g].accs[i] {
                    Acc::Count(c) => ints.push(*c),
                    Acc::DistinctNum(s) => ints.push(s.len() as i64),
                    Acc::DistinctStr(s) => ints.push(s.len() as i64),
                    Acc::SumInt(s, any) => {
                        ints.push(*s);
                        int_valid.push(*any);
                    }
                    Acc::Sum(s, any) => {
                        vals.push(*s);
                        valid.push(*any);
                    }
                    Acc::Min(m) | Acc::Max(m) => {
                        vals.push(m.unwrap_or(0.0));
                        valid.push(m.is_some());
                    }
                    Acc::Mean(s, c) => {
                        vals.push(if *c > 0 { s / *c as f64 } else { 0.0 });
                        valid.push(*c > 0);
                    }
                    Acc::First(f) | Acc::Last(f) => {
                        vals.push(f.map_or(0.0, |x| x.1));
                        valid.push(f.is_some());
                    }
                }
            }
            cols.push(if schema.field(self.spec.keys.len() + 1 + i).data_type() == &DataType::Int64 {
                // Counts are never null; an integer sum is null when its group had no value.
                let nulls =
                    (int_valid.len() == ints.len() && int_valid.contains(&false)).then(|| NullBuffer::from(int_valid));
                Arc::new(Int64Array::new(ScalarBuffer::from(ints), nulls))
            } else {
                let nulls = NullBuffer::from(valid);
                let nulls = (nulls.null_count() > 0).then_some(nulls);
                Arc::new(Float64Array::new(ScalarBuffer::from(vals), nulls))
            });
        }
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    }
}

/// The bucket of a time value, remembering the last bucket's span (most rows fall in it).
struct Bucketer {
    every: Every,
    zone: Zone,
    /// The column's unit; None for dates (days).
    unit: Option<Unit>,
    last: Option<(i64, i64)>,
}

impl Bucketer {
    fn new(spec: &Spec, t: &DataType) -> Bucketer {
        let unit = match t {
            DataType::Timestamp(u, _) => Some(Unit::of(*u)),
            DataType::Date32 => None,
            _ => Some(spec.unit),
        };
        Bucketer { every: spec.every, zone: spec.zone, unit, last: None }
    }

    #[inline]
    fn bucket(&mut self, t: i64) -> Option<i64> {
        if let Some((start, end)) = self.last
            && t >= start
            && t < end
        {
            return Some(start);
        }
        let (start, end) = match (self.every, self.unit) {
            (Every::Fixed(ms), None) => {
                let w = (ms / 86_400_000).max(1);
                let s = t.div_euclid(w).checked_mul(w)?;
                (s, s.checked_add(w)?)
            }
            (Every::Calendar(c), None) => {
                let s = cal::trunc_days(i32::try_from(t).ok()?, c)?;
                (i64::from(s), i64::from(cal::next_days(s, c)?))
            }
            (Every::Fixed(ms), Some(u)) => {
                let w = (ms.checked_mul(u.per_second())? / 1000).max(1);
                match self.zone {
                    Zone::Utc => {
                        let s = t.div_euclid(w).checked_mul(w)?;
                        (s, s.checked_add(w)?)
                    }
                    zone if ms < 86_400_000 => {
                        // Under a day: aligned on the wall clock with the offset in force at `t`
                        // (buckets stay contiguous and `every` long through clock changes).
                        let local = cal::from_datetime(zone.local(cal::to_datetime(t, u)?), u)?;
                        let s = t.checked_sub(local.rem_euclid(w))?;
                        (s, s.checked_add(w)?)
                    }
                    zone => {
                        // Days and longer: from local midnight to local midnight (23 or 25 hours
                        // across a clock change).
                        let local = cal::from_datetime(zone.local(cal::to_datetime(t, u)?), u)?;
                        let ls = local.div_euclid(w).checked_mul(w)?;
                        let s = cal::from_datetime(zone.utc(cal::to_datetime(ls, u)?), u)?;
                        let e = cal::from_datetime(zone.utc(cal::to_datetime(ls.checked_add(w)?, u)?), u)?;
                        if t < s || t >= e {
                            return Some(s);
                        }
                        (s, e)
                    }
                }
            }
            (Every::Calendar(c), Some(u)) => {
                let s = cal::trunc(t, u, self.zone, c)?;
                (s, cal::next(s, u, self.zone, c)?)
            }
        };
        self.last = Some((start, end));
        Some(start)
    }
}

/// A timestamp array of type `T` with the given time zone.
pub fn ts<T: ArrowTimestampType>(v: ScalarBuffer<i64>, tz: &Option<Arc<str>>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(v, None).with_timezone_opt(tz.clone()))
}

/// String type helpers.
struct Ty;
impl Ty {
    fn is_str(t: &DataType) -> bool {
        matches!(crate::expr::Ty::of(t), Some(crate::expr::Ty::Str))
    }
}

/// Int64 values as an array of the time column type `t` (Int64 for integer epochs, or
/// the same timestamp type).
pub fn time_array(values: Vec<i64>, nulls: Option<NullBuffer>, t: &DataType) -> ArrayRef {
    let v = ScalarBuffer::from(values);
    match t {
        DataType::Timestamp(u, tz) => {
            let a = match u {
                TimeUnit::Second => ts::<TimestampSecondType>(v, tz),
                TimeUnit::Millisecond => ts::<TimestampMillisecondType>(v, tz),
                TimeUnit::Microsecond => ts::<TimestampMicrosecondType>(v, tz),
                TimeUnit::Nanosecond => ts::<TimestampNanosecondType>(v, tz),
            };
            match nulls {
                None => a,
                Some(n) => sluice_plugin::arrow_array::make_array(
                    a.to_data().into_builder().nulls(Some(n)).build().expect("same length"),
                ),
            }
        }
        _ => Arc::new(Int64Array::new(v, nulls)),
    }
}

/// The output type of [`time_array`] for a time column of type `t`.
pub fn time_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, _) => t.clone(),
        _ => DataType::Int64,
    }
}
