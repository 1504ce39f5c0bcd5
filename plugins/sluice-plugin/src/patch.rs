//! Projection: a handler that reads a few columns gets only those and returns a patch.
//!
//! A handler whose [`Handler::projection`](crate::Handler::projection) returns the columns it
//! reads is given batches of just those columns (in `output_schema` and `process`), and returns
//! *patches*: batches whose columns replace the input columns of the same name, or are appended
//! when new. Every other input column passes through on the host, untouched, so it never
//! crosses the boundary. A patch's rows follow the input row for row, unless it has a
//! [`ROW_COLUMN`]: then its row `i` is input row `_sluice_row[i]` of that call, which is how a
//! patch selects (`dedup`, `filter`), reorders or repeats rows.
//!
//! [`process`] does natively what the host does, so a handler's unit tests can check its
//! output as the pipeline will see it.
//!
//! ```
//! # use sluice_plugin::prelude::*;
//! # use sluice_plugin::patch::{ROW_COLUMN, row_field, rows};
//! // A patch that keeps input rows 0 and 2 and replaces column `x`.
//! let schema = std::sync::Arc::new(Schema::new(vec![
//!     Field::new("x", DataType::Int64, true),
//!     row_field().as_ref().clone(),
//! ]));
//! let patch = RecordBatch::try_new(schema, vec![
//!     std::sync::Arc::new(Int64Array::from(vec![10, 30])),
//!     rows(vec![0, 2]),
//! ]).unwrap();
//! assert_eq!(patch.schema().field(1).name(), ROW_COLUMN);
//! ```

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array, cast::AsArray};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};

use crate::{Error, Handler};

/// The name of the row-index column of a patch (the host's `sluice_core::projection::ROW_COLUMN`).
pub const ROW_COLUMN: &str = "_sluice_row";

/// The row-index column's field: UInt32, not nullable.
pub fn row_field() -> FieldRef {
    Arc::new(Field::new(ROW_COLUMN, DataType::UInt32, false))
}

/// A row-index column from input row numbers.
pub fn rows(rows: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::from(rows))
}

/// The columns of `batch` named in `reads`, in the batch's order (a batch with no columns
/// keeps its row count): what a projecting handler is given.
pub fn project(batch: &RecordBatch, reads: &[String]) -> RecordBatch {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|&i| reads.contains(schema.field(i).name())).collect();
    let fields: Vec<FieldRef> = keep.iter().map(|&i| schema.fields()[i].clone()).collect();
    let columns: Vec<ArrayRef> = keep.iter().map(|&i| batch.column(i).clone()).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
        &options,
    )
    .expect("a projection of a valid batch is valid")
}

/// The full output schema for a projecting handler's patch schema: the input's columns with the
/// patch's replacing them by name, then the patch's new columns, without [`ROW_COLUMN`].
pub fn merged_schema(input: &SchemaRef, patch: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<FieldRef> = input
        .fields()
        .iter()
        .map(|f| patch.field_with_name(f.name()).map(|p| Arc::new(p.clone())).unwrap_or_else(|_| f.clone()))
        .collect();
    for f in patch.fields() {
        if f.name() != ROW_COLUMN && input.index_of(f.name()).is_err() {
            fields.push(f.clone());
        }
    }
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

/// Applies one call's patches to its (full) input batch, as the host does.
pub fn apply(input: &RecordBatch, patches: &[RecordBatch]) -> Result<Vec<RecordBatch>, Error> {
    let mut out = Vec::with_capacity(patches.len());
    let mut offset = 0;
    for patch in patches {
        let schema = merged_schema(&input.schema(), &patch.schema());
        let base = match patch.column_by_name(ROW_COLUMN) {
            Some(rows) => {
                let rows = rows
                    .as_primitive_opt::<arrow_array::types::UInt32Type>()
                    .ok_or_else(|| Error::internal(format!("`{ROW_COLUMN}` must be UInt32")))?;
                if rows.null_count() > 0 || rows.values().iter().any(|&r| r as usize >= input.num_rows()) {
                    return Err(Error::internal(format!("`{ROW_COLUMN}` must index rows of the input")));
                }
                arrow_select::take::take_record_batch(input, rows)?
            }
            None => {
                if offset + patch.num_rows() > input.num_rows() {
                    return Err(Error::internal("the patches have more rows than the input"));
                }
                offset += patch.num_rows();
                input.slice(offset - patch.num_rows(), patch.num_rows())
            }
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| patch.column_by_name(f.name()).or_else(|| base.column_by_name(f.name())).cloned())
            .collect::<Option<_>>()
            .expect("every merged column is in the patch or the input");
        out.push(RecordBatch::try_new(schema, columns)?);
    }
    if patches.iter().any(|p| p.column_by_name(ROW_COLUMN).is_none()) && offset != input.num_rows() {
        return Err(Error::internal(format!("the patches cover {offset} of the input's {} rows", input.num_rows())));
    }
    Ok(out)
}

/// The host's rule for a patch schema: it may not hold a column that the input has but that the
/// handler does not read (it would silently replace data the handler never saw).
pub fn check_patch_schema(input: &SchemaRef, patch: &SchemaRef, reads: &[String]) -> Result<(), Error> {
    for f in patch.fields() {
        if input.index_of(f.name()).is_ok() && !reads.contains(f.name()) {
            return Err(Error::config(format!(
                "the step outputs a column `{}`, which its input already has; the step does not read that \
                 column, so it cannot replace it (choose another output name)",
                f.name()
            )));
        }
    }
    Ok(())
}

/// Runs `handler` on a full `batch` the way the host does: for a projecting handler, project,
/// process, check and apply the patches; otherwise just process.
pub fn process<H: Handler>(handler: &mut H, batch: &RecordBatch) -> Result<Vec<RecordBatch>, Error> {
    match handler.projection() {
        Some(reads) => {
            let patches = handler.process(project(batch, &reads))?;
            for p in &patches {
                check_patch_schema(&batch.schema(), &p.schema(), &reads)?;
            }
            apply(batch, &patches)
        }
        None => handler.process(batch.clone()),
    }
}

/// The output schema of `handler` for the full `input` schema, as the host computes it.
pub fn output_schema<H: Handler>(handler: &H, input: &SchemaRef) -> Result<SchemaRef, Error> {
    match handler.projection() {
        Some(reads) => {
            let empty = RecordBatch::new_empty(input.clone());
            let projected = project(&empty, &reads).schema();
            let patch = handler.output_schema(&projected)?;
            check_patch_schema(input, &patch, &reads)?;
            Ok(merged_schema(input, &patch))
        }
        None => handler.output_schema(input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};

    fn input() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, false),
            Field::new("c", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["x", "y", "z"])),
                Arc::new(Int64Array::from(vec![7, 8, 9])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn project_keeps_rows_and_input_order() {
        let p = project(&input(), &["c".into(), "a".into(), "nope".into()]);
        assert_eq!(p.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["a", "c"]);
        let none = project(&input(), &[]);
        assert_eq!((none.num_columns(), none.num_rows()), (0, 3));
    }

    #[test]
    fn apply_replaces_appends_and_selects() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("c", DataType::Utf8, false),
            Field::new("d", DataType::Int64, false),
            row_field().as_ref().clone(),
        ]));
        let patch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["q", "r"])), Arc::new(Int64Array::from(vec![5, 6])), rows(vec![2, 0])],
        )
        .unwrap();
        let out = apply(&input(), &[patch]).unwrap();
        let names: Vec<_> = out[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(out[0].column(0).as_primitive::<arrow_array::types::Int64Type>().values(), &[3, 1]);
        assert_eq!(out[0].column(2).as_string::<i32>().value(0), "q");
    }

    #[test]
    fn row_for_row_patches_must_cover_the_input() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Int64, false)]));
        let short = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![5, 6]))]).unwrap();
        assert!(apply(&input(), std::slice::from_ref(&short)).is_err());
        let out = apply(&input(), &[short.clone(), short.slice(0, 1)]).unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    }
}
