//! A JSON array of objects (`[{...}, {...}]`), read streaming: [`ArrayLines`] rewrites the
//! array, byte for byte as it is read, into JSON lines (one element per line) for the JSON lines
//! reader. It holds no element, only a little state (depth, in a string, after a backslash), so
//! a file of any size reads in bounded memory, and `limits.max_record_bytes` applies per element.
//! A reject's `line` is the element's index in the array, from 1.

use std::io::{Error, ErrorKind, Read};

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Before the `[` (a byte-order mark and whitespace may come first).
    Start,
    /// Inside the array.
    Array,
    /// After the closing `]`: only whitespace may follow.
    Done,
}

/// Rewrites a JSON array into JSON lines: the `[` and `]` go, a `,` between elements becomes a
/// newline, a newline inside an element (outside strings, where JSON has none) a space. Every
/// byte becomes at most one byte, so the rewrite happens in the caller's buffer.
pub(crate) struct ArrayLines<R> {
    inner: R,
    state: State,
    /// Nesting inside the current element.
    depth: u64,
    in_string: bool,
    escaped: bool,
    /// Bytes read so far, for error messages.
    offset: u64,
}

impl<R: Read> ArrayLines<R> {
    pub(crate) fn new(inner: R) -> Self {
        ArrayLines { inner, state: State::Start, depth: 0, in_string: false, escaped: false, offset: 0 }
    }

    fn invalid(&self, at: u64, message: &str) -> Error {
        Error::new(ErrorKind::InvalidData, format!("byte {at}: {message}"))
    }

    /// The rewrite of one byte, if it is kept.
    fn map(&mut self, b: u8, at: u64) -> std::io::Result<Option<u8>> {
        Ok(match self.state {
            State::Start => match b {
                b'[' => {
                    self.state = State::Array;
                    None
                }
                0xEF | 0xBB | 0xBF if at < 3 => None,
                b if b.is_ascii_whitespace() => None,
                _ => return Err(self.invalid(
                    at,
                    "not a JSON array: `format: json` reads `[{...}, {...}]`; one object per line is `format: jsonl`",
                )),
            },
            State::Done if b.is_ascii_whitespace() => None,
            State::Done => return Err(self.invalid(at, "data after the array's closing `]`")),
            State::Array if self.in_string => {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                Some(b)
            }
            State::Array => match b {
                b'"' => {
                    self.in_string = true;
                    Some(b)
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    Some(b)
                }
                b']' if self.depth == 0 => {
                    self.state = State::Done;
                    Some(b'\n')
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    Some(b)
                }
                b',' if self.depth == 0 => Some(b'\n'),
                b'\n' | b'\r' => Some(b' '),
                _ => Some(b),
            },
        })
    }
}

impl<R: Read> Read for ArrayLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                if self.state == State::Array {
                    return Err(self.invalid(self.offset, "the JSON array is not closed: `]` is missing"));
                }
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                let at = self.offset + i as u64;
                if let Some(b) = self.map(buf[i], at)? {
                    buf[kept] = b;
                    kept += 1;
                }
            }
            self.offset += n as u64;
            // Zero would read as the end: read on past bytes that were all dropped.
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> std::io::Result<String> {
        let mut out = String::new();
        ArrayLines::new(text.as_bytes()).read_to_string(&mut out)?;
        Ok(out)
    }

    #[test]
    fn an_array_becomes_one_line_per_element() {
        let text = "\u{feff} [\n  {\"a\": 1,\n   \"b\": [1, 2], \"c\": {\"d\": \"x,]\\\"}\"}},\n  {\"a\": 2}\n]\n ";
        assert_eq!(
            lines(text).unwrap(),
            "   {\"a\": 1,    \"b\": [1, 2], \"c\": {\"d\": \"x,]\\\"}\"}}\n   {\"a\": 2} \n"
        );
        assert_eq!(lines("[]").unwrap(), "\n");
        assert_eq!(lines("").unwrap(), "");
        assert!(lines("[{\"a\": 1}").unwrap_err().to_string().contains("not closed"));
        assert!(lines("[{\"a\": 1}] x").unwrap_err().to_string().contains("byte 11: data after"));
        assert!(lines("{\"a\": 1}").unwrap_err().to_string().contains("not a JSON array"));
    }
}
