//! Arrow IPC stream encoding for the plugin boundary, and validation of what guests return.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Schema, SchemaRef};
use sluice_core::error::PluginError;

/// Encode a schema and batches as one IPC stream.
pub(crate) fn encode(schema: &Schema, batches: &[&RecordBatch]) -> Result<Vec<u8>, PluginError> {
    let internal = |e: arrow_schema::ArrowError| PluginError::Internal(format!("encoding IPC for the plugin: {e}"));
    // Sized up front: growing a multi-megabyte Vec by doubling copies it and faults in new pages
    // each time. (Buffers of sliced arrays count whole, so cap the guess.)
    let guess = 4096 + batches.iter().map(|b| b.get_array_memory_size()).sum::<usize>();
    let mut w = StreamWriter::try_new(Vec::with_capacity(guess.min(1 << 28)), schema).map_err(internal)?;
    for b in batches {
        w.write(b).map_err(internal)?;
    }
    w.into_inner().map_err(internal)
}

/// Decode an untrusted IPC stream from a guest.
///
/// Uses the push decoder over the bytes already in hand, so a lying length prefix cannot make
/// the host allocate more than the guest actually returned; buffers are validated against their
/// declared types; and a panic inside the decoder on hostile input is caught and reported.
pub(crate) fn decode(bytes: Vec<u8>) -> Result<(SchemaRef, Vec<RecordBatch>), PluginError> {
    decode_stream(Buffer::from(bytes))
}

/// [`decode`] from a buffer (the decoded arrays share it: their values are not copied).
pub(crate) fn decode_stream(stream: Buffer) -> Result<(SchemaRef, Vec<RecordBatch>), PluginError> {
    let bad = |e: arrow_schema::ArrowError| PluginError::BadOutput(format!("IPC does not decode: {e}"));
    let run = move || -> Result<(SchemaRef, Vec<RecordBatch>), PluginError> {
        let mut buf = stream;
        let mut decoder = StreamDecoder::new();
        let mut batches = Vec::new();
        while !buf.is_empty() {
            if let Some(b) = decoder.decode(&mut buf).map_err(bad)? {
                batches.push(b);
            }
        }
        decoder.finish().map_err(bad)?;
        let schema =
            decoder.schema().ok_or_else(|| PluginError::BadOutput("IPC stream has no schema message".into()))?;
        Ok((schema, batches))
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err(PluginError::BadOutput("IPC decoder rejected malformed input".into())))
}

/// Check a guest's `process`/`finish` output: size cap, decodes, matches the declared schema.
/// Returns the batches with the stream they point into.
pub(crate) fn accept(bytes: Vec<u8>, expected: &Schema, limit: u64) -> Result<(Vec<RecordBatch>, Buffer), PluginError> {
    if bytes.len() as u64 > limit {
        return Err(PluginError::OutputTooLarge { size: bytes.len() as u64, limit });
    }
    let stream = Buffer::from(bytes);
    let (schema, batches) = decode_stream(stream.clone())?;
    if !same_shape(&schema, expected) {
        return Err(PluginError::BadOutput(format!(
            "output schema {} differs from the declared schema {}",
            describe(&schema),
            describe(expected)
        )));
    }
    Ok((batches, stream))
}

/// Check a guest's `output-schema` answer: a stream with a schema and no data batches.
pub(crate) fn declared_schema(bytes: Vec<u8>) -> Result<SchemaRef, PluginError> {
    let (schema, batches) = decode(bytes)?;
    if !batches.is_empty() {
        return Err(PluginError::BadOutput("output-schema returned data batches".into()));
    }
    Ok(schema)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lying_length_prefix_is_rejected_without_allocating() {
        // Continuation marker, then a claimed metadata length of ~1.9 GB, then a few bytes.
        let garbage = b"\xff\xff\xff\xffthis is not an Arrow IPC stream".to_vec();
        let t = std::time::Instant::now();
        assert!(matches!(decode(garbage), Err(PluginError::BadOutput(_))));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(matches!(decode(Vec::new()), Err(PluginError::BadOutput(_))));
    }

    #[test]
    fn round_trip() {
        let schema = Schema::new(vec![arrow_schema::Field::new("x", arrow_schema::DataType::Int64, false)]);
        let b = RecordBatch::try_new(
            std::sync::Arc::new(schema.clone()),
            vec![std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let (s, batches) = decode(encode(&schema, &[&b, &b]).unwrap()).unwrap();
        assert!(same_shape(&s, &schema));
        assert_eq!(batches.len(), 2);
    }
}
