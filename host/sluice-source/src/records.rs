//! CSV records split by `csv-core` (the `csv` crate's own parser, so the same quoting rules and
//! line numbers) into buffers that never grow past `max_record_bytes`: a longer record is read
//! through to its end without being kept, and reported with its line and size.

use std::io::{BufRead, BufReader, Read};

use csv_core::ReadRecordResult;

/// The fields of the current record: their bytes back to back, and where each ends.
pub(crate) struct Record {
    data: Vec<u8>,
    ends: Vec<usize>,
    len: usize,
}

impl Record {
    /// Fields in the record.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes of every field, without delimiters or quotes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.data[..if self.len == 0 { 0 } else { self.ends[self.len - 1] }]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len).map(|i| &self[i])
    }
}

impl std::ops::Index<usize> for Record {
    type Output = [u8];

    fn index(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// What [`Records::next`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// A record, now in [`Records::record`], that starts on this line.
    Record {
        line: u64,
    },
    /// A record longer than the limit, skipped: its first line, its size in bytes (as read,
    /// with delimiters, quotes and terminator), and the text of its first fields.
    TooLong {
        line: u64,
        bytes: u64,
        prefix: String,
    },
    End,
}

/// Bytes of an oversized record kept to show in its reject.
const PREFIX_BYTES: usize = 256;

pub(crate) struct Records {
    input: BufReader<Box<dyn Read + Send>>,
    core: csv_core::Reader,
    pub(crate) record: Record,
    max_bytes: usize,
    /// Field ends kept per record: one per 8 bytes of the limit, so they weigh no more than it.
    max_fields: usize,
    /// The line the next record starts on (1-based).
    line: u64,
    scratch: Vec<u8>,
    scratch_ends: Vec<usize>,
    delimiter: u8,
}

impl Records {
    pub(crate) fn new(input: Box<dyn Read + Send>, delimiter: u8, quote: u8, max_bytes: u64) -> Self {
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX).max(1);
        let core = csv_core::ReaderBuilder::new().delimiter(delimiter).quote(quote).build();
        Records {
            input: BufReader::with_capacity(1 << 20, input),
            core,
            record: Record { data: vec![0; max_bytes.min(4096)], ends: vec![0; 64], len: 0 },
            max_bytes,
            max_fields: (max_bytes / 8).max(64),
            line: 1,
            scratch: vec![0; 1 << 16],
            scratch_ends: vec![0; 1024],
            delimiter,
        }
    }

    /// The line being read (for I/O errors).
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// The first fields of an oversized record, delimited, cut at [`PREFIX_BYTES`].
    fn prefix(&self, outlen: usize, endlen: usize) -> String {
        let mut out = Vec::with_capacity(PREFIX_BYTES + 4);
        let mut start = 0;
        for (i, &end) in self.record.ends[..endlen].iter().chain([&outlen]).enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            out.extend_from_slice(&self.record.data[start..end.max(start)]);
            start = end;
            if out.len() >= PREFIX_BYTES {
                break;
            }
        }
        out.truncate(PREFIX_BYTES);
        format!("{}…", String::from_utf8_lossy(&out))
    }

    /// Read the next record.
    pub(crate) fn next(&mut self) -> std::io::Result<Next> {
        let line = self.line;
        let (mut outlen, mut endlen, mut bytes) = (0usize, 0usize, 0u64);
        let mut prefix: Option<String> = None;
        loop {
            let input = self.input.fill_buf()?;
            let (res, nin, nout, nend) = if prefix.is_some() {
                self.core.read_record(input, &mut self.scratch, &mut self.scratch_ends)
            } else {
                self.core.read_record(input, &mut self.record.data[outlen..], &mut self.record.ends[endlen..])
            };
            self.input.consume(nin);
            self.line = self.core.line();
            bytes += nin as u64;
            if prefix.is_none() {
                outlen += nout;
                endlen += nend;
            }
            match res {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull if prefix.is_none() => {
                    let len = self.record.data.len();
                    if len >= self.max_bytes {
                        prefix = Some(self.prefix(outlen, endlen));
                    } else {
                        self.record.data.resize(len.saturating_mul(2).min(self.max_bytes), 0);
                    }
                }
                ReadRecordResult::OutputEndsFull if prefix.is_none() => {
                    let len = self.record.ends.len();
                    if len >= self.max_fields {
                        prefix = Some(self.prefix(outlen, endlen));
                    } else {
                        self.record.ends.resize(len.saturating_mul(2).min(self.max_fields), 0);
                    }
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => {
                    return Ok(match prefix {
                        Some(prefix) => Next::TooLong { line, bytes, prefix },
                        None => {
                            self.record.len = endlen;
                            Next::Record { line }
                        }
                    });
                }
                ReadRecordResult::End => return Ok(Next::End),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record's line and fields, or a skipped record's line, size and prefix.
    type Split = Result<(u64, Vec<String>), (u64, u64, String)>;

    /// Reads `text` whole: each record as its fields, or `TooLong`.
    fn split(text: &'static [u8], max: u64) -> Vec<Split> {
        let mut r = Records::new(Box::new(text), b',', b'"', max);
        let mut out = Vec::new();
        loop {
            match r.next().unwrap() {
                Next::Record { line } => {
                    out.push(Ok((line, r.record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect())))
                }
                Next::TooLong { line, bytes, prefix } => out.push(Err((line, bytes, prefix))),
                Next::End => return out,
            }
        }
    }

    #[test]
    fn records_agree_with_the_csv_crate() {
        let text: &[u8] = b"a,b\n1,\"two\nlines\"\n\"q\"\"uote\",x\r\n\n4,\n5";
        let mut csv = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text);
        let want: Vec<(u64, Vec<String>)> = csv
            .byte_records()
            .map(|r| {
                let r = r.unwrap();
                (r.position().unwrap().line(), r.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect())
            })
            .collect();
        let got: Vec<_> =
            split(b"a,b\n1,\"two\nlines\"\n\"q\"\"uote\",x\r\n\n4,\n5", 1024).into_iter().map(Result::unwrap).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_record_past_the_limit_is_skipped_whole_and_reading_goes_on() {
        let got = split(b"a,b\n1,0123456789abcdef\n\"x,\ny\",2\n3,4", 10);
        assert_eq!(got[0], Ok((1, vec!["a".into(), "b".into()])));
        assert_eq!(got[1], Err((2, 19, "1,012345678…".into())));
        assert_eq!(got[2], Ok((3, vec!["x,\ny".into(), "2".into()])));
        assert_eq!(got[3], Ok((5, vec!["3".into(), "4".into()])));
        assert_eq!(got.len(), 4);
        // A long last record without a terminator; many empty fields count too.
        let got = split(b"1,2\n0123456789012345678901234567890123456789", 16);
        assert_eq!(got[1], Err((2, 40, "0123456789012345…".into())));
        let commas: &'static [u8] =
            Box::leak(format!("1\n{}\n2\n", ",".repeat(10_000)).into_bytes().into_boxed_slice());
        let got = split(commas, 64);
        assert!(matches!(got[1], Err((2, 10_001, _))), "{:?}", got[1]);
        assert_eq!(got[2], Ok((3, vec!["2".into()])));
    }
}
