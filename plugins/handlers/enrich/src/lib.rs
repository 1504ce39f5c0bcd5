//! `enrich`: joins a small lookup table (read by the host from the step's `tables:`) on key
//! columns, adding chosen table columns to every input row.

use std::collections::BTreeMap;
use std::sync::Arc;

use handler_kit::keys::{KeyMap, key_columns, supported};
use sluice_plugin::arrow_array::{RecordBatchOptions, UInt32Array};
use sluice_plugin::arrow_cast::display::{ArrayFormatter, FormatOptions};
use sluice_plugin::arrow_select;
use sluice_plugin::patch::{self, row_field};
use sluice_plugin::prelude::*;

/// One key: the same column name on both sides, or `{input_column: table_column}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum KeyRef {
    Same(String),
    Pair(BTreeMap<String, String>),
}

/// How rows without a match are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// Keep them, with nulls in the added columns.
    #[default]
    Left,
    /// Drop them.
    Inner,
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The lookup table: a name under the step's `tables:` (default: the step's only table).
    #[serde(default)]
    pub table: Option<String>,
    /// Key columns.
    pub on: Vec<KeyRef>,
    /// Table columns to add (default: every table column that is not a key).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Output names of added columns: `{table_column: new_name}`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// `left` (default) or `inner`.
    #[serde(default)]
    pub how: How,
}

/// The handler.
pub struct Enrich {
    how: How,
    table_name: String,
    /// (input column, table column) per key.
    keys: Vec<(String, String)>,
    /// The table, as one batch.
    table: RecordBatch,
    /// Added columns: (index in the table, output name).
    added: Vec<(usize, String)>,
    /// Table keys to slots; `slot_row[slot]` is the slot's table row.
    map: KeyMap,
    slot_row: Vec<u32>,
    found: Vec<Option<u32>>,
    unmatched: u64,
}

/// The join-compatibility class of a key type (how `KeyMap` encodes it).
fn key_class(t: &DataType) -> String {
    match t {
        DataType::Dictionary(_, v) => key_class(v),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Float32 | DataType::Float64 => "float".into(),
        t if t.is_integer() => "integer".into(),
        t => t.to_string(),
    }
}

fn render(a: &dyn Array, row: usize) -> String {
    match ArrayFormatter::try_new(a, &FormatOptions::default()) {
        Ok(f) => f.value(row).to_string(),
        Err(_) => "?".into(),
    }
}

impl Handler for Enrich {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Joins a lookup table on key columns and appends the table's columns to each row.
The table comes from the step's `tables:` (a CSV file with a header line, types
inferred, or a Parquet file, at most 64 MiB, read by the host).

- `table` (optional): the table's name under `tables:`; default: the only one.
- `on` (required): key columns, each a name both sides share (`symbol`) or a
  map `{input_column: table_column}`. Key types must match in kind (text,
  integer, float, ...). Null keys never match.
- `columns` (optional): the table columns to add, in order; default: every
  table column that is not a key.
- `rename` (optional): `{table_column: output_name}` for added columns.
- `how` (optional): `left` (default: every input row; nulls where no table row
  matches, counted in `enrich.unmatched_rows`) or `inner` (rows without a
  match are dropped).

A table with two rows for the same key is a config error naming the table and
the key. Added columns must not clash with input columns.

```yaml
- plugin: enrich
  tables: {symbols: ref/symbols.csv}
  config:
    on: [symbol]                 # or [{symbol: ticker}]
    columns: [name, tick_size]
    rename: {name: symbol_name}
    how: left
```
";

    fn new(config: Config) -> Result<Self, Error> {
        Self::new_with_tables(config, Tables::default())
    }

    fn new_with_tables(config: Config, tables: Tables) -> Result<Self, Error> {
        let table = match &config.table {
            Some(name) => tables.require(name, "table")?,
            None => match tables.len() {
                1 => tables.iter().next().expect("one table"),
                0 => {
                    return Err(Error::config("enrich needs a lookup table: give the step `tables: {name: file.csv}`"));
                }
                _ => {
                    return Err(Error::config(format!(
                        "the step has several tables ({}): say which with `table`",
                        tables.names().join(", ")
                    ))
                    .key("table"));
                }
            },
        };
        if config.on.is_empty() {
            return Err(Error::config("list at least one key column").key("on"));
        }
        let schema = table.schema.clone();
        let mut keys = Vec::new();
        for (i, k) in config.on.iter().enumerate() {
            let (input, col) = match k {
                KeyRef::Same(c) => (c.clone(), c.clone()),
                KeyRef::Pair(m) if m.len() == 1 => m.iter().next().map(|(a, b)| (a.clone(), b.clone())).expect("one"),
                KeyRef::Pair(_) => {
                    return Err(Error::config("a key is a column name or one `{input_column: table_column}` pair")
                        .key(format!("on.{i}")));
                }
            };
            let f = schema.field_with_name(&col).map_err(|_| {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Error::config(format!(
                    "table `{}` has no column `{col}` (its columns: {})",
                    table.name,
                    have.join(", ")
                ))
                .key(format!("on.{i}"))
            })?;
            if !supported(f.data_type()) {
                return Err(Error::config(format!(
                    "key column `{col}` of table `{}` has unsupported type {}",
                    table.name,
                    f.data_type()
                ))
                .key(format!("on.{i}")));
            }
            keys.push((input, col));
        }
        let columns: Vec<String> = match &config.columns {
            Some(c) => c.clone(),
            None => {
                schema.fields().iter().map(|f| f.name().clone()).filter(|n| !keys.iter().any(|(_, k)| k == n)).collect()
            }
        };
        let mut added = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            let idx = schema.index_of(c).map_err(|_| {
                Error::config(format!("table `{}` has no column `{c}`", table.name)).key(format!("columns.{i}"))
            })?;
            let out = config.rename.get(c).cloned().unwrap_or_else(|| c.clone());
            if added.iter().any(|(_, o)| o == &out) {
                return Err(Error::config(format!("column `{out}` is added twice")).key(format!("columns.{i}")));
            }
            added.push((idx, out));
        }
        for from in config.rename.keys() {
            if !columns.contains(from) {
                return Err(
                    Error::config(format!("`{from}` is not one of the added columns")).key(format!("rename.{from}"))
                );
            }
        }
        let batch = table.concat()?;
        // Index the table's keys; two rows with the same (non-null) key are an error.
        let cols: Vec<ArrayRef> = keys.iter().map(|(_, k)| batch.column_by_name(k).expect("checked").clone()).collect();
        let refs: Vec<&ArrayRef> = cols.iter().collect();
        let mut map = KeyMap::default();
        let mut slots = Vec::new();
        map.slots(&refs, batch.num_rows(), &mut slots)?;
        let mut slot_row = vec![u32::MAX; map.len()];
        for (row, &s) in slots.iter().enumerate() {
            if cols.iter().any(|c| c.is_null(row)) {
                continue;
            }
            let first = slot_row[s as usize];
            if first != u32::MAX {
                let key: Vec<String> =
                    keys.iter().zip(&cols).map(|((_, k), c)| format!("{k}={}", render(c.as_ref(), row))).collect();
                return Err(Error::config(format!(
                    "table `{}` has more than one row for key {} (rows {} and {}): a lookup key must be unique",
                    table.name,
                    key.join(", "),
                    first + 1,
                    row + 1
                ))
                .key("on"));
            }
            slot_row[s as usize] = row as u32;
        }
        Ok(Enrich {
            how: config.how,
            table_name: table.name.clone(),
            keys,
            table: batch,
            added,
            map,
            slot_row,
            found: Vec::new(),
            unmatched: 0,
        })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        let tschema = self.table.schema();
        for (i, (inp, col)) in self.keys.iter().enumerate() {
            let f = input
                .field_with_name(inp)
                .map_err(|_| Error::config(format!("column `{inp}` not found in the input")).key(format!("on.{i}")))?;
            let t = tschema.field_with_name(col).expect("checked").data_type();
            if key_class(f.data_type()) != key_class(t) {
                return Err(Error::config(format!(
                    "key `{inp}` is {} in the input but `{col}` is {t} in table `{}`",
                    f.data_type(),
                    self.table_name
                ))
                .key(format!("on.{i}")));
            }
        }
        for (i, (idx, out)) in self.added.iter().enumerate() {
            if input.index_of(out).is_ok() {
                let from = tschema.field(*idx).name();
                let key = if from == out { format!("columns.{i}") } else { format!("rename.{from}") };
                return Err(Error::config(format!("column `{out}` already exists in the input")).key(key));
            }
        }
        // A patch of the added columns; an inner join also selects the rows that matched.
        let mut fields: Vec<FieldRef> = self
            .added
            .iter()
            .map(|(idx, out)| Arc::new(Field::new(out, tschema.field(*idx).data_type().clone(), true)))
            .collect();
        if self.how == How::Inner {
            fields.push(row_field());
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Reads the key columns, and the added columns' names: they are not in a valid input, so
    /// nothing more is sent, but when one is, the clash is reported with its config key.
    fn projection(&self) -> Option<Vec<String>> {
        let keys = self.keys.iter().map(|(input, _)| input);
        Some(keys.chain(self.added.iter().map(|(_, out)| out)).cloned().collect())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let names: Vec<String> = self.keys.iter().map(|(i, _)| i.clone()).collect();
        let cols = key_columns(&batch, &names)?;
        let mut found = std::mem::take(&mut self.found);
        self.map.lookup(&cols, batch.num_rows(), false, &mut found)?;
        let rows: Vec<Option<u32>> = found.iter().map(|s| s.map(|s| self.slot_row[s as usize])).collect();
        let rows: Vec<Option<u32>> = rows.into_iter().map(|r| r.filter(|&r| r != u32::MAX)).collect();
        self.found = found;
        let matched = rows.iter().filter(|r| r.is_some()).count();
        self.unmatched += (batch.num_rows() - matched) as u64;
        let (idx, selected) = match self.how {
            How::Left => (UInt32Array::from(rows), None),
            How::Inner => {
                if matched == 0 {
                    return Ok(vec![]);
                }
                let selected: Vec<u32> = (0..rows.len() as u32).filter(|&i| rows[i as usize].is_some()).collect();
                (UInt32Array::from(rows.into_iter().flatten().collect::<Vec<u32>>()), Some(selected))
            }
        };
        let mut out = Vec::with_capacity(self.added.len() + 1);
        for (i, _) in &self.added {
            out.push(arrow_select::take::take(self.table.column(*i).as_ref(), &idx, None)?);
        }
        if let Some(selected) = selected {
            out.push(patch::rows(selected));
        }
        // `columns: []` adds nothing: a left join's patch then has rows but no columns.
        let options = RecordBatchOptions::new().with_row_count(Some(idx.len()));
        Ok(vec![RecordBatch::try_new_with_options(schema, out, &options)?])
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        if self.unmatched > 0 {
            sluice_plugin::counter_add("enrich.unmatched_rows", self.unmatched);
            self.unmatched = 0;
        }
        Ok(vec![])
    }
}

sluice_plugin::export_handler!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::Float64Type;
    use sluice_plugin::parse_config;
    use sluice_plugin::patch;

    fn symbols(rows: &[(&str, &str, f64)]) -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("tick", DataType::Float64, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        Table::new("symbols", schema, vec![b.slice(0, 1), b.slice(1, b.num_rows() - 1)])
    }

    fn table() -> Tables {
        Tables::new(vec![symbols(&[("BTC", "Bitcoin", 0.01), ("ETH", "Ether", 0.1), ("XRP", "Ripple", 0.0001)])])
    }

    fn input() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sym", DataType::Utf8, true),
            Field::new("px", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("ETH"), Some("DOGE"), None, Some("BTC"), Some("ETH")])),
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0])),
            ],
        )
        .unwrap()
    }

    fn enrich(cfg: &str, tables: Tables) -> Result<Enrich, Error> {
        Enrich::new_with_tables(parse_config(cfg)?, tables)
    }

    fn strings(b: &RecordBatch, c: &str) -> Vec<Option<String>> {
        b.column_by_name(c).unwrap().as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
    }

    #[test]
    fn left_join_adds_columns_with_renames_and_nulls() {
        let mut e = enrich(r#"{"on": [{"sym": "symbol"}], "rename": {"name": "full_name"}}"#, table()).unwrap();
        let out = patch::process(&mut e, &input()).unwrap().remove(0);
        let names: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, vec!["sym", "px", "full_name", "tick"]);
        assert_eq!(
            strings(&out, "full_name"),
            vec![Some("Ether".into()), None, None, Some("Bitcoin".into()), Some("Ether".into())]
        );
        let tick = out.column_by_name("tick").unwrap().as_primitive::<Float64Type>();
        assert_eq!(tick.iter().collect::<Vec<_>>(), vec![Some(0.1), None, None, Some(0.01), Some(0.1)]);
        assert_eq!(e.unmatched, 2);
    }

    #[test]
    fn inner_join_drops_unmatched_rows() {
        let mut e = enrich(r#"{"on": [{"sym": "symbol"}], "columns": ["tick"], "how": "inner"}"#, table()).unwrap();
        let out = patch::process(&mut e, &input()).unwrap().remove(0);
        assert_eq!(out.num_columns(), 3);
        assert_eq!(strings(&out, "sym"), vec![Some("ETH".into()), Some("BTC".into()), Some("ETH".into())]);
        let px = out.column_by_name("px").unwrap().as_primitive::<Float64Type>();
        assert_eq!(px.values().to_vec(), vec![1.0, 4.0, 5.0]);
    }

    #[test]
    fn reads_the_keys_and_returns_the_looked_up_columns() {
        let mut e =
            enrich(r#"{"on": [{"sym": "symbol"}], "columns": ["tick", "name"], "how": "inner"}"#, table()).unwrap();
        assert_eq!(e.projection().unwrap(), ["sym", "tick", "name"]);
        let projected = patch::project(&input(), &e.projection().unwrap());
        assert_eq!(projected.num_columns(), 1, "`tick` and `name` are not in the input");
        let p = e.process(projected).unwrap().remove(0);
        let names: Vec<_> = p.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["tick", "name", ROW_COLUMN]);
        let rows = p.column(2).as_primitive::<sluice_plugin::arrow_array::types::UInt32Type>();
        assert_eq!(rows.values().to_vec(), vec![0, 3, 4]);
        // Adding no columns: the left join's patch has only the rows.
        let mut e = enrich(r#"{"on": [{"sym": "symbol"}], "columns": []}"#, table()).unwrap();
        assert_eq!(patch::process(&mut e, &input()).unwrap(), vec![input()]);
        let mut e = enrich(r#"{"on": [{"sym": "symbol"}], "columns": [], "how": "inner"}"#, table()).unwrap();
        let out = patch::process(&mut e, &input()).unwrap().remove(0);
        assert_eq!(out.schema(), input().schema());
        assert_eq!(strings(&out, "sym"), vec![Some("ETH".into()), Some("BTC".into()), Some("ETH".into())]);
    }

    #[test]
    fn config_errors_name_the_table_and_key() {
        let dup = Tables::new(vec![symbols(&[("BTC", "a", 1.0), ("ETH", "b", 1.0), ("BTC", "c", 1.0)])]);
        let e = enrich(r#"{"on": ["symbol"]}"#, dup).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "on"), "{e}");
        assert!(e.message().contains("table `symbols`") && e.message().contains("symbol=BTC"), "{e}");
        assert!(e.message().contains("rows 1 and 3"), "{e}");
        let e = enrich(r#"{"on": ["symbol"]}"#, Tables::default()).err().unwrap();
        assert!(e.message().contains("tables:"), "{e}");
        let e = enrich(r#"{"table": "syms", "on": ["symbol"]}"#, table()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "table"), "{e}");
        let e = enrich(r#"{"on": ["symbl"]}"#, table()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "on.0"), "{e}");
        let e = enrich(r#"{"on": ["symbol"], "columns": ["nme"]}"#, table()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.0"), "{e}");
        // Input-side problems surface with the input schema.
        let e = enrich(r#"{"on": ["symbol"]}"#, table()).unwrap();
        let err = patch::output_schema(&e, &input().schema()).unwrap_err();
        assert!(matches!(err, Error::Config { key: Some(ref k), .. } if k == "on.0"), "{err}");
        let e = enrich(r#"{"on": [{"px": "symbol"}]}"#, table()).unwrap();
        let err = patch::output_schema(&e, &input().schema()).unwrap_err();
        assert!(err.message().contains("Float64 in the input"), "{err}");
        // `px` is no key, but added names are read too, so the clash still names its config key.
        let e = enrich(r#"{"on": [{"sym": "symbol"}], "rename": {"name": "px"}}"#, table()).unwrap();
        let err = patch::output_schema(&e, &input().schema()).unwrap_err();
        assert!(matches!(err, Error::Config { key: Some(ref k), .. } if k == "rename.name"), "{err}");
    }
}
