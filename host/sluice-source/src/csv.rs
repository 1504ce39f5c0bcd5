//! CSV reading that recovers per row: records are split by `csv-core` into a reused buffer of at
//! most `max_record_bytes`, each field is parsed straight into typed Arrow builders, and a row
//! that does not fit (longer than the limit, wrong field count, invalid UTF-8, a value that does
//! not parse as its column's type) becomes a [`Reject`] with its line number instead of failing
//! the unit.
//!
//! The schema is explicit (`columns`) or inferred from a sample of the first bytes, losslessly
//! (see [`crate::infer`]).

use std::io::{Cursor, Read};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder,
    StringBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::types::{
    Date32Type, Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt64Type,
};
use arrow_array::{ArrayRef, RecordBatch, make_array};
use arrow_cast::parse::Parser;
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use sluice_core::error::SourceError;
use sluice_core::source::{Reject, SourceItem};
use sluice_core::spec::{ColumnSet, CsvSpec};

use crate::infer::{infer_schema, integer_part, leading_zero};
use crate::input::Input;
use crate::records::{Next, Records};

/// Rows read to infer a schema when none is declared.
const INFER_ROWS: usize = 1000;
/// Bytes read up front: to strip a BOM, spot binary data, and infer a schema.
pub(crate) const SAMPLE_BYTES: usize = 1 << 20;

/// Read up to `limit` bytes (fewer only at end of input).
pub(crate) fn read_sample(input: &mut Input, limit: usize) -> std::io::Result<Vec<u8>> {
    // Room for the whole sample up front, so that it is never regrown (and copied) as it fills.
    let mut buf = Vec::with_capacity(limit);
    input.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The sample cut back to whole lines: all of it when the input ended within the sample,
/// otherwise up to its last newline (a partial last line would mislead schema inference).
pub(crate) fn whole_lines(sample: &[u8]) -> &[u8] {
    if sample.len() < SAMPLE_BYTES {
        sample
    } else {
        &sample[..sample.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)]
    }
}

/// Strip a UTF-8 byte-order mark.
pub(crate) fn strip_bom(mut sample: Vec<u8>) -> Vec<u8> {
    if sample.starts_with(&[0xEF, 0xBB, 0xBF]) {
        sample.drain(..3);
    }
    sample
}

/// How a column's text is parsed.
#[derive(Clone, Copy)]
enum Kind {
    Int { min: i64, max: i64 },
    UInt { max: u64 },
    F64,
    F32,
    Bool,
    Utf8,
    Date32,
    Ts(TimeUnit),
}

/// One parsed value of the row in progress.
#[derive(Clone, Copy)]
enum Cell {
    Null,
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    /// A string: the field itself, taken from the record when appended.
    S,
}

enum Builder {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

struct Column {
    name: String,
    data_type: DataType,
    kind: Kind,
    builder: Builder,
    /// Inferred, not declared: a number with a leading zero (which the type would drop) is
    /// rejected rather than read.
    inferred: bool,
    /// `not_null`: an empty field or a null token is a reject.
    not_null: bool,
}

fn column(name: &str, dt: &DataType, cap: usize) -> Result<Column, String> {
    use DataType as D;
    let (kind, builder) = match dt {
        D::Int8 => {
            (Kind::Int { min: i8::MIN as i64, max: i8::MAX as i64 }, Builder::I8(Int8Builder::with_capacity(cap)))
        }
        D::Int16 => {
            (Kind::Int { min: i16::MIN as i64, max: i16::MAX as i64 }, Builder::I16(Int16Builder::with_capacity(cap)))
        }
        D::Int32 => {
            (Kind::Int { min: i32::MIN as i64, max: i32::MAX as i64 }, Builder::I32(Int32Builder::with_capacity(cap)))
        }
        D::Int64 => (Kind::Int { min: i64::MIN, max: i64::MAX }, Builder::I64(Int64Builder::with_capacity(cap))),
        D::UInt8 => (Kind::UInt { max: u8::MAX as u64 }, Builder::U8(UInt8Builder::with_capacity(cap))),
        D::UInt16 => (Kind::UInt { max: u16::MAX as u64 }, Builder::U16(UInt16Builder::with_capacity(cap))),
        D::UInt32 => (Kind::UInt { max: u32::MAX as u64 }, Builder::U32(UInt32Builder::with_capacity(cap))),
        D::UInt64 => (Kind::UInt { max: u64::MAX }, Builder::U64(UInt64Builder::with_capacity(cap))),
        D::Float32 => (Kind::F32, Builder::F32(Float32Builder::with_capacity(cap))),
        D::Float64 => (Kind::F64, Builder::F64(Float64Builder::with_capacity(cap))),
        D::Boolean => (Kind::Bool, Builder::Bool(BooleanBuilder::with_capacity(cap))),
        D::Utf8 => (Kind::Utf8, Builder::Str(StringBuilder::with_capacity(cap, cap * 8))),
        D::Date32 => (Kind::Date32, Builder::I32(Int32Builder::with_capacity(cap))),
        D::Timestamp(unit, _) => (Kind::Ts(*unit), Builder::I64(Int64Builder::with_capacity(cap))),
        other => return Err(format!("column `{name}`: type {other} is not supported in CSV")),
    };
    Ok(Column { name: name.to_string(), data_type: dt.clone(), kind, builder, inferred: false, not_null: false })
}

impl Column {
    /// Parse one non-null field.
    fn parse(&self, s: &str) -> Option<Cell> {
        match self.kind {
            Kind::Int { min, max } => Int64Type::parse(s).filter(|v| (min..=max).contains(v)).map(Cell::I),
            Kind::UInt { max } => UInt64Type::parse(s).filter(|v| *v <= max).map(Cell::U),
            Kind::F64 | Kind::F32 => fast_f64(s.as_bytes()).or_else(|| Float64Type::parse(s)).map(Cell::F),
            Kind::Bool => {
                if s.eq_ignore_ascii_case("true") || s == "1" {
                    Some(Cell::B(true))
                } else if s.eq_ignore_ascii_case("false") || s == "0" {
                    Some(Cell::B(false))
                } else {
                    None
                }
            }
            Kind::Utf8 => Some(Cell::S),
            Kind::Date32 => Date32Type::parse(s).map(|d| Cell::I(d as i64)),
            // An integer is an epoch value in the column's unit; otherwise a date-time text.
            Kind::Ts(unit) => Int64Type::parse(s)
                .or_else(|| match unit {
                    TimeUnit::Second => TimestampSecondType::parse(s),
                    TimeUnit::Millisecond => TimestampMillisecondType::parse(s),
                    TimeUnit::Microsecond => TimestampMicrosecondType::parse(s),
                    TimeUnit::Nanosecond => TimestampNanosecondType::parse(s),
                })
                .map(Cell::I),
        }
    }

    fn append(&mut self, cell: Cell, field: &[u8]) {
        match (&mut self.builder, cell) {
            (Builder::I8(b), Cell::I(v)) => b.append_value(v as i8),
            (Builder::I16(b), Cell::I(v)) => b.append_value(v as i16),
            (Builder::I32(b), Cell::I(v)) => b.append_value(v as i32),
            (Builder::I64(b), Cell::I(v)) => b.append_value(v),
            (Builder::U8(b), Cell::U(v)) => b.append_value(v as u8),
            (Builder::U16(b), Cell::U(v)) => b.append_value(v as u16),
            (Builder::U32(b), Cell::U(v)) => b.append_value(v as u32),
            (Builder::U64(b), Cell::U(v)) => b.append_value(v),
            (Builder::F32(b), Cell::F(v)) => b.append_value(v as f32),
            (Builder::F64(b), Cell::F(v)) => b.append_value(v),
            (Builder::Bool(b), Cell::B(v)) => b.append_value(v),
            // Validated as UTF-8 when the row was parsed.
            (Builder::Str(b), Cell::S) => b.append_value(std::str::from_utf8(field).unwrap_or_default()),
            (b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        let array: ArrayRef = match &mut self.builder {
            Builder::I8(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U16(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
        };
        if array.data_type() == &self.data_type {
            return array;
        }
        // Date32 and timestamps are built as their integer storage and retagged.
        let data = array.to_data().into_builder().data_type(self.data_type.clone());
        make_array(data.build().expect("same physical layout"))
    }
}

impl Builder {
    fn append_null(&mut self) {
        match self {
            Builder::I8(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::U8(b) => b.append_null(),
            Builder::U16(b) => b.append_null(),
            Builder::U32(b) => b.append_null(),
            Builder::U64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Str(b) => b.append_null(),
        }
    }
}

/// The stream of one CSV unit.
pub(crate) struct CsvItems {
    records: Records,
    max_record_bytes: u64,
    schema: SchemaRef,
    columns: Vec<Column>,
    cells: Vec<Cell>,
    null_tokens: Vec<Vec<u8>>,
    skip_header: bool,
    batch_rows: usize,
    rows: usize,
    rejects: Vec<Reject>,
    /// A batch held back while its rejects are emitted first.
    held: Option<RecordBatch>,
    delimiter: u8,
    quote: u8,
    unit: String,
    done: bool,
}

fn format_err(unit: &str, message: impl Into<String>) -> SourceError {
    SourceError::Format { path: unit.to_string(), message: message.into() }
}

impl CsvItems {
    /// Set up the reader: sample the input, strip a BOM, refuse binary data, infer or take the
    /// schema. No record longer than `max_record_bytes` is ever held.
    pub(crate) fn new(
        mut input: Input,
        spec: &CsvSpec,
        schema: Option<SchemaRef>,
        batch_rows: usize,
        max_record_bytes: u64,
        unit: String,
    ) -> Result<Self, SourceError> {
        let sample = read_sample(&mut input, SAMPLE_BYTES).map_err(|e| format_err(&unit, e.to_string()))?;
        let sample = strip_bom(sample);
        if let Some(at) = memchr::memchr(0, &sample) {
            return Err(format_err(&unit, format!("binary data, not CSV text (NUL byte at offset {at})")));
        }
        let inferred = schema.is_none();
        let schema = match schema {
            Some(s) => s,
            None => {
                // Infer from whole lines only.
                let whole = whole_lines(&sample);
                if whole.is_empty() && !sample.is_empty() {
                    return Err(format_err(
                        &unit,
                        format!("cannot infer a schema: no line ends in the first {} MiB", SAMPLE_BYTES >> 20),
                    ));
                }
                let inferred = infer_schema(whole, spec, INFER_ROWS)
                    .map_err(|e| format_err(&unit, format!("cannot infer a schema: {e}")))?;
                Arc::new(inferred)
            }
        };
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                column(f.name(), f.data_type(), batch_rows.min(1 << 16)).map(|c| Column {
                    inferred,
                    not_null: spec.not_null.contains(f.name()),
                    ..c
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| format_err(&unit, m))?;
        if let ColumnSet::Named(names) = &spec.not_null {
            // Declared columns were checked with the config; inferred ones are checked here.
            if let Some(name) = names.iter().find(|n| schema.field_with_name(n).is_err()) {
                let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(format_err(
                    &unit,
                    format!(
                        "format.csv.not_null names `{name}`, which is not a column (columns: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        let stream: Box<dyn Read + Send> = Box::new(Cursor::new(sample).chain(input));
        let records = Records::new(stream, spec.delimiter, spec.quote, max_record_bytes);
        Ok(CsvItems {
            records,
            max_record_bytes,
            schema,
            cells: vec![Cell::Null; columns.len()],
            columns,
            null_tokens: spec.null_tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
            skip_header: spec.header,
            batch_rows: batch_rows.max(1),
            rows: 0,
            rejects: Vec::new(),
            held: None,
            delimiter: spec.delimiter,
            quote: spec.quote,
            unit,
            done: false,
        })
    }

    /// Text of the current record, re-quoted where needed.
    fn raw_text(&self) -> String {
        let record = &self.records.record;
        let mut out = Vec::with_capacity(record.as_slice().len() + record.len());
        for (i, f) in record.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            if f.iter().any(|&b| b == self.delimiter || b == self.quote || b == b'\n' || b == b'\r') {
                out.push(self.quote);
                for &b in f {
                    if b == self.quote {
                        out.push(b);
                    }
                    out.push(b);
                }
                out.push(self.quote);
            } else {
                out.extend_from_slice(f);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn reject(&mut self, line: u64, reason: String, step: &str) {
        let raw = self.raw_text();
        self.rejects.push(Reject { line, raw, reason, step: step.to_string() });
    }

    /// Parse the current record into `cells`; `Err((reason, step))` when it does not fit.
    fn parse_record(&mut self) -> Result<(), (String, &'static str)> {
        let record = &self.records.record;
        if record.len() != self.columns.len() {
            return Err((format!("expected {} fields, found {}", self.columns.len(), record.len()), "parse"));
        }
        // One ASCII check for the whole record instead of a UTF-8 validation per field (which
        // cost 4% of a kline run); other records are validated field by field.
        let ascii = record.as_slice().is_ascii();
        for (i, col) in self.columns.iter().enumerate() {
            let field = &record[i];
            self.cells[i] = if field.is_empty() || self.null_tokens.iter().any(|t| t.as_slice() == field) {
                if col.not_null {
                    let what = if field.is_empty() {
                        "is empty".to_string()
                    } else {
                        format!("is `{}`, a null token", String::from_utf8_lossy(field))
                    };
                    return Err((format!("column `{}` {what}, but format.csv.not_null lists it", col.name), "null"));
                }
                Cell::Null
            } else {
                let s = if ascii {
                    // SAFETY: the record's bytes, so this field's, are all ASCII, which is UTF-8.
                    unsafe { std::str::from_utf8_unchecked(field) }
                } else {
                    std::str::from_utf8(field)
                        .map_err(|_| (format!("column `{}`: invalid UTF-8", col.name), "parse"))?
                };
                let shown = || s.chars().take(64).collect::<String>();
                if col.inferred && matches!(col.kind, Kind::Int { .. } | Kind::F64) && leading_zero(integer_part(field))
                {
                    return Err((
                        format!(
                            "column `{}`: `{}` has a leading zero, which {} would drop (the type was inferred \
                             from the first rows; declare `columns` to read it as utf8)",
                            col.name,
                            shown(),
                            col.data_type
                        ),
                        "cast",
                    ));
                }
                col.parse(s).ok_or_else(|| {
                    (format!("column `{}`: cannot parse `{}` as {}", col.name, shown(), col.data_type), "cast")
                })?
            };
        }
        Ok(())
    }

    fn finish_batch(&mut self) -> Result<RecordBatch, SourceError> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| format_err(&self.unit, e.to_string()))
    }

    /// Read up to a batch of rows. `Ok(false)` at end of input.
    fn fill(&mut self) -> Result<bool, SourceError> {
        while self.rows < self.batch_rows {
            let next = self
                .records
                .next()
                .map_err(|e| format_err(&self.unit, format!("line {}: {e}", self.records.line())))?;
            let line = match next {
                Next::End => return Ok(false),
                Next::Record { line } => line,
                Next::TooLong { line, bytes, prefix } => {
                    let reason = format!(
                        "record of {bytes} bytes is longer than limits.max_record_bytes = {}",
                        self.max_record_bytes
                    );
                    if std::mem::take(&mut self.skip_header) {
                        return Err(format_err(&self.unit, format!("line {line}: header {reason}")));
                    }
                    self.rejects.push(Reject { line, raw: prefix, reason, step: "parse".into() });
                    if self.rejects.len() >= self.batch_rows {
                        break;
                    }
                    continue;
                }
            };
            if self.skip_header {
                self.skip_header = false;
                continue;
            }
            match self.parse_record() {
                Ok(()) => {
                    let record = &self.records.record;
                    for (i, col) in self.columns.iter_mut().enumerate() {
                        col.append(self.cells[i], &record[i]);
                    }
                    self.rows += 1;
                }
                Err((reason, step)) => self.reject(line, reason, step),
            }
            // Bound memory when most rows are rejected.
            if self.rejects.len() >= self.batch_rows {
                break;
            }
        }
        Ok(true)
    }
}

impl Iterator for CsvItems {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(b) = self.held.take() {
            return Some(Ok(SourceItem::Batch(b)));
        }
        if self.done {
            return None;
        }
        let more = match self.fill() {
            Ok(more) => more,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.done = !more;
        let batch = if self.rows > 0 {
            match self.finish_batch() {
                Ok(b) => Some(b),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        } else {
            None
        };
        if !self.rejects.is_empty() {
            self.held = batch;
            return Some(Ok(SourceItem::Rejects(std::mem::take(&mut self.rejects))));
        }
        match batch {
            Some(b) => Some(Ok(SourceItem::Batch(b))),
            None if self.done => None,
            None => self.next(),
        }
    }
}

/// Exact powers of ten as f64 (10^22 is the largest exactly representable one).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Plain decimals (`-?digits(.digits)?`) whose significant digits fit in 2^53, with at most 22
/// decimals after trailing zeros are dropped: the integer and the power of ten are exact f64s,
/// so one division rounds correctly and the result equals the general parser's. `None` for
/// anything else (exponents, `inf`, more digits, a sign `+`, ...), which the general parser takes.
fn fast_f64(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    let (int, frac) = match digits.iter().position(|&c| c == b'.') {
        Some(dot) => (&digits[..dot], &digits[dot + 1..]),
        None => (digits, &[][..]),
    };
    if int.is_empty() || (frac.is_empty() && int.len() != digits.len()) {
        return None;
    }
    // Trailing zeros of the fraction do not change the value.
    let frac = &frac[..frac.iter().rposition(|&c| c != b'0').map_or(0, |p| p + 1)];
    if frac.len() > 22 {
        return None;
    }
    let mut m: u64 = 0;
    for &c in int.iter().chain(frac) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        m = m.checked_mul(10)?.checked_add(d as u64)?;
    }
    if m > 1 << 53 {
        return None;
    }
    let v = m as f64 / POW10[frac.len()];
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_schema::{Field, Schema};

    fn read(text: &'static [u8], batch_rows: usize) -> (Vec<RecordBatch>, Vec<Reject>) {
        let spec = CsvSpec { null_tokens: vec!["NA".into()], ..Default::default() };
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int16, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let items = CsvItems::new(Box::new(text), &spec, Some(schema), batch_rows, 1 << 20, "t.csv".into()).unwrap();
        crate::drain(items).unwrap()
    }

    #[test]
    fn rejects_carry_the_line_where_their_record_starts() {
        let text = b"n,s,t\n1,\"two\nlines\",2024-01-01T00:00:00\n70000,x,1\n3,\"q\"\"uote\",oops\nNA,,5\n4,y\n";
        let (batches, rejects) = read(text, 2);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
        let lines: Vec<u64> = rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![4, 5, 7]);
        assert!(rejects[0].reason.contains("cannot parse `70000` as Int16"), "{:?}", rejects[0]);
        assert_eq!(rejects[1].raw, "3,\"q\"\"uote\",oops");
        assert_eq!(rejects[1].step, "cast");
        assert_eq!((rejects[2].step.as_str(), rejects[2].reason.as_str()), ("parse", "expected 3 fields, found 2"));
        // The quoted newline stays in the value; NA and empty are NULL; integers are epoch values.
        let s = batches[0].column(1).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        assert_eq!(s.value(0), "two\nlines");
        let last = batches.last().unwrap();
        assert!(last.column(0).is_null(last.num_rows() - 1));
        assert_eq!(batches[0].column(2).data_type(), &DataType::Timestamp(TimeUnit::Millisecond, None));
    }

    #[test]
    fn not_null_columns_turn_empty_fields_and_null_tokens_into_rejects() {
        let text = b"a,b,c\n1,x,2\n2,,3\n3,y,NA\n,z,4\n";
        let read_with = |not_null: ColumnSet| {
            let columns =
                vec![("a".into(), DataType::Int64), ("b".into(), DataType::Utf8), ("c".into(), DataType::Int64)];
            let spec =
                CsvSpec { columns: Some(columns), null_tokens: vec!["NA".into()], not_null, ..Default::default() };
            let fields = spec.columns.as_ref().unwrap().iter().map(|(n, t)| Field::new(n, t.clone(), true));
            let schema = Arc::new(Schema::new(fields.collect::<Vec<_>>()));
            let items = CsvItems::new(Box::new(&text[..]), &spec, Some(schema), 100, 1 << 20, "t.csv".into()).unwrap();
            let (batches, rejects) = crate::drain(items).unwrap();
            (batches.iter().map(RecordBatch::num_rows).sum::<usize>(), rejects)
        };
        let (rows, rejects) = read_with(ColumnSet::None);
        assert_eq!((rows, rejects.len()), (4, 0));
        let (rows, rejects) = read_with(ColumnSet::Named(vec!["b".into()]));
        assert_eq!((rows, rejects.len()), (3, 1));
        assert_eq!((rejects[0].line, rejects[0].step.as_str()), (3, "null"));
        assert_eq!(rejects[0].reason, "column `b` is empty, but format.csv.not_null lists it");
        let (rows, rejects) = read_with(ColumnSet::All);
        assert_eq!((rows, rejects.iter().map(|r| r.line).collect::<Vec<_>>()), (1, vec![3, 4, 5]));
        assert_eq!(rejects[1].reason, "column `c` is `NA`, a null token, but format.csv.not_null lists it");
        assert_eq!(rejects[1].raw, "3,y,NA");
    }

    #[test]
    fn fast_float_path_agrees_with_the_general_parser() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.000",
            "1",
            "42283.58000000",
            "0.1",
            "0.3",
            "123456789012345.6",
            "9007199254740993",
            "9007199254740992",
            "0.0000000000000000000001",
            "1.00000000000000000000000",
            "00012.50",
            ".5",
            "5.",
            "+1",
            "1e5",
            "-",
            "",
            "1.2.3",
            "n/a",
            "inf",
            "NaN",
            "1_000",
            " 1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let (int, frac, decimals) = (next() % 10u64.pow((next() % 12) as u32), next(), (next() % 12) as usize);
            let frac = format!("{frac:020}");
            texts.push(format!("{}{int}.{}", if next() % 3 == 0 { "-" } else { "" }, &frac[..decimals]));
        }
        for t in &texts {
            let fast = fast_f64(t.as_bytes());
            let general = Float64Type::parse(t);
            if let Some(v) = fast {
                assert_eq!(Some(v.to_bits()), general.map(f64::to_bits), "{t:?}");
            }
        }
        assert_eq!(fast_f64(b"42283.58000000"), Some(42283.58));
        assert!(fast_f64(b"1e5").is_none() && fast_f64(b".5").is_none() && fast_f64(b"5.").is_none());
    }

    /// Read `text` with the schema inferred and a record limit: the batches and rejects.
    fn read_inferred(text: Vec<u8>, max_record: u64) -> Result<(Vec<RecordBatch>, Vec<Reject>), SourceError> {
        let spec = CsvSpec::default();
        let items = CsvItems::new(Box::new(Cursor::new(text)), &spec, None, 1000, max_record, "t.csv".into())?;
        crate::drain(items)
    }

    #[test]
    fn inferred_columns_read_every_sampled_value_without_loss() {
        let text = "zip,n,x,t\n00501,1,1e5,2024-01-05\n08123,2,-inf,2024-01-05 10:00:00.5\n10001,3,NaN,\n";
        let (batches, rejects) = read_inferred(text.as_bytes().to_vec(), 1 << 20).unwrap();
        assert!(rejects.is_empty(), "{rejects:?}");
        let b = &batches[0];
        let types: Vec<DataType> = b.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(
            types,
            [DataType::Utf8, DataType::Int64, DataType::Float64, DataType::Timestamp(TimeUnit::Millisecond, None)]
        );
        let zip = b.column(0).as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        assert_eq!(zip.iter().flatten().collect::<Vec<_>>(), ["00501", "08123", "10001"]);
        let x = b.column(2).as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
        assert_eq!((x.value(0), x.value(1), x.value(2).is_nan()), (1e5, f64::NEG_INFINITY, true));
        let t = b.column(3).as_any().downcast_ref::<arrow_array::TimestampMillisecondArray>().unwrap();
        assert_eq!((t.value(0), t.value(1) - t.value(0), t.is_null(2)), (1_704_412_800_000, 36_000_500, true));
    }

    #[test]
    fn a_leading_zero_past_the_sample_is_a_reject_not_a_smaller_number() {
        // 1000 rows infer Int64 and Float64; row 1001 has leading zeros.
        let mut text = String::from("n,f\n");
        for i in 1..=1000 {
            text.push_str(&format!("{i},{i}.5\n"));
        }
        text.push_str("00501,1.5\n7,007.5\n8,0.5\n");
        let (batches, rejects) = read_inferred(text.into_bytes(), 1 << 20).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1001);
        assert_eq!(rejects.iter().map(|r| r.line).collect::<Vec<_>>(), [1002, 1003]);
        assert!(rejects[0].reason.contains("`00501` has a leading zero, which Int64 would drop"), "{:?}", rejects[0]);
        assert!(rejects[1].reason.contains("column `f`: `007.5` has a leading zero"), "{:?}", rejects[1]);
    }

    #[test]
    fn records_past_the_limit_are_rejects_and_a_first_line_past_the_sample_fails_inference() {
        let mut text = b"a,b\n1,x\n2,".to_vec();
        text.extend(std::iter::repeat_n(b'y', 5000));
        text.extend_from_slice(b"\n3,z\n");
        let (batches, rejects) = read_inferred(text, 1024).unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!((rejects.len(), rejects[0].line), (1, 3));
        assert_eq!(rejects[0].reason, "record of 5003 bytes is longer than limits.max_record_bytes = 1024");
        let Err(e) = read_inferred(vec![b'y'; SAMPLE_BYTES + 10], 1 << 30) else { panic!("inferred from no line") };
        assert!(e.to_string().contains("cannot infer a schema: no line ends in the first 1 MiB"), "{e}");
    }

    #[test]
    fn binary_input_fails_the_unit() {
        let spec = CsvSpec { header: false, ..Default::default() };
        let Err(e) =
            CsvItems::new(Box::new(&b"PK\x03\x04\x00\x00garbage"[..]), &spec, None, 10, 1 << 20, "x.csv".into())
        else {
            panic!("binary data accepted")
        };
        assert!(e.to_string().contains("binary data"), "{e}");
    }
}
