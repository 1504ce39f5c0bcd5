//! `clean`: a null policy per column and string cleanup.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use sluice_plugin::arrow_array::builder::StringBuilder;
use sluice_plugin::arrow_array::{Float64Array, Scalar};
use sluice_plugin::arrow_select;
use sluice_plugin::prelude::*;

/// What to do with the nulls of a column.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NullPolicy {
    /// Leave nulls as they are.
    Keep,
    /// Drop rows where the column is null.
    Drop,
    /// Replace nulls with a value of the column's type.
    Default(serde_json::Value),
}

/// String cleanup.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strings {
    /// Columns to clean (default: every Utf8 column).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Remove leading and trailing whitespace (default true).
    #[serde(default = "yes")]
    pub trim: bool,
    /// Collapse runs of whitespace into one space (default true).
    #[serde(default = "yes")]
    pub collapse: bool,
    /// Remove control characters (default true).
    #[serde(default = "yes")]
    pub control: bool,
    /// Turn strings that are empty after cleanup into nulls (default false).
    #[serde(default)]
    pub empty_as_null: bool,
}

fn yes() -> bool {
    true
}

/// The step's config.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub nulls: BTreeMap<String, NullPolicy>,
    #[serde(default)]
    pub strings: Option<Strings>,
}

/// The handler.
pub struct Clean {
    config: Config,
    dropped: u64,
}

/// Cleans one string into the builder's current value.
#[inline]
fn clean_into(s: &str, o: &Strings, b: &mut StringBuilder) -> bool {
    let s = if o.trim { s.trim() } else { s };
    let mut wrote = false;
    let mut pending_space = false;
    for c in s.chars() {
        if o.control && c.is_control() && !(o.collapse && c.is_whitespace()) {
            continue;
        }
        if o.collapse && c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space {
            let _ = b.write_char(' ');
            pending_space = false;
        }
        let _ = b.write_char(c);
        wrote = true;
    }
    if pending_space && !o.trim {
        let _ = b.write_char(' ');
        wrote = true;
    }
    wrote
}

impl Clean {
    fn string_columns(&self, schema: &Schema) -> Vec<String> {
        match &self.config.strings {
            None => vec![],
            Some(Strings { columns: Some(c), .. }) => c.clone(),
            Some(_) => {
                schema.fields().iter().filter(|f| f.data_type() == &DataType::Utf8).map(|f| f.name().clone()).collect()
            }
        }
    }

    fn default_scalar(v: &serde_json::Value, t: &DataType) -> Option<ArrayRef> {
        Some(match (t, v) {
            (DataType::Int64, serde_json::Value::Number(n)) => Arc::new(Int64Array::from(vec![n.as_i64()?])),
            (DataType::Float64, serde_json::Value::Number(n)) => Arc::new(Float64Array::from(vec![n.as_f64()?])),
            (DataType::Utf8, serde_json::Value::String(s)) => Arc::new(StringArray::from(vec![s.as_str()])),
            (DataType::Boolean, serde_json::Value::Bool(b)) => Arc::new(BooleanArray::from(vec![*b])),
            _ => return None,
        })
    }
}

impl Handler for Clean {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Cleans columns in place.

- `nulls` (optional): a map of column to policy: `keep`, `drop` (drop the rows
  where it is null; counted in `clean.dropped_rows`) or `{default: value}`
  (a number for Int64/Float64 columns, a string for Utf8, a boolean for Boolean).
- `strings` (optional): string cleanup of `columns` (default: every Utf8
  column): `trim` (default true), `collapse` runs of whitespace into one space
  (default true), remove `control` characters (default true), and
  `empty_as_null` (default false). Cleanup runs before the null policy.

Type mapping with a failure policy that sends rows to the rejects is not part
of this plugin yet (it needs the host's reject channel); use `cast`.

```yaml
config:
  nulls: {close: drop, volume: {default: 0}, note: keep}
  strings: {columns: [symbol, note], empty_as_null: true}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Clean { config, dropped: 0 })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        for (i, c) in self.string_columns(input).iter().enumerate() {
            let f = input.field_with_name(c).map_err(|_| {
                Error::config(format!("column `{c}` not found in the input")).key(format!("strings.columns.{i}"))
            })?;
            if f.data_type() != &DataType::Utf8 {
                return Err(Error::config(format!("column `{c}` is {}, not a string", f.data_type()))
                    .key(format!("strings.columns.{i}")));
            }
        }
        let mut fields: Vec<FieldRef> = input.fields().iter().cloned().collect();
        for (c, p) in &self.config.nulls {
            let key = format!("nulls.{c}");
            let idx = handler_kit::column_index(input, c, &key)?;
            if let NullPolicy::Default(v) = p {
                if Self::default_scalar(v, fields[idx].data_type()).is_none() {
                    return Err(Error::config(format!(
                        "default {v} does not fit column `{c}` of type {}",
                        fields[idx].data_type()
                    ))
                    .key(key));
                }
                // Filled columns have no nulls left.
                fields[idx] = Arc::new(fields[idx].as_ref().clone().with_nullable(false));
            }
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let mut cols = batch.columns().to_vec();
        if let Some(o) = &self.config.strings {
            for c in self.string_columns(&batch.schema()) {
                let i = batch.schema().index_of(&c)?;
                let s = cols[i].as_string::<i32>();
                let mut b = StringBuilder::with_capacity(s.len(), s.value_data().len());
                for v in s.iter() {
                    match v {
                        None => b.append_null(),
                        Some(v) => {
                            let wrote = clean_into(v, o, &mut b);
                            if !wrote && o.empty_as_null {
                                b.append_null();
                            } else {
                                b.append_value("");
                            }
                        }
                    }
                }
                cols[i] = Arc::new(b.finish());
            }
        }
        let mut keep: Option<BooleanArray> = None;
        for (c, p) in &self.config.nulls {
            let i = batch.schema().index_of(c)?;
            match p {
                NullPolicy::Keep => {}
                NullPolicy::Drop => {
                    let valid = arrow_arith_is_not_null(&cols[i]);
                    keep = Some(match keep {
                        None => valid,
                        Some(k) => BooleanArray::new(k.values() & valid.values(), None),
                    });
                }
                NullPolicy::Default(v) => {
                    if cols[i].null_count() > 0 {
                        let d = Self::default_scalar(v, cols[i].data_type()).expect("checked");
                        let mask = arrow_arith_is_not_null(&cols[i]);
                        cols[i] = arrow_select::zip::zip(&mask, &cols[i], &Scalar::new(d))?;
                    }
                    // The declared field is non-nullable: rebuild the array without a null buffer.
                    cols[i] =
                        sluice_plugin::arrow_array::make_array(cols[i].to_data().into_builder().nulls(None).build()?);
                }
            }
        }
        let out = RecordBatch::try_new(schema, cols)?;
        Ok(match keep {
            None => vec![out],
            Some(k) => {
                let n = k.true_count();
                self.dropped += (out.num_rows() - n) as u64;
                match n {
                    0 => vec![],
                    n if n == out.num_rows() => vec![out],
                    _ => vec![arrow_select::filter::filter_record_batch(&out, &k)?],
                }
            }
        })
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        if self.dropped > 0 {
            sluice_plugin::counter_add("clean.dropped_rows", self.dropped);
            self.dropped = 0;
        }
        Ok(vec![])
    }
}

/// A validity mask (no nulls) of `a`.
fn arrow_arith_is_not_null(a: &ArrayRef) -> BooleanArray {
    match a.logical_nulls() {
        None => BooleanArray::from(vec![true; a.len()]),
        Some(n) => BooleanArray::new(n.inner().clone(), None),
    }
}

sluice_plugin::export_handler!(Clean);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::{Float64Type, Int64Type};
    use sluice_plugin::parse_config;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("  a \t b\u{7}  "), Some("   "), None, Some("ok")])),
                Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0), Some(4.0)])),
                Arc::new(Int64Array::from(vec![None, Some(2), Some(3), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn strings_and_null_policies() {
        let cfg = r#"{"nulls":{"x":"drop","n":{"default":0}},"strings":{"empty_as_null":true}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = c.process(batch()).unwrap().remove(0);
        assert_eq!(out.num_rows(), 3);
        assert_eq!(out.column(0).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a b"), None, Some("ok")]);
        assert_eq!(out.column(1).as_primitive::<Float64Type>().values().to_vec(), vec![1.0, 3.0, 4.0]);
        assert_eq!(out.column(2).as_primitive::<Int64Type>().values().to_vec(), vec![0, 3, 0]);
        assert_eq!(out.column(2).null_count(), 0);
        assert!(!out.schema().field(2).is_nullable());
    }

    #[test]
    fn no_collapse_keeps_inner_whitespace() {
        let cfg = r#"{"strings":{"collapse":false,"trim":true,"control":true}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = c.process(batch()).unwrap().remove(0);
        // The tab and the bell are control characters.
        assert_eq!(out.column(0).as_string::<i32>().value(0), "a  b");
        let cfg = r#"{"strings":{"collapse":false,"control":false}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = c.process(batch()).unwrap().remove(0);
        assert_eq!(out.column(0).as_string::<i32>().value(0), "a \t b\u{7}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let c = Clean::new(parse_config(r#"{"nulls":{"s":{"default":1}}}"#).unwrap()).unwrap();
        let e = c.output_schema(&batch().schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "nulls.s"), "{e}");
        let e = parse_config::<Config>(r#"{"nulls":{"s":"zero"}}"#).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k.starts_with("nulls.s")), "{e}");
        let e = parse_config::<Config>(r#"{"strings":{"trim":true,"lower":true}}"#).unwrap_err();
        assert!(e.message().contains("lower"), "{e}");
    }
}
