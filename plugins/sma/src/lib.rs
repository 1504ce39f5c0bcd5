//! `sma`: appends a simple moving average of a column, per key, across batches.
//!
//! Config: `{"column": "price", "window": 20, "as": "price_sma20", "key":
//! "symbol", "order_by": "ts", "min_periods": 20}`. Rows are assumed to arrive
//! ordered by `order_by` within each key; the host guarantees that through the
//! declared state spec.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_plugin::arrow_array::types::*;
use sluice_plugin::arrow_array::{Float64Array, cast::AsArray};
use sluice_plugin::arrow_buffer::{NullBuffer, ScalarBuffer};
use sluice_plugin::prelude::*;

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The numeric column to average.
    pub column: String,
    /// Window length in rows (per key).
    pub window: u32,
    /// Name of the appended Float64 column.
    #[serde(rename = "as")]
    pub output: String,
    /// Optional key column: one independent average per key value.
    #[serde(default)]
    pub key: Option<String>,
    /// Optional column the rows are ordered by (declared in the state spec).
    #[serde(default)]
    pub order_by: Option<String>,
    /// Non-null values needed in the window before a value is output (default: `window`).
    #[serde(default)]
    pub min_periods: Option<u32>,
}

/// The last `window` values of one key: a ring buffer with a running sum.
#[derive(Debug, Clone)]
struct Window {
    values: Vec<f64>,
    valid: Vec<bool>,
    /// Next slot to overwrite once full.
    head: usize,
    sum: f64,
    count: u32,
    /// Evictions since the sum was last recomputed from scratch.
    evictions: u32,
}

impl Window {
    fn new(window: usize) -> Self {
        Window {
            values: Vec::with_capacity(window),
            valid: Vec::with_capacity(window),
            head: 0,
            sum: 0.0,
            count: 0,
            evictions: 0,
        }
    }

    /// Pushes a value (None for null) and returns the count and sum of the window's non-null values.
    #[inline]
    fn push(&mut self, window: usize, v: Option<f64>) -> (u32, f64) {
        let (x, ok) = match v {
            Some(x) => (x, true),
            None => (0.0, false),
        };
        if self.values.len() < window {
            self.values.push(x);
            self.valid.push(ok);
        } else {
            let h = self.head;
            if self.valid[h] {
                self.sum -= self.values[h];
                self.count -= 1;
            }
            self.values[h] = x;
            self.valid[h] = ok;
            self.head = if h + 1 == window { 0 } else { h + 1 };
            self.evictions += 1;
        }
        if ok {
            self.sum += x;
            self.count += 1;
        }
        // Subtracting evicted values accumulates rounding error (and an
        // infinity never cancels): recompute exactly once per window.
        if self.evictions as usize >= window || !self.sum.is_finite() {
            self.evictions = 0;
            self.sum = self.values.iter().zip(&self.valid).filter(|(_, ok)| **ok).map(|(x, _)| *x).sum();
        }
        (self.count, self.sum)
    }
}

/// Maps key values to dense slot numbers without allocating per row.
#[derive(Debug, Default)]
struct KeyIndex {
    strings: HashMap<String, usize>,
    ints: HashMap<i64, usize>,
    null: Option<usize>,
    next: usize,
}

impl KeyIndex {
    fn new_slot(next: &mut usize) -> usize {
        *next += 1;
        *next - 1
    }

    fn str_slot(&mut self, s: &str) -> usize {
        if let Some(&slot) = self.strings.get(s) {
            return slot;
        }
        let slot = Self::new_slot(&mut self.next);
        self.strings.insert(s.to_owned(), slot);
        slot
    }

    fn int_slot(&mut self, i: i64) -> usize {
        let next = &mut self.next;
        *self.ints.entry(i).or_insert_with(|| Self::new_slot(next))
    }

    fn null_slot(&mut self) -> usize {
        let next = &mut self.next;
        *self.null.get_or_insert_with(|| Self::new_slot(next))
    }

    /// Fills `out` with the slot of each row of `keys`.
    fn slots(&mut self, keys: &ArrayRef, out: &mut Vec<usize>) -> Result<(), Error> {
        out.clear();
        out.reserve(keys.len());
        match keys.data_type() {
            DataType::Utf8 => self.str_slots(keys.as_string::<i32>().iter(), out),
            DataType::LargeUtf8 => self.str_slots(keys.as_string::<i64>().iter(), out),
            DataType::Utf8View => self.str_slots(keys.as_string_view().iter(), out),
            DataType::Int64 => self.int_slots(keys.as_primitive::<Int64Type>().iter(), out),
            DataType::Dictionary(_, _) => {
                let dict = keys.as_any_dictionary();
                let mut value_slots = Vec::new();
                self.slots(dict.values(), &mut value_slots)?;
                let codes = dict.normalized_keys();
                for (row, code) in codes.into_iter().enumerate() {
                    out.push(if keys.is_null(row) { self.null_slot() } else { value_slots[code] });
                }
            }
            DataType::Int8 => self.int_slots(ints::<Int8Type>(keys), out),
            DataType::Int16 => self.int_slots(ints::<Int16Type>(keys), out),
            DataType::Int32 => self.int_slots(ints::<Int32Type>(keys), out),
            DataType::UInt8 => self.int_slots(ints::<UInt8Type>(keys), out),
            DataType::UInt16 => self.int_slots(ints::<UInt16Type>(keys), out),
            DataType::UInt32 => self.int_slots(ints::<UInt32Type>(keys), out),
            DataType::UInt64 => self.int_slots(ints::<UInt64Type>(keys), out),
            DataType::Date32 => self.int_slots(ints::<Date32Type>(keys), out),
            DataType::Boolean => self.int_slots(keys.as_boolean().iter().map(|v| v.map(i64::from)), out),
            t => {
                return Err(Error::data(format!("unsupported key column type {t}")));
            }
        }
        Ok(())
    }

    fn str_slots<'a>(&mut self, it: impl Iterator<Item = Option<&'a str>>, out: &mut Vec<usize>) {
        // Runs of equal keys are common (data ordered by key): skip the hash lookup.
        let mut last: Option<(&str, usize)> = None;
        for v in it {
            let slot = match v {
                None => self.null_slot(),
                Some(s) => match last {
                    Some((l, slot)) if l == s => slot,
                    _ => {
                        let slot = self.str_slot(s);
                        last = Some((s, slot));
                        slot
                    }
                },
            };
            out.push(slot);
        }
    }

    fn int_slots(&mut self, it: impl Iterator<Item = Option<i64>>, out: &mut Vec<usize>) {
        let mut last: Option<(i64, usize)> = None;
        for v in it {
            let slot = match v {
                None => self.null_slot(),
                Some(i) => match last {
                    Some((l, slot)) if l == i => slot,
                    _ => {
                        let slot = self.int_slot(i);
                        last = Some((i, slot));
                        slot
                    }
                },
            };
            out.push(slot);
        }
    }
}

/// The values of an integer-like key column as i64 (no allocation).
fn ints<T: ArrowPrimitiveType>(a: &ArrayRef) -> impl Iterator<Item = Option<i64>> + '_
where
    T::Native: TryInto<i64> + Copy,
{
    a.as_primitive::<T>().iter().map(|v| v.map(|x| x.try_into().unwrap_or(i64::MAX)))
}

/// Whether a key column of this type is supported.
pub fn supported_key_type(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, v) => supported_key_type(v),
        t => {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean | DataType::Date32
            ) || t.is_integer()
        }
    }
}

/// Converts a numeric column to Float64 values (without arrow-cast, which
/// would triple the component's size).
pub fn to_f64(a: &ArrayRef) -> Option<Float64Array> {
    fn conv<T: ArrowPrimitiveType>(a: &ArrayRef, f: impl Fn(T::Native) -> f64) -> Float64Array {
        a.as_primitive::<T>().unary::<_, Float64Type>(f)
    }
    Some(match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().clone(),
        DataType::Float32 => conv::<Float32Type>(a, f64::from),
        DataType::Float16 => conv::<Float16Type>(a, f64::from),
        DataType::Int8 => conv::<Int8Type>(a, f64::from),
        DataType::Int16 => conv::<Int16Type>(a, f64::from),
        DataType::Int32 => conv::<Int32Type>(a, f64::from),
        DataType::Int64 => conv::<Int64Type>(a, |v| v as f64),
        DataType::UInt8 => conv::<UInt8Type>(a, f64::from),
        DataType::UInt16 => conv::<UInt16Type>(a, f64::from),
        DataType::UInt32 => conv::<UInt32Type>(a, f64::from),
        DataType::UInt64 => conv::<UInt64Type>(a, |v| v as f64),
        DataType::Decimal128(_, scale) => {
            let div = 10f64.powi(i32::from(*scale));
            conv::<Decimal128Type>(a, |v| v as f64 / div)
        }
        _ => return None,
    })
}

/// The handler.
pub struct Sma {
    config: Config,
    window: usize,
    min_periods: u32,
    keys: KeyIndex,
    windows: Vec<Window>,
    /// Reused per batch.
    slot_buf: Vec<usize>,
}

impl Sma {
    /// Computes the moving average for one batch, updating the per-key state.
    pub fn compute(&mut self, batch: &RecordBatch) -> Result<Float64Array, Error> {
        let col_idx = batch
            .schema()
            .index_of(&self.config.column)
            .map_err(|_| Error::data("column not found").column(&self.config.column))?;
        let values = batch.column(col_idx);
        let values = to_f64(values).ok_or_else(|| {
            Error::data(format!("unsupported value type {}", values.data_type())).column(&self.config.column)
        })?;
        let n = batch.num_rows();

        let mut slots = std::mem::take(&mut self.slot_buf);
        match &self.config.key {
            Some(key) => {
                let k = batch.column_by_name(key).ok_or_else(|| Error::data("key column not found").column(key))?;
                self.keys.slots(k, &mut slots)?;
            }
            None => {
                slots.clear();
                slots.resize(n, 0);
            }
        }
        let needed = slots.iter().copied().max().map_or(0, |m| m + 1);
        if self.windows.len() < needed {
            self.windows.resize_with(needed, || Window::new(self.window));
        }

        let mut out = Vec::with_capacity(n);
        let mut validity = Vec::with_capacity(n);
        let raw = values.values();
        let has_nulls = values.null_count() > 0;
        for (row, &slot) in slots.iter().enumerate() {
            let v = if has_nulls && values.is_null(row) { None } else { Some(raw[row]) };
            let (count, sum) = self.windows[slot].push(self.window, v);
            if count >= self.min_periods && count > 0 {
                out.push(sum / count as f64);
                validity.push(true);
            } else {
                out.push(0.0);
                validity.push(false);
            }
        }
        self.slot_buf = slots;
        let nulls = NullBuffer::from(validity);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Ok(Float64Array::new(ScalarBuffer::from(out), nulls))
    }
}

impl Handler for Sma {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Appends a Float64 column holding the simple moving average of a numeric
column over the last `window` rows of the same key (in input order).

- `column` (required): the numeric column to average.
- `window` (required, >= 1): window length in rows.
- `as` (required): name of the appended column.
- `key` (optional): key column (string or integer); one average per key value.
- `order_by` (optional): the column rows are ordered by within a key.
- `min_periods` (optional, 1..=window, default `window`): non-null values the
  window must hold before a value is output; null before that.

State: the last `window - 1` rows per key, kept across batches and files.

```yaml
config: {column: price, window: 20, as: price_sma20, key: symbol, order_by: ts}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.window == 0 {
            return Err(Error::config("`window` must be at least 1").key("window"));
        }
        let min_periods = config.min_periods.unwrap_or(config.window);
        if min_periods == 0 || min_periods > config.window {
            return Err(Error::config(format!("`min_periods` must be between 1 and window ({})", config.window))
                .key("min_periods"));
        }
        Ok(Sma {
            window: config.window as usize,
            min_periods,
            config,
            keys: KeyIndex::default(),
            windows: Vec::new(),
            slot_buf: Vec::new(),
        })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        let c = &self.config;
        let f = input
            .field_with_name(&c.column)
            .map_err(|_| Error::config(format!("column `{}` not found in the input", c.column)).key("column"))?;
        if to_f64(&sluice_plugin::arrow_array::new_empty_array(f.data_type())).is_none() {
            return Err(Error::config(format!("column `{}` is {}, not numeric", c.column, f.data_type())).key("column"));
        }
        if let Some(key) = &c.key
            && let Ok(f) = input.field_with_name(key)
            && !supported_key_type(f.data_type())
        {
            return Err(Error::config(format!(
                "key column `{key}` is {}: use a string, integer, boolean or date32 column",
                f.data_type()
            ))
            .key("key"));
        }
        for (k, name) in [("key", &c.key), ("order_by", &c.order_by)] {
            if let Some(name) = name
                && input.index_of(name).is_err()
            {
                return Err(Error::config(format!("column `{name}` not found in the input")).key(k));
            }
        }
        if input.index_of(&c.output).is_ok() {
            return Err(Error::config(format!("column `{}` already exists in the input", c.output)).key("as"));
        }
        // A row-for-row patch of just the average.
        Ok(Arc::new(Schema::new(vec![Field::new(&c.output, DataType::Float64, true)])))
    }

    /// Reads the value, key and order columns, and `as`: it is not in a valid input, so
    /// nothing more is sent, but when it is, the clash is reported at `as`.
    fn projection(&self) -> Option<Vec<String>> {
        let c = &self.config;
        Some(
            [Some(&c.column), c.key.as_ref(), c.order_by.as_ref(), Some(&c.output)]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        )
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let sma = self.compute(&batch)?;
        Ok(vec![RecordBatch::try_new(schema, vec![Arc::new(sma)])?])
    }

    fn state(&self) -> Option<StateSpec> {
        Some(StateSpec {
            keys: self.config.key.iter().cloned().collect(),
            order_by: self.config.order_by.clone().unwrap_or_default(),
            lookback_rows: self.config.window as u64 - 1,
            lookback_span: None,
            lookback_gap: None,
            lookahead: false,
        })
    }
}

sluice_plugin::export_handler!(Sma);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;
    use sluice_plugin::arrow_array::DictionaryArray;
    use sluice_plugin::arrow_array::types::Int32Type;
    use sluice_plugin::{parse_config, patch};

    fn sma(json: &str) -> Sma {
        Sma::new(parse_config(json).unwrap()).unwrap()
    }

    fn batch(keys: ArrayRef, values: Vec<Option<f64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", keys.data_type().clone(), true),
            Field::new("v", DataType::Float64, true),
        ]));
        RecordBatch::try_new(schema, vec![keys, Arc::new(Float64Array::from(values))]).unwrap()
    }

    fn result(b: &RecordBatch) -> Vec<Option<f64>> {
        b.column(b.num_columns() - 1).as_primitive::<sluice_plugin::arrow_array::types::Float64Type>().iter().collect()
    }

    #[test]
    fn keyed_across_batches() {
        let mut s = sma(r#"{"column":"v","window":2,"as":"avg","key":"k"}"#);
        let b1 = batch(Arc::new(StringArray::from(vec!["a", "b", "a"])), vec![Some(1.0), Some(10.0), Some(3.0)]);
        let out = patch::process(&mut s, &b1).unwrap().remove(0);
        assert_eq!(result(&out), vec![None, None, Some(2.0)]);
        let b2 = batch(Arc::new(StringArray::from(vec!["b", "a"])), vec![Some(20.0), Some(5.0)]);
        let out = patch::process(&mut s, &b2).unwrap().remove(0);
        assert_eq!(result(&out), vec![Some(15.0), Some(4.0)]);
        assert_eq!(
            s.state(),
            Some(StateSpec {
                keys: vec!["k".into()],
                order_by: String::new(),
                lookback_rows: 1,
                lookback_span: None,
                lookback_gap: None,
                lookahead: false
            })
        );
    }

    #[test]
    fn int_and_dictionary_keys_agree_with_strings() {
        let vals = vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)];
        let mut a = sma(r#"{"column":"v","window":2,"as":"avg","key":"k"}"#);
        let mut b = sma(r#"{"column":"v","window":2,"as":"avg","key":"k"}"#);
        let mut c = sma(r#"{"column":"v","window":2,"as":"avg","key":"k"}"#);
        let ints = batch(Arc::new(Int64Array::from(vec![1, 2, 1, 2, 1])), vals.clone());
        let strs = batch(Arc::new(StringArray::from(vec!["1", "2", "1", "2", "1"])), vals.clone());
        let dict: DictionaryArray<Int32Type> = vec!["1", "2", "1", "2", "1"].into_iter().collect();
        let dict = batch(Arc::new(dict), vals);
        let r = result(&patch::process(&mut a, &ints).unwrap()[0]);
        assert_eq!(r, vec![None, None, Some(2.0), Some(3.0), Some(4.0)]);
        assert_eq!(result(&patch::process(&mut b, &strs).unwrap()[0]), r);
        assert_eq!(result(&patch::process(&mut c, &dict).unwrap()[0]), r);
    }

    #[test]
    fn min_periods_and_nulls() {
        let mut s = sma(r#"{"column":"v","window":3,"as":"avg","min_periods":1}"#);
        let b = batch(Arc::new(StringArray::from(vec!["x"; 5])), vec![None, Some(2.0), Some(4.0), None, Some(9.0)]);
        let r = result(&patch::process(&mut s, &b).unwrap()[0]);
        assert_eq!(r, vec![None, Some(2.0), Some(3.0), Some(3.0), Some(6.5)]);
    }

    #[test]
    fn long_run_matches_naive_average() {
        let mut s = sma(r#"{"column":"v","window":7,"as":"avg"}"#);
        let vals: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 1000) as f64 * 0.1 + 1e6).collect();
        let b = batch(Arc::new(StringArray::from(vec!["k"; vals.len()])), vals.iter().copied().map(Some).collect());
        let r = result(&patch::process(&mut s, &b).unwrap()[0]);
        for i in 6..vals.len() {
            let naive: f64 = vals[i - 6..=i].iter().sum::<f64>() / 7.0;
            assert!((r[i].unwrap() - naive).abs() < 1e-6, "row {i}");
        }
    }

    #[test]
    fn numeric_conversions() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(-3)]));
        let f = to_f64(&a).unwrap();
        assert_eq!(f.iter().collect::<Vec<_>>(), vec![Some(1.0), None, Some(-3.0)]);
        let d = sluice_plugin::arrow_array::Decimal128Array::from(vec![12345]).with_precision_and_scale(10, 2).unwrap();
        assert_eq!(to_f64(&(Arc::new(d) as ArrayRef)).unwrap().value(0), 123.45);
        assert!(to_f64(&(Arc::new(StringArray::from(vec!["1"])) as ArrayRef)).is_none());
        assert!(supported_key_type(&DataType::Int32));
        assert!(!supported_key_type(&DataType::Float64));
    }

    #[test]
    fn reads_its_columns_and_returns_the_average() {
        let mut s = sma(r#"{"column":"v","window":2,"as":"avg","key":"k","order_by":"t"}"#);
        assert_eq!(s.projection().unwrap(), ["v", "k", "t", "avg"]);
        let b = batch(Arc::new(StringArray::from(vec!["a", "a"])), vec![Some(1.0), Some(3.0)]);
        let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("t", DataType::Int64, false));
        fields.push(Field::new("other", DataType::Utf8, false));
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(Int64Array::from(vec![1, 2])));
        cols.push(Arc::new(StringArray::from(vec!["x", "y"])));
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let p = s.process(patch::project(&b, &s.projection().unwrap())).unwrap().remove(0);
        assert_eq!(p.num_columns(), 1);
        let mut s = sma(r#"{"column":"v","window":2,"as":"avg","key":"k","order_by":"t","min_periods":1}"#);
        let out = patch::process(&mut s, &b).unwrap().remove(0);
        let names: Vec<_> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["k", "v", "t", "other", "avg"]);
        assert_eq!(out.schema(), patch::output_schema(&s, &b.schema()).unwrap());
        assert_eq!(result(&out), vec![Some(1.0), Some(2.0)]);
        assert_eq!(out.column(3), b.column(3), "unread columns pass through");
        // `as` naming an input column is still an error at `as`, and a missing `order_by` at `order_by`.
        let s = sma(r#"{"column":"v","window":2,"as":"other"}"#);
        let e = patch::output_schema(&s, &b.schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "as"), "{e}");
        let s = sma(r#"{"column":"v","window":2,"as":"a","order_by":"ts"}"#);
        let e = patch::output_schema(&s, &b.schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "order_by"), "{e}");
    }

    #[test]
    fn config_errors() {
        let e = Sma::new(parse_config(r#"{"column":"v","window":0,"as":"a"}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "window"));
        assert!(parse_config::<Config>(r#"{"column":"v","window":2,"as":"a","extra":1}"#).is_err());
        let s = sma(r#"{"column":"nope","window":2,"as":"a"}"#);
        let schema = batch(Arc::new(StringArray::from(vec!["a"])), vec![Some(1.0)]).schema();
        let e = patch::output_schema(&s, &schema).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "column"));
    }
}
