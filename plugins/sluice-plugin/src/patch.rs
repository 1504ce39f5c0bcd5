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

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_schema::SchemaRef;
use sluice_contract::{PatchError, PatchPlan};

use crate::{Error, Handler};

/// The name of the row-index column of a patch (`sluice_contract::ROW_COLUMN`, shared with the host).
pub use sluice_contract::ROW_COLUMN;

/// The row-index column's field: UInt32, not nullable.
pub use sluice_contract::row_field;

/// A row-index column from input row numbers.
pub fn rows(rows: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::from(rows))
}

/// A broken rule of the contract, as the host would report it: a configuration error, or the
/// handler's own bug.
fn error(e: PatchError) -> Error {
    if e.is_config() { Error::config(e.to_string()) } else { Error::internal(e.to_string()) }
}

/// The columns of `batch` named in `reads`, in the batch's order (a batch with no columns
/// keeps its row count): what a projecting handler is given.
pub fn project(batch: &RecordBatch, reads: &[String]) -> RecordBatch {
    let schema = sluice_contract::projected_schema(batch.schema_ref(), reads);
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| batch.column_by_name(f.name()).expect("projected from the batch").clone())
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema, columns, &options).expect("a projection of a valid batch is valid")
}

/// Applies one call's patches to its (full) input batch, as the host does, for a handler that
/// reads `reads` and declared the patch schema `patch`.
pub fn apply(
    input: &RecordBatch,
    reads: &[String],
    patch: &SchemaRef,
    patches: &[RecordBatch],
) -> Result<Vec<RecordBatch>, Error> {
    let plan = PatchPlan::new(input.schema_ref(), reads, patch).map_err(error)?;
    plan.merge(input, patches).map_err(error)
}

/// The host's rules for a patch schema (see `sluice_contract::PatchPlan::new`): among them, it
/// may not hold a column that the input has but that the handler does not read (it would
/// silently replace data the handler never saw), nor two columns of one name.
pub fn check_patch_schema(input: &SchemaRef, patch: &SchemaRef, reads: &[String]) -> Result<(), Error> {
    PatchPlan::new(input, reads, patch).map(|_| ()).map_err(error)
}

/// Runs `handler` on a full `batch` the way the host does: for a projecting handler, project,
/// process, check and merge the patches; otherwise just process.
pub fn process<H: Handler>(handler: &mut H, batch: &RecordBatch) -> Result<Vec<RecordBatch>, Error> {
    match handler.projection() {
        Some(reads) => {
            sluice_contract::check_input(batch.schema_ref()).map_err(error)?;
            let projected = project(batch, &reads);
            let plan = PatchPlan::new(batch.schema_ref(), &reads, &handler.output_schema(projected.schema_ref())?)
                .map_err(error)?;
            let patches = handler.process(projected)?;
            plan.merge(batch, &patches).map_err(error)
        }
        None => handler.process(batch.clone()),
    }
}

/// The output schema of `handler` for the full `input` schema, as the host computes it.
pub fn output_schema<H: Handler>(handler: &H, input: &SchemaRef) -> Result<SchemaRef, Error> {
    match handler.projection() {
        Some(reads) => {
            sluice_contract::check_input(input).map_err(error)?;
            let projected = sluice_contract::projected_schema(input, &reads);
            let patch = handler.output_schema(&projected)?;
            Ok(PatchPlan::new(input, &reads, &patch).map_err(error)?.output().clone())
        }
        None => handler.output_schema(input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

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
        let out = apply(&input(), &["c".to_string()], &patch.schema(), &[patch]).unwrap();
        let names: Vec<_> = out[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(out[0].column(0).as_primitive::<arrow_array::types::Int64Type>().values(), &[3, 1]);
        assert_eq!(out[0].column(2).as_string::<i32>().value(0), "q");
    }

    #[test]
    fn row_for_row_patches_must_cover_the_input() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Int64, false)]));
        let short = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![5, 6]))]).unwrap();
        assert!(apply(&input(), &[], &short.schema(), std::slice::from_ref(&short)).is_err());
        let out = apply(&input(), &[], &short.schema(), &[short.clone(), short.slice(0, 1)]).unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    }
}
