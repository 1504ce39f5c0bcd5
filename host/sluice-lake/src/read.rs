//! Streaming Parquet reads for sources: the lake crate is the only one that knows parquet, so
//! `sluice-source` reads Parquet input through this small iterator.

use std::fs::File;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

/// The record batches of one Parquet file, read a row group at a time (bounded memory).
pub struct ParquetBatches {
    reader: ParquetRecordBatchReader,
}

impl ParquetBatches {
    /// Open `file` (its footer is read now). Errors are messages; the caller names the path.
    pub fn open(file: File, batch_rows: usize) -> Result<Self, String> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| format!("not a readable Parquet file: {e}"))?
            .with_batch_size(batch_rows.max(1))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ParquetBatches { reader })
    }

    pub fn schema(&self) -> SchemaRef {
        arrow_array::RecordBatchReader::schema(&self.reader)
    }
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch, String>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next().map(|r| r.map_err(|e| e.to_string()))
    }
}
