//! `cast`: casts columns to other Arrow types.
//!
//! Config: `{"columns": {"n": "int64", "t": "timestamp_ms"}, "on_fail": "error"}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_plugin::arrow_array::RecordBatchOptions;
use sluice_plugin::arrow_cast::{self, CastOptions, display::array_value_to_string};
use sluice_plugin::prelude::*;

/// What to do with a value that does not convert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    /// A data error naming the row and column.
    #[default]
    Error,
    /// The value becomes null.
    Null,
}

/// The step's config.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Column name to target type name.
    pub columns: BTreeMap<String, String>,
    /// `error` (default) or `null`.
    #[serde(default)]
    pub on_fail: OnFail,
}

/// Parses a type name: `int8`..`int64`, `uint8`..`uint64`, `float32`,
/// `float64`, `utf8` (`string`), `large_utf8`, `bool` (`boolean`), `date32`,
/// `timestamp_s`, `timestamp_ms`, `timestamp_us`, `timestamp_ns`.
pub fn parse_type(name: &str) -> Option<DataType> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "utf8" | "string" => DataType::Utf8,
        "large_utf8" => DataType::LargeUtf8,
        "bool" | "boolean" => DataType::Boolean,
        "date32" | "date" => DataType::Date32,
        "timestamp_s" => DataType::Timestamp(TimeUnit::Second, None),
        "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp_ns" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        _ => return None,
    })
}

/// The handler.
pub struct Cast {
    /// (column, target type), sorted by column.
    targets: Vec<(String, DataType)>,
    on_fail: OnFail,
}

impl Cast {
    fn target(&self, name: &str) -> Option<&DataType> {
        self.targets.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Casts one column. With [`OnFail::Error`], the first value that does not
/// convert gives a data error with its row and column.
pub fn cast_column(array: &ArrayRef, to: &DataType, on_fail: OnFail, column: &str) -> Result<ArrayRef, Error> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    let options = CastOptions { safe: true, ..Default::default() };
    let out =
        arrow_cast::cast_with_options(array, to, &options).map_err(|e| Error::data(e.to_string()).column(column))?;
    if on_fail == OnFail::Error
        && out.null_count() != array.null_count()
        && let Some(row) = (0..array.len()).find(|&i| array.is_valid(i) && out.is_null(i))
    {
        let value = array_value_to_string(array, row).unwrap_or_default();
        return Err(Error::data(format!("cannot cast value {value:?} to {to}")).row(row).column(column));
    }
    Ok(out)
}

impl Handler for Cast {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Casts columns to other types; other columns pass unchanged.

- `columns`: map of column name to type: `int8`..`int64`, `uint8`..`uint64`,
  `float32`, `float64`, `utf8`, `large_utf8`, `bool`, `date32`,
  `timestamp_s`, `timestamp_ms`, `timestamp_us`, `timestamp_ns`.
- `on_fail`: `error` (default: a value that does not convert is a data error
  naming its row and column) or `null` (it becomes null).

```yaml
config:
  columns: {price: float64, day: date32}
  on_fail: null
```
";

    fn new(config: Config) -> Result<Self, Error> {
        let targets = config
            .columns
            .into_iter()
            .map(|(name, ty)| match parse_type(&ty) {
                Some(t) => Ok((name, t)),
                None => Err(Error::config(format!("unknown type `{ty}`")).key(format!("columns.{name}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cast { targets, on_fail: config.on_fail })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        for (name, to) in &self.targets {
            let field = input.field_with_name(name).map_err(|_| {
                Error::config(format!("column `{name}` not found in the input")).key(format!("columns.{name}"))
            })?;
            if !arrow_cast::can_cast_types(field.data_type(), to) {
                return Err(Error::config(format!(
                    "column `{name}` of type {} cannot be cast to {to}",
                    field.data_type()
                ))
                .key(format!("columns.{name}")));
            }
        }
        let fields: Vec<Field> = input
            .fields()
            .iter()
            .map(|f| match self.target(f.name()) {
                Some(to) => {
                    let nullable = f.is_nullable() || self.on_fail == OnFail::Null;
                    f.as_ref().clone().with_data_type(to.clone()).with_nullable(nullable)
                }
                None => f.as_ref().clone(),
            })
            .collect();
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }

    /// Reads only the columns it casts, and returns them cast: a row-for-row patch (every
    /// column it is given is one it casts).
    fn projection(&self) -> Option<Vec<String>> {
        Some(self.targets.iter().map(|(name, _)| name.clone()).collect())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let columns = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, a)| match self.target(f.name()) {
                Some(to) => cast_column(a, to, self.on_fail, f.name()),
                None => Ok(a.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // `columns: {}` casts nothing: a patch without columns, which passes the rows through.
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(vec![RecordBatch::try_new_with_options(schema, columns, &options)?])
    }
}

sluice_plugin::export_handler!(Cast);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;
    use sluice_plugin::arrow_array::types::{Int64Type, TimestampMillisecondType};
    use sluice_plugin::{parse_config, patch};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Utf8, true),
            Field::new("t", DataType::Utf8, true),
            Field::new("keep", DataType::Int32, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("1"), None, Some("x3")])) as ArrayRef,
                Arc::new(StringArray::from(vec!["2024-01-01T00:00:00", "2024-01-01T00:00:01", "2024-01-01T00:00:02"])),
                Arc::new(Int32Array::from(vec![7, 8, 9])),
            ],
        )
        .unwrap()
    }

    fn cast(json: &str) -> Result<Cast, Error> {
        Cast::new(parse_config(json)?)
    }

    #[test]
    fn on_fail_error_names_row_and_column() {
        let mut c = cast(r#"{"columns": {"n": "int64"}}"#).unwrap();
        match patch::process(&mut c, &batch()).unwrap_err() {
            Error::Data { row, column, message } => {
                assert_eq!(row, Some(2));
                assert_eq!(column.as_deref(), Some("n"));
                assert!(message.contains("x3"), "{message}");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn on_fail_null() {
        let mut c = cast(r#"{"columns": {"n": "int64", "t": "timestamp_ms"}, "on_fail": "null"}"#).unwrap();
        let out = patch::process(&mut c, &batch()).unwrap().remove(0);
        let n = out.column(0).as_primitive::<Int64Type>();
        assert_eq!(n.value(0), 1);
        assert!(n.is_null(1) && n.is_null(2));
        let t = out.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(t.value(1) - t.value(0), 1000);
        assert_eq!(out.schema(), patch::output_schema(&c, &batch().schema()).unwrap());
        assert_eq!(out.column(2), batch().column(2));
    }

    #[test]
    fn reads_and_returns_only_the_cast_columns() {
        let mut c = cast(r#"{"columns": {"t": "timestamp_ms", "n": "int64"}, "on_fail": "null"}"#).unwrap();
        assert_eq!(c.projection().unwrap(), ["n", "t"]);
        let meta = std::collections::HashMap::from([("unit".to_string(), "pcs".to_string())]);
        let fields: Vec<Field> =
            batch().schema().fields().iter().map(|f| f.as_ref().clone().with_metadata(meta.clone())).collect();
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), batch().columns().to_vec()).unwrap();
        let p = c.process(patch::project(&b, &c.projection().unwrap())).unwrap().remove(0);
        let names: Vec<_> = p.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["n", "t"]);
        let out = patch::process(&mut c, &b).unwrap().remove(0);
        assert_eq!(out.schema().field(0).metadata(), &meta, "a cast keeps the field's metadata");
        assert_eq!(out.schema().field(2), b.schema().field(2));
        // Nothing to cast: nothing is read and the batch comes back as it was.
        let mut none = cast(r#"{"columns": {}}"#).unwrap();
        assert_eq!(none.projection().unwrap(), Vec::<String>::new());
        assert_eq!(patch::process(&mut none, &b).unwrap(), vec![b]);
    }

    #[test]
    fn unknown_type_and_column() {
        let e = cast(r#"{"columns": {"n": "int65"}}"#).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.n"));
        // A column not in the input is not sent: the check still names its key.
        let c = cast(r#"{"columns": {"nope": "int64"}}"#).unwrap();
        let e = patch::output_schema(&c, &batch().schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.nope"));
        assert!(cast(r#"{"columns": {}, "on_fail": "skip"}"#).is_err());
    }

    #[test]
    fn parses_types() {
        assert_eq!(parse_type("float64"), Some(DataType::Float64));
        assert_eq!(parse_type("timestamp_us"), Some(DataType::Timestamp(TimeUnit::Microsecond, None)));
        assert_eq!(parse_type("bool"), Some(DataType::Boolean));
        assert_eq!(parse_type("wat"), None);
    }
}
