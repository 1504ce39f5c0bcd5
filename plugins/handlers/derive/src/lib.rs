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

Output types: integers Int64, numbers with a float Float64, strings Utf8,
predicates Boolean. Integer overflow is a data error.

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
        Ok(Derive { columns })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        let mut fields: Vec<FieldRef> = input.fields().iter().cloned().collect();
        for (name, src, e) in &self.columns {
            let schema = Schema::new(fields.clone());
            let t = e.check(&schema).map_err(|err| err.config(src, &format!("columns.{name}")))?;
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
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
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
        Ok(vec![RecordBatch::try_new(schema, current.columns().to_vec())?])
    }
}

sluice_plugin::export_handler!(Derive);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::{Float64Type, Int64Type};
    use sluice_plugin::parse_config;

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
        let schema = d.output_schema(&b.schema()).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["symbol", "high", "low", "n", "mid", "wide", "n2"]);
        let out = d.process(b).unwrap().remove(0);
        assert_eq!(out.column(4).as_primitive::<Float64Type>().values().to_vec(), vec![2.0, 4.5]);
        assert_eq!(out.column(0).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("btcusdt"), None]);
        assert_eq!(out.column(5).as_boolean().iter().collect::<Vec<_>>(), vec![Some(false), Some(true)]);
        assert_eq!(out.column(6).as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), vec![Some(14), None]);
    }

    #[test]
    fn errors_name_the_column_and_point_into_it() {
        let e = Derive::new(parse_config(r#"{"columns":{"x":"high +"}}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.x"), "{e}");
        assert!(e.message().contains("at column 7"), "{e}");
        let d = Derive::new(parse_config(r#"{"columns":{"x":"upper(high)"}}"#).unwrap()).unwrap();
        let e = d.output_schema(&batch().schema()).unwrap_err();
        assert!(e.message().contains("expected a string") && e.message().contains("at column 7"), "{e}");
        let e = parse_config::<Config>(r#"{"columns":{"x":"1"},"column":{}}"#).unwrap_err();
        assert!(e.message().contains("column"), "{e}");
    }
}
