//! Per-file dictionary encoding choice: a column whose first values are mostly distinct is
//! written PLAIN instead of dictionary-encoded.
//!
//! The Parquet writer dictionary-encodes every column by default and falls back to PLAIN only
//! once a column chunk's dictionary outgrows its page limit (1 MiB), which a day of 1-second
//! rows never does. For high-cardinality columns (timestamps, prices, volumes) that costs a hash
//! lookup per value and yields larger files than PLAIN + zstd: on the kline benchmark, hashing
//! was 13% and compressing the dictionary pages 10% of the whole run, for files 33% larger than
//! DuckDB's, which makes the same choice from the values. So each new file looks at a sample of
//! its first batch and keeps the dictionary only for columns with repeated values.

use arrow_array::{Array, ArrayRef, RecordBatch, cast::AsArray};
use arrow_schema::DataType;
use parquet::basic::Encoding;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Rows sampled per column.
const SAMPLE_ROWS: usize = 4096;
/// A column keeps its dictionary when at most this share of the sampled values is distinct.
const MAX_DISTINCT_SHARE: f64 = 0.5;
/// Below this many non-null sampled values the default (dictionary) stays: too little to judge.
const MIN_SAMPLE: usize = 256;

/// The writer properties for a file whose first batch is `batch`: `base` with the dictionary
/// disabled for the top-level columns whose sample is mostly distinct values.
///
/// Integer columns among those whose sample is also sorted (timestamps, sequence numbers) are
/// delta-encoded: a regular series then shrinks to a few bits per value before compression,
/// which also leaves zstd less to do.
pub(crate) fn props_for(base: &WriterProperties, batch: &RecordBatch) -> WriterProperties {
    let plain: Vec<(&str, bool)> = batch
        .schema_ref()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, col)| mostly_distinct(col))
        .map(|(f, col)| (f.name().as_str(), sorted_integers(col)))
        .collect();
    if plain.is_empty() {
        return base.clone();
    }
    let mut b = base.clone().into_builder();
    for (name, delta) in plain {
        b = b.set_column_dictionary_enabled(ColumnPath::from(name), false);
        if delta {
            b = b.set_column_encoding(ColumnPath::from(name), Encoding::DELTA_BINARY_PACKED);
        }
    }
    b.build()
}

/// True for a 32- or 64-bit integer column (or one stored as such: dates, timestamps) without
/// nulls whose first values do not decrease.
fn sorted_integers(col: &ArrayRef) -> bool {
    let n = col.len().min(SAMPLE_ROWS);
    if col.slice(0, n).null_count() > 0 {
        return false;
    }
    let data = col.to_data();
    let Some(values) = data.buffers().first() else { return false };
    match col.data_type() {
        DataType::Int64 | DataType::Timestamp(_, _) | DataType::Date64 => {
            let v = &values.as_slice()[data.offset() * 8..(data.offset() + n) * 8];
            v.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).is_sorted()
        }
        DataType::Int32 | DataType::Date32 => {
            let v = &values.as_slice()[data.offset() * 4..(data.offset() + n) * 4];
            v.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).is_sorted()
        }
        _ => false,
    }
}

/// True when more than [`MAX_DISTINCT_SHARE`] of the first non-null values are distinct. Only
/// flat columns are judged (primitives and strings); others keep the default.
fn mostly_distinct(col: &ArrayRef) -> bool {
    let n = col.len().min(SAMPLE_ROWS);
    let col = col.slice(0, n);
    let valid = n - col.null_count();
    if valid < MIN_SAMPLE {
        return false;
    }
    let limit = (MAX_DISTINCT_SHARE * valid as f64) as usize;
    match col.data_type() {
        DataType::Utf8 => exceeds(col.as_string::<i32>().iter().flatten(), limit),
        DataType::LargeUtf8 => exceeds(col.as_string::<i64>().iter().flatten(), limit),
        DataType::Utf8View => exceeds(col.as_string_view().iter().flatten(), limit),
        DataType::Binary => exceeds(col.as_binary::<i32>().iter().flatten(), limit),
        DataType::LargeBinary => exceeds(col.as_binary::<i64>().iter().flatten(), limit),
        dt if dt.is_primitive() => {
            let Some(width) = dt.primitive_width().filter(|&w| w > 0) else { return false };
            let data = col.to_data();
            let Some(values) = data.buffers().first() else { return false };
            let bytes = &values.as_slice()[data.offset() * width..(data.offset() + n) * width];
            let non_null = bytes.chunks_exact(width).enumerate().filter(|(i, _)| col.is_valid(*i)).map(|(_, v)| v);
            // Fixed-width values hash as one integer rather than as a byte slice.
            match width {
                8 => exceeds(non_null.map(|v| u64::from_le_bytes(v.try_into().expect("8 bytes"))), limit),
                4 => exceeds(non_null.map(|v| u32::from_le_bytes(v.try_into().expect("4 bytes"))), limit),
                _ => exceeds(non_null, limit),
            }
        }
        _ => false,
    }
}

/// Whether the values hold more than `limit` distinct ones, with a fast hasher in a set sized
/// for the answer, stopping as soon as it is known. This runs for every new file, which on small
/// files is most of their values (SipHash and rehashing were 17% of a run over 1,500 files of
/// 5,760 rows; a full 4,096-value sample of each column, 4%).
fn exceeds<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>, limit: usize) -> bool {
    let mut seen = ahash::AHashSet::with_capacity(limit + 1);
    for v in values {
        if seen.insert(v) && seen.len() > limit {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn high_cardinality_columns_lose_their_dictionary() {
        let n = 5000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Int64, false),
            Field::new("price", DataType::Float64, false),
            Field::new("trades", DataType::Int64, false),
            Field::new("flag", DataType::Utf8, false),
            Field::new("few", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(Float64Array::from_iter_values((0..n).map(|i| i as f64 * 0.01))),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 200))),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| if i % 2 == 0 { "a" } else { "b" }))),
                Arc::new(Int64Array::from_iter((0..n).map(|i| (i < 10).then_some(i)))),
            ],
        )
        .unwrap();
        let props = props_for(&WriterProperties::default(), &batch);
        let dict = |c: &str| props.dictionary_enabled(&ColumnPath::from(c));
        assert!(!dict("t") && !dict("price"));
        let enc = |c: &str| props.encoding(&ColumnPath::from(c));
        assert_eq!((enc("t"), enc("price")), (Some(Encoding::DELTA_BINARY_PACKED), None));
        assert!(dict("trades") && dict("flag"));
        // Ten valid values are too few to judge.
        assert!(dict("few"));
    }
}
