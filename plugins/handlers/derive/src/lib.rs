//! `derive`: adds (or replaces) columns computed by expressions over the input
//! columns and the columns derived before them.

use std::sync::Arc;

use handler_kit::expr::{self, Expr, Ty};
use sluice_plugin::prelude::*;

/// `name: expression` pairs in the order written.
#[derive(Debug, Clone, Default)]
pub struct Columns(pub Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for Columns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Columns;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of column name to expression")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Columns, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    if out.iter().any(|(n, _)| *n == k) {
                        return Err(serde::de::Error::custom(format!("column `{k}` is defined twice")));
                    }
                    out.push((k, v));
                }
                Ok(Columns(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The columns to compute, in order.
    pub columns: Columns,
}

/// The handler.
pub struct Derive {
    columns: Vec<(String, String, Expr)>,
    /// The columns read: those the expressions name, and those derived (an existing one is
    /// replaced, so it must be read; a new one is not in the input, so nothing is sent).
    reads: Vec<String>,
}

impl Handler for Derive {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Computes columns from expressions, in the order written. A new name is
appended; an existing name is replaced in place. Each expression sees the input
columns and the columns derived before it.

- `columns` (required): a map of column name to expression. The language is the
  one of `filter`: arithmetic (`+ - * /`, `%`; `/` always gives Float64),
  comparisons and `and`/`or`/`not`/`in`/`is null` (giving booleans), functions
  `lower`, `upper`, `trim`, `length`, `concat` (skips nulls), `abs`,
  `round(x[, digits])`, `coalesce`, and literals.
- Dates and times: `year`, `quarter`, `month`, `day`, `hour`, `minute`,
  `second`, `weekday` (1 = Monday .. 7 = Sunday), `dayofyear`, `week` (ISO),
  each with an optional time zone (`hour(ts, 'America/New_York')`);
  `date_trunc('month', ts[, tz])`; `date_diff('day', a, b[, tz])` (boundaries
  crossed, as DuckDB); `strftime(ts, '%Y-%m-%d'[, tz])`; `strptime(text,
  '%d/%m/%Y %H:%M')` (a data error when it does not match) and `try_strptime`
  (null instead); `date(ts[, tz])` or `date(text)`; `make_date(y, m, d)`;
  `epoch(ts)` (seconds, Float64), `epoch_ms(ts)` and `epoch_ms(integer)` (to a
  timestamp), `to_timestamp(seconds)`. Literals `date '2024-01-31'`,
  `timestamp '2024-01-31 12:00'`, `interval '90 minutes'`; `ts + interval '1
  month'`, `date + 7` (days), `date - date` (days); a date or timestamp compares
  with another and with a string literal (`ts >= '2024-01-01'`).

Output types: integers Int64, numbers with a float Float64, strings Utf8,
predicates Boolean, dates Date32, timestamps in their column's unit (computed
ones in microseconds; a time zone of the column type is not kept). Integer
overflow, a date out of range and a failed `strptime` are data errors.

```yaml
config:
  columns: {mid: \"(high + low) / 2\", sym: \"lower(symbol)\", up: \"close > open\"}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.columns.0.is_empty() {
            return Err(Error::config("define at least one column").key("columns"));
        }
        let columns = config
            .columns
            .0
            .into_iter()
            .map(|(name, src)| {
                let e = expr::parse(&src).map_err(|e| e.config(&src, &format!("columns.{name}")))?;
                Ok((name, src, e))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let mut reads: Vec<String> = Vec::new();
        for (name, _, e) in &columns {
            for c in e.columns().into_iter().chain([name.clone()]) {
                if !reads.contains(&c) {
                    reads.push(c);
                }
            }
        }
        Ok(Derive { columns, reads })
    }

    /// A row-for-row patch of the derived columns (new ones in the order written).
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        let mut fields: Vec<FieldRef> = input.fields().iter().cloned().collect();
        for (name, src, e) in &self.columns {
            let schema = Schema::new(fields.clone());
            let t = e.check(&schema).map_err(|err| err.config(src, &format!("columns.{name}")))?;
            if t == Ty::Interval {
                return Err(Error::config(format!(
                    "the expression of `{name}` is an interval, which a column cannot hold: add it to a date or timestamp"
                ))
                .key(format!("columns.{name}")));
            }
            if t == Ty::Null {
                return Err(
                    Error::config(format!("the expression of `{name}` is always null")).key(format!("columns.{name}"))
                );
            }
            let f = Arc::new(Field::new(name, t.arrow(), true));
            match fields.iter().position(|x| x.name() == name) {
                Some(i) => fields[i] = f,
                None => fields.push(f),
            }
        }
        fields.retain(|f| self.columns.iter().any(|(name, _, _)| name == f.name()));
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Reads the columns the expressions name and the ones it replaces.
    fn projection(&self) -> Option<Vec<String>> {
        Some(self.reads.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let n = batch.num_rows();
        let mut current = batch;
        for (name, _, e) in &self.columns {
            let v = e.eval(&current)?.into_array(n)?;
            let mut fields: Vec<FieldRef> = current.schema().fields().iter().cloned().collect();
            let mut cols = current.columns().to_vec();
            let f = Arc::new(Field::new(name, v.data_type().clone(), true));
            match fields.iter().position(|x| x.name() == name) {
                Some(i) => {
                    fields[i] = f;
                    cols[i] = v;
                }
                None => {
                    fields.push(f);
                    cols.push(v);
                }
            }
            current = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
        }
        let cols =
            schema.fields().iter().map(|f| current.column_by_name(f.name()).cloned().expect("derived above")).collect();
        Ok(vec![RecordBatch::try_new(schema, cols)?])
    }
}

sluice_plugin::export_handler!(Derive);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::{Float64Type, Int64Type};
    use sluice_plugin::{parse_config, patch};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("high", DataType::Float64, true),
            Field::new("low", DataType::Float64, true),
            Field::new("n", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("BTCUSDT"), None])),
                Arc::new(Float64Array::from(vec![3.0, 5.0])),
                Arc::new(Float64Array::from(vec![1.0, 4.0])),
                Arc::new(Int32Array::from(vec![Some(7), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn derives_in_order_and_replaces() {
        let cfg =
            r#"{"columns":{"mid":"(high + low) / 2","symbol":"lower(symbol)","wide":"mid * 2 > 5","n2":"n * 2"}}"#;
        let mut d = Derive::new(parse_config(cfg).unwrap()).unwrap();
        let b = batch();
        let schema = patch::output_schema(&d, &b.schema()).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["symbol", "high", "low", "n", "mid", "wide", "n2"]);
        let out = patch::process(&mut d, &b).unwrap().remove(0);
        assert_eq!(out.schema(), schema);
        assert_eq!(out.column(4).as_primitive::<Float64Type>().values().to_vec(), vec![2.0, 4.5]);
        assert_eq!(out.column(0).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("btcusdt"), None]);
        assert_eq!(out.column(5).as_boolean().iter().collect::<Vec<_>>(), vec![Some(false), Some(true)]);
        assert_eq!(out.column(6).as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), vec![Some(14), None]);
    }

    #[test]
    fn reads_its_inputs_and_returns_only_the_derived_columns() {
        let cfg = r#"{"columns":{"mid":"(high + low) / 2","wide":"mid * 2 > 5","high":"1","one":"1"}}"#;
        let mut d = Derive::new(parse_config(cfg).unwrap()).unwrap();
        // `high` is replaced, so it is read; `mid` and `one` are new, so nothing is sent for them.
        assert_eq!(d.projection().unwrap(), ["high", "low", "mid", "wide", "one"]);
        let b = batch();
        let projected = patch::project(&b, &d.projection().unwrap());
        assert_eq!(projected.num_columns(), 2);
        let p = d.process(projected).unwrap().remove(0);
        let names: Vec<_> = p.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, vec!["high", "mid", "wide", "one"]);
        let out = patch::process(&mut d, &b).unwrap().remove(0);
        let names: Vec<_> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, vec!["symbol", "high", "low", "n", "mid", "wide", "one"]);
        assert_eq!(out.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![1, 1]);
        assert_eq!(out.column(4).as_primitive::<Float64Type>().values().to_vec(), vec![2.0, 4.5]);
        assert_eq!(out.column(0), b.column(0), "unread columns pass through");
        // Only literals: nothing is read, the row count still comes through.
        let mut d = Derive::new(parse_config(r#"{"columns":{"k":"'x'"}}"#).unwrap()).unwrap();
        assert_eq!(d.projection().unwrap(), ["k"]);
        let out = patch::process(&mut d, &b).unwrap().remove(0);
        assert_eq!(out.column(4).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("x"), Some("x")]);
    }

    #[test]
    fn errors_name_the_column_and_point_into_it() {
        let e = Derive::new(parse_config(r#"{"columns":{"x":"high +"}}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.x"), "{e}");
        assert!(e.message().contains("at column 7"), "{e}");
        let d = Derive::new(parse_config(r#"{"columns":{"x":"upper(high)"}}"#).unwrap()).unwrap();
        let e = patch::output_schema(&d, &batch().schema()).unwrap_err();
        assert!(e.message().contains("expected a string") && e.message().contains("at column 7"), "{e}");
        let d = Derive::new(parse_config(r#"{"columns":{"x":"hgh + 1"}}"#).unwrap()).unwrap();
        let e = patch::output_schema(&d, &batch().schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.x"), "{e}");
        assert!(e.message().contains("unknown column `hgh`"), "{e}");
        let e = parse_config::<Config>(r#"{"columns":{"x":"1"},"column":{}}"#).unwrap_err();
        assert!(e.message().contains("column"), "{e}");
    }
}
