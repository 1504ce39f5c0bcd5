//! Arrow IPC stream encoding and decoding (no compression), as exchanged with the host.

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Schema, SchemaRef};

use crate::Error;

/// Decodes one IPC stream: its schema and all its batches.
///
/// Takes ownership of the bytes so that aligned buffers are used without a copy.
pub fn read_stream(bytes: Vec<u8>) -> Result<(SchemaRef, Vec<RecordBatch>), Error> {
    let bad = |e: arrow_schema::ArrowError| Error::data(format!("invalid Arrow IPC stream: {e}"));
    let mut buffer = Buffer::from_vec(bytes);
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !buffer.is_empty() {
        if let Some(batch) = decoder.decode(&mut buffer).map_err(bad)? {
            batches.push(batch);
        }
    }
    decoder.finish().map_err(bad)?;
    let schema = decoder.schema().ok_or_else(|| Error::data("invalid Arrow IPC stream: no schema message"))?;
    Ok((schema, batches))
}

/// Decodes an IPC stream that carries only a schema (any batches are ignored).
pub fn read_schema(bytes: Vec<u8>) -> Result<SchemaRef, Error> {
    read_stream(bytes).map(|(schema, _)| schema)
}

/// Encodes `batches` as one IPC stream with `schema` (which every batch must have).
pub fn write_stream(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let internal = |e: arrow_schema::ArrowError| Error::internal(format!("writing Arrow IPC: {e}"));
    let capacity = 256 + batches.iter().map(|b| b.get_array_memory_size()).sum::<usize>();
    let mut writer = StreamWriter::try_new(Vec::with_capacity(capacity), schema).map_err(internal)?;
    for batch in batches {
        writer.write(batch).map_err(internal)?;
    }
    writer.finish().map_err(internal)?;
    writer.into_inner().map_err(internal)
}

/// Encodes a schema as an IPC stream with no batches.
pub fn write_schema(schema: &Schema) -> Result<Vec<u8>, Error> {
    write_stream(schema, &[])
}

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field};
    use std::sync::Arc;

    #[test]
    fn round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let a: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let b = RecordBatch::try_new(schema.clone(), vec![a]).unwrap();
        let bytes = write_stream(&schema, &[b.clone(), b.clone()]).unwrap();
        let (s, batches) = read_stream(bytes).unwrap();
        assert_eq!(s, schema);
        assert_eq!(batches, vec![b.clone(), b]);
        let only = read_schema(write_schema(&schema).unwrap()).unwrap();
        assert_eq!(only, schema);
    }

    #[test]
    fn a_batch_without_columns_keeps_its_rows() {
        // What a projecting handler gets when it reads no input column, or returns when it
        // changes none.
        let schema = Arc::new(Schema::empty());
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(5));
        let b = RecordBatch::try_new_with_options(schema.clone(), vec![], &options).unwrap();
        let (_, batches) = read_stream(write_stream(&schema, &[b]).unwrap()).unwrap();
        assert_eq!(batches.iter().map(|b| (b.num_columns(), b.num_rows())).collect::<Vec<_>>(), [(0, 5)]);
    }

    #[test]
    fn garbage_is_a_data_error() {
        assert!(matches!(read_stream(b"hello world, not arrow".to_vec()), Err(Error::Data { .. })));
        assert!(read_stream(Vec::new()).is_err());
    }
}
