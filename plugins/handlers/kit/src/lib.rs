//! Shared building blocks of the standard handler plugins.
//!
//! Every module works column-wise on Arrow arrays and avoids per-row heap
//! allocations: keys are encoded into reused scratch buffers, numbers are
//! read through typed slices, strings are appended to builders in place.

pub mod agg;
pub mod cal;
pub mod expr;
pub mod keys;
pub mod num;
pub mod temporal;
pub mod time;

use sluice_plugin::prelude::*;

/// The index of `name` in `schema`, or a config error on `key` naming the column.
pub fn column_index(schema: &Schema, name: &str, key: &str) -> Result<usize, Error> {
    schema.index_of(name).map_err(|_| Error::config(format!("column `{name}` not found in the input")).key(key))
}

/// A schema with the fields of `input` (and its metadata) plus `extra`.
pub fn schema_with(input: &SchemaRef, extra: impl IntoIterator<Item = FieldRef>) -> SchemaRef {
    let mut fields: Vec<FieldRef> = input.fields().iter().cloned().collect();
    fields.extend(extra);
    std::sync::Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()))
}
