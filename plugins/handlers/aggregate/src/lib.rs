//! `aggregate`: groups rows by key columns plus a time bucket and computes
//! count, sum, min, max, mean, first, last and count_distinct per group.

use handler_kit::agg::{AggDef, AggFn, Emit, Engine, Every, Scope, Spec};
use handler_kit::cal::Zone;
use handler_kit::time::Unit;
use sluice_plugin::prelude::*;

/// One aggregate of the config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggConfig {
    #[serde(rename = "fn")]
    pub func: AggFn,
    /// Input column (optional for `count`: counts rows).
    #[serde(default)]
    pub column: Option<String>,
    /// Output name (default `<fn>_<column>`, or `count`).
    #[serde(default, rename = "as")]
    pub output: Option<String>,
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub keys: Vec<String>,
    /// The time column (integer epoch, timestamp or date).
    pub time: String,
    /// Bucket width: `1s`, `5m`, `1h`, `1d`, ..., or `day`, `week`, `month`, `quarter`, `year`.
    pub every: String,
    /// Time zone of the wall clock the buckets follow (default UTC).
    #[serde(default)]
    pub tz: Option<String>,
    /// Unit of an integer time column (default `ms`).
    #[serde(default)]
    pub unit: Option<Unit>,
    /// Name of the bucket column (default: the time column's name).
    #[serde(default, rename = "as")]
    pub bucket_as: Option<String>,
    pub aggs: Vec<AggConfig>,
    #[serde(default)]
    pub emit: Emit,
    /// Whether a group collects rows from every file (`run`, the default) or ends with each file.
    #[serde(default)]
    pub scope: Scope,
}

/// Builds the engine spec shared with `resample`; `aggs` carry their config keys.
#[allow(clippy::too_many_arguments)]
pub fn spec(
    keys: Vec<String>,
    time: String,
    every: &str,
    tz: Option<&str>,
    unit: Option<Unit>,
    bucket_as: Option<String>,
    aggs: Vec<AggDef>,
    emit: Emit,
    scope: Scope,
) -> Result<Spec, Error> {
    let every = Every::parse(every).map_err(|m| Error::config(m).key("every"))?;
    let zone = tz.map(Zone::parse).transpose().map_err(|m| Error::config(m).key("tz"))?.unwrap_or_default();
    Ok(Spec {
        bucket_as: bucket_as.unwrap_or_else(|| time.clone()),
        keys,
        time,
        every,
        zone,
        unit: unit.unwrap_or(Unit::Ms),
        aggs,
        emit,
        scope,
    })
}

/// The handler.
pub struct Aggregate {
    engine: Engine,
}

impl Handler for Aggregate {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Groups rows by `keys` and a time bucket and outputs one row per group: the key
columns, the bucket's start (named `as`, default the time column's name, same
type as the time column) and the aggregates.

- `keys` (optional): key columns.
- `time` (required): integer epoch column (unit `unit`, default `ms`), timestamp
  or date.
- `every` (required): a fixed width (`1s`, `5m`, `1h`, `1d`: buckets
  `floor(time / every) * every`), or a calendar unit: `day`, `week` (ISO,
  from Monday), `month`, `quarter`, `year`.
- `tz` (optional, default UTC): an IANA time zone (`Europe/Berlin`) whose wall
  clock the buckets follow: a `day` or `1d` bucket starts at local midnight
  (and lasts 23 or 25 hours across a clock change). The bucket column stays a
  UTC instant. Not for a date column.
- `aggs` (required): list of `{fn, column, as}` with `fn` one of `count`
  (non-null values, or rows without `column`), `sum`, `min`, `max`, `mean`,
  `first`, `last` (by time; ties keep input order), `count_distinct`
  (numbers or strings). Counts, and sums of integer columns (exact; an
  overflow is a data error), are Int64, the others Float64; `as` defaults to
  `<fn>_<column>`.
- `scope` (default `run`): a group collects its rows from every file, so a
  month over daily files is one row. Each file's output holds the groups it
  adds rows to, except a key's last group when a later file (already
  committed) continues that bucket: that file's output holds it. A file that
  arrives after files that continue its groups re-runs them (keyed state, as
  for `indicators`), so each group is in the lake once. When a bucket is
  final: in `run`, once the run ends (the files it read are complete); in
  `watch`, each commit shows every group with the rows committed so far, and a
  group changes (in place of its old row) until no later file adds to it.
  `scope: file`: groups end with each file (one row per file and group).
- `emit` (default `finish`): `finish` outputs groups at the end of each file,
  ordered by bucket then key; `close` outputs a key's bucket as soon as a row
  of that key falls into a later bucket (needs rows in time order per key; an
  older row is a data error).

```yaml
config:
  keys: [user]
  time: ts
  every: 1d
  aggs: [{fn: count, as: events}, {fn: sum, column: amount}, {fn: count_distinct, column: item}]
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.aggs.is_empty() {
            return Err(Error::config("list at least one aggregate").key("aggs"));
        }
        let aggs = config
            .aggs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let name = match (&a.output, &a.column) {
                    (Some(o), _) => o.clone(),
                    (None, Some(c)) => format!("{}_{c}", format!("{:?}", a.func).to_lowercase()),
                    (None, None) => "count".to_string(),
                };
                let name = if a.output.is_none() && a.func == AggFn::CountDistinct {
                    name.replace("countdistinct", "count_distinct")
                } else {
                    name
                };
                AggDef {
                    func: a.func,
                    column: a.column.clone(),
                    output: name,
                    key: format!("aggs.{i}"),
                    column_key: format!("aggs.{i}.column"),
                }
            })
            .collect();
        let spec = spec(
            config.keys,
            config.time,
            &config.every,
            config.tz.as_deref(),
            config.unit,
            config.bucket_as,
            aggs,
            config.emit,
            config.scope,
        )?;
        Ok(Aggregate { engine: Engine::new(spec) })
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

sluice_plugin::export_handler!(Aggregate);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::{Float64Type, Int64Type};
    use sluice_plugin::parse_config;
    use std::sync::Arc;

    fn batch(u: Vec<&str>, ts: Vec<i64>, amount: Vec<Option<f64>>, item: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("ts", DataType::Int64, false),
            Field::new("amount", DataType::Float64, true),
            Field::new("item", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(u)),
                Arc::new(Int64Array::from(ts)),
                Arc::new(Float64Array::from(amount)),
                Arc::new(StringArray::from(item)),
            ],
        )
        .unwrap()
    }

    const CFG: &str = r#"{"keys":["user"],"time":"ts","every":"1s","aggs":[
        {"fn":"count","as":"n"},{"fn":"sum","column":"amount"},{"fn":"mean","column":"amount"},
        {"fn":"min","column":"amount"},{"fn":"max","column":"amount"},{"fn":"first","column":"amount"},
        {"fn":"last","column":"amount"},{"fn":"count_distinct","column":"item"},{"fn":"count","column":"amount"}]}"#;

    #[test]
    fn all_functions_across_batches_on_finish() {
        let mut a = Aggregate::new(parse_config(CFG).unwrap()).unwrap();
        let b1 = batch(
            vec!["a", "b", "a"],
            vec![100, 200, 1500],
            vec![Some(1.0), Some(5.0), Some(7.0)],
            vec!["x", "x", "y"],
        );
        assert!(a.process(b1).unwrap().is_empty());
        let b2 = batch(vec!["a", "a"], vec![50, 900], vec![Some(3.0), None], vec!["y", "x"]);
        assert!(a.process(b2).unwrap().is_empty());
        let out = a.finish().unwrap().remove(0);
        let names: Vec<_> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(
            names,
            [
                "user",
                "ts",
                "n",
                "sum_amount",
                "mean_amount",
                "min_amount",
                "max_amount",
                "first_amount",
                "last_amount",
                "count_distinct_item",
                "count_amount"
            ]
        );
        // Groups ordered by bucket then key: (0, a), (0, b), (1000, a).
        let users: Vec<_> = out.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(users, ["a", "b", "a"]);
        assert_eq!(out.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![0, 0, 1000]);
        assert_eq!(out.column(2).as_primitive::<Int64Type>().values().to_vec(), vec![3, 1, 1]);
        let f = |i: usize| out.column(i).as_primitive::<Float64Type>().iter().collect::<Vec<_>>();
        assert_eq!(f(3), vec![Some(4.0), Some(5.0), Some(7.0)]);
        assert_eq!(f(4), vec![Some(2.0), Some(5.0), Some(7.0)]);
        assert_eq!(f(5), vec![Some(1.0), Some(5.0), Some(7.0)]);
        assert_eq!(f(6), vec![Some(3.0), Some(5.0), Some(7.0)]);
        // first by time: ts 50 (3.0) precedes ts 100 (1.0); last: ts 900 is null, so ts 100.
        assert_eq!(f(7), vec![Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(f(8), vec![Some(1.0), Some(5.0), Some(7.0)]);
        assert_eq!(out.column(9).as_primitive::<Int64Type>().values().to_vec(), vec![2, 1, 1]);
        assert_eq!(out.column(10).as_primitive::<Int64Type>().values().to_vec(), vec![2, 1, 1]);
        assert!(a.finish().unwrap().is_empty());
    }

    #[test]
    fn emit_close_streams_closed_buckets() {
        let cfg = r#"{"keys":["user"],"time":"ts","every":"1s","emit":"close","aggs":[{"fn":"sum","column":"amount","as":"s"}]}"#;
        let mut a = Aggregate::new(parse_config(cfg).unwrap()).unwrap();
        let b = batch(
            vec!["a", "a", "b", "a"],
            vec![0, 10, 20, 1000],
            vec![Some(1.0), Some(2.0), Some(4.0), Some(8.0)],
            vec!["", "", "", ""],
        );
        let out = a.process(b).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].num_rows(), 1);
        assert_eq!(out[0].column(2).as_primitive::<Float64Type>().value(0), 3.0);
        let rest = a.finish().unwrap().remove(0);
        assert_eq!(rest.num_rows(), 2);
        let b = batch(vec!["a", "a"], vec![5000, 10], vec![Some(1.0), Some(1.0)], vec!["", ""]);
        let e = a.process(b).unwrap_err();
        assert!(matches!(e, Error::Data { row: Some(1), .. }), "{e}");
    }

    #[test]
    fn sums_of_integers_stay_exact_integers() {
        let cfg = r#"{"keys":["k"],"time":"ts","every":"1s","aggs":[{"fn":"sum","column":"n","as":"s"},{"fn":"sum","column":"x","as":"fx"}]}"#;
        let mut a = Aggregate::new(parse_config(cfg).unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let big = (1i64 << 53) + 1;
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b"])),
                Arc::new(Int64Array::from(vec![0, 10, 20])),
                Arc::new(Int64Array::from(vec![Some(big), Some(2), None])),
                Arc::new(Float64Array::from(vec![Some(0.5), Some(1.0), Some(2.0)])),
            ],
        )
        .unwrap();
        let out_schema = a.output_schema(&schema).unwrap();
        assert_eq!(out_schema.field_with_name("s").unwrap().data_type(), &DataType::Int64);
        assert_eq!(out_schema.field_with_name("fx").unwrap().data_type(), &DataType::Float64);
        assert!(a.process(b).unwrap().is_empty());
        let out = a.finish().unwrap().remove(0);
        let s = out.column_by_name("s").unwrap().as_primitive::<Int64Type>();
        // Exact past 2^53, where a Float64 sum would round; null for a group with no value.
        assert_eq!((s.value(0), s.is_null(1)), (big + 2, true));
    }

    #[test]
    fn calendar_buckets_over_dates_and_zoned_timestamps() {
        use sluice_plugin::arrow_array::types::{Date32Type, TimestampMillisecondType};
        use sluice_plugin::arrow_array::{Date32Array, TimestampMillisecondArray};
        let day = |s: &str| handler_kit::cal::days(chrono_date(s));
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Date32, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from(vec![
                    day("2024-01-31"),
                    day("2024-02-01"),
                    day("2024-03-31"),
                    day("2024-04-01"),
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let mut a = Aggregate::new(
            parse_config(r#"{"time":"d","every":"quarter","aggs":[{"fn":"sum","column":"n","as":"s"}]}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(a.output_schema(&b.schema()).unwrap().field(0).data_type(), &DataType::Date32);
        a.process(b.clone()).unwrap();
        let out = a.finish().unwrap().remove(0);
        let starts: Vec<i32> = out.column(0).as_primitive::<Date32Type>().values().to_vec();
        assert_eq!(starts, vec![day("2024-01-01"), day("2024-04-01")]);
        assert_eq!(out.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![6, 4]);
        // A date has no time zone; a day is the finest bucket of a date.
        let bad = Aggregate::new(
            parse_config(r#"{"time":"d","every":"month","tz":"Europe/Berlin","aggs":[{"fn":"count"}]}"#).unwrap(),
        )
        .unwrap();
        let e = bad.output_schema(&b.schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "tz"), "{e}");
        let bad =
            Aggregate::new(parse_config(r#"{"time":"d","every":"1h","aggs":[{"fn":"count"}]}"#).unwrap()).unwrap();
        assert!(bad.output_schema(&b.schema()).is_err());

        // Daily buckets on Berlin's wall clock: 23:30 UTC on 30 March is the 31st there, and
        // that day (clocks go forward) ends 22:00 UTC.
        let ms =
            |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap().and_utc().timestamp_millis();
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            Field::new("n", DataType::Int64, false),
        ]));
        let t = TimestampMillisecondArray::from(vec![
            ms("2024-03-30 22:59"),
            ms("2024-03-30 23:30"),
            ms("2024-03-31 21:59"),
            ms("2024-03-31 22:00"),
        ])
        .with_timezone("UTC");
        let b = RecordBatch::try_new(schema, vec![Arc::new(t), Arc::new(Int64Array::from(vec![1, 2, 3, 4]))]).unwrap();
        for every in ["day", "1d"] {
            let cfg = format!(
                r#"{{"time":"t","every":"{every}","tz":"Europe/Berlin","aggs":[{{"fn":"sum","column":"n","as":"s"}}]}}"#
            );
            let mut a = Aggregate::new(parse_config(&cfg).unwrap()).unwrap();
            a.process(b.clone()).unwrap();
            let out = a.finish().unwrap().remove(0);
            let starts = out.column(0).as_primitive::<TimestampMillisecondType>().values().to_vec();
            assert_eq!(starts, vec![ms("2024-03-29 23:00"), ms("2024-03-30 23:00"), ms("2024-03-31 22:00")], "{every}");
            assert_eq!(out.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![1, 5, 4], "{every}");
        }
        let e = Aggregate::new(
            parse_config(r#"{"time":"t","every":"day","tz":"Berlin","aggs":[{"fn":"count"}]}"#).unwrap(),
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "tz"), "{e}");
    }

    #[test]
    fn groups_span_units_through_seeds_and_continuing_keys() {
        let day = |s: &str| handler_kit::cal::days(chrono_date(s));
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("d", DataType::Date32, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let rows = |v: &[(&str, &str, i64)]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(v.iter().map(|r| r.0).collect::<Vec<_>>())),
                    Arc::new(sluice_plugin::arrow_array::Date32Array::from(
                        v.iter().map(|r| day(r.1)).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(v.iter().map(|r| r.2).collect::<Vec<_>>())),
                ],
            )
            .unwrap()
        };
        let cfg = r#"{"keys":["k"],"time":"d","every":"month","aggs":[{"fn":"sum","column":"n","as":"s"}]}"#;
        let new = || {
            let a = Aggregate::new(parse_config(cfg).unwrap()).unwrap();
            a.output_schema(&schema).unwrap();
            a
        };
        let sums = |out: Vec<RecordBatch>| -> Vec<(String, i32, i64)> {
            out.iter()
                .flat_map(|b| {
                    let k = b.column(0).as_string::<i32>().clone();
                    let d = b.column(1).as_primitive::<sluice_plugin::arrow_array::types::Date32Type>().clone();
                    let s = b.column(2).as_primitive::<Int64Type>().clone();
                    (0..b.num_rows()).map(move |i| (k.value(i).to_string(), d.value(i), s.value(i)))
                })
                .collect()
        };
        // Days are the span unit once the schema is known; a month is 31 of them.
        let a = new();
        let st = a.state().unwrap();
        assert_eq!((st.lookback_span, st.lookahead, st.order_by.as_str()), (Some(31), true, "d"));
        let unit1 = rows(&[("a", "2024-01-10", 1), ("b", "2024-01-11", 10), ("a", "2024-01-20", 2)]);
        let unit2 = rows(&[("a", "2024-01-25", 4), ("a", "2024-02-02", 8)]);
        // One instance, unit 1 then unit 2: unit 1 keeps a's January (unit 2 continues it) and
        // outputs b's; unit 2 outputs a's whole January and February.
        let mut a = new();
        assert!(a.process(unit1.clone()).unwrap().is_empty());
        let next = rows(&[("a", "2024-01-25", 0)]);
        a.continuing(next.project(&[0, 1]).unwrap()).unwrap();
        assert_eq!(sums(a.finish().unwrap()), vec![("b".into(), day("2024-01-01"), 10)]);
        a.process(unit2.clone()).unwrap();
        let whole = vec![("a".into(), day("2024-01-01"), 7), ("a".into(), day("2024-02-01"), 8)];
        assert_eq!(sums(a.finish().unwrap()), whole);
        // A fresh instance re-running unit 2, seeded with unit 1's rows of `a`: the same output,
        // and nothing for the seed alone (b is not seeded; a December row makes no group).
        let mut f = new();
        f.seed(rows(&[("a", "2023-12-31", 100), ("a", "2024-01-10", 1), ("a", "2024-01-20", 2)])).unwrap();
        f.process(unit2).unwrap();
        assert_eq!(sums(f.finish().unwrap()), whole);
        // `scope: file` declares no state and ends groups with each file.
        let pf =
            Aggregate::new(parse_config(&cfg.replace("\"aggs\"", "\"scope\":\"file\",\"aggs\"")).unwrap()).unwrap();
        assert!(pf.state().is_none());
    }

    #[test]
    fn half_hours_on_a_wall_clock_stay_half_hours_when_clocks_go_back() {
        // Berlin, 27 October 2024: local 02:00-03:00 happens twice (00:00-02:00 UTC). Rows every
        // 10 minutes in time order, in several batches, with `emit: close`.
        let t0 = chrono::NaiveDateTime::parse_from_str("2024-10-27 00:00", "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, false)]));
        let cfg = r#"{"time":"t","every":"30m","tz":"Europe/Berlin","emit":"close","aggs":[{"fn":"count","as":"n"}]}"#;
        let mut a = Aggregate::new(parse_config(cfg).unwrap()).unwrap();
        let mut out = Vec::new();
        for chunk in (0..12i64).collect::<Vec<_>>().chunks(5) {
            let b = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(chunk.iter().map(|i| t0 + i * 600_000).collect::<Vec<_>>()))],
            )
            .unwrap();
            out.extend(a.process(b).unwrap());
        }
        out.extend(a.finish().unwrap());
        let starts: Vec<i64> =
            out.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
        let counts: Vec<i64> =
            out.iter().flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec()).collect();
        assert_eq!(starts, (0..4).map(|i| t0 + i * 1_800_000).collect::<Vec<_>>());
        assert_eq!(counts, vec![3, 3, 3, 3]);
    }

    fn chrono_date(s: &str) -> chrono::NaiveDate {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = parse_config::<Config>(r#"{"time":"ts","every":"1s","aggs":[{"fn":"median","column":"amount"}]}"#)
            .unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "aggs.0.fn"), "{e}");
        let e = Aggregate::new(parse_config(r#"{"time":"ts","every":"1 fortnight","aggs":[{"fn":"count"}]}"#).unwrap())
            .err()
            .unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "every"), "{e}");
        let a = Aggregate::new(
            parse_config(r#"{"time":"ts","every":"1s","aggs":[{"fn":"sum","column":"item"}]}"#).unwrap(),
        )
        .unwrap();
        let e = a.output_schema(&batch(vec![], vec![], vec![], vec![]).schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "aggs.0.column"), "{e}");
    }
}
