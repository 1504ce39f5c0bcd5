//! `filter`: keeps the rows for which a predicate is true (null counts as false).

use std::sync::Arc;

use handler_kit::expr::{self, Expr, Ty};
use sluice_plugin::patch::{self, row_field};
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
    /// The columns the predicate reads.
    columns: Vec<String>,
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
  `coalesce`, and the date and time functions of `derive`: `year`, `month`,
  `weekday`, `hour(ts, 'Europe/Berlin')`, `date_trunc`, `date_diff`,
  `strftime`, `strptime`, `epoch_ms`, ...), literals (`1`, `2.5`, `'text'`,
  `true`, `false`, `null`, `date '2024-01-31'`, `interval '1 day'`), and
  column names (`\"quoted name\"` for unusual ones). A date or timestamp
  compares with a string literal: `ts >= '2024-03-01' and weekday(ts) <= 5`.

Errors point into the expression: `unknown column `clse` at column 1`.

```yaml
config: {where: \"close > 0 and symbol in ('BTCUSDT', 'ETHUSDT')\"}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        let expr = expr::parse(&config.predicate).map_err(|e| e.config(&config.predicate, "where"))?;
        let columns = expr.columns();
        Ok(Filter { src: config.predicate, expr, columns })
    }

    /// A patch that only selects rows: the input rows where the predicate holds.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        match self.expr.check(input).map_err(|e| e.config(&self.src, "where"))? {
            Ty::Bool | Ty::Null => Ok(Arc::new(Schema::new(vec![row_field()]))),
            t => Err(Error::config(format!("`where` must be a predicate, but it is a {}", t.arrow())).key("where")),
        }
    }

    /// Reads only the columns the predicate names (none for a constant predicate).
    fn projection(&self) -> Option<Vec<String>> {
        Some(self.columns.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let mask = self.expr.eval_mask(&batch)?;
        if mask.true_count() == 0 {
            return Ok(vec![]);
        }
        let rows: Vec<u32> = mask.values().set_indices().map(|i| i as u32).collect();
        let schema = Arc::new(Schema::new(vec![row_field()]));
        Ok(vec![RecordBatch::try_new(schema, vec![patch::rows(rows)])?])
    }
}

sluice_plugin::export_handler!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::{Int64Type, UInt32Type};
    use sluice_plugin::parse_config;

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

    /// The `n` of the rows kept, as the pipeline sees them (projected, then patched).
    fn run(w: &str) -> Vec<i64> {
        let mut f = Filter::new(Config { predicate: w.into() }).unwrap();
        let b = batch();
        assert_eq!(patch::output_schema(&f, &b.schema()).unwrap(), b.schema());
        let out = patch::process(&mut f, &b).unwrap();
        for o in &out {
            assert_eq!(o.schema(), b.schema(), "every column passes through");
        }
        out.iter().flat_map(|b| b.column(2).as_primitive::<Int64Type>().values().to_vec()).collect()
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
    fn reads_only_the_predicate_columns_and_returns_rows() {
        let mut f =
            Filter::new(Config { predicate: "close > 0 and lower(symbol) != 'x' or close is null".into() }).unwrap();
        assert_eq!(f.projection().unwrap(), ["close", "symbol"]);
        let projected = patch::project(&batch(), &f.projection().unwrap());
        let out = f.process(projected).unwrap().remove(0);
        assert_eq!(out.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), [ROW_COLUMN]);
        assert_eq!(out.column(0).as_primitive::<UInt32Type>().values().to_vec(), vec![0, 2]);
        // A constant predicate reads nothing: the host sends only the row count.
        let f = Filter::new(Config { predicate: "1 = 1".into() }).unwrap();
        assert!(f.projection().unwrap().is_empty());
        assert_eq!(run("1 = 1"), vec![1, 2, 3, 4]);
        assert_eq!(run("null"), Vec::<i64>::new());
    }

    #[test]
    fn errors_point_into_the_expression() {
        let e = Filter::new(parse_config(r#"{"where":"close > and"}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "where"));
        assert!(e.message().contains("at column 9"), "{e}");
        let f = Filter::new(parse_config(r#"{"where":"clse > 0"}"#).unwrap()).unwrap();
        // As the host asks: with the projected schema, where `clse` is simply absent.
        let e = patch::output_schema(&f, &batch().schema()).unwrap_err();
        assert!(e.message().contains("unknown column `clse` at column 1"), "{e}");
        let f = Filter::new(parse_config(r#"{"where":"close + 1"}"#).unwrap()).unwrap();
        let e = patch::output_schema(&f, &batch().schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "where"), "{e}");
        assert!(parse_config::<Config>(r#"{"whre":"x"}"#).unwrap_err().message().contains("whre"));
    }
}
