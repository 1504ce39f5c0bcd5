//! `upsert`: merge a unit's new rows into a partition's current rows, keeping the newest per key.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt32Array, new_null_array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Read a Parquet file's schema and every batch.
pub(crate) fn read_all(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| format!("{}: {e}", path.display()))?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(64 * 1024).build().map_err(|e| format!("{}: {e}", path.display()))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((schema, batches))
}

/// The union of the schemas: `new`'s columns first, then columns only older files have.
pub(crate) fn union_schema(new: &SchemaRef, older: &[SchemaRef]) -> SchemaRef {
    let mut fields: Vec<Field> = new.fields().iter().map(|f| f.as_ref().clone()).collect();
    for s in older {
        for f in s.fields() {
            if !fields.iter().any(|x| x.name() == f.name()) {
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// A batch in `target`'s shape: columns by name, cast where types differ, NULL where missing.
pub(crate) fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, String> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => cols.push(c.clone()),
            Some(c) => {
                cols.push(arrow_cast::cast(c, f.data_type()).map_err(|e| format!("column `{}`: {e}", f.name()))?)
            }
            None => cols.push(new_null_array(f.data_type(), batch.num_rows())),
        }
    }
    // Older rows may hold NULLs in a column the new data declares non-nullable.
    let relaxed = Arc::new(Schema::new(
        target.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(relaxed, cols).map_err(|e| e.to_string())
}

/// Rows of `batch` (old rows first, new rows last) with only the last row of each key kept, in
/// their original order. With no key column in the data (the key is all partition columns),
/// only the last row is kept.
pub(crate) fn keep_newest(batch: &RecordBatch, key: &[String]) -> Result<RecordBatch, String> {
    let n = batch.num_rows();
    let key_cols: Vec<ArrayRef> = key.iter().filter_map(|k| batch.column_by_name(k).cloned()).collect();
    let mut keep: Vec<u32> = Vec::with_capacity(n);
    if key_cols.is_empty() {
        if n > 0 {
            keep.push(n as u32 - 1);
        }
    } else {
        let fields = key_cols.iter().map(|c| SortField::new(c.data_type().clone())).collect();
        let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
        let rows = converter.convert_columns(&key_cols).map_err(|e| e.to_string())?;
        let mut seen = HashSet::with_capacity(n);
        for i in (0..n).rev() {
            if seen.insert(rows.row(i)) {
                keep.push(i as u32);
            }
        }
        keep.reverse();
    }
    if keep.len() == n {
        return Ok(batch.clone());
    }
    let take = UInt32Array::from(keep);
    let cols = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &take, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    RecordBatch::try_new(batch.schema(), cols).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::DataType;

    #[test]
    fn newest_row_per_key_wins_in_original_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "a", "c", "b"])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
            ],
        )
        .unwrap();
        let out = keep_newest(&b, &["k".into()]).unwrap();
        let v: Vec<i64> = out.column(1).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
        assert_eq!(v, [3, 4, 5]);
        let only = keep_newest(&b, &["partition_col".into()]).unwrap();
        assert_eq!(only.num_rows(), 1);
    }
}
