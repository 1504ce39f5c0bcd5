//! Messages: rows that arrive one per message (a stream's records), read by the same CSV and
//! JSON-lines readers as files, so that a column's type, a NULL and a bad value mean the same in
//! both. Each message is one row; a message that does not parse is set aside with its index,
//! and the caller learns which messages became the batch's rows, in order, to add columns of
//! its own (a partition, an offset) row for row.

use std::io::Cursor;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_core::error::SourceError;
use sluice_core::source::SourceItem;
use sluice_core::spec::{CsvSpec, FormatSpec};

/// How messages are read: CSV (one record per message, no header) or JSON (one object per
/// message).
#[derive(Debug, Clone)]
pub struct MessageFormat {
    csv: Option<CsvSpec>,
    schema: SchemaRef,
    max_record_bytes: u64,
}

/// What [`MessageFormat::decode`] made of a run of messages.
#[derive(Debug)]
pub struct Decoded {
    /// The rows of the messages that parsed, in message order (`None` when none did).
    pub batch: Option<RecordBatch>,
    /// The index of each row's message.
    pub kept: Vec<usize>,
    /// The messages set aside: index, the raw text (cut to a few hundred bytes) and why.
    pub rejects: Vec<(usize, String, String)>,
}

/// Bytes of a rejected message kept to show.
const RAW_BYTES: usize = 1024;

fn raw_text(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(RAW_BYTES)];
    String::from_utf8_lossy(cut).trim_end().to_string()
}

impl MessageFormat {
    /// `format` with an explicit `schema` (its columns): a CSV format's header setting does not
    /// apply (a message has no header line). JSON lines and JSON both mean one object per
    /// message. Parquet is refused.
    pub fn new(format: &FormatSpec, schema: SchemaRef, max_record_bytes: u64) -> Result<Self, String> {
        let csv = match format {
            FormatSpec::Csv(c) => Some(CsvSpec { header: false, ..c.clone() }),
            FormatSpec::Jsonl(_) | FormatSpec::Json(_) => None,
            FormatSpec::Parquet => return Err("messages are read as `csv` or `jsonl`, not `parquet`".into()),
        };
        Ok(MessageFormat { csv, schema, max_record_bytes })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Run the reader over `text`, whose lines are the messages `lines` (indexes), in order:
    /// its batches and the indexes of the lines that became rows; rejects go to `rejects`.
    fn read(
        &self,
        text: &[u8],
        lines: &[usize],
        name: &str,
        rejects: &mut Vec<(usize, String, String)>,
    ) -> Result<(Vec<RecordBatch>, Vec<usize>), SourceError> {
        if lines.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let input: crate::input::Input = Box::new(Cursor::new(text.to_vec()));
        let rows = lines.len();
        let items: Box<dyn Iterator<Item = Result<SourceItem, SourceError>>> = match &self.csv {
            Some(csv) => Box::new(crate::csv::CsvItems::new(
                input,
                csv,
                Some(self.schema.clone()),
                rows,
                self.max_record_bytes,
                name.to_string(),
            )?),
            None => Box::new(crate::jsonl::JsonlItems::new(
                input,
                Some(self.schema.clone()),
                rows,
                self.max_record_bytes,
                name.to_string(),
            )?),
        };
        let mut batches = Vec::new();
        let mut rejected_lines = Vec::new();
        for item in items {
            match item? {
                SourceItem::Batch(b) => batches.push(b),
                SourceItem::Rejects(r) => {
                    for r in r {
                        let Some(&i) = (r.line as usize).checked_sub(1).and_then(|l| lines.get(l)) else {
                            return Err(SourceError::Format {
                                path: name.to_string(),
                                message: format!("internal: a reject at line {} of {} messages", r.line, rows),
                            });
                        };
                        rejected_lines.push(r.line as usize - 1);
                        rejects.push((i, r.raw, r.reason));
                    }
                }
                SourceItem::ContentHash { .. } | SourceItem::HighWater(_) => {}
            }
        }
        rejected_lines.sort_unstable();
        rejected_lines.dedup();
        let mut skip = rejected_lines.into_iter().peekable();
        let mut kept = Vec::with_capacity(rows);
        for (l, &i) in lines.iter().enumerate() {
            if skip.peek() == Some(&l) {
                skip.next();
                continue;
            }
            kept.push(i);
        }
        Ok((batches, kept))
    }

    /// Read `messages` (`None`: a message without a value), one row each. `name` names them in
    /// an error that fails them all (none is expected: every row-level problem is a reject).
    pub fn decode(&self, messages: &[Option<&[u8]>], name: &str) -> Result<Decoded, SourceError> {
        let mut rejects = Vec::new();
        let mut lines: Vec<usize> = Vec::with_capacity(messages.len());
        let mut text: Vec<u8> = Vec::with_capacity(messages.iter().map(|m| m.map_or(0, <[u8]>::len) + 1).sum());
        for (i, m) in messages.iter().enumerate() {
            let Some(m) = m else {
                rejects.push((i, String::new(), "the message has no value (a tombstone)".to_string()));
                continue;
            };
            if m.len() as u64 > self.max_record_bytes {
                rejects.push((
                    i,
                    raw_text(m),
                    format!(
                        "a message of {} bytes is longer than limits.max_record_bytes = {}",
                        m.len(),
                        self.max_record_bytes
                    ),
                ));
                continue;
            }
            if m.iter().all(u8::is_ascii_whitespace) {
                rejects.push((i, String::new(), "the message is empty".to_string()));
                continue;
            }
            let start = text.len();
            match &self.csv {
                Some(_) => {
                    if let Some(b) = m.iter().find(|&&b| b == b'\n' || b == b'\r' || b == 0) {
                        let what = if *b == 0 {
                            "a NUL byte: binary data, not CSV text"
                        } else {
                            "a line break: a CSV message holds one row"
                        };
                        rejects.push((i, raw_text(m), format!("the message has {what}")));
                        continue;
                    }
                    text.extend_from_slice(m);
                }
                None => {
                    if m.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                        rejects.push((i, raw_text(m), "not a JSON object".to_string()));
                        continue;
                    }
                    // Line breaks outside strings are whitespace in JSON, and a raw one inside a
                    // string is invalid either way: a space keeps the message on one line and
                    // its meaning unchanged.
                    text.extend(m.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
                }
            }
            debug_assert!(text.len() > start);
            text.push(b'\n');
            lines.push(i);
        }
        let (mut batches, mut lines) = self.read(&text, &lines, name, &mut rejects)?;
        let got: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if got != lines.len() {
            // A message that held more than one row (`{"a":1} {"a":2}`): read them one by one
            // to find it.
            let (mut one_by_one, mut kept) = (Vec::new(), Vec::new());
            for &i in &lines {
                let m = messages[i].expect("a kept message has a value");
                let mut text: Vec<u8> = m.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect();
                text.push(b'\n');
                let mut own = Vec::new();
                let (b, k) = self.read(&text, &[i], name, &mut own)?;
                let rows: usize = b.iter().map(RecordBatch::num_rows).sum();
                if !own.is_empty() {
                    rejects.append(&mut own);
                } else if rows == 1 && k == [i] {
                    one_by_one.extend(b);
                    kept.push(i);
                } else {
                    rejects.push((i, raw_text(m), format!("the message holds {rows} rows, not one")));
                }
            }
            (batches, lines) = (one_by_one, kept);
        }
        rejects.sort_by_key(|r| r.0);
        let batch = match batches.len() {
            0 => None,
            1 => batches.pop(),
            _ => Some(
                arrow_select::concat::concat_batches(&self.schema, &batches)
                    .map_err(|e| SourceError::Format { path: name.to_string(), message: format!("internal: {e}") })?,
            ),
        };
        Ok(Decoded { batch, kept: lines, rejects })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use sluice_core::spec::JsonlSpec;
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("user", DataType::Utf8, true)]))
    }

    #[test]
    fn json_messages_map_rows_and_rejects_to_their_index() {
        let f = MessageFormat::new(&FormatSpec::Jsonl(JsonlSpec::default()), schema(), 1 << 20).unwrap();
        let msgs: Vec<Option<&[u8]>> = vec![
            Some(br#"{"id": 1, "user": "a"}"#),
            Some(b"not json"),
            Some(b"{\"id\": 2,\n \"user\": \"b\"}"),
            None,
            Some(br#"{"id": "x"}"#),
            Some(b"  "),
            Some(br#"{"id": 3}"#),
            Some(b"[1]"),
        ];
        let d = f.decode(&msgs, "t/0").unwrap();
        assert_eq!(d.kept, vec![0, 2, 6]);
        let b = d.batch.unwrap();
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values(), &[1, 2, 3]);
        let users = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert!(users.is_null(2));
        assert_eq!(d.rejects.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 3, 4, 5, 7]);
        assert!(d.rejects[1].2.contains("tombstone"), "{:?}", d.rejects);
    }

    #[test]
    fn a_message_with_two_objects_is_a_reject_and_the_others_stay_rows() {
        let f = MessageFormat::new(&FormatSpec::Jsonl(JsonlSpec::default()), schema(), 1 << 20).unwrap();
        let msgs: Vec<Option<&[u8]>> =
            vec![Some(br#"{"id": 1}"#), Some(br#"{"id": 2} {"id": 3}"#), Some(br#"{"id": 4}"#)];
        let d = f.decode(&msgs, "t/0").unwrap();
        assert_eq!(d.kept, vec![0, 2]);
        assert_eq!(d.rejects.len(), 1, "{:?}", d.rejects);
        assert!(d.rejects[0].2.contains("2 JSON objects"), "{:?}", d.rejects);
    }

    #[test]
    fn the_fuzz_seeds_keep_every_message_once() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/messages");
        for e in std::fs::read_dir(dir).unwrap() {
            crate::fuzzing::messages(&std::fs::read(e.unwrap().path()).unwrap());
        }
        crate::fuzzing::messages(b"{\"i\":1}{\"i\":2}\xff\xfe\xff1,2,3,4");
    }

    #[test]
    fn csv_messages_are_one_row_each_without_a_header() {
        let csv = FormatSpec::Csv(CsvSpec::default());
        let f = MessageFormat::new(&csv, schema(), 1 << 20).unwrap();
        let msgs: Vec<Option<&[u8]>> =
            vec![Some(b"1,a"), Some(b"2,b\n3,c"), Some(b"x,y"), Some(b"4,"), Some(b"5,\"q,r\"")];
        let d = f.decode(&msgs, "t/0").unwrap();
        assert_eq!(d.kept, vec![0, 3, 4]);
        assert_eq!(d.rejects.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
        let b = d.batch.unwrap();
        let users = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(users.value(2), "q,r");
        let none = f.decode(&[Some(b"y,z")], "t/0").unwrap();
        assert!(none.batch.is_none() && none.kept.is_empty() && none.rejects.len() == 1);
    }
}
