//! `clean`: a null policy per column, string cleanup, and type mapping with a failure policy.

pub mod types;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use sluice_plugin::arrow_array::builder::StringBuilder;
use sluice_plugin::arrow_array::{Float64Array, RecordBatchOptions, Scalar};
use sluice_plugin::arrow_select;
use sluice_plugin::patch::{self, row_field};
use sluice_plugin::prelude::*;
use sluice_plugin::reject::with_reject_column;

pub use types::{Mapping, OnFail, Target};

/// What to do with the nulls of a column.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NullPolicy {
    /// Leave nulls as they are.
    Keep,
    /// Drop rows where the column is null (counted in `clean.dropped_rows`).
    Drop,
    /// Send rows where the column is null to the lake's `_rejects`, with the reason
    /// ``column `x` is null``.
    Reject,
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

/// The `nulls` key that stands for every column the map does not name.
pub const EVERY_COLUMN: &str = "*";

/// The step's config.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `{column: policy}`; `"*"` is the policy of every column not named (`drop`, `reject` or
    /// `keep`).
    #[serde(default)]
    pub nulls: BTreeMap<String, NullPolicy>,
    #[serde(default)]
    pub strings: Option<Strings>,
    /// `{column: type}` or `{column: {type, unit, format, on_fail}}`.
    #[serde(default)]
    pub types: BTreeMap<String, serde_json::Value>,
    /// What happens to a value that does not convert, for mappings that do not say.
    #[serde(default)]
    pub on_fail: OnFail,
}

/// The handler.
pub struct Clean {
    config: Config,
    types: Vec<Mapping>,
    /// The columns read, when the config names them all (see [`Clean::reads`]).
    reads: Option<Vec<String>>,
    dropped: u64,
    rejected: u64,
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
    /// Whether some mapping or null policy sends rows to the rejects (the output has the reject
    /// column).
    fn rejects(&self) -> bool {
        self.types.iter().any(|m| m.on_fail == OnFail::Reject)
            || self.config.nulls.values().any(|p| *p == NullPolicy::Reject)
    }

    /// The null policy of each column of `schema` that has one: the columns named, and with
    /// `"*"` every other column, in the schema's order.
    fn null_policies<'a>(&'a self, schema: &'a Schema) -> Vec<(&'a str, &'a NullPolicy)> {
        let nulls = &self.config.nulls;
        match nulls.get(EVERY_COLUMN) {
            None => nulls.iter().map(|(c, p)| (c.as_str(), p)).collect(),
            Some(every) => {
                schema.fields().iter().map(|f| (f.name().as_str(), nulls.get(f.name()).unwrap_or(every))).collect()
            }
        }
    }

    /// Whether some null policy drops rows (a patch then selects the rows it keeps).
    fn drops(&self) -> bool {
        self.config.nulls.values().any(|p| *p == NullPolicy::Drop)
    }

    /// Every column the config names, or `None` when `strings` has no `columns` (it then
    /// cleans every Utf8 column, which only the whole batch shows) or `nulls` has `"*"`.
    fn reads(config: &Config) -> Option<Vec<String>> {
        if config.nulls.contains_key(EVERY_COLUMN) {
            return None;
        }
        let strings = match &config.strings {
            None => &[][..],
            Some(Strings { columns: Some(c), .. }) => c.as_slice(),
            Some(_) => return None,
        };
        let mut reads: Vec<String> = Vec::new();
        for c in strings.iter().chain(config.types.keys()).chain(config.nulls.keys()) {
            if !reads.contains(c) {
                reads.push(c.clone());
            }
        }
        Some(reads)
    }

    /// Whether the column's values can change (a column only dropped on or kept as it is
    /// passes through).
    fn changes(&self, column: &str) -> bool {
        self.config.strings.as_ref().and_then(|s| s.columns.as_ref()).is_some_and(|c| c.iter().any(|c| c == column))
            || self.config.types.contains_key(column)
            || matches!(self.config.nulls.get(column), Some(NullPolicy::Default(_)))
    }

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
  where it is null, silently; counted in `clean.dropped_rows`), `reject` (send
  them to the lake's `_rejects` with the reason ``column `close` is null``;
  counted in `clean.rejected_rows`) or `{default: value}` (a number for
  Int64/Float64 columns, a string for Utf8, a boolean for Boolean). The key
  `\"*\"` gives the policy of every column the map does not name (`drop`,
  `reject` or `keep`): `nulls: {\"*\": drop}` drops the rows with any null
  field (pandas `dropna()`), `nulls: {\"*\": drop, note: keep}` all but `note`.
  With `\"*\"` the step reads whole batches, not just the columns it names.
- `strings` (optional): string cleanup of `columns` (default: every Utf8
  column): `trim` (default true), `collapse` runs of whitespace into one space
  (default true), remove `control` characters (default true), and
  `empty_as_null` (default false). Cleanup runs before the null policy.

- `types` (optional): a map of column to target type, `int64`, `float64`,
  `bool`, `date`, `timestamp` or `utf8`, or to `{type, unit, format, on_fail}`:
  `unit` of a timestamp (`s`, `ms` (default), `us`, `ns`); `format` of a date
  or timestamp read from text, strftime style (`%d/%m/%Y %H:%M:%S`; default
  ISO 8601: `2024-01-02`, `2024-01-02T03:04:05Z`, `2024-01-02 03:04:05.123`);
  `on_fail` (default: the top-level `on_fail`).
- `on_fail` (optional, default `reject`): what happens to a value that does
  not convert (`x7` to int64, `3.5` to int64, `2024-02-30` to date):
  `reject` sends the row to the lake's `_rejects` with the reason
  ``column `qty`: `x7` is not a valid int64`` (counted in `clean.rejected_rows`);
  `null` makes the value null; `fail` fails the file (the step's `on_error`
  applies).

Order: string cleanup, then types, then the null policy (a rejected row is
never dropped by `drop`: it goes to `_rejects`; a value that failed its type
mapping with `on_fail: null` is null by then, so `drop` or `reject` apply).

```yaml
config:
  nulls: {close: drop, volume: {default: 0}, note: keep}
  strings: {columns: [symbol, note], empty_as_null: true}
  types:
    qty: int64
    price: {type: float64, on_fail: null}
    day: {type: date, format: \"%d/%m/%Y\"}
    ts: {type: timestamp, unit: ms}
  on_fail: reject
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if let Some(NullPolicy::Default(_)) = config.nulls.get(EVERY_COLUMN) {
            return Err(Error::config(
                "`\"*\"` (every column) takes `drop`, `reject` or `keep`; give defaults per column",
            )
            .key(format!("nulls.{EVERY_COLUMN}")));
        }
        let types = types::parse(&config.types, config.on_fail)?;
        let reads = Self::reads(&config);
        Ok(Clean { config, types, reads, dropped: 0, rejected: 0 })
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
        for m in &self.types {
            let idx = handler_kit::column_index(input, &m.column, &format!("types.{}", m.column))?;
            types::check(m, fields[idx].data_type())?;
            fields[idx] = Arc::new(Field::new(&m.column, m.data_type(), true));
        }
        for (c, p) in &self.config.nulls {
            if c == EVERY_COLUMN {
                continue;
            }
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
        if self.reads.is_some() {
            // A patch: the columns that change, the reject column, the rows kept.
            fields.retain(|f| self.changes(f.name()));
            if self.rejects() {
                fields.push(sluice_plugin::reject::reject_field());
            }
            if self.drops() {
                fields.push(row_field());
            }
            return Ok(Arc::new(Schema::new(fields)));
        }
        let out = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        Ok(if self.rejects() { with_reject_column(&out) } else { out })
    }

    /// With `strings.columns` given (or no `strings`), reads only the columns the config names
    /// and returns a patch: the converted, cleaned and filled columns, the reject column, and
    /// with a `drop` policy the rows kept.
    fn projection(&self) -> Option<Vec<String>> {
        self.reads.clone()
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
        let mut rejects = Rejects::new(batch.num_rows());
        // Rows a mapping rejected, by column: their value is null now, but not "is null".
        let mut failed_rows: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for m in &self.types {
            let i = batch.schema().index_of(&m.column)?;
            let (converted, failed) = types::convert(m, &cols[i])?;
            for &row in &failed {
                let reason = format!(
                    "column `{}`: `{}` is not a valid {}",
                    m.column,
                    types::render(&cols[i], row),
                    m.describe()
                );
                match m.on_fail {
                    OnFail::Null => {}
                    OnFail::Reject => {
                        rejects.reject(row, reason);
                        failed_rows.entry(m.column.as_str()).or_default().push(row);
                    }
                    OnFail::Fail => return Err(Error::data(reason).row(row).column(&m.column)),
                }
            }
            cols[i] = converted;
        }
        let mut keep: Option<BooleanArray> = None;
        let input_schema = batch.schema();
        for (c, p) in self.null_policies(&input_schema) {
            let i = input_schema.index_of(c)?;
            match p {
                NullPolicy::Keep => {}
                NullPolicy::Reject => {
                    if let Some(nulls) = cols[i].logical_nulls() {
                        let failed = failed_rows.get(c).map_or(&[][..], Vec::as_slice);
                        for row in (0..nulls.len()).filter(|&r| nulls.is_null(r)) {
                            if failed.binary_search(&row).is_err() {
                                rejects.reject(row, format!("column `{c}` is null"));
                            }
                        }
                    }
                }
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
        if self.reads.is_some() {
            // The patch's columns: those that change (the others pass through on the host).
            let input = batch.schema();
            cols =
                schema.fields().iter().filter_map(|f| input.index_of(f.name()).ok().map(|i| cols[i].clone())).collect();
        }
        self.rejected += rejects.count() as u64;
        if self.rejects() {
            cols.push(rejects.to_array());
            // Rows set aside reach the host's `_rejects`, whatever the null policy says.
            if let Some(k) = keep.as_mut().filter(|_| rejects.count() > 0) {
                let kept: Vec<bool> = (0..k.len()).map(|i| k.value(i) || rejects.is_rejected(i)).collect();
                *k = BooleanArray::from(kept);
            }
        }
        let mut len = batch.num_rows();
        if let Some(k) = keep {
            let n = k.true_count();
            self.dropped += (len - n) as u64;
            if n == 0 {
                return Ok(vec![]);
            }
            if n < len {
                cols = cols.iter().map(|c| arrow_select::filter::filter(c, &k)).collect::<Result<_, _>>()?;
            }
            if self.reads.is_some() {
                cols.push(patch::rows(k.values().set_indices().map(|i| i as u32).collect()));
            }
            len = n;
        }
        // A patch may have no columns (`nulls: {x: keep}` changes nothing), only rows.
        let options = RecordBatchOptions::new().with_row_count(Some(len));
        Ok(vec![RecordBatch::try_new_with_options(schema, cols, &options)?])
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        if self.dropped > 0 {
            sluice_plugin::counter_add("clean.dropped_rows", self.dropped);
            self.dropped = 0;
        }
        if self.rejected > 0 {
            sluice_plugin::counter_add("clean.rejected_rows", self.rejected);
            self.rejected = 0;
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
    use sluice_plugin::{parse_config, patch};

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
        let out = patch::process(&mut c, &batch()).unwrap().remove(0);
        assert_eq!(out.num_rows(), 3);
        assert_eq!(out.column(0).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a b"), None, Some("ok")]);
        assert_eq!(out.column(1).as_primitive::<Float64Type>().values().to_vec(), vec![1.0, 3.0, 4.0]);
        assert_eq!(out.column(2).as_primitive::<Int64Type>().values().to_vec(), vec![0, 3, 0]);
        assert_eq!(out.column(2).null_count(), 0);
        assert!(!out.schema().field(2).is_nullable());
    }

    #[test]
    fn named_columns_are_read_and_patched_the_same_as_whole_batches() {
        let whole = r#"{"nulls":{"x":"drop","n":{"default":0},"s":"keep"},"strings":{"empty_as_null":true}}"#;
        let named =
            r#"{"nulls":{"x":"drop","n":{"default":0},"s":"keep"},"strings":{"columns":["s"],"empty_as_null":true}}"#;
        let mut w = Clean::new(parse_config(whole).unwrap()).unwrap();
        let mut c = Clean::new(parse_config(named).unwrap()).unwrap();
        // Every Utf8 column is cleaned: only the whole batch tells which.
        assert!(w.projection().is_none());
        assert_eq!(c.projection().unwrap(), ["s", "n", "x"]);
        let mut b = batch();
        b = {
            let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.insert(0, Field::new("extra", DataType::Int64, false));
            let mut cols = b.columns().to_vec();
            cols.insert(0, Arc::new(Int64Array::from(vec![10, 20, 30, 40])));
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
        };
        // The patch: the cleaned `s`, the filled `n`, and the rows kept (`x` only selects).
        let p = c.process(patch::project(&b, &c.projection().unwrap())).unwrap().remove(0);
        let names: Vec<_> = p.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["s", "n", ROW_COLUMN]);
        assert_eq!(
            p.column(2).as_primitive::<sluice_plugin::arrow_array::types::UInt32Type>().values().to_vec(),
            [0, 2, 3]
        );
        let out = patch::process(&mut c, &b).unwrap();
        assert_eq!(out, patch::process(&mut w, &b).unwrap());
        assert_eq!(out[0].schema(), patch::output_schema(&c, &b.schema()).unwrap());
        assert_eq!(out[0].column(0).as_primitive::<Int64Type>().values().to_vec(), vec![10, 30, 40]);
        assert!(!out[0].schema().field(3).is_nullable());
        assert_eq!(c.dropped, 2, "row 1, in each of the two calls");
        // Nothing changes and nothing drops: an empty patch, and the batch as it was.
        let mut k = Clean::new(parse_config(r#"{"nulls":{"x":"keep"}}"#).unwrap()).unwrap();
        assert_eq!(k.projection().unwrap(), ["x"]);
        assert_eq!(patch::process(&mut k, &b).unwrap(), vec![b]);
    }

    #[test]
    fn every_column_drop_drops_rows_with_any_null() {
        // Rows: 0 n null; 1 x null; 2 s null; 3 n null. Only a row without nulls stays.
        let mut b = batch();
        let extra = Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), Some(4)])) as ArrayRef;
        let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("id", DataType::Int64, true));
        let mut cols = b.columns().to_vec();
        cols.push(extra);
        b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let mut c = Clean::new(parse_config(r#"{"nulls":{"*":"drop"}}"#).unwrap()).unwrap();
        assert!(c.projection().is_none(), "every column is read");
        let out = patch::process(&mut c, &b).unwrap();
        assert!(out.is_empty(), "every row has a null: {out:?}");
        assert_eq!(c.dropped, 4);
        // A column named explicitly keeps its own policy: `n` filled, `s` kept.
        let cfg = r#"{"nulls":{"*":"drop","n":{"default":0},"s":"keep"}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut c, &b).unwrap().remove(0);
        assert_eq!(out.schema().fields().len(), 4);
        assert_eq!(out.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec(), vec![1, 3, 4]);
        assert_eq!(out.column_by_name("n").unwrap().as_primitive::<Int64Type>().values().to_vec(), vec![0, 3, 0]);
        assert_eq!(c.dropped, 1);
        c.finish().unwrap();
        // The same as naming every column.
        let named = r#"{"nulls":{"x":"drop","id":"drop","n":{"default":0},"s":"keep"}}"#;
        let mut k = Clean::new(parse_config(named).unwrap()).unwrap();
        assert_eq!(patch::process(&mut k, &b).unwrap().remove(0), out);
    }

    #[test]
    fn reject_policy_sends_null_rows_to_the_rejects_with_the_column() {
        let cfg = r#"{"nulls":{"*":"reject","s":"keep"}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut c, &batch()).unwrap().remove(0);
        assert_eq!(out.num_rows(), 4, "the host sets the rejected rows aside");
        assert_eq!(
            reasons(&out),
            vec![
                Some("column `n` is null".into()),
                Some("column `x` is null".into()),
                None,
                Some("column `n` is null".into())
            ]
        );
        assert_eq!(c.rejected, 3);
        // Per column, as a patch; with a type mapping, a value that failed to convert is
        // rejected for that, not for being null.
        let cfg = r#"{"types":{"qty":"int64"},"nulls":{"qty":"reject","x":"reject"}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        assert_eq!(c.projection().unwrap(), ["qty", "x"]);
        let out = patch::process(&mut c, &raw()).unwrap().remove(0);
        assert_eq!(
            reasons(&out),
            vec![
                None,
                Some("column `qty`: `x7` is not a valid int64".into()),
                Some("column `qty` is null; column `x` is null".into()),
                None
            ]
        );
        // `*` takes no default.
        let e = Clean::new(parse_config(r#"{"nulls":{"*":{"default":0}}}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "nulls.*"), "{e}");
    }

    #[test]
    fn no_collapse_keeps_inner_whitespace() {
        let cfg = r#"{"strings":{"collapse":false,"trim":true,"control":true}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut c, &batch()).unwrap().remove(0);
        // The tab and the bell are control characters.
        assert_eq!(out.column(0).as_string::<i32>().value(0), "a  b");
        let cfg = r#"{"strings":{"collapse":false,"control":false}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut c, &batch()).unwrap().remove(0);
        assert_eq!(out.column(0).as_string::<i32>().value(0), "a \t b\u{7}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let c = Clean::new(parse_config(r#"{"nulls":{"s":{"default":1}}}"#).unwrap()).unwrap();
        let e = patch::output_schema(&c, &batch().schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "nulls.s"), "{e}");
        let e = parse_config::<Config>(r#"{"nulls":{"s":"zero"}}"#).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k.starts_with("nulls.s")), "{e}");
        let e = parse_config::<Config>(r#"{"strings":{"trim":true,"lower":true}}"#).unwrap_err();
        assert!(e.message().contains("lower"), "{e}");
    }

    fn raw() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("qty", DataType::Utf8, true),
            Field::new("px", DataType::Utf8, true),
            Field::new("day", DataType::Utf8, true),
            Field::new("ts", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("12"), Some("x7"), None, Some("-3")])),
                Arc::new(StringArray::from(vec![Some("1.5"), Some("2"), Some("abc"), Some("1e3")])),
                Arc::new(StringArray::from(vec![Some("02/01/2024"), Some("31/02/2024"), Some("01/03/2024"), None])),
                Arc::new(StringArray::from(vec![
                    Some("2024-01-02T03:04:05Z"),
                    Some("2024-01-02 03:04:05.5"),
                    Some("yesterday"),
                    None,
                ])),
                Arc::new(Float64Array::from(vec![Some(1.0), Some(2.5), None, Some(-4.0)])),
            ],
        )
        .unwrap()
    }

    fn reasons(b: &RecordBatch) -> Vec<Option<String>> {
        b.column_by_name(REJECT_COLUMN).unwrap().as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
    }

    #[test]
    fn types_convert_and_reject_with_reasons() {
        let cfg = r#"{"types": {"qty": "int64", "px": {"type": "float64", "on_fail": "null"},
            "day": {"type": "date", "format": "%d/%m/%Y"}, "ts": {"type": "timestamp", "unit": "ms"}, "x": "int64"}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let schema = patch::output_schema(&c, &raw().schema()).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(2).data_type(), &DataType::Date32);
        assert_eq!(schema.field(3).data_type(), &DataType::Timestamp(TimeUnit::Millisecond, None));
        assert_eq!(schema.field(5).name(), REJECT_COLUMN);
        let out = patch::process(&mut c, &raw()).unwrap().remove(0);
        assert_eq!(
            out.column(0).as_primitive::<Int64Type>().iter().collect::<Vec<_>>(),
            vec![Some(12), None, None, Some(-3)]
        );
        assert_eq!(
            out.column(1).as_primitive::<Float64Type>().iter().collect::<Vec<_>>(),
            vec![Some(1.5), Some(2.0), None, Some(1000.0)]
        );
        let days = out.column(2).as_primitive::<sluice_plugin::arrow_array::types::Date32Type>();
        assert_eq!(days.iter().collect::<Vec<_>>(), vec![Some(19724), None, Some(19783), None]);
        let ts = out.column(3).as_primitive::<sluice_plugin::arrow_array::types::TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_704_164_645_000);
        assert_eq!(ts.value(1), 1_704_164_645_500);
        assert_eq!(
            reasons(&out),
            vec![
                None,
                Some("column `day`: `31/02/2024` is not a valid date; column `qty`: `x7` is not a valid int64; column `x`: `2.5` is not a valid int64".into()),
                Some("column `ts`: `yesterday` is not a valid timestamp[ms]".into()),
                None
            ]
        );
        assert_eq!(c.rejected, 2);
    }

    #[test]
    fn on_fail_fail_is_a_data_error_and_null_keeps_no_reject_column() {
        let mut c = Clean::new(parse_config(r#"{"types": {"qty": "int64"}, "on_fail": "fail"}"#).unwrap()).unwrap();
        let e = patch::process(&mut c, &raw()).unwrap_err();
        assert!(matches!(e, Error::Data { row: Some(1), column: Some(ref col), .. } if col == "qty"), "{e}");
        let c = Clean::new(parse_config(r#"{"types": {"qty": "int64"}, "on_fail": "null"}"#).unwrap()).unwrap();
        assert!(patch::output_schema(&c, &raw().schema()).unwrap().index_of(REJECT_COLUMN).is_err());
    }

    #[test]
    fn rejected_rows_are_not_dropped_by_the_null_policy() {
        let cfg = r#"{"types": {"qty": "int64"}, "nulls": {"qty": "drop"}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut c, &raw()).unwrap().remove(0);
        // Row 2 (null qty) is dropped; row 1 (x7) stays, to be set aside by the host.
        assert_eq!(out.num_rows(), 3);
        assert_eq!(reasons(&out)[1].as_deref(), Some("column `qty`: `x7` is not a valid int64"));
    }

    #[test]
    fn type_config_errors_name_the_key() {
        let e = Clean::new(parse_config(r#"{"types": {"qty": "int65"}}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "types.qty"), "{e}");
        let e =
            Clean::new(parse_config(r#"{"types": {"qty": {"type": "int64", "unit": "ms"}}}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "types.qty.unit"), "{e}");
        let e =
            Clean::new(parse_config(r#"{"types": {"qty": {"type": "date", "fmt": "%d"}}}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k.starts_with("types.qty")), "{e}");
        let c = Clean::new(parse_config(r#"{"types": {"nope": "int64"}}"#).unwrap()).unwrap();
        let e = patch::output_schema(&c, &raw().schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "types.nope"), "{e}");
        let c = Clean::new(parse_config(r#"{"types": {"x": {"type": "date", "format": "%d"}}}"#).unwrap()).unwrap();
        let e = patch::output_schema(&c, &raw().schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "types.x.format"), "{e}");
    }

    #[test]
    fn types_from_numbers_booleans_and_timestamps() {
        use sluice_plugin::arrow_array::TimestampSecondArray;
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Second, None), true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1_700_000_000_000), None])),
                Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
                Arc::new(TimestampSecondArray::from(vec![Some(1_700_000_000), None])),
                Arc::new(Int64Array::from(vec![Some(42), Some(-1)])),
            ],
        )
        .unwrap();
        let cfg =
            r#"{"types": {"i": "timestamp", "b": "int64", "t": {"type": "timestamp", "unit": "ms"}, "n": "utf8"}}"#;
        let mut c = Clean::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut c, &batch).unwrap().remove(0);
        let i = out.column(0).as_primitive::<sluice_plugin::arrow_array::types::TimestampMillisecondType>();
        assert_eq!(i.iter().collect::<Vec<_>>(), vec![Some(1_700_000_000_000), None]);
        assert_eq!(out.column(1).as_primitive::<Int64Type>().values().to_vec(), vec![1, 0]);
        let t = out.column(2).as_primitive::<sluice_plugin::arrow_array::types::TimestampMillisecondType>();
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![Some(1_700_000_000_000), None]);
        assert_eq!(out.column(3).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("42"), Some("-1")]);
        assert_eq!(reasons(&out), vec![None, None]);
        // A date column cannot become an int64.
        let c = Clean::new(parse_config(r#"{"types": {"d": "int64"}}"#).unwrap()).unwrap();
        let s = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let e = patch::output_schema(&c, &s).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "types.d"), "{e}");
    }
}
