//! JSON lines through arrow-json: one object per line, an explicit schema or one inferred from a
//! sample. A batch of lines is decoded at once; when that fails, the batch is decoded line by
//! line so that only the bad lines become rejects.

use std::io::{BufRead, BufReader, Cursor, Read};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::SchemaRef;
use sluice_core::error::SourceError;
use sluice_core::source::{Reject, SourceItem};

use crate::csv::{SAMPLE_BYTES, read_sample, strip_bom, whole_lines};
use crate::input::Input;

const INFER_ROWS: usize = 1000;

fn format_err(unit: &str, message: impl Into<String>) -> SourceError {
    SourceError::Format { path: unit.to_string(), message: message.into() }
}

pub(crate) struct JsonlItems {
    lines: BufReader<Box<dyn Read + Send>>,
    schema: SchemaRef,
    decoder: Decoder,
    batch_rows: usize,
    line_no: u64,
    buf: Vec<u8>,
    /// (line number, start, end) of each line in `buf`.
    spans: Vec<(u64, usize, usize)>,
    held: Option<RecordBatch>,
    unit: String,
    done: bool,
}

impl JsonlItems {
    pub(crate) fn new(
        mut input: Input,
        columns: Option<SchemaRef>,
        batch_rows: usize,
        unit: String,
    ) -> Result<Self, SourceError> {
        let sample = strip_bom(read_sample(&mut input, SAMPLE_BYTES).map_err(|e| format_err(&unit, e.to_string()))?);
        let schema = match columns {
            Some(s) => s,
            None => {
                let whole = whole_lines(&sample);
                // Infer from the lines that parse; bad lines become rejects later.
                let good: Vec<u8> = whole
                    .split(|&b| b == b'\n')
                    .filter(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))
                    .take(INFER_ROWS)
                    .flat_map(|l| l.iter().copied().chain([b'\n']))
                    .collect();
                let (s, _) = arrow_json::reader::infer_json_schema(Cursor::new(good), Some(INFER_ROWS))
                    .map_err(|e| format_err(&unit, format!("cannot infer a schema: {e}")))?;
                Arc::new(s)
            }
        };
        let decoder = Self::decoder(&schema, batch_rows, &unit)?;
        let stream: Box<dyn Read + Send> = Box::new(Cursor::new(sample).chain(input));
        Ok(JsonlItems {
            lines: BufReader::with_capacity(1 << 20, stream),
            schema,
            decoder,
            batch_rows: batch_rows.max(1),
            line_no: 0,
            buf: Vec::new(),
            spans: Vec::new(),
            held: None,
            unit,
            done: false,
        })
    }

    fn decoder(schema: &SchemaRef, batch_rows: usize, unit: &str) -> Result<Decoder, SourceError> {
        ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_rows.max(1))
            .build_decoder()
            .map_err(|e| format_err(unit, e.to_string()))
    }

    /// Decode `buf` whole. `Err` leaves the decoder unusable.
    fn decode_all(decoder: &mut Decoder, buf: &[u8]) -> Result<Option<RecordBatch>, arrow_schema::ArrowError> {
        let mut at = 0;
        while at < buf.len() {
            let n = decoder.decode(&buf[at..])?;
            if n == 0 {
                break;
            }
            at += n;
        }
        decoder.flush()
    }

    /// Read up to a batch of non-blank lines into `buf`. `Ok(false)` at end of input.
    fn fill(&mut self) -> Result<bool, SourceError> {
        self.buf.clear();
        self.spans.clear();
        while self.spans.len() < self.batch_rows {
            let start = self.buf.len();
            let n = self.lines.read_until(b'\n', &mut self.buf).map_err(|e| format_err(&self.unit, e.to_string()))?;
            if n == 0 {
                return Ok(false);
            }
            self.line_no += 1;
            let line = &self.buf[start..];
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                self.buf.truncate(start);
                continue;
            }
            let mut end = self.buf.len();
            if self.buf[end - 1] != b'\n' {
                self.buf.push(b'\n');
                end += 1;
            }
            self.spans.push((self.line_no, start, end));
        }
        Ok(true)
    }

    /// Decode the filled lines: whole, else line by line.
    fn decode(&mut self) -> Result<(Option<RecordBatch>, Vec<Reject>), SourceError> {
        if self.spans.is_empty() {
            return Ok((None, Vec::new()));
        }
        match Self::decode_all(&mut self.decoder, &self.buf) {
            Ok(b) => return Ok((b, Vec::new())),
            Err(_) => self.decoder = Self::decoder(&self.schema, self.batch_rows, &self.unit)?,
        }
        let mut good = Vec::new();
        let mut rejects = Vec::new();
        for &(line, start, end) in &self.spans {
            let text = &self.buf[start..end];
            let reason = match std::str::from_utf8(text) {
                Err(_) => Some("invalid UTF-8".to_string()),
                Ok(_) => match Self::decode_all(&mut self.decoder, text) {
                    Ok(b) => {
                        good.extend(b);
                        None
                    }
                    Err(e) => Some(e.to_string()),
                },
            };
            if let Some(reason) = reason {
                self.decoder = Self::decoder(&self.schema, self.batch_rows, &self.unit)?;
                let raw = String::from_utf8_lossy(text).trim_end().to_string();
                rejects.push(Reject { line, raw, reason, step: "parse".into() });
            }
        }
        let batch = if good.is_empty() {
            None
        } else {
            Some(
                arrow_select::concat::concat_batches(&self.schema, &good)
                    .map_err(|e| format_err(&self.unit, e.to_string()))?,
            )
        };
        Ok((batch, rejects))
    }
}

impl Iterator for JsonlItems {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(b) = self.held.take() {
                return Some(Ok(SourceItem::Batch(b)));
            }
            if self.done {
                return None;
            }
            let step = self.fill().and_then(|more| {
                self.done = !more;
                self.decode()
            });
            match step {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok((batch, rejects)) => {
                    let batch = batch.filter(|b| b.num_rows() > 0);
                    if !rejects.is_empty() {
                        self.held = batch;
                        return Some(Ok(SourceItem::Rejects(rejects)));
                    }
                    if let Some(b) = batch {
                        return Some(Ok(SourceItem::Batch(b)));
                    }
                }
            }
        }
    }
}
