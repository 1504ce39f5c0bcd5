//! CSV schema inference (no `columns` declared): each column gets the narrowest type that
//! holds every sampled value without loss, else text. Like DuckDB's sniffer:
//!
//! - integers with a leading zero (`00501`, `-007`) are identifiers, not numbers: text; `0`
//!   itself and decimals such as `0.5` are numbers;
//! - integers past the range of Int64 are text (never rounded into a float);
//! - integers mixed with decimals or exponents (`1e5`) are Float64, unless one of the integers
//!   is too large for a float to hold exactly (past 2^53): then text;
//! - `NaN`, `inf`, `-inf` and `infinity` (any case) are Float64 values in a column of numbers;
//!   a column of nothing but them is text;
//! - dates are `YYYY-MM-DD`, date-times `YYYY-MM-DD[T ]HH:MM:SS[.fraction][zone]`; dates mixed
//!   with date-times are timestamps (midnight), at the finest precision seen; date-times with
//!   a zone mixed with ones without, or any other date format, are text;
//! - anything else in a column (`true`/`false` mixed with numbers, a value in no form above)
//!   makes it text. Empty fields and the `null` tokens are nulls and decide nothing.

use arrow_array::types::{
    Date32Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_cast::parse::Parser;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use sluice_core::spec::CsvSpec;

/// The form of one non-null value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    Bool,
    /// An integer; `exact` when a Float64 holds it exactly.
    Int {
        exact: bool,
    },
    /// A finite decimal or exponent number.
    Float,
    /// `NaN` or an infinity.
    Special,
    Date,
    Timestamp {
        unit: TimeUnit,
        zoned: bool,
    },
    Text,
}

/// The forms seen in one column.
#[derive(Debug, Default)]
struct Seen {
    text: bool,
    bool: bool,
    int: bool,
    inexact_int: bool,
    float: bool,
    special: bool,
    date: bool,
    naive: bool,
    zoned: bool,
    /// The finest timestamp unit seen.
    unit: Option<TimeUnit>,
}

fn finer(a: Option<TimeUnit>, b: TimeUnit) -> TimeUnit {
    let rank = |u: TimeUnit| match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    };
    match a {
        Some(a) if rank(a) > rank(b) => a,
        _ => b,
    }
}

impl Seen {
    fn add(&mut self, form: Form) {
        match form {
            Form::Bool => self.bool = true,
            Form::Int { exact } => {
                self.int = true;
                self.inexact_int |= !exact;
            }
            Form::Float => self.float = true,
            Form::Special => self.special = true,
            Form::Date => self.date = true,
            Form::Timestamp { unit, zoned } => {
                if zoned {
                    self.zoned = true;
                } else {
                    self.naive = true;
                }
                self.unit = Some(finer(self.unit, unit));
            }
            Form::Text => self.text = true,
        }
    }

    fn data_type(&self) -> DataType {
        let numeric = self.int || self.float || self.special;
        let temporal = self.date || self.naive || self.zoned;
        if self.text || usize::from(self.bool) + usize::from(numeric) + usize::from(temporal) != 1 {
            return DataType::Utf8;
        }
        if self.bool {
            return DataType::Boolean;
        }
        if numeric {
            return match (self.int, self.float || self.special) {
                (true, false) => DataType::Int64,
                // Nothing but NaN and infinities: not evidence of numbers.
                (false, _) if !self.float => DataType::Utf8,
                (true, true) if self.inexact_int => DataType::Utf8,
                _ => DataType::Float64,
            };
        }
        match (self.naive, self.zoned, self.unit) {
            (false, false, _) => DataType::Date32,
            (true, true, _) => DataType::Utf8,
            // A date has no zone: with zoned date-times, the column is text.
            (false, true, _) if self.date => DataType::Utf8,
            (_, _, Some(unit)) => DataType::Timestamp(unit, None),
            (_, _, None) => DataType::Utf8,
        }
    }
}

fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// True for a run of digits with a zero in front of another digit (`007`; not `0`).
pub(crate) fn leading_zero(int_digits: &[u8]) -> bool {
    int_digits.len() > 1 && int_digits[0] == b'0'
}

/// The integer digits of a number's text (after an optional `-`), for the leading-zero rule.
pub(crate) fn integer_part(s: &[u8]) -> &[u8] {
    let s = s.strip_prefix(b"-").unwrap_or(s);
    &s[..digits(s)]
}

/// `NaN`, `inf`, `infinity`, any case, `inf` and `infinity` with an optional `-`.
fn special(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.strip_prefix('-').unwrap_or(&lower);
    lower == "nan" || unsigned == "inf" || unsigned == "infinity"
}

/// `-?digits`, `-?digits.digits`, `.5`, `5.`, each with an optional exponent; `None` for other text.
fn number(s: &str) -> Option<Form> {
    let b = s.as_bytes();
    let body = b.strip_prefix(b"-").unwrap_or(b);
    let int = digits(body);
    let mut at = int;
    let mut frac = 0;
    let dot = body.get(at) == Some(&b'.');
    if dot {
        frac = digits(&body[at + 1..]);
        at += 1 + frac;
    }
    if int + frac == 0 {
        return None;
    }
    let mut exponent = false;
    if matches!(body.get(at), Some(b'e' | b'E')) {
        let mut e = at + 1;
        if matches!(body.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        let n = digits(&body[e..]);
        if n == 0 {
            return None;
        }
        exponent = true;
        at = e + n;
    }
    if at != body.len() {
        return None;
    }
    if leading_zero(&body[..int]) {
        return Some(Form::Text);
    }
    if !dot && !exponent {
        return Some(match s.parse::<i64>() {
            Ok(v) => Form::Int { exact: v.unsigned_abs() <= 1 << 53 },
            // Past Int64: text, never a rounded float.
            Err(_) => Form::Text,
        });
    }
    match arrow_array::types::Float64Type::parse(s) {
        Some(v) if v.is_finite() => Some(Form::Float),
        _ => Some(Form::Text),
    }
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM|±HHMM|±HH]` that the reader parses.
fn temporal(s: &str) -> Option<Form> {
    let b = s.as_bytes();
    let shape = |b: &[u8], pattern: &[u8]| {
        b.len() >= pattern.len()
            && pattern.iter().zip(b).all(|(p, c)| if *p == b'9' { c.is_ascii_digit() } else { p == c })
    };
    if !shape(b, b"9999-99-99") {
        return None;
    }
    if b.len() == 10 {
        return Date32Type::parse(s).map(|_| Form::Date);
    }
    if !matches!(b[10], b'T' | b' ') || !shape(&b[11..], b"99:99:99") {
        return None;
    }
    let mut at = 19;
    let mut fraction = 0;
    if b.get(at) == Some(&b'.') {
        fraction = digits(&b[at + 1..]);
        if !(1..=9).contains(&fraction) {
            return None;
        }
        at += 1 + fraction;
    }
    let zone = &b[at..];
    let zoned = match zone {
        [] => false,
        b"Z" => true,
        [b'+' | b'-', rest @ ..] if shape(rest, b"99:99") && rest.len() == 5 => true,
        [b'+' | b'-', rest @ ..] if matches!(rest.len(), 2 | 4) && rest.iter().all(u8::is_ascii_digit) => true,
        _ => return None,
    };
    let unit = match fraction {
        0 => TimeUnit::Second,
        1..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    };
    let parses = match unit {
        TimeUnit::Second => TimestampSecondType::parse(s).is_some(),
        TimeUnit::Millisecond => TimestampMillisecondType::parse(s).is_some(),
        TimeUnit::Microsecond => TimestampMicrosecondType::parse(s).is_some(),
        TimeUnit::Nanosecond => TimestampNanosecondType::parse(s).is_some(),
    };
    parses.then_some(Form::Timestamp { unit, zoned })
}

fn form(value: &[u8]) -> Form {
    let Ok(s) = std::str::from_utf8(value) else { return Form::Text };
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return Form::Bool;
    }
    if special(s) {
        return Form::Special;
    }
    number(s).or_else(|| temporal(s)).unwrap_or(Form::Text)
}

/// The schema of CSV text (whole lines): column names from the header (or `column_1`, ... without
/// one), types from up to `max_rows` records.
pub(crate) fn infer_schema(text: &[u8], spec: &CsvSpec, max_rows: usize) -> Result<Schema, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(spec.delimiter)
        .quote(spec.quote)
        .from_reader(text);
    let mut record = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut record).map_err(|e| e.to_string())? {
        return Ok(Schema::empty());
    }
    let names: Vec<String> = if spec.header {
        record.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect()
    } else {
        (1..=record.len()).map(|i| format!("column_{i}")).collect()
    };
    let mut seen: Vec<Seen> = names.iter().map(|_| Seen::default()).collect();
    // Without a header, the first record is data too.
    let mut have = !spec.header;
    let mut rows = 0;
    loop {
        if !have && (rows >= max_rows || !reader.read_byte_record(&mut record).map_err(|e| e.to_string())?) {
            break;
        }
        have = false;
        rows += 1;
        for (value, s) in record.iter().zip(seen.iter_mut()) {
            if value.is_empty() || spec.null_tokens.iter().any(|t| t.as_bytes() == value) {
                continue;
            }
            s.add(form(value));
        }
    }
    Ok(Schema::new(names.iter().zip(&seen).map(|(n, s)| Field::new(n, s.data_type(), true)).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(text: &str) -> Vec<DataType> {
        let spec = CsvSpec { null_tokens: vec!["NA".into()], ..Default::default() };
        infer_schema(text.as_bytes(), &spec, 1000).unwrap().fields().iter().map(|f| f.data_type().clone()).collect()
    }

    /// One column of values (one per line, after a header): its inferred type.
    fn column(values: &[&str]) -> DataType {
        infer(&format!("c\n{}\n", values.join("\n"))).remove(0)
    }

    #[test]
    fn each_rule_on_its_own_column() {
        use DataType::*;
        let ts = |u| Timestamp(u, None);
        let cases: &[(&[&str], DataType)] = &[
            // Leading zeros are identifiers; 0 and 0.5 are numbers.
            (&["00501", "08123", "10001"], Utf8),
            (&["0", "5", "-3"], Int64),
            (&["-007", "1"], Utf8),
            (&["0.5", "-0.5", "12.25"], Float64),
            (&["007.5", "1.5"], Utf8),
            // Past Int64: text; at its edges: Int64.
            (&["12345678901234567890123", "1"], Utf8),
            (&["9223372036854775807", "-9223372036854775808"], Int64),
            (&["9223372036854775808"], Utf8),
            // Exponents with integers: Float64; unless an integer is past 2^53.
            (&["1e5", "2", "3"], Float64),
            (&["1E-3", "2"], Float64),
            (&["9007199254740993", "0.5"], Utf8),
            (&["9007199254740992", "0.5"], Float64),
            (&["1e400"], Utf8),
            // NaN and infinities join numbers, but are not numbers alone.
            (&["1.5", "NaN", "inf", "-inf", "2"], Float64),
            (&["3", "nan", "-Infinity"], Float64),
            (&["NaN", "inf"], Utf8),
            // Dates and date-times.
            (&["2024-01-05", "2024-02-29"], Date32),
            (&["2024-01-05", "2024-01-05 10:00:00"], ts(TimeUnit::Second)),
            (&["2024-01-05T10:00:00.5", "2024-01-05 10:00:00.123456"], ts(TimeUnit::Microsecond)),
            (&["2024-01-05T10:00:00Z", "2024-01-05T10:00:00+02:00"], ts(TimeUnit::Second)),
            (&["2024-01-05", "05/01/2024"], Utf8),
            (&["2024-01-05", "2024-1-5"], Utf8),
            (&["2024-01-05 10:00:00", "2024-01-05T10:00:00Z"], Utf8),
            (&["2024-01-05", "2024-01-05T10:00:00Z"], Utf8),
            (&["2024-01-05 10:00:00 (approx)"], Utf8),
            (&["2023-02-29"], Utf8),
            (&["2024-01-05 25:00:00"], Utf8),
            // Booleans; mixes of kinds are text; nulls decide nothing.
            (&["true", "FALSE"], Boolean),
            (&["true", "1"], Utf8),
            (&["1", "", "NA", "2"], Int64),
            (&["", "NA"], Utf8),
            (&["1", "2024-01-05"], Utf8),
        ];
        for (values, want) in cases {
            assert_eq!(&column(values), want, "{values:?}");
        }
    }

    #[test]
    fn special_values_are_what_the_float_parser_reads() {
        for s in ["NaN", "nan", "NAN", "inf", "-inf", "INF", "Infinity", "-infinity"] {
            assert!(special(s), "{s}");
            assert!(arrow_array::types::Float64Type::parse(s).is_some(), "{s} does not parse");
        }
        assert!(!special("+nan") && !special("nans") && !special("-nan"));
    }

    #[test]
    fn names_come_from_the_header_or_are_numbered() {
        let spec = CsvSpec { header: false, delimiter: b';', ..Default::default() };
        let s = infer_schema(b"1;x\n2;y\n", &spec, 10).unwrap();
        assert_eq!(s.field(0).name(), "column_1");
        assert_eq!((s.field(0).data_type(), s.field(1).data_type()), (&DataType::Int64, &DataType::Utf8));
        assert_eq!(infer("zip,n\n00501,1\n")[0], DataType::Utf8);
        assert!(infer_schema(b"", &spec, 10).unwrap().fields().is_empty());
    }
}
