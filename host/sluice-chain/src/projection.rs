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

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_contract::{PatchError, PatchPlan};

use crate::error::PluginError;
use crate::plugin::{Handler, StateSpec};

pub use sluice_contract::ROW_COLUMN;

/// `handler` itself when it takes whole batches, else wrapped in [`Projected`].
pub fn wrap(mut handler: Box<dyn Handler>) -> Result<Box<dyn Handler>, PluginError> {
    Ok(match handler.projection()? {
        Some(reads) => Box::new(Projected::new(handler, reads)),
        None => handler,
    })
}

/// A broken patch rule as the runner reports it: a configuration error (an output name that
/// shadows an unread input column, a reserved input name) or bad guest output.
fn plugin_error(e: PatchError) -> PluginError {
    if e.is_config() {
        PluginError::Config { message: e.to_string(), key: None }
    } else {
        PluginError::BadOutput(e.to_string())
    }
}

/// A projecting handler, presented to the runner as one that takes and returns whole batches.
/// The rules are `sluice_contract`'s, which the guest SDK applies too.
pub struct Projected {
    inner: Box<dyn Handler>,
    reads: Vec<String>,
    plan: Option<PatchPlan>,
}

impl Projected {
    pub fn new(inner: Box<dyn Handler>, reads: Vec<String>) -> Self {
        Projected { inner, reads, plan: None }
    }

    fn plan_for(&mut self, input: &SchemaRef) -> Result<&PatchPlan, PluginError> {
        if !self.plan.as_ref().is_some_and(|p| p.fits(input)) {
            // The reserved-name check comes before the handler sees the projected schema.
            sluice_contract::check_input(input).map_err(plugin_error)?;
            let projected = sluice_contract::projected_schema(input, &self.reads);
            let patch = self.inner.output_schema(&projected)?;
            self.plan = Some(PatchPlan::new(input, &self.reads, &patch).map_err(plugin_error)?);
        }
        Ok(self.plan.as_ref().expect("planned above"))
    }
}

impl Handler for Projected {
    fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        Ok(self.plan_for(input)?.output().clone())
    }

    fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
        self.inner.state()
    }

    fn projection(&mut self) -> Result<Option<Vec<String>>, PluginError> {
        Ok(None)
    }

    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
        let projected = self.plan_for(batch.schema_ref())?.project(batch).map_err(plugin_error)?;
        let patches = self.inner.process(&projected)?;
        self.plan.as_ref().expect("planned above").merge(batch, &patches).map_err(plugin_error)
    }

    fn seed(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        let projected = self.plan_for(batch.schema_ref())?.project(batch).map_err(plugin_error)?;
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
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray, UInt32Array, cast::AsArray};
    use arrow_schema::{DataType, Field, Schema};

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
