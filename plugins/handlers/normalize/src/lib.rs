//! `normalize`: min-max scaling or z-scores of numeric columns, with fixed
//! parameters or over a rolling window of rows per key.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use handler_kit::keys::{KeyMap, check_key_columns, key_columns};
use handler_kit::num::{is_integer_like, is_numeric, to_f64, to_i64};
use sluice_plugin::arrow_array::Float64Array;
use sluice_plugin::arrow_buffer::{NullBuffer, ScalarBuffer};
use sluice_plugin::prelude::*;

/// The normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// (x - min) / (max - min).
    Minmax,
    /// (x - mean) / std.
    Zscore,
}

/// Fixed parameters of one column.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub columns: Vec<String>,
    pub method: Method,
    /// Fixed parameters per column (fixed mode).
    #[serde(default)]
    pub params: Option<BTreeMap<String, Params>>,
    /// Rolling window in rows (rolling mode).
    #[serde(default)]
    pub window: Option<u32>,
    #[serde(default)]
    pub keys: Vec<String>,
    /// The time column rolling windows follow (rolling mode).
    #[serde(default)]
    pub order_by: Option<String>,
    /// Appended column suffix; empty (default) replaces the columns in place.
    #[serde(default)]
    pub suffix: String,
}

/// The handler.
pub struct Normalize {
    config: Config,
    /// Fixed mode: (offset, scale) per column: y = (x - offset) / scale.
    fixed: Vec<(f64, f64)>,
    keys: KeyMap,
    rings: Vec<Vec<VecDeque<f64>>>,
    slots: Vec<u32>,
}

impl Normalize {
    fn out_name(&self, c: &str) -> String {
        format!("{c}{}", self.config.suffix)
    }

    /// Whether it works on patches: unless a column is listed twice (which would give a patch
    /// two columns of one name).
    fn projects(&self) -> bool {
        let c = &self.config.columns;
        !c.iter().enumerate().any(|(i, x)| c[..i].contains(x))
    }

    fn rolling(&mut self, batch: &RecordBatch, w: usize) -> Result<Vec<ArrayRef>, Error> {
        let n = batch.num_rows();
        let keys = key_columns(batch, &self.config.keys)?;
        let mut slots = std::mem::take(&mut self.slots);
        self.keys.slots(&keys, n, &mut slots)?;
        let ncol = self.config.columns.len();
        self.rings.resize_with(self.keys.len(), || vec![VecDeque::with_capacity(w); ncol]);
        let order_by = self.config.order_by.as_deref().expect("checked in new");
        let t = batch.column_by_name(order_by).ok_or_else(|| Error::data("column not found").column(order_by))?;
        let t = to_i64(t.as_ref()).ok_or_else(|| Error::data("not a time column").column(order_by))?;
        let tv = t.values();
        let order: Option<Vec<u32>> = (!tv.windows(2).all(|p| p[0] <= p[1])).then(|| {
            let mut o: Vec<u32> = (0..n as u32).collect();
            o.sort_by_key(|&i| tv[i as usize]);
            o
        });
        let mut out = Vec::with_capacity(ncol);
        for (ci, c) in self.config.columns.iter().enumerate() {
            let col = batch.column_by_name(c).ok_or_else(|| Error::data("column not found").column(c))?;
            let v = to_f64(col.as_ref()).ok_or_else(|| Error::data("not numeric").column(c))?;
            let (mut ys, mut ok) = (vec![0f64; n], vec![false; n]);
            for i in 0..n {
                let row = order.as_ref().map_or(i, |o| o[i] as usize);
                if v.is_null(row) {
                    continue;
                }
                let x = v.value(row);
                let ring = &mut self.rings[slots[row] as usize][ci];
                if ring.len() == w {
                    ring.pop_front();
                }
                ring.push_back(x);
                if ring.len() < w {
                    continue;
                }
                let y = match self.config.method {
                    Method::Minmax => {
                        let (lo, hi) =
                            ring.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
                        (x - lo) / (hi - lo)
                    }
                    Method::Zscore => {
                        let m = ring.iter().sum::<f64>() / w as f64;
                        let var = ring.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (w as f64 - 1.0);
                        (x - m) / var.sqrt()
                    }
                };
                if y.is_finite() {
                    ys[row] = y;
                    ok[row] = true;
                }
            }
            let nulls = NullBuffer::from(ok);
            out.push(Arc::new(Float64Array::new(ScalarBuffer::from(ys), (nulls.null_count() > 0).then_some(nulls)))
                as ArrayRef);
        }
        self.slots = slots;
        Ok(out)
    }
}

impl Handler for Normalize {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Normalizes numeric columns to Float64.

- `columns` (required): the numeric columns.
- `method` (required): `minmax`, (x - min) / (max - min), or `zscore`,
  (x - mean) / std.
- Fixed mode: `params` gives each column's parameters, `{min, max}` for minmax
  or `{mean, std}` for zscore.
- Rolling mode: `window` (rows, >= 2) with `order_by` (time column) and
  optional `keys`: the parameters come from the last `window` non-null values
  of the key, including the current one (zscore: sample std). Null until the
  window is full, and where the window has no spread.
- `suffix` (default empty): appended to the output names; empty replaces the
  columns in place.

State (rolling): declared on `keys`, ordered by `order_by`, lookback `window - 1`.

```yaml
config: {columns: [close], method: zscore, window: 20, keys: [symbol], order_by: open_time, suffix: _z}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.columns.is_empty() {
            return Err(Error::config("list at least one column").key("columns"));
        }
        let mut fixed = Vec::new();
        match (&config.params, config.window) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Error::config("set either `params` (fixed) or `window` (rolling)").key("window"));
            }
            (Some(p), None) => {
                for c in &config.columns {
                    let key = format!("params.{c}");
                    let p =
                        p.get(c).ok_or_else(|| Error::config(format!("no parameters for column `{c}`")).key(&key))?;
                    let (off, scale) = match (config.method, p) {
                        (Method::Minmax, Params { min: Some(lo), max: Some(hi), mean: None, std: None }) => {
                            (*lo, hi - lo)
                        }
                        (Method::Zscore, Params { mean: Some(m), std: Some(s), min: None, max: None }) => (*m, *s),
                        (Method::Minmax, _) => {
                            return Err(Error::config("minmax needs exactly `min` and `max`").key(key));
                        }
                        (Method::Zscore, _) => {
                            return Err(Error::config("zscore needs exactly `mean` and `std`").key(key));
                        }
                    };
                    if scale == 0.0 || !scale.is_finite() {
                        return Err(Error::config("the scale (max - min, or std) must be finite and non-zero").key(key));
                    }
                    fixed.push((off, scale));
                }
                if let Some(extra) = p.keys().find(|k| !config.columns.contains(k)) {
                    return Err(Error::config(format!("`{extra}` is not in `columns`")).key(format!("params.{extra}")));
                }
            }
            (None, Some(w)) => {
                if w < 2 {
                    return Err(Error::config("`window` must be at least 2").key("window"));
                }
                if config.order_by.is_none() {
                    return Err(Error::config("rolling mode needs `order_by`").key("order_by"));
                }
            }
        }
        Ok(Normalize { config, fixed, keys: KeyMap::default(), rings: Vec::new(), slots: Vec::new() })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        check_key_columns(input, &self.config.keys, "keys")?;
        if let Some(o) = &self.config.order_by {
            let i = handler_kit::column_index(input, o, "order_by")?;
            if !is_integer_like(input.field(i).data_type()) {
                return Err(Error::config(format!("`{o}` is not an integer epoch or a timestamp")).key("order_by"));
            }
        }
        let mut fields: Vec<FieldRef> = input.fields().iter().cloned().collect();
        for (i, c) in self.config.columns.iter().enumerate() {
            let idx = handler_kit::column_index(input, c, &format!("columns.{i}"))?;
            if !is_numeric(input.field(idx).data_type()) {
                return Err(Error::config(format!("column `{c}` is not numeric")).key(format!("columns.{i}")));
            }
            let f = Arc::new(Field::new(self.out_name(c), DataType::Float64, true));
            if self.config.suffix.is_empty() {
                fields[idx] = f;
            } else if input.index_of(f.name()).is_ok() {
                return Err(Error::config(format!("column `{}` already exists", f.name())).key("suffix"));
            } else {
                fields.push(f);
            }
        }
        if self.projects() {
            // A row-for-row patch of the normalized columns.
            fields.retain(|f| self.config.columns.iter().any(|c| self.out_name(c) == *f.name()));
            return Ok(Arc::new(Schema::new(fields)));
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }

    /// Reads the columns it normalizes, the keys and `order_by`, and with a `suffix` the output
    /// names (not in a valid input, so nothing more is sent; when one is, the clash is reported
    /// at `suffix`). A column listed twice takes whole batches, as before.
    fn projection(&self) -> Option<Vec<String>> {
        if !self.projects() {
            return None;
        }
        let c = &self.config;
        let outs = c.columns.iter().filter(|_| !c.suffix.is_empty()).map(|x| self.out_name(x));
        let mut reads: Vec<String> = Vec::new();
        for r in c.columns.iter().chain(&c.keys).chain(&c.order_by).cloned().chain(outs) {
            if !reads.contains(&r) {
                reads.push(r);
            }
        }
        Some(reads)
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let outs: Vec<ArrayRef> = match self.config.window {
            Some(w) => self.rolling(&batch, w as usize)?,
            None => {
                let mut v = Vec::new();
                for (c, &(off, scale)) in self.config.columns.iter().zip(&self.fixed) {
                    let col = batch.column_by_name(c).ok_or_else(|| Error::data("column not found").column(c))?;
                    let f = to_f64(col.as_ref()).ok_or_else(|| Error::data("not numeric").column(c))?;
                    v.push(
                        Arc::new(f.unary::<_, sluice_plugin::arrow_array::types::Float64Type>(|x| (x - off) / scale))
                            as ArrayRef,
                    );
                }
                v
            }
        };
        if self.projects() {
            let named: Vec<(String, ArrayRef)> =
                self.config.columns.iter().map(|c| self.out_name(c)).zip(outs).collect();
            let cols = schema
                .fields()
                .iter()
                .map(|f| named.iter().find(|(n, _)| n == f.name()).map(|(_, a)| a.clone()).expect("normalized above"))
                .collect();
            return Ok(vec![RecordBatch::try_new(schema, cols)?]);
        }
        let mut cols = batch.columns().to_vec();
        for (c, a) in self.config.columns.iter().zip(outs) {
            if self.config.suffix.is_empty() {
                let i = batch.schema().index_of(c)?;
                cols[i] = a;
            } else {
                cols.push(a);
            }
        }
        Ok(vec![RecordBatch::try_new(schema, cols)?])
    }

    fn state(&self) -> Option<StateSpec> {
        self.config.window.map(|w| StateSpec {
            keys: self.config.keys.clone(),
            order_by: self.config.order_by.clone().unwrap_or_default(),
            lookback_rows: u64::from(w) - 1,
            lookback_span: None,
            lookback_gap: None,
            lookahead: false,
        })
    }
}

sluice_plugin::export_handler!(Normalize);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::Float64Type;
    use sluice_plugin::{parse_config, patch};

    fn batch(k: Vec<&str>, t: Vec<i64>, v: Vec<f64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("t", DataType::Int64, false),
            Field::new("v", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(k)), Arc::new(Int64Array::from(t)), Arc::new(Float64Array::from(v))],
        )
        .unwrap()
    }

    fn col(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
        b.column_by_name(name).unwrap().as_primitive::<Float64Type>().iter().collect()
    }

    #[test]
    fn fixed_minmax_in_place() {
        let mut h = Normalize::new(
            parse_config(r#"{"columns":["v"],"method":"minmax","params":{"v":{"min":10,"max":20}}}"#).unwrap(),
        )
        .unwrap();
        let out = patch::process(&mut h, &batch(vec!["a", "a"], vec![1, 2], vec![15.0, 25.0])).unwrap().remove(0);
        assert_eq!(col(&out, "v"), vec![Some(0.5), Some(1.5)]);
        assert!(h.state().is_none());
    }

    #[test]
    fn rolling_zscore_per_key_across_batches() {
        let cfg = r#"{"columns":["v"],"method":"zscore","window":3,"keys":["k"],"order_by":"t","suffix":"_z"}"#;
        let mut h = Normalize::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut h, &batch(vec!["a", "b", "a"], vec![1, 1, 2], vec![1.0, 100.0, 2.0]))
            .unwrap()
            .remove(0);
        assert_eq!(col(&out, "v_z"), vec![None, None, None]);
        let out = patch::process(&mut h, &batch(vec!["a", "b"], vec![3, 2], vec![3.0, 100.0])).unwrap().remove(0);
        // a: window 1, 2, 3: mean 2, sample std 1 -> z = 1.
        assert_eq!(col(&out, "v_z"), vec![Some(1.0), None]);
        assert_eq!(h.state().unwrap().lookback_rows, 2);
    }

    #[test]
    fn reads_its_columns_and_returns_the_normalized_ones() {
        let cfg = r#"{"columns":["v"],"method":"zscore","window":3,"keys":["k"],"order_by":"t","suffix":"_z"}"#;
        let mut h = Normalize::new(parse_config(cfg).unwrap()).unwrap();
        assert_eq!(h.projection().unwrap(), ["v", "k", "t", "v_z"]);
        let b = batch(vec!["a", "a", "a"], vec![1, 2, 3], vec![1.0, 2.0, 3.0]);
        let p = h.process(patch::project(&b, &h.projection().unwrap())).unwrap().remove(0);
        assert_eq!(p.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["v_z"]);
        // In place: the patch replaces `v`; `k` and `t` pass through.
        let cfg = r#"{"columns":["v"],"method":"minmax","params":{"v":{"min":0,"max":10}}}"#;
        let mut h = Normalize::new(parse_config(cfg).unwrap()).unwrap();
        assert_eq!(h.projection().unwrap(), ["v"]);
        let out = patch::process(&mut h, &b).unwrap().remove(0);
        assert_eq!(out.schema(), patch::output_schema(&h, &b.schema()).unwrap());
        assert_eq!(out.column(0), b.column(0));
        assert_eq!(col(&out, "v"), vec![Some(0.1), Some(0.2), Some(0.3)]);
        // A suffixed name that is an input column is still an error at `suffix`.
        let cfg = r#"{"columns":["v"],"method":"minmax","params":{"v":{"min":0,"max":10}},"suffix":"_x"}"#;
        let h = Normalize::new(parse_config(cfg).unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Float64, true),
            Field::new("v_x", DataType::Utf8, true),
        ]));
        let e = patch::output_schema(&h, &schema).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "suffix"), "{e}");
        // A column listed twice: whole batches, as before.
        let cfg = r#"{"columns":["v","v"],"method":"minmax","params":{"v":{"min":0,"max":10}}}"#;
        assert!(Normalize::new(parse_config(cfg).unwrap()).unwrap().projection().is_none());
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = Normalize::new(
            parse_config(r#"{"columns":["v"],"method":"zscore","params":{"v":{"min":1,"max":2}}}"#).unwrap(),
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "params.v"), "{e}");
        let e = Normalize::new(parse_config(r#"{"columns":["v"],"method":"zscore"}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "window"), "{e}");
        let e = parse_config::<Config>(r#"{"columns":["v"],"method":"zscore","params":{"v":{"mu":1}}}"#).unwrap_err();
        assert!(e.message().contains("mu"), "{e}");
    }
}
