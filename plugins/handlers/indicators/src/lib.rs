//! `indicators`: per-key market indicators over a numeric column, ordered by a
//! time column, with windows in rows or in time, carried across batches and files.

use std::collections::VecDeque;
use std::sync::Arc;

use handler_kit::keys::{KeyMap, check_key_columns, key_columns};
use handler_kit::num::{is_integer_like, is_numeric, to_f64, to_i64};
use handler_kit::time::{Unit, parse_duration_ms};
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
    /// Window: rows (a number; periods for returns; default 1 for returns,
    /// required otherwise), or a duration (`5m`) for sma, rolling_* and bollinger.
    #[serde(default)]
    pub window: Option<serde_json::Value>,
    /// Output column name (bollinger: the prefix of `_lower`, `_mid`, `_upper`).
    #[serde(rename = "as")]
    pub output: String,
    /// Bollinger band width in standard deviations (default 2).
    #[serde(default)]
    pub k: Option<f64>,
    /// Values needed in the window before a value is output (pandas' `min_periods`): sma,
    /// ema, rolling_* and bollinger. Default: the window in rows; 1 for time windows.
    #[serde(default)]
    pub min_periods: Option<u64>,
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
    /// The unit of `order_by` for time windows (default ms; a timestamp column's must match).
    #[serde(default)]
    pub unit: Option<Unit>,
    pub indicators: Vec<Spec>,
}

/// A resolved window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last N rows.
    Rows(usize),
    /// Rows whose time is within this span (in `order_by`'s units) of the current row's,
    /// both ends included.
    Span(i64),
}

/// Per key and indicator state.
#[derive(Debug, Clone, Default)]
struct St {
    ring: VecDeque<f64>,
    /// Times of `ring`'s values (time windows).
    times: VecDeque<i64>,
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
    windows: Vec<Window>,
    /// Per indicator: values needed in the window before a value is output.
    min_periods: Vec<usize>,
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
                let min_periods = self.min_periods[ii];
                let w = match self.windows[ii] {
                    Window::Rows(w) => w,
                    Window::Span(span) => {
                        let width = if spec.kind == Kind::Bollinger { 3 } else { 1 };
                        let v = &values[ii];
                        if !v.is_null(row) {
                            let st = &mut self.states[slot][ii];
                            st.last_t = t;
                            st.ring.push_back(v.value(row));
                            st.times.push_back(t);
                            let from = t.saturating_sub(span);
                            while st.times.front().is_some_and(|&f| f < from) {
                                st.times.pop_front();
                                st.ring.pop_front();
                            }
                            let n = st.ring.len();
                            if n < min_periods {
                                o += width;
                                continue;
                            }
                            let mut put = |k: usize, y: f64| {
                                out[o + k][row] = y;
                                valid[o + k][row] = !y.is_nan();
                            };
                            match spec.kind {
                                Kind::Sma => put(0, st.ring.iter().sum::<f64>() / n as f64),
                                Kind::RollingMin => put(0, st.ring.iter().copied().fold(f64::INFINITY, f64::min)),
                                Kind::RollingMax => put(0, st.ring.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                                Kind::RollingStd => {
                                    if n >= 2 {
                                        let (_, ss) = window_stats(&st.ring);
                                        put(0, (ss / (n as f64 - 1.0)).sqrt());
                                    }
                                }
                                _ => {
                                    let (mean, ss) = window_stats(&st.ring);
                                    let sd = (ss / n as f64).sqrt();
                                    let k = spec.k.unwrap_or(2.0);
                                    put(0, mean - k * sd);
                                    put(1, mean);
                                    put(2, mean + k * sd);
                                }
                            }
                        }
                        o += width;
                        continue;
                    }
                };
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
                        // A partial window (fewer than `window` values, at least `min_periods`)
                        // gives the statistic of the values it has, as pandas and SQL do.
                        let n = st.ring.len();
                        if n >= min_periods {
                            match spec.kind {
                                Kind::Sma => put(0, st.ring.iter().sum::<f64>() / n as f64),
                                Kind::RollingMin => put(0, st.ring.iter().copied().fold(f64::INFINITY, f64::min)),
                                Kind::RollingMax => put(0, st.ring.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                                Kind::RollingStd => {
                                    // Sample standard deviation: one value has none (pandas: NaN).
                                    if n >= 2 {
                                        let (_, ss) = window_stats(&st.ring);
                                        put(0, (ss / (n as f64 - 1.0)).sqrt());
                                    }
                                }
                                _ => {
                                    let (mean, ss) = window_stats(&st.ring);
                                    let sd = (ss / n as f64).sqrt();
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
                        if st.n >= min_periods as u64 {
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
- `unit` (optional): the unit of `order_by` for time windows: `s`, `ms`
  (default), `us` or `ns`. A timestamp column's unit must match it (the state
  the step declares is in the column's units).
- `indicators` (required): a list of `{kind, column, window, as}`, with
  `min_periods` and `k` where they apply. `window` is a number of rows, or
  for `sma`, `rolling_min`, `rolling_max`, `rolling_std` and
  `bollinger` a duration (`500ms`, `30s`, `5m`, `1h`, `1d`): the rows of the key
  whose time is within that span of the current row's, both ends included (SQL
  `RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND CURRENT ROW`, with rows of
  the same time counted up to the current one). Time windows output from the
  first row (rolling_std from the second).
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
  - `min_periods` (optional; sma, ema, rolling_* and bollinger): the values
    the window needs before it outputs, as in pandas. Default: `window` for
    windows in rows (1 <= min_periods <= window), 1 for time windows. With
    `min_periods: 1`, a 20-row sma of the first rows of a key is the mean of
    the rows so far, like pandas `rolling(20, min_periods=1).mean()` and SQL
    `avg(close) OVER (PARTITION BY symbol ORDER BY open_time ROWS 19
    PRECEDING)`; ema is pandas `ewm(span=window, adjust=False,
    min_periods=...)`. rolling_std needs two values whatever it says. (SQL
    and pandas count a null's row in the window; here nulls do not enter it.)

State: declared on `keys`, ordered by `order_by`, with the lookback the
longest indicator needs (the window's earlier rows, whatever `min_periods`
says; 10 x window for ema and 20 x window for rsi, whose weight of older rows
is below 1e-8 by then), and the longest time window as a lookback span, so
that a file continues the previous file's windows exactly.

```yaml
config:
  keys: [symbol]
  order_by: open_time
  indicators:
    - {kind: sma, column: close, window: 20, as: ma20}
    - {kind: sma, column: close, window: 20, min_periods: 1, as: ma20_partial}
    - {kind: rsi, column: close, window: 14, as: rsi14}
    - {kind: bollinger, column: close, window: 20, as: bb}
    - {kind: sma, column: close, window: 5m, as: ma_5m}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.indicators.is_empty() {
            return Err(Error::config("list at least one indicator").key("indicators"));
        }
        let unit = config.unit.unwrap_or(Unit::Ms);
        let mut windows = Vec::new();
        for (i, s) in config.indicators.iter().enumerate() {
            let key = format!("indicators.{i}.window");
            let rows = match &s.window {
                Some(serde_json::Value::String(d)) => {
                    if !matches!(
                        s.kind,
                        Kind::Sma | Kind::RollingMin | Kind::RollingMax | Kind::RollingStd | Kind::Bollinger
                    ) {
                        return Err(Error::config(format!(
                            "{} takes a window in rows; time windows apply to sma, rolling_min, rolling_max, rolling_std and bollinger",
                            format!("{:?}", s.kind).to_lowercase()
                        ))
                        .key(key));
                    }
                    let ms = parse_duration_ms(d).map_err(|e| Error::config(e).key(key.clone()))?;
                    let (mul, div) = Unit::Ms.factor(unit);
                    if ms % div != 0 {
                        return Err(Error::config(
                            format!("window `{d}` is not a whole number of {unit:?}").to_lowercase(),
                        )
                        .key(key));
                    }
                    windows.push(Window::Span(ms / div * mul));
                    None
                }
                Some(v) => match v.as_u64() {
                    Some(w) => Some(w),
                    None => {
                        return Err(Error::config(format!(
                            "`window` is a number of rows or a duration like 5m, not {v}"
                        ))
                        .key(key));
                    }
                },
                None => None,
            };
            if s.k.is_some() && s.kind != Kind::Bollinger {
                return Err(Error::config("`k` applies to bollinger only").key(format!("indicators.{i}.k")));
            }
            if matches!(s.window, Some(serde_json::Value::String(_))) {
                continue;
            }
            let w = match (rows, s.kind) {
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
            windows.push(Window::Rows(w));
        }
        let mut min_periods = Vec::new();
        for (i, (s, w)) in config.indicators.iter().zip(&windows).enumerate() {
            let key = format!("indicators.{i}.min_periods");
            let kind = format!("{:?}", s.kind).to_lowercase();
            let m = match (s.min_periods, s.kind, *w) {
                (None, _, Window::Rows(w)) => w,
                (None, _, Window::Span(_)) => 1,
                (Some(_), Kind::Rsi | Kind::Returns | Kind::LogReturns, _) => {
                    return Err(Error::config(format!(
                        "`min_periods` applies to sma, ema, rolling_min, rolling_max, rolling_std and bollinger, not {kind}"
                    ))
                    .key(key));
                }
                (Some(m), _, Window::Rows(w)) if m == 0 || m > w as u64 => {
                    return Err(Error::config(format!(
                        "`min_periods` must be between 1 and the window ({w} rows), not {m}"
                    ))
                    .key(key));
                }
                (Some(0), _, Window::Span(_)) => {
                    return Err(Error::config("`min_periods` must be at least 1, not 0").key(key));
                }
                (Some(m), _, _) => usize::try_from(m)
                    .map_err(|_| Error::config(format!("`min_periods` {m} is too large")).key(key.clone()))?,
            };
            min_periods.push(m);
        }
        Ok(Indicators {
            config,
            windows,
            min_periods,
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
        if let DataType::Timestamp(u, _) = input.field(t).data_type()
            && self.windows.iter().any(|w| matches!(w, Window::Span(_)))
        {
            let (have, want) = (Unit::of(*u), self.config.unit.unwrap_or(Unit::Ms));
            if have != want {
                let have = format!("{have:?}").to_lowercase();
                return Err(Error::config(format!(
                    "`{}` is a timestamp in {have} but time windows are in {}: set `unit: {have}`",
                    self.config.order_by,
                    format!("{want:?}").to_lowercase()
                ))
                .key("unit"));
            }
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
        // A row-for-row patch of just the new columns.
        Ok(Arc::new(Schema::new(outs.iter().map(|o| Field::new(o, DataType::Float64, true)).collect::<Vec<_>>())))
    }

    /// Reads the key, order and input columns; returns only the indicator columns. The output
    /// names are read too: a valid input lacks them, so nothing more is sent, but when one is
    /// there the clash is reported at its `as`.
    fn projection(&self) -> Option<Vec<String>> {
        let c = &self.config;
        let reads = c.keys.iter().chain([&c.order_by]).chain(c.indicators.iter().map(|s| &s.column)).cloned();
        Some(reads.chain(self.outputs()).collect())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let extra = self.compute(&batch)?;
        let options = sluice_plugin::arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(vec![RecordBatch::try_new_with_options(schema, extra, &options)?])
    }

    fn state(&self) -> Option<StateSpec> {
        let lookback = self
            .config
            .indicators
            .iter()
            .zip(&self.windows)
            .map(|(s, &w)| match (w, s.kind) {
                (Window::Span(_), _) => 0,
                (Window::Rows(w), Kind::Ema) => 10 * w,
                (Window::Rows(w), Kind::Rsi) => 20 * w,
                (Window::Rows(w), Kind::Returns | Kind::LogReturns) => w,
                (Window::Rows(w), _) => w - 1,
            })
            .max()
            .unwrap_or(0);
        let span = self
            .windows
            .iter()
            .filter_map(|w| match w {
                Window::Span(s) => Some(*s),
                Window::Rows(_) => None,
            })
            .max();
        Some(StateSpec {
            keys: self.config.keys.clone(),
            order_by: self.config.order_by.clone(),
            lookback_rows: lookback as u64,
            lookback_span: span,
            lookback_gap: None,
            lookahead: false,
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
        let out = sluice_plugin::patch::process(&mut h, &b).unwrap().remove(0);
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
        let whole =
            sluice_plugin::patch::process(&mut one, &batch(keys.clone(), t.clone(), v.clone())).unwrap().remove(0);
        let mut split = ind(ALL);
        let mut parts = Vec::new();
        for (lo, hi) in [(0, 7), (7, 100), (100, n)] {
            // Reverse the rows inside each batch: the handler sorts by time itself.
            fn rev<T: Clone>(x: &[T]) -> Vec<T> {
                x.iter().rev().cloned().collect()
            }
            let b = batch(rev(&keys[lo..hi]), rev(&t[lo..hi]), rev(&v[lo..hi]));
            let out = sluice_plugin::patch::process(&mut split, &b).unwrap().remove(0);
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
        // An output name that an (unused) input column has: the handler's own error, at its `as`.
        let h = ind(r#"{"order_by":"t","indicators":[{"kind":"bollinger","column":"v","window":2,"as":"k","k":1}]}"#);
        let mut fields: Vec<Field> =
            batch(vec![], vec![], vec![]).schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("k_mid", DataType::Utf8, true));
        let e = sluice_plugin::patch::output_schema(&h, &Arc::new(Schema::new(fields))).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "indicators.0.as"), "{e}");
    }

    const PARTIAL: &str = r#"{"keys":["k"],"order_by":"t","indicators":[
        {"kind":"sma","column":"v","window":3,"min_periods":1,"as":"sma"},
        {"kind":"sma","column":"v","window":3,"min_periods":2,"as":"sma2"},
        {"kind":"ema","column":"v","window":3,"min_periods":1,"as":"ema"},
        {"kind":"rolling_min","column":"v","window":3,"min_periods":1,"as":"mn"},
        {"kind":"rolling_max","column":"v","window":3,"min_periods":1,"as":"mx"},
        {"kind":"rolling_std","column":"v","window":3,"min_periods":1,"as":"sd"},
        {"kind":"bollinger","column":"v","window":3,"min_periods":1,"as":"bb","k":1},
        {"kind":"sma","column":"v","window":"3s","min_periods":2,"as":"tsma"}]}"#;

    #[test]
    fn min_periods_gives_partial_windows_like_pandas() {
        let mut h = ind(PARTIAL);
        let b = batch(vec!["a"; 4], vec![1000, 2000, 3000, 4000], vec![1.0, 2.0, 4.0, 3.0]);
        let out = sluice_plugin::patch::process(&mut h, &b).unwrap().remove(0);
        // pandas: Series([1, 2, 4, 3]).rolling(3, min_periods=1).mean() = 1, 1.5, 2.333, 3.
        assert_eq!(col(&out, "sma"), vec![Some(1.0), Some(1.5), Some(7.0 / 3.0), Some(3.0)]);
        assert_eq!(col(&out, "sma2"), vec![None, Some(1.5), Some(7.0 / 3.0), Some(3.0)]);
        // ewm(span=3, adjust=False, min_periods=1): 1, 1.5, 2.75, 2.875.
        assert_eq!(col(&out, "ema"), vec![Some(1.0), Some(1.5), Some(2.75), Some(2.875)]);
        assert_eq!(col(&out, "mn"), vec![Some(1.0), Some(1.0), Some(1.0), Some(2.0)]);
        assert_eq!(col(&out, "mx"), vec![Some(1.0), Some(2.0), Some(4.0), Some(4.0)]);
        // The sample deviation of one value is undefined (pandas: NaN); of 1, 2: 0.7071.
        assert_eq!(col(&out, "sd")[0], None);
        assert!(close(col(&out, "sd")[1], 0.5f64.sqrt()), "{:?}", col(&out, "sd"));
        // Bollinger on a partial window: population deviation of what is there.
        assert_eq!(col(&out, "bb_mid")[..2], [Some(1.0), Some(1.5)]);
        assert!(close(col(&out, "bb_lower")[1], 1.0) && close(col(&out, "bb_upper")[1], 2.0));
        // A 3 s time window holding one value, then two or more.
        assert_eq!(col(&out, "tsma")[0], None);
        assert!(close(col(&out, "tsma")[1], 1.5));
        // The declared lookback does not depend on min_periods: window - 1 rows (ema: 10 x).
        assert_eq!(h.state().unwrap().lookback_rows, 30);
        let h =
            ind(r#"{"order_by":"t","indicators":[{"kind":"sma","column":"v","window":3,"min_periods":1,"as":"m"}]}"#);
        assert_eq!(h.state().unwrap().lookback_rows, 2);
    }

    #[test]
    fn min_periods_with_nulls_counts_the_values_only() {
        let h =
            ind(r#"{"order_by":"t","indicators":[{"kind":"sma","column":"v","window":3,"min_periods":2,"as":"m"}]}"#);
        let mut h = h;
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Int64, true),
            Field::new("v", DataType::Float64, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(Float64Array::from(vec![Some(2.0), None, Some(4.0), Some(6.0)])),
            ],
        )
        .unwrap();
        let out = sluice_plugin::patch::process(&mut h, &b).unwrap().remove(0);
        assert_eq!(col(&out, "m"), vec![None, None, Some(3.0), Some(4.0)]);
    }

    /// What the host does at a file boundary: a fresh instance, seeded with the key's last
    /// `lookback_rows` rows (their output discarded), then the next file. With `min_periods`,
    /// the first rows of the key are partial windows and the later ones must continue exactly.
    #[test]
    fn min_periods_with_lookback_seeding_equals_one_pass() {
        let cfg = r#"{"keys":["k"],"order_by":"t","indicators":[
            {"kind":"sma","column":"v","window":20,"min_periods":1,"as":"ma"},
            {"kind":"rolling_std","column":"v","window":5,"min_periods":3,"as":"sd"},
            {"kind":"rolling_max","column":"v","window":7,"min_periods":1,"as":"mx"}]}"#;
        let n = 90;
        let t: Vec<i64> = (0..n as i64).collect();
        let v: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64).collect();
        let whole =
            sluice_plugin::patch::process(&mut ind(cfg), &batch(vec!["a"; n], t.clone(), v.clone())).unwrap().remove(0);
        let lookback = ind(cfg).state().unwrap().lookback_rows as usize;
        assert_eq!(lookback, 19);
        let mut got: Vec<Vec<Option<f64>>> = vec![Vec::new(); 3];
        // Files of uneven length, some shorter than the lookback.
        let mut lo: usize = 0;
        for len in [4, 30, 6, 25, 25] {
            let hi = lo + len;
            let mut h = ind(cfg);
            let from = lo.saturating_sub(lookback);
            if from < lo {
                let seed = batch(vec!["a"; lo - from], t[from..lo].to_vec(), v[from..lo].to_vec());
                sluice_plugin::patch::process(&mut h, &seed).unwrap();
            }
            let out =
                sluice_plugin::patch::process(&mut h, &batch(vec!["a"; len], t[lo..hi].to_vec(), v[lo..hi].to_vec()))
                    .unwrap()
                    .remove(0);
            for (g, name) in got.iter_mut().zip(["ma", "sd", "mx"]) {
                g.extend(col(&out, name));
            }
            lo = hi;
        }
        for (g, name) in got.iter().zip(["ma", "sd", "mx"]) {
            let want = col(&whole, name);
            assert_eq!(g.len(), want.len());
            for (i, (g, w)) in g.iter().zip(&want).enumerate() {
                assert!(g == w || (g.unwrap() - w.unwrap()).abs() < 1e-9, "{name} row {i}: {g:?} vs {w:?}");
            }
        }
        assert!(got[0].iter().all(Option::is_some), "every row has a partial or full mean");
        assert_eq!(got[1][..3], [None, None, Some(col(&whole, "sd")[2].unwrap())]);
    }

    #[test]
    fn min_periods_config_errors_name_the_key() {
        let err = |spec: &str| {
            Indicators::new(parse_config(&format!(r#"{{"order_by":"t","indicators":[{spec}]}}"#)).unwrap())
                .err()
                .unwrap()
        };
        for spec in [
            r#"{"kind":"sma","column":"v","window":3,"min_periods":0,"as":"x"}"#,
            r#"{"kind":"sma","column":"v","window":3,"min_periods":4,"as":"x"}"#,
            r#"{"kind":"sma","column":"v","window":"3s","min_periods":0,"as":"x"}"#,
            r#"{"kind":"rsi","column":"v","window":3,"min_periods":1,"as":"x"}"#,
            r#"{"kind":"returns","column":"v","min_periods":1,"as":"x"}"#,
        ] {
            let e = err(spec);
            assert!(
                matches!(e, Error::Config { key: Some(ref k), .. } if k == "indicators.0.min_periods"),
                "{spec}: {e}"
            );
        }
        assert!(
            err(r#"{"kind":"sma","column":"v","window":3,"min_periods":4,"as":"x"}"#)
                .message()
                .contains("between 1 and the window (3 rows)")
        );
        let e = parse_config::<Config>(
            r#"{"order_by":"t","indicators":[{"kind":"sma","column":"v","window":3,"min_periods":-1,"as":"x"}]}"#,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k.starts_with("indicators.0")), "{e}");
    }

    const TIMED: &str = r#"{"keys":["k"],"order_by":"t","indicators":[
        {"kind":"sma","column":"v","window":"3s","as":"sma"},
        {"kind":"rolling_min","column":"v","window":"3s","as":"mn"},
        {"kind":"rolling_max","column":"v","window":"3s","as":"mx"},
        {"kind":"rolling_std","column":"v","window":"3s","as":"sd"},
        {"kind":"bollinger","column":"v","window":"3s","as":"bb","k":1},
        {"kind":"sma","column":"v","window":2,"as":"sma2"}]}"#;

    #[test]
    fn time_windows_cover_the_span_before_each_row() {
        let mut h = ind(TIMED);
        let b = batch(vec!["a"; 5], vec![0, 1000, 2500, 4000, 10_000], vec![1.0, 2.0, 4.0, 3.0, 5.0]);
        let out = sluice_plugin::patch::process(&mut h, &b).unwrap().remove(0);
        // At 4000 the window is [1000, 4000]: 2, 4, 3. At 10000 only itself.
        assert_eq!(col(&out, "sma"), vec![Some(1.0), Some(1.5), Some(7.0 / 3.0), Some(3.0), Some(5.0)]);
        assert_eq!(col(&out, "mn"), vec![Some(1.0), Some(1.0), Some(1.0), Some(2.0), Some(5.0)]);
        assert_eq!(col(&out, "mx"), vec![Some(1.0), Some(2.0), Some(4.0), Some(4.0), Some(5.0)]);
        assert_eq!(col(&out, "sd")[0], None);
        assert!(close(col(&out, "sd")[3], 1.0) && col(&out, "sd")[4].is_none());
        assert!(close(col(&out, "bb_upper")[3], 3.0 + (2.0f64 / 3.0).sqrt()));
        let s = h.state().unwrap();
        assert_eq!((s.lookback_rows, s.lookback_span), (1, Some(3000)));
        // Seconds: the span is in the column's unit.
        let h = ind(r#"{"order_by":"t","unit":"s","indicators":[{"kind":"sma","column":"v","window":"5m","as":"m"}]}"#);
        assert_eq!(h.state().unwrap().lookback_span, Some(300));
    }

    #[test]
    fn time_windows_split_across_batches_equal_one_pass() {
        let n = 300;
        let keys: Vec<&str> = (0..n).map(|i| ["x", "y"][i % 2]).collect();
        let t: Vec<i64> = (0..n as i64).map(|i| i * 700 + (i * i) % 900).collect();
        let v: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64).collect();
        let whole = sluice_plugin::patch::process(&mut ind(TIMED), &batch(keys.clone(), t.clone(), v.clone()))
            .unwrap()
            .remove(0);
        let mut split = ind(TIMED);
        let mut got: Vec<Option<f64>> = Vec::new();
        for (lo, hi) in [(0, 11), (11, 150), (150, n)] {
            let out = sluice_plugin::patch::process(
                &mut split,
                &batch(keys[lo..hi].to_vec(), t[lo..hi].to_vec(), v[lo..hi].to_vec()),
            )
            .unwrap();
            got.extend(col(&out[0], "sd"));
        }
        assert_eq!(got.len(), n);
        for (i, (g, w)) in got.iter().zip(col(&whole, "sd")).enumerate() {
            assert!(*g == w || (g.unwrap() - w.unwrap()).abs() < 1e-9, "row {i}: {g:?} vs {w:?}");
        }
    }

    #[test]
    fn time_window_config_errors() {
        let e = Indicators::new(
            parse_config(r#"{"order_by":"t","indicators":[{"kind":"ema","column":"v","window":"5m","as":"x"}]}"#)
                .unwrap(),
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "indicators.0.window"), "{e}");
        let e = Indicators::new(
            parse_config(
                r#"{"order_by":"t","unit":"s","indicators":[{"kind":"sma","column":"v","window":"500ms","as":"x"}]}"#,
            )
            .unwrap(),
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "indicators.0.window"), "{e}");
        let h = ind(r#"{"order_by":"t","indicators":[{"kind":"sma","column":"v","window":"1m","as":"x"}]}"#);
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("v", DataType::Float64, true),
        ]));
        let e = h.output_schema(&schema).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "unit"), "{e}");
        assert!(e.message().contains("unit: us"), "{e}");
    }
}
