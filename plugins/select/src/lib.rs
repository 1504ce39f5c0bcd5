//! `select`: keeps, renames and reorders columns.
//!
//! Config: `{"columns": ["a", {"b": "bee"}, "c"]}` keeps `a`, `b` (renamed
//! `bee`) and `c` in that order; or `{"drop": ["x", "y"]}` keeps every column
//! but those, in input order.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use sluice_plugin::prelude::*;

/// One entry of `columns`: a name to keep, or a one-entry map `{name: new_name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// The input column.
    pub name: String,
    /// The output name (the input name when not renamed).
    pub rename: String,
}

impl<'de> serde::Deserialize<'de> for ColumnSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ColumnSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column name or a one-entry map {name: new_name}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ColumnSpec, E> {
                Ok(ColumnSpec { name: v.to_string(), rename: v.to_string() })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ColumnSpec, A::Error> {
                let (name, rename): (String, String) =
                    map.next_entry()?.ok_or_else(|| de::Error::custom("empty map: expected {name: new_name}"))?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a rename map must have exactly one entry {name: new_name}"));
                }
                Ok(ColumnSpec { name, rename })
            }
        }
        d.deserialize_any(V)
    }
}

/// The step's config: exactly one of `columns` and `drop`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Columns to keep, in output order, optionally renamed.
    #[serde(default)]
    pub columns: Option<Vec<ColumnSpec>>,
    /// Columns to drop (all others are kept, in input order).
    #[serde(default)]
    pub drop: Option<Vec<String>>,
}

/// Which input columns make the output, and the output schema.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Input column index per output column.
    pub indices: Vec<usize>,
    /// The output schema.
    pub schema: SchemaRef,
}

/// The handler.
pub struct Select {
    mode: Mode,
    /// The plan for the last input schema.
    cache: Option<(SchemaRef, Plan)>,
}

enum Mode {
    Keep(Vec<ColumnSpec>),
    Drop(Vec<String>),
}

impl Select {
    /// Builds the output plan for an input schema.
    pub fn plan(&self, input: &Schema) -> Result<Plan, Error> {
        let mut indices = Vec::new();
        let mut fields = Vec::new();
        match &self.mode {
            Mode::Keep(cols) => {
                for (i, c) in cols.iter().enumerate() {
                    let idx = input.index_of(&c.name).map_err(|_| {
                        Error::config(format!("column `{}` not found in the input (columns: {})", c.name, names(input)))
                            .key(format!("columns.{i}"))
                    })?;
                    indices.push(idx);
                    let f = input.field(idx);
                    fields.push(if c.rename == c.name { f.clone() } else { f.clone().with_name(c.rename.clone()) });
                }
            }
            Mode::Drop(cols) => {
                for (i, c) in cols.iter().enumerate() {
                    if input.index_of(c).is_err() {
                        return Err(Error::config(format!(
                            "column `{c}` not found in the input (columns: {})",
                            names(input)
                        ))
                        .key(format!("drop.{i}")));
                    }
                }
                for (idx, f) in input.fields().iter().enumerate() {
                    if !cols.iter().any(|c| c == f.name()) {
                        indices.push(idx);
                        fields.push(f.as_ref().clone());
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        for f in &fields {
            if !seen.insert(f.name().as_str()) {
                return Err(
                    Error::config(format!("output column `{}` appears more than once", f.name())).key("columns")
                );
            }
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        Ok(Plan { indices, schema })
    }
}

/// Applies a plan to a batch.
pub fn apply(plan: &Plan, batch: &RecordBatch) -> Result<RecordBatch, Error> {
    let columns = plan.indices.iter().map(|&i| batch.column(i).clone()).collect();
    Ok(RecordBatch::try_new(plan.schema.clone(), columns)?)
}

fn names(schema: &Schema) -> String {
    let v: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    v.join(", ")
}

impl Handler for Select {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Keeps, renames and reorders columns. Give exactly one of:

- `columns`: list of columns to keep, in output order. Each entry is a name
  (`\"a\"`) or a one-entry map renaming it (`{\"b\": \"bee\"}`).
- `drop`: list of column names to remove; the others keep their input order.

A column missing from the input is a config error naming it.

```yaml
config:
  columns: [id, {ts: time}, value]
```
";

    fn new(config: Config) -> Result<Self, Error> {
        let mode = match (config.columns, config.drop) {
            (Some(c), None) => Mode::Keep(c),
            (None, Some(d)) => Mode::Drop(d),
            (Some(_), Some(_)) => {
                return Err(Error::config("give either `columns` or `drop`, not both").key("drop"));
            }
            (None, None) => return Err(Error::config("`columns` (or `drop`) is required")),
        };
        Ok(Select { mode, cache: None })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(self.plan(input)?.schema)
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = batch.schema();
        let fresh = match &self.cache {
            Some((s, _)) => !Arc::ptr_eq(s, &schema) && **s != *schema,
            None => true,
        };
        if fresh {
            let plan = self.plan(&schema)?;
            self.cache = Some((schema, plan));
        }
        let (_, plan) = self.cache.as_ref().expect("plan cached above");
        Ok(vec![apply(plan, &batch)?])
    }
}

sluice_plugin::export_handler!(Select);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;
    use sluice_plugin::parse_config;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
                Arc::new(StringArray::from(vec![Some("x"), None])),
                Arc::new(Float64Array::from(vec![0.5, 1.5])),
            ],
        )
        .unwrap()
    }

    fn select(json: &str) -> Select {
        Select::new(parse_config(json).unwrap()).unwrap()
    }

    #[test]
    fn keeps_renames_reorders() {
        let mut s = select(r#"{"columns": ["c", {"a": "alpha"}]}"#);
        let out = s.process(batch()).unwrap().remove(0);
        let names: Vec<_> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["c", "alpha"]);
        assert_eq!(out.column(1).as_primitive::<arrow_array::types::Int64Type>().value(1), 2);
        assert_eq!(out.schema(), s.output_schema(&batch().schema()).unwrap());
    }

    #[test]
    fn drop_keeps_the_rest() {
        let mut s = select(r#"{"drop": ["b"]}"#);
        let out = s.process(batch()).unwrap().remove(0);
        assert_eq!(out.num_columns(), 2);
        assert_eq!(out.schema().field(1).name(), "c");
    }

    #[test]
    fn unknown_column_is_named() {
        let s = select(r#"{"columns": ["a", "zz"]}"#);
        let e = s.output_schema(&batch().schema()).unwrap_err();
        assert!(e.message().contains("`zz`"), "{e}");
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.1"));
    }

    #[test]
    fn bad_configs() {
        assert!(parse_config::<Config>(r#"{"columns": [{"a": "x", "b": "y"}]}"#).is_err());
        assert!(parse_config::<Config>(r#"{"colums": ["a"]}"#).is_err());
        assert!(Select::new(parse_config("null").unwrap()).is_err());
        let dup = select(r#"{"columns": ["a", {"b": "a"}]}"#);
        assert!(dup.output_schema(&batch().schema()).is_err());
    }
}
