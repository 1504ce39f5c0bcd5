//! `dedup`: drops duplicate rows by key columns, keeping the first or the last
//! occurrence, within a batch and across batches (and files) of a run.

use std::sync::Arc;

use sluice_plugin::arrow_select::filter::filter_record_batch;
use sluice_plugin::patch::{self, row_field};
use sluice_plugin::prelude::*;

use handler_kit::keys::{KeyMap, check_key_columns, key_columns};
use handler_kit::num::to_i64;

/// The keys seen so far, split into a *prefix* (every key column but one, hashed) and one
/// integer-like column (an epoch, a date, a sequence number) kept per prefix as an ordered set.
///
/// Time series mostly arrive in key order: a value above the largest one seen for its prefix is
/// new without a lookup and is appended to a sorted run (8 bytes a key, no hashing, no cache
/// miss). Only a value at or below that needs a binary search of the run, and when new goes to
/// a small hash set of late values. Any order is correct; in-order input is just cheap.
#[derive(Default)]
struct Ordered {
    /// The position in `keys` of the integer-like column.
    value: usize,
    prefixes: KeyMap,
    runs: Vec<Run>,
    slots: Vec<u32>,
}

/// The values seen under one prefix.
#[derive(Default)]
struct Run {
    /// Ascending: each value was above all earlier ones when it came.
    sorted: Vec<i64>,
    /// New values that came below the top of `sorted`.
    late: std::collections::HashSet<i64, std::hash::BuildHasherDefault<Mix>>,
    null: bool,
}

impl Run {
    /// Records `v`; whether it is new.
    #[inline]
    fn insert(&mut self, v: i64) -> bool {
        match self.sorted.last() {
            Some(&top) if v <= top => self.sorted.binary_search(&v).is_err() && self.late.insert(v),
            _ => {
                self.sorted.push(v);
                true
            }
        }
    }
}

/// A hasher for single `i64`s (multiply and fold).
#[derive(Default)]
struct Mix(u64);

impl std::hash::Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        let h = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

/// Whether a key column can be the ordered one: integers that fit an `i64`, dates, timestamps.
fn orderable(t: &DataType) -> bool {
    handler_kit::num::is_integer_like(t) && *t != DataType::UInt64
}

impl Ordered {
    /// For `keys` of `schema`: the last orderable key column, if any.
    fn for_schema(schema: &Schema, keys: &[String]) -> Option<Ordered> {
        let value = keys.iter().rposition(|k| schema.field_with_name(k).is_ok_and(|f| orderable(f.data_type())))?;
        Some(Ordered { value, ..Ordered::default() })
    }

    /// Records the batch's keys; `mask[i]` is whether row `i` is the first of its key.
    fn first(&mut self, batch: &RecordBatch, names: &[String]) -> Result<Vec<bool>, Error> {
        let keys = key_columns(batch, names)?;
        let name = &names[self.value];
        let column = keys[self.value];
        let values = orderable(column.data_type())
            .then(|| to_i64(column.as_ref()))
            .flatten()
            .ok_or_else(|| Error::data("the key column changed type between batches").column(name))?;
        let prefix: Vec<&ArrayRef> =
            keys.iter().enumerate().filter(|(i, _)| *i != self.value).map(|(_, c)| *c).collect();
        self.prefixes.slots(&prefix, batch.num_rows(), &mut self.slots)?;
        self.runs.resize_with(self.prefixes.len(), Run::default);
        let v = values.values();
        let mut mask = Vec::with_capacity(batch.num_rows());
        for (row, &slot) in self.slots.iter().enumerate() {
            let run = &mut self.runs[slot as usize];
            mask.push(if values.is_null(row) { !std::mem::replace(&mut run.null, true) } else { run.insert(v[row]) });
        }
        Ok(mask)
    }
}

/// Which occurrence of a key survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    #[default]
    First,
    Last,
}

/// How far the memory of seen keys reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Across all files of the run that pass through this handler.
    #[default]
    Run,
    /// Within each file.
    File,
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The key columns (at least one).
    pub keys: Vec<String>,
    #[serde(default)]
    pub keep: Keep,
    #[serde(default)]
    pub scope: Scope,
    /// The column that orders rows (declared in the state spec), optional.
    #[serde(default)]
    pub order_by: Option<String>,
}

/// The handler.
pub struct Dedup {
    config: Config,
    /// Keys with an integer-like column (`keep: first`), decided by the first batch.
    ordered: Option<Ordered>,
    seen: KeyMap,
    /// Batches held until the end of the file (keep: last).
    held: Vec<RecordBatch>,
    slots: Vec<u32>,
    dropped: u64,
}

impl Dedup {
    /// keep: first. The rows whose key is new, in order.
    fn first(&mut self, batch: &RecordBatch) -> Result<BooleanArray, Error> {
        if self.ordered.is_none() && self.seen.is_empty() {
            self.ordered = Ordered::for_schema(&batch.schema(), &self.config.keys);
        }
        if let Some(o) = self.ordered.as_mut() {
            return Ok(BooleanArray::from(o.first(batch, &self.config.keys)?));
        }
        let keys = key_columns(batch, &self.config.keys)?;
        let before = self.seen.len() as u32;
        self.seen.slots(&keys, batch.num_rows(), &mut self.slots)?;
        // Slots are handed out in order of first appearance: a row is the
        // first of its key exactly when its slot is the next unseen one.
        let mut next = before;
        let mask: Vec<bool> = self
            .slots
            .iter()
            .map(|&s| {
                let keep = s >= next;
                if keep {
                    next = s + 1;
                }
                keep
            })
            .collect();
        Ok(BooleanArray::from(mask))
    }

    /// keep: first, as a patch: the input rows to keep.
    fn first_rows(&mut self, batch: &RecordBatch) -> Result<RecordBatch, Error> {
        let mask = self.first(batch)?;
        self.dropped += (batch.num_rows() - mask.true_count()) as u64;
        let rows: Vec<u32> = mask.values().set_indices().map(|i| i as u32).collect();
        let schema = Arc::new(Schema::new(vec![row_field()]));
        Ok(RecordBatch::try_new(schema, vec![patch::rows(rows)])?)
    }

    fn emit(&mut self, batch: &RecordBatch, mask: &BooleanArray) -> Result<Option<RecordBatch>, Error> {
        let kept = mask.true_count();
        self.dropped += (batch.num_rows() - kept) as u64;
        Ok(match kept {
            0 => None,
            k if k == batch.num_rows() => Some(batch.clone()),
            _ => Some(filter_record_batch(batch, mask)?),
        })
    }
}

impl Handler for Dedup {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Drops duplicate rows: rows with equal values in all key columns (nulls equal
each other).

- `keys` (required): the key columns (strings, integers, booleans, dates,
  timestamps, floats or dictionaries of those).
- `keep` (default `first`): `first` keeps the first row of each key and streams;
  `last` keeps the last row of each key and holds a file's rows until its end.
- `scope` (default `run`): `run` remembers keys across all files this step
  sees, `file` forgets them at the end of each file. `keep: last` needs
  `scope: file` (a row already written for an earlier file cannot be withdrawn).
- `order_by` (optional): the column rows are ordered by, declared to the host.

Cost: when a key column is an integer, date or timestamp (the last such in
`keys`), the keys are kept per value of the other key columns as a sorted run
of that column: rows in ascending order (a time series) are checked without a
hash lookup; other orders are correct, just slower.

State (scope `run`): the set of seen keys, declared as keyed state on `keys`
with no lookback rows. Dropped rows are counted in the host counter
`dedup.dropped`.

```yaml
config: {keys: [symbol, open_time], keep: first}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.keys.is_empty() {
            return Err(Error::config("list at least one key column").key("keys"));
        }
        if config.keep == Keep::Last && config.scope == Scope::Run {
            return Err(Error::config(
                "`keep: last` needs `scope: file`: a row written for an earlier file cannot be withdrawn",
            )
            .key("keep"));
        }
        Ok(Dedup { config, ordered: None, seen: KeyMap::default(), held: Vec::new(), slots: Vec::new(), dropped: 0 })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        check_key_columns(input, &self.config.keys, "keys")?;
        if let Some(o) = &self.config.order_by {
            handler_kit::column_index(input, o, "order_by")?;
        }
        Ok(match self.config.keep {
            // A patch that only selects rows.
            Keep::First => Arc::new(Schema::new(vec![row_field()])),
            Keep::Last => input.clone(),
        })
    }

    /// `keep: first` streams, so it reads only the key columns and returns the rows to keep;
    /// `keep: last` holds whole batches until the end of the file.
    fn projection(&self) -> Option<Vec<String>> {
        (self.config.keep == Keep::First)
            .then(|| self.config.keys.iter().chain(&self.config.order_by).cloned().collect())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        match self.config.keep {
            Keep::First => {
                let rows = self.first_rows(&batch)?;
                Ok(if rows.num_rows() == 0 { vec![] } else { vec![rows] })
            }
            Keep::Last => {
                self.held.push(batch);
                Ok(vec![])
            }
        }
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        let mut out = Vec::new();
        if self.config.keep == Keep::Last {
            let held = std::mem::take(&mut self.held);
            let mut map = KeyMap::default();
            // Last occurrence of each slot: (batch, row).
            let mut last: Vec<(u32, u32)> = Vec::new();
            let mut all_slots = Vec::with_capacity(held.len());
            for (bi, b) in held.iter().enumerate() {
                let keys = key_columns(b, &self.config.keys)?;
                let mut slots = Vec::new();
                map.slots(&keys, b.num_rows(), &mut slots)?;
                last.resize(map.len(), (0, 0));
                for (row, &s) in slots.iter().enumerate() {
                    last[s as usize] = (bi as u32, row as u32);
                }
                all_slots.push(slots);
            }
            for (bi, (b, slots)) in held.iter().zip(&all_slots).enumerate() {
                let mask: BooleanArray = slots
                    .iter()
                    .enumerate()
                    .map(|(row, &s)| Some(last[s as usize] == (bi as u32, row as u32)))
                    .collect();
                out.extend(self.emit(b, &mask)?);
            }
        }
        if self.config.scope == Scope::File {
            self.seen = KeyMap::default();
            self.ordered = None;
        }
        if self.dropped > 0 {
            sluice_plugin::counter_add("dedup.dropped", self.dropped);
            self.dropped = 0;
        }
        Ok(out)
    }

    fn state(&self) -> Option<StateSpec> {
        (self.config.scope == Scope::Run).then(|| StateSpec {
            keys: self.config.keys.clone(),
            order_by: self.config.order_by.clone().unwrap_or_default(),
            lookback_rows: 0,
            lookback_span: None,
            lookback_gap: None,
            lookahead: false,
        })
    }
}

sluice_plugin::export_handler!(Dedup);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::Int64Type;
    use sluice_plugin::parse_config;
    use std::sync::Arc;

    fn dedup(json: &str) -> Dedup {
        Dedup::new(parse_config(json).unwrap()).unwrap()
    }

    fn batch(k: Vec<&str>, t: Vec<i64>) -> RecordBatch {
        let schema =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("t", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(k)), Arc::new(Int64Array::from(t))]).unwrap()
    }

    fn ts(out: &[RecordBatch]) -> Vec<i64> {
        out.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec()).collect()
    }

    #[test]
    fn first_within_and_across_batches_and_files() {
        let mut d = dedup(r#"{"keys":["k"]}"#);
        let out = patch::process(&mut d, &batch(vec!["a", "b", "a", "c"], vec![1, 2, 3, 4])).unwrap();
        assert_eq!(ts(&out), vec![1, 2, 4]);
        let out = patch::process(&mut d, &batch(vec!["c", "d", "d"], vec![5, 6, 7])).unwrap();
        assert_eq!(ts(&out), vec![6]);
        d.finish().unwrap();
        // The next file of the run still knows the keys.
        let out = patch::process(&mut d, &batch(vec!["a", "e"], vec![8, 9])).unwrap();
        assert_eq!(ts(&out), vec![9]);
        let out = patch::process(&mut d, &batch(vec!["a"], vec![10])).unwrap();
        assert!(out.is_empty());
        assert_eq!(d.state().unwrap().keys, vec!["k".to_string()]);
        assert_eq!(d.state().unwrap().lookback_rows, 0);
    }

    #[test]
    fn multi_column_keys_and_file_scope() {
        let mut d = dedup(r#"{"keys":["k","t"],"scope":"file"}"#);
        let out = patch::process(&mut d, &batch(vec!["a", "a", "a"], vec![1, 1, 2])).unwrap();
        assert_eq!(ts(&out), vec![1, 2]);
        d.finish().unwrap();
        let out = patch::process(&mut d, &batch(vec!["a"], vec![1])).unwrap();
        assert_eq!(ts(&out), vec![1]);
        assert!(d.state().is_none());
    }

    #[test]
    fn last_holds_until_the_end_of_the_file() {
        let mut d = dedup(r#"{"keys":["k"],"keep":"last","scope":"file"}"#);
        assert!(patch::process(&mut d, &batch(vec!["a", "b", "a"], vec![1, 2, 3])).unwrap().is_empty());
        assert!(patch::process(&mut d, &batch(vec!["b", "c"], vec![4, 5])).unwrap().is_empty());
        let out = d.finish().unwrap();
        assert_eq!(ts(&out), vec![3, 4, 5]);
        assert!(d.finish().unwrap().is_empty());
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = Dedup::new(parse_config(r#"{"keys":["k"],"keep":"last"}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "keep"));
        let e = parse_config::<Config>(r#"{"keys":["k"],"keep":"latest"}"#).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "keep"), "{e}");
        let d = dedup(r#"{"keys":["k","nope"]}"#);
        let e = d.output_schema(&batch(vec![], vec![]).schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "keys.1"), "{e}");
    }

    #[test]
    fn ordered_keys_match_a_reference_set_in_any_order() {
        // Mostly ascending times with duplicates, late rows, nulls, and interleaved prefixes.
        let mut state: u64 = 7;
        let mut rnd = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        let mut d = dedup(r#"{"keys":["k","t"]}"#);
        let mut reference = std::collections::HashSet::new();
        let mut t = 0i64;
        for _ in 0..40 {
            let n = 1 + rnd(300) as usize;
            let (mut ks, mut ts): (Vec<Option<&str>>, Vec<Option<i64>>) = (vec![], vec![]);
            for _ in 0..n {
                t += rnd(3) as i64;
                let k = [Some("a"), Some("b"), None][rnd(3) as usize];
                let v = match rnd(20) {
                    0 => None,
                    1 => Some(t - rnd(500) as i64),
                    _ => Some(t),
                };
                ks.push(k);
                ts.push(v);
            }
            let schema = Arc::new(Schema::new(vec![
                Field::new("k", DataType::Utf8, true),
                Field::new("t", DataType::Int64, true),
            ]));
            let b = RecordBatch::try_new(
                schema,
                vec![Arc::new(StringArray::from(ks.clone())), Arc::new(Int64Array::from(ts.clone()))],
            )
            .unwrap();
            let mask = d.first(&b).unwrap();
            assert!(d.ordered.is_some(), "an Int64 key column takes the ordered path");
            for (i, (k, v)) in ks.iter().zip(&ts).enumerate() {
                assert_eq!(mask.value(i), reference.insert((k.map(str::to_string), *v)), "row {i}: {k:?} {v:?}");
            }
        }
    }

    #[test]
    fn keys_without_an_integer_column_are_hashed() {
        let mut d = dedup(r#"{"keys":["k"]}"#);
        let out = patch::process(&mut d, &batch(vec!["a", "a", "b"], vec![1, 2, 3])).unwrap();
        assert_eq!(ts(&out), vec![1, 3]);
        assert!(d.ordered.is_none());
    }
}
