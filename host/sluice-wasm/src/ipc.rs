//! Arrow IPC stream encoding for the plugin boundary, and validation of what guests return.

use std::io::Cursor;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Schema, SchemaRef};
use sluice_core::error::PluginError;

/// Encode a schema and batches as one IPC stream.
pub(crate) fn encode(schema: &Schema, batches: &[&RecordBatch]) -> Result<Vec<u8>, PluginError> {
    let internal = |e: arrow_schema::ArrowError| PluginError::Internal(format!("encoding IPC for the plugin: {e}"));
    let mut w = StreamWriter::try_new(Vec::new(), schema).map_err(internal)?;
    for b in batches {
        w.write(b).map_err(internal)?;
    }
    w.into_inner().map_err(internal)
}

/// Decode an untrusted IPC stream from a guest.
pub(crate) fn decode(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), PluginError> {
    let bad = |e: arrow_schema::ArrowError| PluginError::BadOutput(format!("IPC does not decode: {e}"));
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(bad)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
    Ok((schema, batches))
}

/// Same column names and types, in the same order (metadata and nullability aside).
pub(crate) fn same_shape(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}

pub(crate) fn describe(schema: &Schema) -> String {
    let cols: Vec<String> = schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
    format!("({})", cols.join(", "))
}
