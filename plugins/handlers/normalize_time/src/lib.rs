//! `normalize_time`: detects the unit of integer epoch timestamps (s, ms, µs,
//! ns) per value or per file, and converts listed columns to one target unit
//! or to an Arrow timestamp type.

use std::sync::Arc;

use handler_kit::num::to_i64;
use handler_kit::time::Unit;
use sluice_plugin::arrow_array::PrimitiveArray;
use sluice_plugin::arrow_array::types::*;
use sluice_plugin::arrow_buffer::ScalarBuffer;
use sluice_plugin::prelude::*;

/// The target of the conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    S,
    Ms,
    Us,
    Ns,
    TimestampS,
    TimestampMs,
    TimestampUs,
    TimestampNs,
}

impl Target {
    fn unit(self) -> Unit {
        match self {
            Target::S | Target::TimestampS => Unit::S,
            Target::Ms | Target::TimestampMs => Unit::Ms,
            Target::Us | Target::TimestampUs => Unit::Us,
            Target::Ns | Target::TimestampNs => Unit::Ns,
        }
    }
    fn timestamp(self) -> bool {
        matches!(self, Target::TimestampS | Target::TimestampMs | Target::TimestampUs | Target::TimestampNs)
    }
}

/// How the source unit is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detect {
    /// Each value by its own magnitude.
    #[default]
    Value,
    /// The first non-null value of each column in a file decides for the whole file.
    File,
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Columns to convert (integer epochs or timestamps).
    pub columns: Vec<String>,
    /// Target unit or timestamp type.
    pub to: Target,
    /// Detection mode (ignored when `from` is set).
    #[serde(default)]
    pub detect: Detect,
    /// Known source unit of integer columns: no detection.
    #[serde(default)]
    pub from: Option<Unit>,
    /// Time zone of timestamp outputs (e.g. `UTC`); none by default.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// The handler.
pub struct NormalizeTime {
    config: Config,
    /// Per listed column, the unit fixed for the current file (detect: file).
    file_units: Vec<Option<Unit>>,
}

impl NormalizeTime {
    fn out_type(&self) -> DataType {
        let u = self.config.to.unit();
        if self.config.to.timestamp() {
            DataType::Timestamp(u.arrow(), self.config.timezone.as_deref().map(Arc::from))
        } else {
            DataType::Int64
        }
    }

    /// Converts one column; `slot` indexes `file_units`.
    pub fn convert(&mut self, a: &ArrayRef, slot: usize, name: &str) -> Result<ArrayRef, Error> {
        let to = self.config.to.unit();
        let fixed = match a.data_type() {
            DataType::Timestamp(u, _) => Some(Unit::of(*u)),
            _ => self.config.from,
        };
        let values = to_i64(a.as_ref())
            .ok_or_else(|| Error::data(format!("unsupported type {}", a.data_type())).column(name))?;
        let nulls = values.nulls().cloned();
        let raw = values.values();
        let mut out: Vec<i64> = Vec::with_capacity(raw.len());
        let overflow = |row: usize| Error::data("timestamp out of range for the target unit").row(row).column(name);
        let fixed = match (fixed, self.config.detect) {
            (Some(u), _) => Some(u),
            (None, Detect::Value) => None,
            (None, Detect::File) => {
                if self.file_units[slot].is_none() {
                    let first = (0..raw.len()).find(|&i| values.is_valid(i));
                    self.file_units[slot] = first.map(|i| Unit::detect(raw[i]));
                }
                // All null so far: any unit does (the values are null).
                Some(self.file_units[slot].unwrap_or(to))
            }
        };
        match fixed {
            Some(u) => {
                let (mul, div) = u.factor(to);
                if mul == 1 && div == 1 {
                    out.extend_from_slice(raw);
                } else if div == 1 {
                    for (i, &v) in raw.iter().enumerate() {
                        match v.checked_mul(mul) {
                            Some(x) => out.push(x),
                            None if values.is_null(i) => out.push(0),
                            None => return Err(overflow(i)),
                        }
                    }
                } else {
                    out.extend(raw.iter().map(|v| v.div_euclid(div)));
                }
            }
            None => {
                for (i, &v) in raw.iter().enumerate() {
                    let (mul, div) = Unit::detect(v).factor(to);
                    out.push(if div == 1 {
                        match v.checked_mul(mul) {
                            Some(x) => x,
                            None => return Err(overflow(i)),
                        }
                    } else {
                        v.div_euclid(div)
                    });
                }
            }
        }
        let buf = ScalarBuffer::from(out);
        let tz = self.config.timezone.as_deref().map(Arc::<str>::from);
        fn ts<T: ArrowTimestampType>(b: ScalarBuffer<i64>, n: Option<NullBufferT>, tz: Option<Arc<str>>) -> ArrayRef {
            Arc::new(PrimitiveArray::<T>::new(b, n).with_timezone_opt(tz))
        }
        type NullBufferT = sluice_plugin::arrow_buffer::NullBuffer;
        Ok(match (self.config.to.timestamp(), to) {
            (false, _) => Arc::new(Int64Array::new(buf, nulls)),
            (true, Unit::S) => ts::<TimestampSecondType>(buf, nulls, tz),
            (true, Unit::Ms) => ts::<TimestampMillisecondType>(buf, nulls, tz),
            (true, Unit::Us) => ts::<TimestampMicrosecondType>(buf, nulls, tz),
            (true, Unit::Ns) => ts::<TimestampNanosecondType>(buf, nulls, tz),
        })
    }
}

impl Handler for NormalizeTime {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Converts integer epoch columns whose unit varies (seconds, milliseconds,
microseconds, nanoseconds) to one unit or to a timestamp type.

- `columns` (required): the columns to convert: integer epochs, or timestamps
  (whose unit is known from their type).
- `to` (required): `s`, `ms`, `us` or `ns` (Int64 output), or `timestamp_s`,
  `timestamp_ms`, `timestamp_us`, `timestamp_ns` (Timestamp output).
- `detect` (default `value`): `value` detects the unit of every value by its
  magnitude: |v| < 1e11 is seconds, < 1e14 milliseconds, < 1e17 microseconds,
  else nanoseconds (valid for dates between 1973 and 5138). `file` detects it
  from the first non-null value of each column in a file and applies it to the
  whole file.
- `from` (optional): the known unit of integer columns; disables detection.
- `timezone` (optional): time zone of timestamp outputs, e.g. `UTC`.

Converting to a coarser unit floors (e.g. 1999 ms is 1 s). Values that overflow
the target unit are a data error naming the row and column.

```yaml
config: {columns: [open_time, close_time], to: ms}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        if config.columns.is_empty() {
            return Err(Error::config("list at least one column").key("columns"));
        }
        if config.timezone.is_some() && !config.to.timestamp() {
            return Err(Error::config("`timezone` needs a timestamp target (`to: timestamp_ms`, ...)").key("timezone"));
        }
        Ok(NormalizeTime { file_units: vec![None; config.columns.len()], config })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        let mut fields: Vec<FieldRef> = input.fields().iter().cloned().collect();
        for (i, c) in self.config.columns.iter().enumerate() {
            let idx = handler_kit::column_index(input, c, &format!("columns.{i}"))?;
            let t = fields[idx].data_type();
            if !(t.is_integer() || matches!(t, DataType::Timestamp(_, _))) {
                return Err(Error::config(format!("column `{c}` is {t}, not an integer epoch or a timestamp"))
                    .key(format!("columns.{i}")));
            }
            fields[idx] = Arc::new(fields[idx].as_ref().clone().with_data_type(self.out_type()));
        }
        Ok(Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())))
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let mut cols = batch.columns().to_vec();
        for (slot, name) in self.config.columns.clone().iter().enumerate() {
            let idx = batch.schema().index_of(name)?;
            cols[idx] = self.convert(&cols[idx], slot, name)?;
        }
        Ok(vec![RecordBatch::try_new(schema, cols)?])
    }

    /// Reads only its columns, and returns them converted: a row-for-row patch.
    fn projection(&self) -> Option<Vec<String>> {
        Some(self.config.columns.clone())
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        // The end of a file: the next file detects its own unit.
        self.file_units.iter_mut().for_each(|u| *u = None);
        Ok(vec![])
    }
}

sluice_plugin::export_handler!(NormalizeTime);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::parse_config;

    fn handler(json: &str) -> NormalizeTime {
        NormalizeTime::new(parse_config(json).unwrap()).unwrap()
    }

    fn batch(v: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(v))]).unwrap()
    }

    fn ints(b: &RecordBatch) -> Vec<Option<i64>> {
        to_i64(b.column(0).as_ref()).unwrap().iter().collect()
    }

    #[test]
    fn per_value_detection_to_ms() {
        let mut h = handler(r#"{"columns":["t"],"to":"ms"}"#);
        let b = batch(vec![
            Some(1_700_000_000),
            Some(1_700_000_000_123),
            Some(1_700_000_000_123_456),
            Some(1_700_000_000_123_456_789),
            None,
        ]);
        let out = h.process(b).unwrap().remove(0);
        let ms = 1_700_000_000_000;
        assert_eq!(ints(&out), vec![Some(ms), Some(ms + 123), Some(ms + 123), Some(ms + 123), None]);
        assert_eq!(out.schema().field(0).data_type(), &DataType::Int64);
    }

    #[test]
    fn to_timestamp_us_with_timezone() {
        let mut h = handler(r#"{"columns":["t"],"to":"timestamp_us","timezone":"UTC"}"#);
        let out = h.process(batch(vec![Some(1_700_000_000_001)])).unwrap().remove(0);
        assert_eq!(out.schema().field(0).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(ints(&out), vec![Some(1_700_000_000_001_000)]);
    }

    #[test]
    fn per_file_detection_resets_at_finish() {
        let mut h = handler(r#"{"columns":["t"],"to":"s","detect":"file"}"#);
        // The first value says microseconds: the small second value is read as µs too.
        let out = h.process(batch(vec![None, Some(1_700_000_000_000_000), Some(5_000_000)])).unwrap().remove(0);
        assert_eq!(ints(&out), vec![None, Some(1_700_000_000), Some(5)]);
        assert!(h.finish().unwrap().is_empty());
        let out = h.process(batch(vec![Some(1_700_000_001)])).unwrap().remove(0);
        assert_eq!(ints(&out), vec![Some(1_700_000_001)]);
    }

    #[test]
    fn explicit_from_and_overflow() {
        let mut h = handler(r#"{"columns":["t"],"to":"ns","from":"s"}"#);
        let out = h.process(batch(vec![Some(2)])).unwrap().remove(0);
        assert_eq!(ints(&out), vec![Some(2_000_000_000)]);
        let e = h.process(batch(vec![Some(1), Some(i64::MAX / 10)])).unwrap_err();
        assert!(matches!(e, Error::Data { row: Some(1), .. }), "{e}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = parse_config::<Config>(r#"{"columns":["t"],"to":"minutes"}"#).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "to"), "{e}");
        let e = parse_config::<Config>(r#"{"columns":["t"],"to":"ms","detct":"file"}"#).unwrap_err();
        assert!(e.message().contains("detct"), "{e}");
        let h = handler(r#"{"columns":["t","x"],"to":"ms"}"#);
        let e = h.output_schema(&batch(vec![]).schema()).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "columns.1"), "{e}");
        let e = NormalizeTime::new(parse_config(r#"{"columns":["t"],"to":"ms","timezone":"UTC"}"#).unwrap()).err();
        assert!(matches!(e, Some(Error::Config { key: Some(ref k), .. }) if k == "timezone"));
    }
}
