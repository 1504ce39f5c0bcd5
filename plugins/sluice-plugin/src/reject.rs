//! Setting rows aside: the `_sluice_reject` output column.
//!
//! A handler may add a nullable Utf8 column named [`REJECT_COLUMN`] to its declared output
//! schema. The host sends every row where it is not null to the lake's `_rejects` dataset (with
//! the text as the reason and the step's name), drops those rows, and removes the column before
//! the next step or the sink. [`Rejects`] collects the reasons of one batch.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{FieldRef, Schema, SchemaRef};

use crate::Error;

/// The name of the reject column and its field (`sluice_contract`'s, shared with the host).
pub use sluice_contract::{REJECT_COLUMN, reject_field};

/// `schema` with the reject column appended (unchanged when it already has it).
pub fn with_reject_column(schema: &SchemaRef) -> SchemaRef {
    if schema.index_of(REJECT_COLUMN).is_ok() {
        return schema.clone();
    }
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(reject_field());
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The reasons rows of one batch are rejected for. Several reasons for one row are joined
/// with `"; "`.
///
/// ```
/// # use sluice_plugin::prelude::*;
/// # use sluice_plugin::reject::{Rejects, with_reject_column};
/// # fn demo(batch: RecordBatch, out_schema: SchemaRef) -> Result<RecordBatch, Error> {
/// let mut rejects = Rejects::new(batch.num_rows());
/// rejects.reject(2, "column `qty`: `x7` is not an int64");
/// // out_schema = with_reject_column(&input_schema) in output_schema()
/// rejects.append_to(&batch, out_schema)
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Rejects {
    reasons: Vec<Option<String>>,
    count: usize,
}

impl Rejects {
    /// No row of an `rows`-row batch rejected yet.
    pub fn new(rows: usize) -> Self {
        Rejects { reasons: vec![None; rows], count: 0 }
    }

    /// Rejects `row` for `reason` (appended to an earlier reason of the same row).
    pub fn reject(&mut self, row: usize, reason: impl AsRef<str>) {
        match &mut self.reasons[row] {
            Some(r) => {
                r.push_str("; ");
                r.push_str(reason.as_ref());
            }
            slot @ None => {
                *slot = Some(reason.as_ref().to_string());
                self.count += 1;
            }
        }
    }

    /// Whether `row` is rejected.
    pub fn is_rejected(&self, row: usize) -> bool {
        self.reasons[row].is_some()
    }

    /// How many rows are rejected.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The reject column (null for rows that are kept).
    pub fn to_array(&self) -> ArrayRef {
        let bytes = self.reasons.iter().flatten().map(String::len).sum();
        let mut b = StringBuilder::with_capacity(self.reasons.len(), bytes);
        for r in &self.reasons {
            b.append_option(r.as_deref());
        }
        Arc::new(b.finish())
    }

    /// `batch`'s columns plus the reject column, as a batch of `schema` (which must be
    /// `batch`'s schema with the reject column last, see [`with_reject_column`]).
    pub fn append_to(&self, batch: &RecordBatch, schema: SchemaRef) -> Result<RecordBatch, Error> {
        let mut cols = batch.columns().to_vec();
        cols.push(self.to_array());
        Ok(RecordBatch::try_new(schema, cols)?)
    }
}
