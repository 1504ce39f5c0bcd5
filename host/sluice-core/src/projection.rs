//! Column projection: a handler that reads a few columns is sent only those and returns patches.
//!
//! A handler whose [`Handler::projection`] names the columns it reads (contract 0.3) works on
//! patches: [`Projected`] sends it a batch of just those columns and merges what it returns
//! back into the full batch. A patch column replaces the input column of the same name in place,
//! or is appended when new; every other input column passes through without crossing the
//! boundary. A patch with a [`ROW_COLUMN`] selects, reorders or repeats input rows (its row `i`
//! is input row `_sluice_row[i]`); a patch without one continues the input row for row.
//!
//! Patches are guest output, so they are checked like any: indices in range and not null, row
//! counts that add up, no column that would silently shadow an unread input column, and no rows
//! held back for `finish`.

use std::sync::Arc;

use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, cast::AsArray};
use arrow_schema::{DataType, FieldRef, Schema, SchemaRef};
use arrow_select::filter::FilterBuilder;

use crate::error::PluginError;
use crate::plugin::{Handler, StateSpec};

/// The row-index column of a patch: UInt32, no nulls, indexing the rows of the call's input.
pub const ROW_COLUMN: &str = "_sluice_row";

/// `handler` itself when it takes whole batches, else wrapped in [`Projected`].
pub fn wrap(mut handler: Box<dyn Handler>) -> Result<Box<dyn Handler>, PluginError> {
    Ok(match handler.projection()? {
        Some(reads) => Box::new(Projected::new(handler, reads)),
        None => handler,
    })
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum Src {
    Input(usize),
    Patch(usize),
}

/// How batches of one input schema are projected and merged.
struct Plan {
    input: SchemaRef,
    /// The input columns sent to the handler, in input order.
    sent: Vec<usize>,
    projected: SchemaRef,
    output: SchemaRef,
    sources: Vec<Src>,
    /// The position of [`ROW_COLUMN`] in the patch schema.
    row: Option<usize>,
    /// Input columns the output takes from the input (the ones to gather on a selection).
    passthrough: Vec<usize>,
}

/// A projecting handler, presented to the runner as one that takes and returns whole batches.
pub struct Projected {
    inner: Box<dyn Handler>,
    reads: Vec<String>,
    plan: Option<Plan>,
}

impl Projected {
    pub fn new(inner: Box<dyn Handler>, reads: Vec<String>) -> Self {
        Projected { inner, reads, plan: None }
    }

    fn plan_for(&mut self, input: &SchemaRef) -> Result<&Plan, PluginError> {
        let fresh = match &self.plan {
            Some(p) => !(Arc::ptr_eq(&p.input, input) || p.input.fields() == input.fields()),
            None => true,
        };
        if fresh {
            self.plan = Some(self.make_plan(input)?);
        }
        Ok(self.plan.as_ref().expect("planned above"))
    }

    fn make_plan(&mut self, input: &SchemaRef) -> Result<Plan, PluginError> {
        if input.index_of(ROW_COLUMN).is_ok() {
            return Err(PluginError::Config {
                message: format!("the input has a column `{ROW_COLUMN}`; names starting with `_sluice_` are reserved"),
                key: None,
            });
        }
        let sent: Vec<usize> =
            (0..input.fields().len()).filter(|&i| self.reads.iter().any(|r| r == input.field(i).name())).collect();
        let fields: Vec<FieldRef> = sent.iter().map(|&i| input.fields()[i].clone()).collect();
        let projected = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        let patch = self.inner.output_schema(&projected)?;
        let mut row = None;
        for (j, f) in patch.fields().iter().enumerate() {
            if patch.fields()[..j].iter().any(|g| g.name() == f.name()) {
                return Err(PluginError::BadOutput(format!("the patch schema has two columns named `{}`", f.name())));
            }
            if f.name() == ROW_COLUMN {
                if f.data_type() != &DataType::UInt32 {
                    return Err(PluginError::BadOutput(format!(
                        "`{ROW_COLUMN}` must be UInt32, not {}",
                        f.data_type()
                    )));
                }
                row = Some(j);
            } else if let Ok(i) = input.index_of(f.name())
                && !sent.contains(&i)
            {
                return Err(PluginError::Config {
                    message: format!(
                        "the step outputs a column `{}`, which its input already has; the step does not read \
                         that column, so it cannot replace it (choose another output name)",
                        f.name()
                    ),
                    key: None,
                });
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
        Ok(Plan {
            input: input.clone(),
            sent,
            projected,
            output: Arc::new(Schema::new_with_metadata(out_fields, input.metadata().clone())),
            sources,
            row,
            passthrough,
        })
    }
}

/// The input columns `wanted` of `batch` at the rows `rows` selects: the arrays themselves for
/// the identity, a run-preserving filter for increasing indices (what dropping rows gives), a
/// gather otherwise. Indices are checked by the caller.
fn gather(
    batch: &RecordBatch,
    wanted: &[usize],
    rows: &arrow_array::UInt32Array,
) -> Result<Vec<Option<ArrayRef>>, PluginError> {
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
            cols[i] = Some(filter.filter(batch.column(i)).map_err(|e| PluginError::BadOutput(e.to_string()))?);
        }
    } else {
        for &i in wanted {
            let taken = arrow_select::take::take(batch.column(i), rows, None)
                .map_err(|e| PluginError::BadOutput(e.to_string()))?;
            cols[i] = Some(taken);
        }
    }
    Ok(cols)
}

impl Handler for Projected {
    fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        Ok(self.plan_for(input)?.output.clone())
    }

    fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
        self.inner.state()
    }

    fn projection(&mut self) -> Result<Option<Vec<String>>, PluginError> {
        Ok(None)
    }

    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
        let schema = batch.schema();
        self.plan_for(&schema)?;
        let plan = self.plan.as_ref().expect("planned above");
        let n = batch.num_rows();
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        let sent = plan.sent.iter().map(|&i| batch.column(i).clone()).collect();
        let projected = RecordBatch::try_new_with_options(plan.projected.clone(), sent, &options)
            .map_err(|e| PluginError::BadOutput(format!("projecting the input: {e}")))?;
        let patches = self.inner.process(&projected)?;
        let mut out = Vec::with_capacity(patches.len());
        let mut offset = 0usize;
        for patch in &patches {
            let base: Vec<Option<ArrayRef>> = match plan.row {
                Some(r) => {
                    let rows = patch.column(r).as_primitive::<UInt32Type>();
                    if rows.null_count() > 0 {
                        return Err(PluginError::BadOutput(format!("`{ROW_COLUMN}` has nulls")));
                    }
                    if let Some(&bad) = rows.values().iter().find(|&&r| r as usize >= n) {
                        return Err(PluginError::BadOutput(format!(
                            "`{ROW_COLUMN}` has row {bad}, but the input has {n} rows"
                        )));
                    }
                    gather(batch, &plan.passthrough, rows)?
                }
                None => {
                    let len = patch.num_rows();
                    if offset + len > n {
                        return Err(PluginError::BadOutput(format!(
                            "the patches have more rows than the input's {n} (and no `{ROW_COLUMN}`)"
                        )));
                    }
                    let mut cols = vec![None; batch.num_columns()];
                    for &i in &plan.passthrough {
                        cols[i] = Some(batch.column(i).slice(offset, len));
                    }
                    offset += len;
                    cols
                }
            };
            let columns: Vec<ArrayRef> = plan
                .sources
                .iter()
                .map(|s| match *s {
                    Src::Input(i) => base[i].clone().expect("gathered"),
                    Src::Patch(j) => patch.column(j).clone(),
                })
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(patch.num_rows()));
            let merged = RecordBatch::try_new_with_options(plan.output.clone(), columns, &options)
                .map_err(|e| PluginError::BadOutput(format!("merging the patch: {e}")))?;
            out.push(merged);
        }
        if plan.row.is_none() && offset != n {
            return Err(PluginError::BadOutput(format!(
                "the patches cover {offset} of the input's {n} rows; without `{ROW_COLUMN}` they must cover each \
                 row once, in order"
            )));
        }
        Ok(out)
    }

    fn seed(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        let schema = batch.schema();
        self.plan_for(&schema)?;
        let plan = self.plan.as_ref().expect("planned above");
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let sent = plan.sent.iter().map(|&i| batch.column(i).clone()).collect();
        let projected = RecordBatch::try_new_with_options(plan.projected.clone(), sent, &options)
            .map_err(|e| PluginError::BadOutput(format!("projecting the input: {e}")))?;
        self.inner.seed(&projected)
    }

    fn continuing(&mut self, keys: &RecordBatch) -> Result<(), PluginError> {
        self.inner.continuing(keys)
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError> {
        let held: usize = self.inner.finish()?.iter().map(|b| b.num_rows()).sum();
        if held > 0 {
            return Err(PluginError::BadOutput(format!(
                "a handler that declares a projection cannot hold rows, but `finish` returned {held}"
            )));
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray, UInt32Array};
    use arrow_schema::Field;

    /// A native projecting handler: reads `t`, returns `t * 10` and per mode a selection.
    struct Fake {
        rows: Option<fn(usize) -> Vec<u32>>,
        extra: Option<&'static str>,
        split: bool,
        hold: bool,
    }

    impl Fake {
        fn new() -> Self {
            Fake { rows: None, extra: None, split: false, hold: false }
        }
    }

    impl Handler for Fake {
        fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
            assert_eq!(input.fields().len(), 1, "only the read column is sent: {input:?}");
            let mut f = vec![Field::new("t", DataType::Int64, false)];
            if let Some(e) = self.extra {
                f.push(Field::new(e, DataType::Utf8, false));
            }
            if self.rows.is_some() {
                f.push(Field::new(ROW_COLUMN, DataType::UInt32, false));
            }
            Ok(Arc::new(Schema::new(f)))
        }
        fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
            Ok(None)
        }
        fn projection(&mut self) -> Result<Option<Vec<String>>, PluginError> {
            Ok(Some(vec!["t".into()]))
        }
        fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
            let schema = self.output_schema(&batch.schema())?;
            let t = batch.column(0).as_primitive::<arrow_array::types::Int64Type>();
            let idx: Vec<u32> = match self.rows {
                Some(f) => f(batch.num_rows()),
                None => (0..batch.num_rows() as u32).collect(),
            };
            let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(
                idx.iter().map(|&i| t.value((i as usize).min(t.len() - 1)) * 10).collect::<Vec<_>>(),
            ))];
            if self.extra.is_some() {
                cols.push(Arc::new(StringArray::from(vec!["x"; idx.len()])));
            }
            if self.rows.is_some() {
                cols.push(Arc::new(UInt32Array::from(idx.clone())));
            }
            let b = RecordBatch::try_new(schema, cols).unwrap();
            if self.hold {
                return Ok(vec![]);
            }
            Ok(if self.split { vec![b.slice(0, 1), b.slice(1, b.num_rows() - 1)] } else { vec![b] })
        }
        fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError> {
            Ok(vec![])
        }
    }

    fn input() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, false),
            Field::new("t", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(Int64Array::from(vec![5, 6, 7, 8])),
            ],
        )
        .unwrap()
    }

    fn run(fake: Fake) -> Result<Vec<RecordBatch>, PluginError> {
        let mut h = wrap(Box::new(fake))?;
        h.process(&input())
    }

    fn col(out: &[RecordBatch], name: &str) -> Vec<String> {
        out.iter()
            .flat_map(|b| {
                let c = arrow_cast::cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
                c.as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn row_for_row_patch_replaces_in_place() {
        let out = run(Fake { split: true, ..Fake::new() }).unwrap();
        let names: Vec<_> = out[0].schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["s", "t", "v"]);
        assert_eq!(col(&out, "t"), ["10", "20", "30", "40"]);
        assert_eq!(col(&out, "s"), ["a", "b", "c", "d"]);
        assert_eq!(col(&out, "v"), ["5", "6", "7", "8"]);
    }

    #[test]
    fn selections_identity_increasing_and_arbitrary() {
        for (f, s) in [
            ((|n| (0..n as u32).collect()) as fn(usize) -> Vec<u32>, vec!["a", "b", "c", "d"]),
            (|_| vec![0, 2, 3], vec!["a", "c", "d"]),
            (|_| vec![3, 3, 0], vec!["d", "d", "a"]),
            (|_| vec![], vec![]),
        ] {
            let out = run(Fake { rows: Some(f), extra: Some("e"), ..Fake::new() }).unwrap();
            assert_eq!(col(&out, "s"), s);
            assert_eq!(
                out[0].schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(),
                ["s", "t", "v", "e"]
            );
            let t: Vec<String> =
                col(&out, "v").iter().map(|v| ((v.parse::<i64>().unwrap() - 4) * 10).to_string()).collect();
            assert_eq!(col(&out, "t"), t, "t and v stay aligned");
        }
    }

    #[test]
    fn bad_patches_are_refused() {
        let e = run(Fake { rows: Some(|n| vec![n as u32]), ..Fake::new() }).unwrap_err();
        assert!(e.to_string().contains("has row 4, but the input has 4 rows"), "{e}");
        let e = run(Fake { hold: true, ..Fake::new() }).unwrap_err();
        assert!(e.to_string().contains("cover 0 of the input's 4 rows"), "{e}");
        let e = run(Fake { extra: Some("v"), ..Fake::new() }).unwrap_err();
        assert!(matches!(e, PluginError::Config { .. }) && e.to_string().contains("column `v`"), "{e}");
    }
}
