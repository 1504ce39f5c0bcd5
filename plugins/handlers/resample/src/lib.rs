//! `resample`: OHLCV bars to a coarser interval per key (e.g. 1s to 1m), the
//! OHLCV shorthand of `aggregate`.

use handler_kit::agg::{AggDef, AggFn, Emit, Engine, Every, Scope, Spec};
use handler_kit::cal::Zone;
use handler_kit::time::Unit;
use sluice_plugin::prelude::*;

fn default_name(s: &str) -> String {
    s.to_string()
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub keys: Vec<String>,
    /// The bar open time column (integer epoch, timestamp or date).
    pub time: String,
    /// The target bar width: `1m`, `1h`, `1d`, ..., or `day`, `week`, `month`, `quarter`, `year`.
    pub every: String,
    /// Time zone of the wall clock the bars follow (default UTC).
    #[serde(default)]
    pub tz: Option<String>,
    /// Unit of an integer time column (default `ms`).
    #[serde(default)]
    pub unit: Option<Unit>,
    #[serde(default = "open")]
    pub open: String,
    #[serde(default = "high")]
    pub high: String,
    #[serde(default = "low")]
    pub low: String,
    #[serde(default = "close")]
    pub close: String,
    /// Volume columns to sum (default `[volume]`; `[]` for none).
    #[serde(default = "volume")]
    pub sum: Vec<String>,
    #[serde(default)]
    pub emit: Emit,
    /// Whether a bar collects rows from every file (`run`, the default) or ends with each file.
    #[serde(default)]
    pub scope: Scope,
}

fn open() -> String {
    default_name("open")
}
fn high() -> String {
    default_name("high")
}
fn low() -> String {
    default_name("low")
}
fn close() -> String {
    default_name("close")
}
fn volume() -> Vec<String> {
    vec!["volume".into()]
}

/// The handler.
pub struct Resample {
    engine: Engine,
}

impl Handler for Resample {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Resamples OHLCV bars to a coarser interval per key: for each key and bucket
(`floor(time / every) * every`, or a calendar unit), `open` is the first open (by time), `high` the
max high, `low` the min low, `close` the last close, each `sum` column the sum,
and `bars` the number of input bars. Output columns: keys, the time column
(the bucket start), open, high, low, close, the summed columns, bars.

- `keys` (optional): key columns, e.g. `[symbol]`.
- `time` (required): bar open time, integer epoch (`unit`, default `ms`), timestamp or date.
- `every` (required): the target width, e.g. `1m`, `1h`, `1d`, or a calendar
  unit: `day`, `week` (from Monday), `month`, `quarter`, `year`.
- `tz` (optional, default UTC): the IANA time zone whose wall clock the bars
  follow (daily bars from local midnight, e.g. `America/New_York`).
- `open`, `high`, `low`, `close` (default: those names): the input columns.
- `sum` (default `[volume]`): columns to sum, e.g. `[volume, quote_volume, trades]`.
- `emit` (default `finish`): as for `aggregate` (`close` streams finished bars).
- `scope` (default `run`): as for `aggregate`: a bar collects its input bars
  from every file (an hourly bar over files of a few minutes each is one row);
  `file` ends bars with each file.

```yaml
config: {keys: [symbol], time: open_time, every: 1m, sum: [volume, trades]}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        let every = Every::parse(&config.every).map_err(|m| Error::config(m).key("every"))?;
        let zone = config.tz.as_deref().map(Zone::parse).transpose().map_err(|m| Error::config(m).key("tz"))?;
        // A resample aggregate's config key is its column's: errors name `open`, `sum.0`.
        let def = |func, column: Option<&String>, output: &str, key: String| AggDef {
            func,
            column: column.cloned(),
            output: output.into(),
            column_key: key.clone(),
            key,
        };
        let mut aggs = vec![
            def(AggFn::First, Some(&config.open), "open", "open".into()),
            def(AggFn::Max, Some(&config.high), "high", "high".into()),
            def(AggFn::Min, Some(&config.low), "low", "low".into()),
            def(AggFn::Last, Some(&config.close), "close", "close".into()),
        ];
        for (i, c) in config.sum.iter().enumerate() {
            aggs.push(def(AggFn::Sum, Some(c), c, format!("sum.{i}")));
        }
        aggs.push(def(AggFn::Count, None, "bars", "time".into()));
        let spec = Spec {
            keys: config.keys,
            bucket_as: config.time.clone(),
            time: config.time,
            every,
            zone: zone.unwrap_or_default(),
            unit: config.unit.unwrap_or(Unit::Ms),
            aggs,
            emit: config.emit,
            scope: config.scope,
        };
        Ok(Resample { engine: Engine::new(spec) })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        self.engine.output_schema(input)
    }

    fn state(&self) -> Option<StateSpec> {
        self.engine.state()
    }

    fn seed(&mut self, batch: RecordBatch) -> Result<(), Error> {
        self.engine.seed(&batch)
    }

    fn continuing(&mut self, keys: RecordBatch) -> Result<(), Error> {
        self.engine.continuing(&keys)
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        Ok(self.engine.process(&batch)?.into_iter().collect())
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        Ok(self.engine.finish()?.into_iter().collect())
    }
}

sluice_plugin::export_handler!(Resample);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::{Float64Type, Int64Type};
    use sluice_plugin::parse_config;
    use std::sync::Arc;

    fn klines(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("open_time", DataType::Int64, false),
            Field::new("open", DataType::Float64, false),
            Field::new("high", DataType::Float64, false),
            Field::new("low", DataType::Float64, false),
            Field::new("close", DataType::Float64, false),
            Field::new("volume", DataType::Float64, false),
        ]));
        let p = |i: usize| 100.0 + ((i * 7) % 13) as f64;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["BTC"; n])),
                Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i * 1000))),
                Arc::new(Float64Array::from_iter_values((0..n).map(p))),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| p(i) + 1.0))),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| p(i) - 1.0))),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| p(i) + 0.5))),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn one_second_bars_to_one_minute() {
        let mut r =
            Resample::new(parse_config(r#"{"keys":["symbol"],"time":"open_time","every":"1m"}"#).unwrap()).unwrap();
        let b = klines(150);
        assert!(r.process(b.slice(0, 70)).unwrap().is_empty());
        assert!(r.process(b.slice(70, 80)).unwrap().is_empty());
        let out = r.finish().unwrap().remove(0);
        assert_eq!(out.num_rows(), 3);
        let names: Vec<_> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["symbol", "open_time", "open", "high", "low", "close", "volume", "bars"]);
        assert_eq!(out.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![0, 60_000, 120_000]);
        let f = |i: usize| out.column(i).as_primitive::<Float64Type>().values().to_vec();
        let p = |i: usize| 100.0 + ((i * 7) % 13) as f64;
        assert_eq!(f(2), vec![p(0), p(60), p(120)]);
        let hi = |a: usize, b: usize| (a..b).map(|i| p(i) + 1.0).fold(f64::MIN, f64::max);
        assert_eq!(f(3), vec![hi(0, 60), hi(60, 120), hi(120, 150)]);
        assert_eq!(f(5), vec![p(59) + 0.5, p(119) + 0.5, p(149) + 0.5]);
        assert_eq!(
            f(6),
            vec![(0..60).sum::<usize>() as f64, (60..120).sum::<usize>() as f64, (120..150).sum::<usize>() as f64]
        );
        assert_eq!(out.column(7).as_primitive::<Int64Type>().values().to_vec(), vec![60, 60, 30]);
    }

    #[test]
    fn missing_columns_name_their_key() {
        let r = Resample::new(parse_config(r#"{"time":"open_time","every":"1h","close":"last"}"#).unwrap()).unwrap();
        let e = r.output_schema(&klines(1).schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "close"), "{e}");
        let e = parse_config::<Config>(r#"{"time":"t","every":"1h","volume":"v"}"#).unwrap_err();
        assert!(e.message().contains("volume"), "{e}");
    }
}
