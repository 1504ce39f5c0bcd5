//! `indicators`: per-key market indicators over a numeric column, ordered by a
//! time column, with windows in rows, carried across batches and files.

use std::collections::VecDeque;
use std::sync::Arc;

use handler_kit::keys::{KeyMap, check_key_columns, key_columns};
use handler_kit::num::{is_integer_like, is_numeric, to_f64, to_i64};
use sluice_plugin::arrow_array::Float64Array;
use sluice_plugin::arrow_buffer::{NullBuffer, ScalarBuffer};
use sluice_plugin::prelude::*;

/// An indicator kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sma,
    Ema,
    RollingMin,
    RollingMax,
    RollingStd,
    Rsi,
    Bollinger,
    Returns,
    LogReturns,
}

/// One indicator of the config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub kind: Kind,
    pub column: String,
    /// Window (periods for returns) in rows; default 1 for returns, required otherwise.
    #[serde(default)]
    pub window: Option<u32>,
    /// Output column name (bollinger: the prefix of `_lower`, `_mid`, `_upper`).
    #[serde(rename = "as")]
    pub output: String,
    /// Bollinger band width in standard deviations (default 2).
    #[serde(default)]
    pub k: Option<f64>,
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Key columns: independent state per key (none: one global state).
    #[serde(default)]
    pub keys: Vec<String>,
    /// The time column rows are ordered by.
    pub order_by: String,
    pub indicators: Vec<Spec>,
}

/// Per key and indicator state.
#[derive(Debug, Clone, Default)]
struct St {
    ring: VecDeque<f64>,
    ema: f64,
    n: u64,
    prev: f64,
    gain: f64,
    loss: f64,
    last_t: i64,
}

/// The handler.
pub struct Indicators {
    config: Config,
    windows: Vec<usize>,
    keys: KeyMap,
    states: Vec<Vec<St>>,
    slots: Vec<u32>,
    last_t: Vec<i64>,
}

fn window_stats(ring: &VecDeque<f64>) -> (f64, f64) {
    let n = ring.len() as f64;
    let mean = ring.iter().sum::<f64>() / n;
    let ss = ring.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
    (mean, ss)
}

impl Indicators {
    fn outputs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.config.indicators {
            if s.kind == Kind::Bollinger {
                for suffix in ["lower", "mid", "upper"] {
                    out.push(format!("{}_{suffix}", s.output));
                }
            } else {
                out.push(s.output.clone());
            }
        }
        out
    }

    /// Computes every output column for a batch, updating the per-key state.
    pub fn compute(&mut self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, Error> {
        let n = batch.num_rows();
        let keys = key_columns(batch, &self.config.keys)?;
        let mut slots = std::mem::take(&mut self.slots);
        self.keys.slots(&keys, n, &mut slots)?;
        let nind = self.config.indicators.len();
        self.states.resize_with(self.keys.len(), || vec![St::default(); nind]);
        self.last_t.resize(self.keys.len(), i64::MIN);
        let tcol = batch
            .column_by_name(&self.config.order_by)
            .ok_or_else(|| Error::data("column not found").column(&self.config.order_by))?;
        let times = to_i64(tcol.as_ref())
            .ok_or_else(|| Error::data("not an integer or timestamp").column(&self.config.order_by))?;
        let tv = times.values();
        // Rows in time order (stable); within a batch, the handler sorts itself.
        let sorted = tv.windows(2).all(|w| w[0] <= w[1]);
        let order: Option<Vec<u32>> = (!sorted).then(|| {
            let mut o: Vec<u32> = (0..n as u32).collect();
            o.sort_by_key(|&i| tv[i as usize]);
            o
        });
        let values = self
            .config
            .indicators
            .iter()
            .map(|s| {
                let c =
                    batch.column_by_name(&s.column).ok_or_else(|| Error::data("column not found").column(&s.column))?;
                to_f64(c.as_ref()).ok_or_else(|| Error::data("not numeric").column(&s.column))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let nout = self.outputs().len();
        let mut out = vec![vec![0f64; n]; nout];
        let mut valid = vec![vec![false; n]; nout];
        let mut out_of_order = 0u64;
        for i in 0..n {
            let row = order.as_ref().map_or(i, |o| o[i] as usize);
            let slot = slots[row] as usize;
            let t = tv[row];
            if t < self.last_t[slot] {
                out_of_order += 1;
            }
            self.last_t[slot] = self.last_t[slot].max(t);
            let mut o = 0;
            for (ii, spec) in self.config.indicators.iter().enumerate() {
                let w = self.windows[ii];
                let width = if spec.kind == Kind::Bollinger { 3 } else { 1 };
                let v = &values[ii];
                if v.is_null(row) {
                    o += width;
                    continue;
                }
                let x = v.value(row);
                let st = &mut self.states[slot][ii];
                st.last_t = t;
                let mut put = |k: usize, y: f64| {
                    out[o + k][row] = y;
                    valid[o + k][row] = y.is_finite() || y.is_infinite();
                };
                match spec.kind {
                    Kind::Sma | Kind::RollingMin | Kind::RollingMax | Kind::RollingStd | Kind::Bollinger => {
                        if st.ring.len() == w {
                            st.ring.pop_front();
                        }
                        st.ring.push_back(x);
                        if st.ring.len() == w {
                            match spec.kind {
                                Kind::Sma => put(0, st.ring.iter().sum::<f64>() / w as f64),
                                Kind::RollingMin => put(0, st.ring.iter().copied().fold(f64::INFINITY, f64::min)),
                                Kind::RollingMax => put(0, st.ring.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                                Kind::RollingStd => {
                                    let (_, ss) = window_stats(&st.ring);
                                    put(0, (ss / (w as f64 - 1.0)).sqrt());
                                }
                                _ => {
                                    let (mean, ss) = window_stats(&st.ring);
                                    let sd = (ss / w as f64).sqrt();
                                    let k = spec.k.unwrap_or(2.0);
                                    put(0, mean - k * sd);
                                    put(1, mean);
                                    put(2, mean + k * sd);
                                }
                            }
                        }
                    }
                    Kind::Returns | Kind::LogReturns => {
                        if st.ring.len() == w + 1 {
                            st.ring.pop_front();
                        }
                        st.ring.push_back(x);
                        if st.ring.len() == w + 1 {
                            let r = x / st.ring[0];
                            put(0, if spec.kind == Kind::Returns { r - 1.0 } else { r.ln() });
                        }
                    }
                    Kind::Ema => {
                        let alpha = 2.0 / (w as f64 + 1.0);
                        st.ema = if st.n == 0 { x } else { alpha * x + (1.0 - alpha) * st.ema };
                        st.n += 1;
                        if st.n >= w as u64 {
                            put(0, st.ema);
                        }
                    }
                    Kind::Rsi => {
                        if st.n > 0 {
                            let d = x - st.prev;
                            let (g, l) = (d.max(0.0), (-d).max(0.0));
                            let wf = w as f64;
                            if st.n <= w as u64 {
                                st.gain += g / wf;
                                st.loss += l / wf;
                            } else {
                                st.gain = (st.gain * (wf - 1.0) + g) / wf;
                                st.loss = (st.loss * (wf - 1.0) + l) / wf;
                            }
                            if st.n >= w as u64 {
                                let rsi = if st.loss == 0.0 {
                                    if st.gain == 0.0 { 50.0 } else { 100.0 }
                                } else {
                                    100.0 - 100.0 / (1.0 + st.gain / st.loss)
                                };
                                put(0, rsi);
                            }
                        }
                        st.prev = x;
                        st.n += 1;
                    }
                }
                o += width;
            }
        }
        self.slots = slots;
        if out_of_order > 0 {
            sluice_plugin::counter_add("indicators.out_of_order_rows", out_of_order);
        }
        Ok(out
            .into_iter()
            .zip(valid)
            .map(|(v, ok)| {
                let nulls = NullBuffer::from(ok);
                let nulls = (nulls.null_count() > 0).then_some(nulls);
                Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls)) as ArrayRef
            })
            .collect())
    }
}

impl Handler for Indicators {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Appends Float64 indicator columns, computed per key in time order, with state
carried across batches and files.

- `keys` (optional): key columns; one independent series per key.
- `order_by` (required): the time column (integer epoch or timestamp). Rows of a
  batch are processed in time order (the batch is sorted internally; outputs
  stay in input order). Rows older than the key's latest are counted in
  `indicators.out_of_order_rows`.
- `indicators` (required): a list of `{kind, column, window, as}`:
  - `sma`: mean of the last `window` values;
  - `ema`: exponential average, alpha = 2 / (window + 1), seeded with the first
    value (pandas `ewm(span=window, adjust=False)`);
  - `rolling_min`, `rolling_max`, `rolling_std` (sample, ddof 1);
  - `rsi`: Wilder's relative strength index over `window` changes;
  - `bollinger`: `<as>_lower`, `<as>_mid`, `<as>_upper` = sma -/+ `k` (default 2)
    population standard deviations;
  - `returns`, `log_returns`: over `window` rows (default 1).
  Outputs are null until the window is full (ema: `window` values; rsi:
  `window` changes). Null inputs give null outputs and do not enter the window.

State: declared on `keys`, ordered by `order_by`, with the lookback the
longest indicator needs (window rows; 10 x window for ema and 20 x window for
rsi, whose weight of older rows is below 1e-8 by then).

```yaml
config:
  keys: [symbol]
  order_by: open_time
  indicators:
    - {kind: sma, column: close, window: 20, as: ma20}
    - {kind: rsi, column: close, window: 14, as: rsi14}
    - {kind: bollinger, column: close, window: 20, as: bb}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.indicators.is_empty() {
            return Err(Error::config("list at least one indicator").key("indicators"));
        }
        let mut windows = Vec::new();
        for (i, s) in config.indicators.iter().enumerate() {
            let key = format!("indicators.{i}.window");
            let w = match (s.window, s.kind) {
                (None, Kind::Returns | Kind::LogReturns) => 1,
                (None, _) => {
                    return Err(Error::config(format!("`window` is required for {:?}", s.kind).to_lowercase()).key(key));
                }
                (Some(0), _) => return Err(Error::config("`window` must be at least 1").key(key)),
                (Some(1), Kind::RollingStd) => {
                    return Err(Error::config("rolling_std needs a window of at least 2").key(key));
                }
                (Some(w), _) => w as usize,
            };
            if s.k.is_some() && s.kind != Kind::Bollinger {
                return Err(Error::config("`k` applies to bollinger only").key(format!("indicators.{i}.k")));
            }
            windows.push(w);
        }
        Ok(Indicators {
            config,
            windows,
            keys: KeyMap::default(),
            states: Vec::new(),
            slots: Vec::new(),
            last_t: Vec::new(),
        })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        check_key_columns(input, &self.config.keys, "keys")?;
        let t = handler_kit::column_index(input, &self.config.order_by, "order_by")?;
        if !is_integer_like(input.field(t).data_type()) {
            return Err(Error::config(format!("`{}` is not an integer epoch or a timestamp", self.config.order_by))
                .key("order_by"));
        }
        for (i, s) in self.config.indicators.iter().enumerate() {
            let c = handler_kit::column_index(input, &s.column, &format!("indicators.{i}.column"))?;
            if !is_numeric(input.field(c).data_type()) {
                return Err(Error::config(format!("column `{}` is not numeric", s.column))
                    .key(format!("indicators.{i}.column")));
            }
        }
        let mut names: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
        let outs = self.outputs();
        for o in &outs {
            if names.contains(o) {
                let i = self.config.indicators.iter().position(|s| o.starts_with(&s.output)).unwrap_or(0);
                return Err(Error::config(format!("column `{o}` already exists")).key(format!("indicators.{i}.as")));
            }
            names.push(o.clone());
        }
        Ok(handler_kit::schema_with(input, outs.iter().map(|o| Arc::new(Field::new(o, DataType::Float64, true)))))
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let extra = self.compute(&batch)?;
        let mut cols = batch.columns().to_vec();
        cols.extend(extra);
        Ok(vec![RecordBatch::try_new(schema, cols)?])
    }

    fn state(&self) -> Option<StateSpec> {
        let lookback = self
            .config
            .indicators
            .iter()
            .zip(&self.windows)
            .map(|(s, &w)| match s.kind {
                Kind::Ema => 10 * w,
                Kind::Rsi => 20 * w,
                Kind::Returns | Kind::LogReturns => w,
                _ => w - 1,
            })
            .max()
            .unwrap_or(0);
        Some(StateSpec {
            keys: self.config.keys.clone(),
            order_by: self.config.order_by.clone(),
            lookback_rows: lookback as u64,
        })
    }
}

sluice_plugin::export_handler!(Indicators);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::Float64Type;
    use sluice_plugin::parse_config;

    fn ind(json: &str) -> Indicators {
        Indicators::new(parse_config(json).unwrap()).unwrap()
    }

    fn batch(k: Vec<&str>, t: Vec<i64>, v: Vec<f64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("t", DataType::Int64, true),
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

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    const ALL: &str = r#"{"keys":["k"],"order_by":"t","indicators":[
        {"kind":"sma","column":"v","window":3,"as":"sma"},
        {"kind":"ema","column":"v","window":3,"as":"ema"},
        {"kind":"rolling_min","column":"v","window":3,"as":"mn"},
        {"kind":"rolling_max","column":"v","window":3,"as":"mx"},
        {"kind":"rolling_std","column":"v","window":3,"as":"sd"},
        {"kind":"rsi","column":"v","window":2,"as":"rsi"},
        {"kind":"bollinger","column":"v","window":3,"as":"bb","k":1},
        {"kind":"returns","column":"v","as":"r"},
        {"kind":"log_returns","column":"v","window":2,"as":"lr"}]}"#;

    #[test]
    fn values_match_hand_computation() {
        let mut h = ind(ALL);
        let b = batch(vec!["a"; 4], vec![1, 2, 3, 4], vec![1.0, 2.0, 4.0, 3.0]);
        let out = h.process(b).unwrap().remove(0);
        assert_eq!(col(&out, "sma")[..2], [None, None]);
        assert!(close(col(&out, "sma")[2], 7.0 / 3.0) && close(col(&out, "sma")[3], 3.0));
        // ema alpha 0.5: 1, 1.5, 2.75, 2.875; output from the 3rd value.
        assert_eq!(col(&out, "ema"), vec![None, None, Some(2.75), Some(2.875)]);
        assert_eq!(col(&out, "mn"), vec![None, None, Some(1.0), Some(2.0)]);
        assert_eq!(col(&out, "mx"), vec![None, None, Some(4.0), Some(4.0)]);
        assert!(close(col(&out, "sd")[3], 1.0));
        // rsi(2): changes +1, +2 -> 100; then -1: gain (1.5*1+0)/2=0.75, loss 0.5 -> 60.
        assert_eq!(col(&out, "rsi")[..2], [None, None]);
        assert!(close(col(&out, "rsi")[2], 100.0) && close(col(&out, "rsi")[3], 60.0));
        let pop_sd = (2.0f64 / 3.0).sqrt();
        assert!(close(col(&out, "bb_lower")[3], 3.0 - pop_sd) && close(col(&out, "bb_upper")[3], 3.0 + pop_sd));
        assert_eq!(col(&out, "r"), vec![None, Some(1.0), Some(1.0), Some(-0.25)]);
        assert!(close(col(&out, "lr")[2], 4f64.ln()) && col(&out, "lr")[1].is_none());
    }

    #[test]
    fn split_batches_and_shuffled_rows_equal_one_pass() {
        let n = 200;
        let keys: Vec<&str> = (0..n).map(|i| ["x", "y", "z"][i % 3]).collect();
        let t: Vec<i64> = (0..n as i64).collect();
        let v: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 + 1.0).collect();
        let mut one = ind(ALL);
        let whole = one.process(batch(keys.clone(), t.clone(), v.clone())).unwrap().remove(0);
        let mut split = ind(ALL);
        let mut parts = Vec::new();
        for (lo, hi) in [(0, 7), (7, 100), (100, n)] {
            // Reverse the rows inside each batch: the handler sorts by time itself.
            fn rev<T: Clone>(x: &[T]) -> Vec<T> {
                x.iter().rev().cloned().collect()
            }
            let b = batch(rev(&keys[lo..hi]), rev(&t[lo..hi]), rev(&v[lo..hi]));
            let out = split.process(b).unwrap().remove(0);
            parts.push(out);
        }
        for name in ["sma", "ema", "mn", "mx", "sd", "rsi", "bb_mid", "r", "lr"] {
            let mut got: Vec<Option<f64>> = Vec::new();
            for p in &parts {
                let mut c = col(p, name);
                c.reverse();
                got.extend(c);
            }
            let want = col(&whole, name);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g == w || (g.unwrap() - w.unwrap()).abs() < 1e-9, "{name} row {i}: {g:?} vs {w:?}");
            }
        }
    }

    #[test]
    fn state_and_config_errors() {
        let h = ind(ALL);
        let s = h.state().unwrap();
        assert_eq!((s.keys, s.order_by.as_str(), s.lookback_rows), (vec!["k".to_string()], "t", 40));
        let e = Indicators::new(
            parse_config(r#"{"order_by":"t","indicators":[{"kind":"sma","column":"v","as":"x"}]}"#).unwrap(),
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "indicators.0.window"), "{e}");
        let e = parse_config::<Config>(
            r#"{"order_by":"t","indicators":[{"kind":"wma","column":"v","window":2,"as":"x"}]}"#,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "indicators.0.kind"), "{e}");
        let h = ind(r#"{"order_by":"t","indicators":[{"kind":"sma","column":"w","window":2,"as":"x"}]}"#);
        let e = h.output_schema(&batch(vec![], vec![], vec![]).schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "indicators.0.column"), "{e}");
    }
}
