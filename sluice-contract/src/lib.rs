//! The rules the host and a guest must agree on about the batches a handler exchanges, in one
//! place: the host (`sluice-core`) applies them to guest output, and the guest SDK
//! (`sluice-plugin`) applies them natively so that a handler's unit tests see what a pipeline
//! will see. The WIT package (`wit/sluice.wit`) states the calls; this crate states what the
//! batches passed through them mean.
//!
//! - **Reserved names.** Column names starting with [`RESERVED_PREFIX`] belong to the contract:
//!   [`ROW_COLUMN`] in a patch, [`REJECT_COLUMN`] in a handler's output.
//! - **Patches.** A handler that declares the columns it reads (contract 0.3) is given a batch of
//!   just those columns and returns *patches*. A patch column replaces the input column of the
//!   same name in place, or is appended when new; every other input column passes through
//!   without crossing the boundary. A patch with a [`ROW_COLUMN`] selects, reorders or repeats
//!   input rows (its row `i` is input row `_sluice_row[i]`); patches without one continue the
//!   input row for row and together cover each input row once. [`PatchPlan`] checks a patch
//!   schema and merges patches into their input.
//!
//! Patches are guest output, so every rule is checked: a schema with two columns of one name, a
//! row column that is not UInt32, a column that would silently replace an input column the
//! handler never read, indices out of range or null, and row counts that do not add up are all
//! [`PatchError`]s.

use std::fmt;
use std::sync::Arc;

use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array, cast::AsArray};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow_select::filter::FilterBuilder;

/// Column names starting with this are reserved for the contract.
pub const RESERVED_PREFIX: &str = "_sluice_";

/// The row-index column of a patch: UInt32, no nulls, indexing the rows of the call's input.
pub const ROW_COLUMN: &str = "_sluice_row";

/// An output column a handler may add to set rows aside: nullable Utf8; rows where it is not
/// null are rejected with its text as the reason, never reach the next step, and the column is
/// dropped before the next step or the sink sees the batch.
pub const REJECT_COLUMN: &str = "_sluice_reject";

/// Whether `name` is reserved for the contract.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// The rule for a projecting handler's input: no column with a reserved name (checked before the
/// handler is asked for its patch schema, and again by [`PatchPlan::new`]).
pub fn check_input(input: &Schema) -> Result<(), PatchError> {
    match input.fields().iter().find(|f| is_reserved(f.name())) {
        Some(f) => Err(PatchError::ReservedInput(f.name().clone())),
        None => Ok(()),
    }
}

/// The row-index column's field: UInt32, not nullable.
pub fn row_field() -> FieldRef {
    Arc::new(Field::new(ROW_COLUMN, DataType::UInt32, false))
}

/// The reject column's field: Utf8, nullable.
pub fn reject_field() -> FieldRef {
    Arc::new(Field::new(REJECT_COLUMN, DataType::Utf8, true))
}

/// `schema` without [`REJECT_COLUMN`]: what the next step or the sink sees of a step's output.
pub fn without_reject_column(schema: &SchemaRef) -> SchemaRef {
    match schema.index_of(REJECT_COLUMN) {
        Ok(i) => {
            let fields: Vec<FieldRef> =
                schema.fields().iter().enumerate().filter(|(j, _)| *j != i).map(|(_, f)| f.clone()).collect();
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
        }
        Err(_) => schema.clone(),
    }
}

/// A broken rule of the patch contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The step's input has a column with a reserved name (a source column, say).
    ReservedInput(String),
    /// The patch schema names a reserved column the contract does not define.
    ReservedOutput(String),
    /// The patch schema has two columns of this name.
    Duplicate(String),
    /// The patch's [`ROW_COLUMN`] has this type instead of UInt32.
    RowType(String),
    /// The patch outputs a column the input has but the handler does not read: it would
    /// silently replace data the handler never saw. A configuration problem (an output name).
    Shadows(String),
    /// A patch batch's schema is not the patch schema the handler declared.
    Schema { declared: String, got: String },
    /// [`ROW_COLUMN`] has nulls.
    RowNull,
    /// [`ROW_COLUMN`] names a row past the input's.
    RowOutOfRange { row: u32, rows: usize },
    /// Row-for-row patches with more rows than the input.
    TooManyRows { rows: usize },
    /// Row-for-row patches that do not cover the input.
    Uncovered { covered: usize, rows: usize },
    /// Arrow refused a merged batch.
    Arrow(String),
}

impl PatchError {
    /// True when the step's configuration, not the handler's code, must change: the handler
    /// was asked for an output name its input already has, or the input carries a reserved name.
    pub fn is_config(&self) -> bool {
        matches!(self, PatchError::Shadows(_) | PatchError::ReservedInput(_))
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::ReservedInput(name) => {
                write!(f, "the input has a column `{name}`; names starting with `{RESERVED_PREFIX}` are reserved")
            }
            PatchError::ReservedOutput(name) => write!(
                f,
                "the patch schema has a column `{name}`; names starting with `{RESERVED_PREFIX}` are reserved (only \
                 `{ROW_COLUMN}` and `{REJECT_COLUMN}` have a meaning)"
            ),
            PatchError::Duplicate(name) => write!(f, "the patch schema has two columns named `{name}`"),
            PatchError::RowType(ty) => write!(f, "`{ROW_COLUMN}` must be UInt32, not {ty}"),
            PatchError::Shadows(name) => write!(
                f,
                "the step outputs a column `{name}`, which its input already has; the step does not read that \
                 column, so it cannot replace it (choose another output name)"
            ),
            PatchError::Schema { declared, got } => {
                write!(f, "a patch has the columns [{got}], but the step declared [{declared}]")
            }
            PatchError::RowNull => write!(f, "`{ROW_COLUMN}` has nulls"),
            PatchError::RowOutOfRange { row, rows } => {
                write!(f, "`{ROW_COLUMN}` has row {row}, but the input has {rows} rows")
            }
            PatchError::TooManyRows { rows } => {
                write!(f, "the patches have more rows than the input's {rows} (and no `{ROW_COLUMN}`)")
            }
            PatchError::Uncovered { covered, rows } => write!(
                f,
                "the patches cover {covered} of the input's {rows} rows; without `{ROW_COLUMN}` they must cover \
                 each row once, in order"
            ),
            PatchError::Arrow(e) => write!(f, "merging the patch: {e}"),
        }
    }
}

impl std::error::Error for PatchError {}

/// The input columns a projecting handler reading `reads` is given, in input order.
fn sent_columns(input: &Schema, reads: &[String]) -> Vec<usize> {
    (0..input.fields().len()).filter(|&i| reads.iter().any(|r| r == input.field(i).name())).collect()
}

fn schema_of(input: &Schema, columns: &[usize]) -> SchemaRef {
    let fields: Vec<FieldRef> = columns.iter().map(|&i| input.fields()[i].clone()).collect();
    Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}

/// The schema a handler reading `reads` is given for the full `input` schema: the read columns
/// that exist, in the input's order.
pub fn projected_schema(input: &SchemaRef, reads: &[String]) -> SchemaRef {
    schema_of(input, &sent_columns(input, reads))
}

fn column_list(schema: &Schema) -> String {
    schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum Src {
    Input(usize),
    Patch(usize),
}

/// How batches of one input schema are projected for a handler and its patches merged back.
#[derive(Debug, Clone)]
pub struct PatchPlan {
    input: SchemaRef,
    /// The input columns sent to the handler, in input order.
    sent: Vec<usize>,
    projected: SchemaRef,
    patch: SchemaRef,
    output: SchemaRef,
    sources: Vec<Src>,
    /// The position of [`ROW_COLUMN`] in the patch schema.
    row: Option<usize>,
    /// Input columns the output takes from the input (the ones to gather on a selection).
    passthrough: Vec<usize>,
}

impl PatchPlan {
    /// Checks the patch schema a handler reading `reads` declared for [`projected_schema`] of
    /// `input`, and plans the merge.
    pub fn new(input: &SchemaRef, reads: &[String], patch: &SchemaRef) -> Result<Self, PatchError> {
        check_input(input)?;
        let sent = sent_columns(input, reads);
        let mut row = None;
        for (j, f) in patch.fields().iter().enumerate() {
            if patch.fields()[..j].iter().any(|g| g.name() == f.name()) {
                return Err(PatchError::Duplicate(f.name().clone()));
            }
            if f.name() == ROW_COLUMN {
                if f.data_type() != &DataType::UInt32 {
                    return Err(PatchError::RowType(f.data_type().to_string()));
                }
                row = Some(j);
            } else if is_reserved(f.name()) && f.name() != REJECT_COLUMN {
                return Err(PatchError::ReservedOutput(f.name().clone()));
            } else if let Ok(i) = input.index_of(f.name())
                && !sent.contains(&i)
            {
                return Err(PatchError::Shadows(f.name().clone()));
            }
        }
        let mut out_fields = Vec::with_capacity(input.fields().len() + patch.fields().len());
        let mut sources = Vec::with_capacity(out_fields.capacity());
        for (i, f) in input.fields().iter().enumerate() {
            match patch.index_of(f.name()) {
                Ok(j) => {
                    out_fields.push(patch.fields()[j].clone());
                    sources.push(Src::Patch(j));
                }
                Err(_) => {
                    out_fields.push(f.clone());
                    sources.push(Src::Input(i));
                }
            }
        }
        for (j, f) in patch.fields().iter().enumerate() {
            if Some(j) != row && input.index_of(f.name()).is_err() {
                out_fields.push(f.clone());
                sources.push(Src::Patch(j));
            }
        }
        let passthrough = sources
            .iter()
            .filter_map(|s| match s {
                Src::Input(i) => Some(*i),
                Src::Patch(_) => None,
            })
            .collect();
        Ok(PatchPlan {
            input: input.clone(),
            projected: schema_of(input, &sent),
            sent,
            patch: patch.clone(),
            output: Arc::new(Schema::new_with_metadata(out_fields, input.metadata().clone())),
            sources,
            row,
            passthrough,
        })
    }

    /// Whether batches of `input` follow this plan (the same fields as the planned input).
    pub fn fits(&self, input: &SchemaRef) -> bool {
        Arc::ptr_eq(&self.input, input) || self.input.fields() == input.fields()
    }

    /// What the handler is given.
    pub fn projected(&self) -> &SchemaRef {
        &self.projected
    }

    /// The patch schema the handler declared.
    pub fn patch(&self) -> &SchemaRef {
        &self.patch
    }

    /// The full output: the input's columns, with the patch's replacing them by name, then the
    /// patch's new columns, without [`ROW_COLUMN`].
    pub fn output(&self) -> &SchemaRef {
        &self.output
    }

    /// The columns of `batch` (of the planned input) the handler is given (a batch with no
    /// columns keeps its row count).
    pub fn project(&self, batch: &RecordBatch) -> Result<RecordBatch, PatchError> {
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let sent = self.sent.iter().map(|&i| batch.column(i).clone()).collect();
        RecordBatch::try_new_with_options(self.projected.clone(), sent, &options)
            .map_err(|e| PatchError::Arrow(format!("projecting the input: {e}")))
    }

    /// Merges the patches one call returned into its full `input` batch.
    pub fn merge(&self, input: &RecordBatch, patches: &[RecordBatch]) -> Result<Vec<RecordBatch>, PatchError> {
        let n = input.num_rows();
        let mut out = Vec::with_capacity(patches.len());
        let mut offset = 0usize;
        for patch in patches {
            if patch.schema_ref().fields() != self.patch.fields() {
                return Err(PatchError::Schema {
                    declared: column_list(&self.patch),
                    got: column_list(patch.schema_ref()),
                });
            }
            let base: Vec<Option<ArrayRef>> = match self.row {
                Some(r) => {
                    let rows = patch.column(r).as_primitive::<UInt32Type>();
                    if rows.null_count() > 0 {
                        return Err(PatchError::RowNull);
                    }
                    if let Some(&row) = rows.values().iter().find(|&&r| r as usize >= n) {
                        return Err(PatchError::RowOutOfRange { row, rows: n });
                    }
                    gather(input, &self.passthrough, rows)?
                }
                None => {
                    let len = patch.num_rows();
                    if offset + len > n {
                        return Err(PatchError::TooManyRows { rows: n });
                    }
                    let mut cols = vec![None; input.num_columns()];
                    for &i in &self.passthrough {
                        cols[i] = Some(input.column(i).slice(offset, len));
                    }
                    offset += len;
                    cols
                }
            };
            let columns: Vec<ArrayRef> = self
                .sources
                .iter()
                .map(|s| match *s {
                    Src::Input(i) => base[i].clone().expect("every passthrough column is gathered"),
                    Src::Patch(j) => patch.column(j).clone(),
                })
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(patch.num_rows()));
            let merged = RecordBatch::try_new_with_options(self.output.clone(), columns, &options)
                .map_err(|e| PatchError::Arrow(e.to_string()))?;
            out.push(merged);
        }
        if self.row.is_none() && offset != n {
            return Err(PatchError::Uncovered { covered: offset, rows: n });
        }
        Ok(out)
    }
}

/// The input columns `wanted` of `batch` at the rows `rows` selects: the arrays themselves for
/// the identity, a run-preserving filter for increasing indices (what dropping rows gives), a
/// gather otherwise. Indices are checked by the caller.
fn gather(batch: &RecordBatch, wanted: &[usize], rows: &UInt32Array) -> Result<Vec<Option<ArrayRef>>, PatchError> {
    let n = batch.num_rows();
    let v = rows.values();
    let mut cols: Vec<Option<ArrayRef>> = vec![None; batch.num_columns()];
    if v.len() == n && v.iter().enumerate().all(|(i, &r)| r as usize == i) {
        for &i in wanted {
            cols[i] = Some(batch.column(i).clone());
        }
    } else if v.windows(2).all(|w| w[0] < w[1]) {
        let mut mask = arrow_buffer::BooleanBufferBuilder::new(n);
        mask.append_n(n, false);
        for &r in v {
            mask.set_bit(r as usize, true);
        }
        let mask = arrow_array::BooleanArray::new(mask.finish(), None);
        let filter = FilterBuilder::new(&mask).optimize().build();
        for &i in wanted {
            cols[i] = Some(filter.filter(batch.column(i)).map_err(|e| PatchError::Arrow(e.to_string()))?);
        }
    } else {
        for &i in wanted {
            let taken =
                arrow_select::take::take(batch.column(i), rows, None).map_err(|e| PatchError::Arrow(e.to_string()))?;
            cols[i] = Some(taken);
        }
    }
    Ok(cols)
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

    fn reads(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn schema(fields: Vec<Field>) -> SchemaRef {
        Arc::new(Schema::new(fields))
    }

    #[test]
    fn projection_keeps_rows_and_input_order() {
        let input = input();
        let plan = PatchPlan::new(&input.schema(), &reads(&["c", "a", "nope"]), &schema(vec![])).unwrap();
        let p = plan.project(&input).unwrap();
        assert_eq!(p.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["a", "c"]);
        let none = PatchPlan::new(&input.schema(), &[], &schema(vec![])).unwrap().project(&input).unwrap();
        assert_eq!((none.num_columns(), none.num_rows()), (0, 3));
    }

    #[test]
    fn merge_replaces_appends_and_selects() {
        let input = input();
        let patch_schema = schema(vec![
            Field::new("c", DataType::Utf8, false),
            Field::new("d", DataType::Int64, false),
            row_field().as_ref().clone(),
        ]);
        let plan = PatchPlan::new(&input.schema(), &reads(&["c"]), &patch_schema).unwrap();
        let patch = RecordBatch::try_new(
            patch_schema,
            vec![
                Arc::new(StringArray::from(vec!["q", "r"])),
                Arc::new(Int64Array::from(vec![5, 6])),
                Arc::new(UInt32Array::from(vec![2, 0])),
            ],
        )
        .unwrap();
        let out = plan.merge(&input, &[patch]).unwrap();
        let names: Vec<_> = out[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(out[0].column(0).as_primitive::<arrow_array::types::Int64Type>().values(), &[3, 1]);
        assert_eq!(out[0].column(2).as_string::<i32>().value(0), "q");
    }

    #[test]
    fn row_for_row_patches_must_cover_the_input_once() {
        let input = input();
        let patch_schema = schema(vec![Field::new("d", DataType::Int64, false)]);
        let plan = PatchPlan::new(&input.schema(), &[], &patch_schema).unwrap();
        let short = RecordBatch::try_new(patch_schema, vec![Arc::new(Int64Array::from(vec![5, 6]))]).unwrap();
        assert_eq!(
            plan.merge(&input, std::slice::from_ref(&short)).unwrap_err(),
            PatchError::Uncovered { covered: 2, rows: 3 }
        );
        let out = plan.merge(&input, &[short.clone(), short.slice(0, 1)]).unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(
            plan.merge(&input, &[short.clone(), short.clone()]).unwrap_err(),
            PatchError::TooManyRows { rows: 3 }
        );
    }

    #[test]
    fn broken_rules_are_named() {
        let input = input().schema();
        let dup = schema(vec![Field::new("d", DataType::Int64, false), Field::new("d", DataType::Utf8, false)]);
        assert_eq!(PatchPlan::new(&input, &[], &dup).unwrap_err(), PatchError::Duplicate("d".into()));
        let row = schema(vec![Field::new(ROW_COLUMN, DataType::Int64, false)]);
        assert_eq!(PatchPlan::new(&input, &[], &row).unwrap_err(), PatchError::RowType("Int64".into()));
        let shadow = schema(vec![Field::new("b", DataType::Int64, false)]);
        let e = PatchPlan::new(&input, &reads(&["a"]), &shadow).unwrap_err();
        assert!(e.is_config() && e.to_string().contains("column `b`"), "{e}");
        let odd = schema(vec![Field::new("_sluice_x", DataType::Int64, false)]);
        assert_eq!(PatchPlan::new(&input, &[], &odd).unwrap_err(), PatchError::ReservedOutput("_sluice_x".into()));
        let reject = schema(vec![reject_field().as_ref().clone()]);
        assert!(PatchPlan::new(&input, &[], &reject).is_ok());
        let reserved = schema(vec![Field::new(ROW_COLUMN, DataType::UInt32, false)]);
        let e = PatchPlan::new(&reserved, &[], &schema(vec![])).unwrap_err();
        assert!(e.is_config() && e.to_string().contains("reserved"), "{e}");
    }

    #[test]
    fn patches_out_of_range_null_or_of_another_schema_are_refused() {
        let input = input();
        let patch_schema = schema(vec![row_field().as_ref().clone()]);
        let plan = PatchPlan::new(&input.schema(), &[], &patch_schema).unwrap();
        let rows = |v: Vec<Option<u32>>| {
            RecordBatch::try_new(patch_schema.clone(), vec![Arc::new(UInt32Array::from(v))]).unwrap()
        };
        assert_eq!(
            plan.merge(&input, &[rows(vec![Some(3)])]).unwrap_err(),
            PatchError::RowOutOfRange { row: 3, rows: 3 }
        );
        let other = schema(vec![Field::new("d", DataType::Int64, false)]);
        let d = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        assert!(matches!(plan.merge(&input, &[d]).unwrap_err(), PatchError::Schema { .. }));
        let out = plan.merge(&input, &[rows(vec![Some(2), Some(2)]), rows(vec![])]).unwrap();
        assert_eq!(out.iter().map(|b| b.num_rows()).collect::<Vec<_>>(), [2, 0]);
        let nullable = schema(vec![Field::new(ROW_COLUMN, DataType::UInt32, true)]);
        let plan = PatchPlan::new(&input.schema(), &[], &nullable).unwrap();
        let null = RecordBatch::try_new(nullable, vec![Arc::new(UInt32Array::from(vec![None]))]).unwrap();
        assert_eq!(plan.merge(&input, &[null]).unwrap_err(), PatchError::RowNull);
    }
}
