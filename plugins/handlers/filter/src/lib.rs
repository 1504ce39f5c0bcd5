//! `filter`: keeps the rows for which a predicate is true (null counts as false).

use handler_kit::expr::{self, Expr, Ty};
use sluice_plugin::arrow_select::filter::filter_record_batch;
use sluice_plugin::prelude::*;

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The predicate.
    #[serde(rename = "where")]
    pub predicate: String,
}

/// The handler.
pub struct Filter {
    src: String,
    expr: Expr,
}

impl Handler for Filter {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Keeps the rows for which `where` is true; rows where it is false or null are
dropped.

- `where` (required): a predicate in the expression language: comparisons
  (`= != <> < <= > >=`), `and`, `or`, `not`, `x in (lit, ...)`,
  `x not in (...)`, `x is null`, `x is not null`, arithmetic (`+ - * / %`),
  functions (`lower`, `upper`, `trim`, `length`, `concat`, `abs`, `round`,
  `coalesce`), literals (`1`, `2.5`, `'text'`, `true`, `false`, `null`), and
  column names (`\"quoted name\"` for unusual ones).

Errors point into the expression: `unknown column `clse` at column 1`.

```yaml
config: {where: \"close > 0 and symbol in ('BTCUSDT', 'ETHUSDT')\"}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        let expr = expr::parse(&config.predicate).map_err(|e| e.config(&config.predicate, "where"))?;
        Ok(Filter { src: config.predicate, expr })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        match self.expr.check(input).map_err(|e| e.config(&self.src, "where"))? {
            Ty::Bool | Ty::Null => Ok(input.clone()),
            t => Err(Error::config(format!("`where` must be a predicate, but it is a {}", t.arrow())).key("where")),
        }
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let mask = self.expr.eval_mask(&batch)?;
        Ok(match mask.true_count() {
            0 => vec![],
            n if n == batch.num_rows() => vec![batch],
            _ => vec![filter_record_batch(&batch, &mask)?],
        })
    }
}

sluice_plugin::export_handler!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::Int64Type;
    use sluice_plugin::parse_config;
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("close", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("BTCUSDT"), Some("ETHUSDT"), Some("XRPUSDT"), None])),
                Arc::new(Float64Array::from(vec![Some(1.0), Some(0.0), Some(2.0), Some(3.0)])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap()
    }

    fn run(w: &str) -> Vec<i64> {
        let mut f = Filter::new(Config { predicate: w.into() }).unwrap();
        let b = batch();
        f.output_schema(&b.schema()).unwrap();
        f.process(b).unwrap().iter().flat_map(|b| b.column(2).as_primitive::<Int64Type>().values().to_vec()).collect()
    }

    #[test]
    fn filters() {
        assert_eq!(run("close > 0 and symbol in ('BTCUSDT','ETHUSDT')"), vec![1]);
        assert_eq!(run("symbol is null or n % 2 = 0"), vec![2, 4]);
        assert_eq!(run("not (lower(symbol) = 'xrpusdt')"), vec![1, 2]);
        assert_eq!(run("n > 100"), Vec::<i64>::new());
        assert_eq!(run("true"), vec![1, 2, 3, 4]);
    }

    #[test]
    fn errors_point_into_the_expression() {
        let e = Filter::new(parse_config(r#"{"where":"close > and"}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "where"));
        assert!(e.message().contains("at column 9"), "{e}");
        let f = Filter::new(parse_config(r#"{"where":"clse > 0"}"#).unwrap()).unwrap();
        let e = f.output_schema(&batch().schema()).unwrap_err();
        assert!(e.message().contains("unknown column `clse` at column 1"), "{e}");
        let f = Filter::new(parse_config(r#"{"where":"close + 1"}"#).unwrap()).unwrap();
        assert!(f.output_schema(&batch().schema()).is_err());
        assert!(parse_config::<Config>(r#"{"whre":"x"}"#).unwrap_err().message().contains("whre"));
    }
}
