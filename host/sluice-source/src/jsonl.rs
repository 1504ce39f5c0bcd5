//! JSON lines through arrow-json: one object per line, an explicit schema or one inferred from a
//! sample. A batch of lines is decoded at once; when that fails, the batch is decoded line by
//! line so that only the bad lines become rejects. A line longer than `max_record_bytes` is read
//! through without being kept and becomes a reject too.

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
    max_record_bytes: u64,
    /// Rejects of lines too long to keep, since the last batch.
    too_long: Vec<Reject>,
    held: Option<RecordBatch>,
    unit: String,
    done: bool,
}

impl JsonlItems {
    pub(crate) fn new(
        mut input: Input,
        columns: Option<SchemaRef>,
        batch_rows: usize,
        max_record_bytes: u64,
        unit: String,
    ) -> Result<Self, SourceError> {
        let sample = strip_bom(read_sample(&mut input, SAMPLE_BYTES).map_err(|e| format_err(&unit, e.to_string()))?);
        if sample.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(format_err(
                &unit,
                "starts with `[`: a JSON array, not JSON lines (one object per line); use `format: json` to read it",
            ));
        }
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
            max_record_bytes,
            too_long: Vec::new(),
            held: None,
            unit,
            done: false,
        })
    }

    fn decoder(schema: &SchemaRef, batch_rows: usize, unit: &str) -> Result<Decoder, SourceError> {
        // A column declared (or inferred as) text takes a number's or a boolean's text: `1776`
        // and `1.50` as written, `true`.
        ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_rows.max(1))
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| format_err(unit, e.to_string()))
    }

    /// Decode `buf` whole. `Err` leaves the decoder unusable. The decoder stops taking input
    /// once it holds a batch; input left then means more values than lines (a line holding two
    /// objects), an error, so that the lines are read one by one and the culprit is a reject
    /// (never a row silently dropped off the batch's end).
    fn decode_all(decoder: &mut Decoder, buf: &[u8]) -> Result<Option<RecordBatch>, arrow_schema::ArrowError> {
        let mut at = 0;
        while at < buf.len() {
            let n = decoder.decode(&buf[at..])?;
            if n == 0 {
                break;
            }
            at += n;
        }
        if buf[at..].iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(arrow_schema::ArrowError::JsonError("more JSON values than lines".into()));
        }
        decoder.flush()
    }

    /// Read up to a batch of non-blank lines into `buf`. `Ok(false)` at end of input.
    fn fill(&mut self) -> Result<bool, SourceError> {
        self.buf.clear();
        self.spans.clear();
        while self.spans.len() < self.batch_rows && self.too_long.len() < self.batch_rows {
            let start = self.buf.len();
            let read = read_line(&mut self.lines, &mut self.buf, self.max_record_bytes)
                .map_err(|e| format_err(&self.unit, format!("line {}: {e}", self.line_no + 1)))?;
            match read {
                Line::End => return Ok(false),
                Line::Kept(_) => {}
                Line::TooLong { bytes, prefix } => {
                    self.line_no += 1;
                    self.too_long.push(Reject {
                        line: self.line_no,
                        raw: prefix,
                        reason: format!(
                            "line of {bytes} bytes is longer than limits.max_record_bytes = {}",
                            self.max_record_bytes
                        ),
                        step: "parse".into(),
                    });
                    continue;
                }
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
            // A row per line; more (a line holding two objects) or fewer: line by line.
            Ok(b) if b.as_ref().map_or(0, RecordBatch::num_rows) == self.spans.len() => return Ok((b, Vec::new())),
            Ok(_) | Err(_) => self.decoder = Self::decoder(&self.schema, self.batch_rows, &self.unit)?,
        }
        let mut good = Vec::new();
        let mut rejects = Vec::new();
        for &(line, start, end) in &self.spans {
            let text = &self.buf[start..end];
            let reason = match std::str::from_utf8(text) {
                Err(_) => Some("invalid UTF-8".to_string()),
                Ok(_) => match Self::decode_all(&mut self.decoder, text) {
                    Ok(b) if b.as_ref().map_or(0, RecordBatch::num_rows) > 1 => {
                        Some(format!("the line holds {} JSON objects, not one", b.map_or(0, |b| b.num_rows())))
                    }
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

/// What [`read_line`] found.
#[derive(Debug, PartialEq)]
enum Line {
    /// A line of this many bytes (with its `\n`, if any), appended to the buffer.
    Kept(usize),
    /// A line longer than the limit, read through but not kept: its size and its first bytes.
    TooLong {
        bytes: u64,
        prefix: String,
    },
    End,
}

/// Bytes of an oversized line kept to show in its reject.
const PREFIX_BYTES: usize = 256;

/// Append the next line to `buf`, unless it has more than `max` bytes (not counting its `\n`):
/// then it is read through to its end without being kept. Never holds more than `max` + 1 bytes
/// of a line.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: u64) -> std::io::Result<Line> {
    let start = buf.len();
    let mut bytes = 0u64;
    // The first bytes of a line found too long, while the rest of it is skipped.
    let mut head: Option<Vec<u8>> = None;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            break;
        }
        let (n, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let content = bytes + n as u64 - u64::from(done);
        if head.is_none() && content > max {
            head = Some(buf.split_off(start));
        }
        match &mut head {
            None => buf.extend_from_slice(&avail[..n]),
            Some(h) => {
                let room = PREFIX_BYTES.saturating_sub(h.len());
                h.extend_from_slice(&avail[..n.min(room)]);
            }
        }
        bytes += n as u64;
        r.consume(n);
        if done {
            break;
        }
    }
    Ok(match head {
        Some(mut h) => {
            h.truncate(PREFIX_BYTES);
            Line::TooLong { bytes, prefix: format!("{}…", String::from_utf8_lossy(&h)) }
        }
        None if bytes == 0 => Line::End,
        None => Line::Kept(bytes as usize),
    })
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
                Ok((batch, mut rejects)) => {
                    if !self.too_long.is_empty() {
                        rejects.append(&mut self.too_long);
                        rejects.sort_by_key(|r| r.line);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_past_the_limit_is_read_through_without_being_kept() {
        let long = format!("{{\"a\": \"{}\"}}", "x".repeat(5000));
        let text = format!("{{\"a\": \"1\"}}\n{long}\n{{\"a\": \"2\"}}\n{long}");
        // A small buffer, so that the long lines span many reads.
        let mut r = BufReader::with_capacity(64, text.as_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let l = read_line(&mut r, &mut buf, 100).unwrap();
            assert!(buf.len() <= 2 * 101, "{} bytes held", buf.len());
            if l == Line::End {
                break;
            }
            got.push(l);
        }
        assert_eq!(got[0], Line::Kept(11));
        let Line::TooLong { bytes, prefix } = &got[1] else { panic!("{:?}", got[1]) };
        assert_eq!((*bytes, prefix.chars().count()), (long.len() as u64 + 1, PREFIX_BYTES + 1));
        assert!(prefix.starts_with("{\"a\": \"xxx"));
        assert_eq!(got[2], Line::Kept(11));
        assert!(matches!(got[3], Line::TooLong { bytes, .. } if bytes == long.len() as u64));
        assert_eq!(got.len(), 4);
        assert_eq!(buf, b"{\"a\": \"1\"}\n{\"a\": \"2\"}\n");
        // Exactly the limit is kept, with or without its newline.
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut &b"12345\n123456"[..], &mut buf, 5).unwrap(), Line::Kept(6));
    }

    #[test]
    fn a_line_with_two_objects_is_a_reject_not_a_row_lost_off_the_batch() {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "id",
            arrow_schema::DataType::Int64,
            true,
        )]));
        let text = b"{\"id\": 1}\n{\"id\": 2} {\"id\": 3}\n{\"id\": 4}\n".to_vec();
        // A full batch (3 lines) and a partial one (batch size 10): the same.
        for rows in [3, 10] {
            let items =
                JsonlItems::new(Box::new(Cursor::new(text.clone())), Some(schema.clone()), rows, 1 << 20, "t".into())
                    .unwrap();
            check(crate::drain(items).unwrap());
        }
    }

    fn check((batches, rejects): (Vec<RecordBatch>, Vec<Reject>)) {
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(ids, vec![1, 4]);
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].line, 2);
        assert!(rejects[0].reason.contains("2 JSON objects"), "{rejects:?}");
    }

    #[test]
    fn long_lines_become_rejects_with_their_line_numbers() {
        let text = format!("{{\"a\": 1}}\n{{\"a\": {}}}\n{{\"a\": 3}}\n", "9".repeat(300));
        let items =
            JsonlItems::new(Box::new(std::io::Cursor::new(text.into_bytes())), None, 10, 64, "t.jsonl".into()).unwrap();
        let (batches, rejects) = crate::drain(items).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].line, 2);
        assert!(
            rejects[0].reason.contains("line of 308 bytes is longer than limits.max_record_bytes = 64"),
            "{:?}",
            rejects[0]
        );
    }
}
