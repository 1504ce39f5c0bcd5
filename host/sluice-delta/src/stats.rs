//! Delta file statistics (`add.stats`) from a Parquet file's footer: `numRecords`, and per
//! column (the first 32, as Delta's default `dataSkippingNumIndexedCols`) `nullCount`, `minValues`
//! and `maxValues` where the row groups' statistics give them. Formats follow the Delta protocol:
//! numbers as JSON numbers, dates `YYYY-MM-DD`, timestamps ISO-8601 in UTC with milliseconds
//! (the minimum floored and the maximum ceiled to the millisecond), strings as they are (only
//! when at most 32 characters, so a truncated bound is never wrong).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Schema, TimeUnit};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use serde_json::{Map, Value, json};

const INDEXED_COLUMNS: usize = 32;
const MAX_STRING: usize = 32;

/// The `stats` JSON of a file with this footer and Arrow schema.
pub fn stats_json(meta: &ParquetMetaData, schema: &Schema) -> String {
    let rows: i64 = meta.row_groups().iter().map(|g| g.num_rows()).sum();
    let (mut mins, mut maxes, mut nulls) = (Map::new(), Map::new(), Map::new());
    for field in schema.fields().iter().take(INDEXED_COLUMNS) {
        let Ok(conv) = StatisticsConverter::try_new(field.name(), schema, meta.file_metadata().schema_descr()) else {
            continue;
        };
        if let Ok(n) = conv.row_group_null_counts(meta.row_groups().iter())
            && n.null_count() == 0
        {
            nulls.insert(field.name().clone(), json!(n.values().iter().sum::<u64>()));
        }
        let bound = |a: Result<ArrayRef, _>, max: bool| a.ok().and_then(|a| extreme(&a, field.data_type(), max));
        if let (Some(lo), Some(hi)) = (
            bound(conv.row_group_mins(meta.row_groups().iter()), false),
            bound(conv.row_group_maxes(meta.row_groups().iter()), true),
        ) {
            mins.insert(field.name().clone(), lo);
            maxes.insert(field.name().clone(), hi);
        }
    }
    json!({"numRecords": rows, "minValues": mins, "maxValues": maxes, "nullCount": nulls}).to_string()
}

/// The smallest (or largest) of the row groups' bounds, as Delta writes it; `None` when a row
/// group has none or the type has no Delta statistics here.
fn extreme(a: &ArrayRef, dt: &DataType, max: bool) -> Option<Value> {
    if a.is_empty() || a.null_count() > 0 {
        return None;
    }
    fn pick<T: PartialOrd + Copy>(it: impl Iterator<Item = T>, max: bool) -> Option<T> {
        it.reduce(|x, y| if (y > x) == max { y } else { x })
    }
    Some(match dt {
        DataType::Int8 => json!(pick(a.as_primitive::<Int8Type>().values().iter().copied(), max)?),
        DataType::Int16 => json!(pick(a.as_primitive::<Int16Type>().values().iter().copied(), max)?),
        DataType::Int32 => json!(pick(a.as_primitive::<Int32Type>().values().iter().copied(), max)?),
        DataType::Int64 => json!(pick(a.as_primitive::<Int64Type>().values().iter().copied(), max)?),
        DataType::Float32 | DataType::Float64 => {
            let v: Vec<f64> = match dt {
                DataType::Float32 => a.as_primitive::<Float32Type>().values().iter().map(|v| *v as f64).collect(),
                _ => a.as_primitive::<Float64Type>().values().to_vec(),
            };
            if v.iter().any(|x| x.is_nan()) {
                return None;
            }
            json!(pick(v.into_iter(), max)?)
        }
        DataType::Date32 => {
            let d = pick(a.as_primitive::<Date32Type>().values().iter().copied(), max)?;
            json!(chrono::DateTime::from_timestamp(d as i64 * 86_400, 0)?.format("%Y-%m-%d").to_string())
        }
        DataType::Timestamp(unit, _) => {
            let raw = match unit {
                TimeUnit::Second => pick(a.as_primitive::<TimestampSecondType>().values().iter().copied(), max)?,
                TimeUnit::Millisecond => {
                    pick(a.as_primitive::<TimestampMillisecondType>().values().iter().copied(), max)?
                }
                TimeUnit::Microsecond => {
                    pick(a.as_primitive::<TimestampMicrosecondType>().values().iter().copied(), max)?
                }
                TimeUnit::Nanosecond => {
                    pick(a.as_primitive::<TimestampNanosecondType>().values().iter().copied(), max)?
                }
            };
            let per_ms: i64 = match unit {
                TimeUnit::Second => return Some(json!(ts_ms(raw.checked_mul(1000)?)?)),
                TimeUnit::Millisecond => 1,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1_000_000,
            };
            let ms = if max {
                raw.div_euclid(per_ms) + i64::from(raw.rem_euclid(per_ms) != 0)
            } else {
                raw.div_euclid(per_ms)
            };
            json!(ts_ms(ms)?)
        }
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            let v = pick((0..s.len()).map(|i| s.value(i)), max)?;
            if v.chars().count() > MAX_STRING {
                return None;
            }
            json!(v)
        }
        _ => return None,
    })
}

fn ts_ms(ms: i64) -> Option<String> {
    Some(chrono::DateTime::from_timestamp_millis(ms)?.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow_schema::Field;
    use parquet::arrow::ArrowWriter;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    #[test]
    fn stats_follow_the_delta_protocol() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![3, -1, 7])),
                Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-2.0)])),
                Arc::new(StringArray::from(vec![Some("b"), Some("a"), Some(&"x".repeat(40)[..])])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_500), Some(2_000_001), None]).with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(buf)).unwrap();
        let stats: Value = serde_json::from_str(&stats_json(reader.metadata(), &schema)).unwrap();
        assert_eq!(stats["numRecords"], 3);
        assert_eq!(stats["minValues"]["id"], -1);
        assert_eq!(stats["maxValues"]["id"], 7);
        assert_eq!(stats["minValues"]["v"], -2.0);
        assert_eq!(stats["nullCount"]["v"], 1);
        assert_eq!(stats["nullCount"]["t"], 1);
        assert_eq!(stats["minValues"]["t"], "1970-01-01T00:00:00.001Z");
        assert_eq!(stats["maxValues"]["t"], "1970-01-01T00:00:02.001Z", "the maximum is ceiled to the millisecond");
        assert!(stats["maxValues"].get("s").is_none(), "a string longer than 32 characters has no bounds");
    }
}
