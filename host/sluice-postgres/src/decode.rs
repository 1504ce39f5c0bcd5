//! Binary `COPY ... TO STDOUT (FORMAT binary)` into Arrow record batches.
//!
//! The format: a signature (`PGCOPY\n\xff\r\n\0`), a 32-bit flags word and a header extension;
//! then one tuple per row (a 16-bit field count, each field a 32-bit length, -1 for NULL, and
//! the type's binary "send" bytes, all big-endian), ended by a field count of -1.
//!
//! Each column's Postgres type maps to one Arrow type ([`kind_of`]); a type without a lossless
//! mapping is refused before anything is read. A value the Arrow type cannot hold (an infinite
//! date, a `NaN` numeric, more fractional digits than the column's scale) sets its whole row
//! aside as a reject, naming the column, and the rest of the unit goes on.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, DurationMicrosecondBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt32Builder, make_builder,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_core::source::Reject;
use tokio_postgres::types::{Kind as PgKind, Type};

/// Days from 1970-01-01 to 2000-01-01, Postgres's epoch.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// How a `numeric` column without a declared precision (or with more than 38 digits) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unbounded {
    /// `Decimal128(38, 10)`: a value with more fractional digits, or more than 28 integer
    /// digits, is a rejected row (never rounded).
    Decimal,
    /// `Float64` (rounded to the nearest double).
    Float64,
    /// `Utf8`, the value as Postgres prints it.
    Text,
}

/// Scale of `numeric` columns read under [`Unbounded::Decimal`].
pub const UNBOUNDED_SCALE: i8 = 10;

/// How one column's binary values are read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Bool,
    I16,
    I32,
    I64,
    Oid,
    F32,
    F64,
    Decimal {
        precision: u8,
        scale: i8,
    },
    NumFloat,
    NumText,
    /// text, varchar, bpchar, name, json, xml, enums, citext: UTF-8 bytes.
    Text,
    /// The one-byte `"char"`.
    Char,
    /// jsonb: a version byte (1), then the text.
    Jsonb,
    Bytea,
    Uuid,
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Interval,
    List(Box<Kind>),
}

impl Kind {
    pub(crate) fn data_type(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::Oid => DataType::UInt32,
            Kind::F32 => DataType::Float32,
            Kind::F64 | Kind::NumFloat => DataType::Float64,
            Kind::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Kind::NumText | Kind::Text | Kind::Char | Kind::Jsonb | Kind::Uuid => DataType::Utf8,
            Kind::Bytea => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Interval => DataType::Duration(TimeUnit::Microsecond),
            Kind::List(inner) => DataType::List(Arc::new(Field::new("item", inner.data_type(), true))),
        }
    }
}

/// The reading of a column of Postgres type `ty` (with type modifier `typmod`, -1 when none), or
/// why it has none.
pub(crate) fn kind_of(ty: &Type, typmod: i32, unbounded: Unbounded) -> Result<Kind, String> {
    match ty.kind() {
        PgKind::Domain(base) => return kind_of(base, typmod, unbounded),
        PgKind::Enum(_) => return Ok(Kind::Text),
        PgKind::Array(elem) => {
            let inner = kind_of(elem, typmod, unbounded)?;
            if matches!(inner, Kind::List(_)) {
                return Err(format!("{} (an array of arrays)", ty.name()));
            }
            return Ok(Kind::List(Box::new(inner)));
        }
        _ => {}
    }
    Ok(match *ty {
        Type::BOOL => Kind::Bool,
        Type::INT2 => Kind::I16,
        Type::INT4 => Kind::I32,
        Type::INT8 => Kind::I64,
        Type::OID => Kind::Oid,
        Type::FLOAT4 => Kind::F32,
        Type::FLOAT8 => Kind::F64,
        Type::NUMERIC => {
            // typmod = ((precision << 16) | scale) + 4
            let bounded = (typmod >= 4).then(|| (((typmod - 4) >> 16) & 0xffff, (typmod - 4) & 0xffff));
            match bounded {
                Some((p, s)) if (1..=38).contains(&p) && s <= p => Kind::Decimal { precision: p as u8, scale: s as i8 },
                _ => match unbounded {
                    Unbounded::Decimal => Kind::Decimal { precision: 38, scale: UNBOUNDED_SCALE },
                    Unbounded::Float64 => Kind::NumFloat,
                    Unbounded::Text => Kind::NumText,
                },
            }
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::XML | Type::UNKNOWN => Kind::Text,
        Type::CHAR => Kind::Char,
        Type::JSONB => Kind::Jsonb,
        Type::BYTEA => Kind::Bytea,
        Type::UUID => Kind::Uuid,
        Type::DATE => Kind::Date,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::TIMESTAMPTZ => Kind::Timestamptz,
        Type::TIME => Kind::Time,
        Type::INTERVAL => Kind::Interval,
        // citext and other extension text types have no fixed oid.
        _ if ty.name() == "citext" => Kind::Text,
        _ => return Err(ty.name().to_string()),
    })
}

/// One decoded value, checked, before it is appended (a row is appended only when all its
/// values are good).
#[derive(Debug)]
enum Val<'a> {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    Dec(i128),
    Str(&'a str),
    Owned(String),
    Bytes(&'a [u8]),
    List(Vec<Val<'a>>),
}

/// Decodes a binary COPY stream, chunk by chunk, into batches of `batch_rows` rows.
pub(crate) struct Decoder {
    kinds: Vec<Kind>,
    names: Vec<String>,
    schema: SchemaRef,
    builders: Vec<Box<dyn ArrayBuilder>>,
    batch_rows: usize,
    /// Bytes received and not yet decoded (at most one partial tuple after a `push`).
    buf: Vec<u8>,
    header_done: bool,
    ended: bool,
    /// Rows decoded so far (1-based numbers in rejects).
    row: u64,
    rows_in_batch: usize,
    ready: Vec<RecordBatch>,
    rejects: Vec<Reject>,
}

impl Decoder {
    pub(crate) fn new(names: Vec<String>, kinds: Vec<Kind>, batch_rows: usize) -> Self {
        let fields: Vec<Field> = names.iter().zip(&kinds).map(|(n, k)| Field::new(n, k.data_type(), true)).collect();
        let schema = Arc::new(Schema::new(fields));
        let builders = kinds.iter().map(|k| make_builder(&k.data_type(), batch_rows.min(8192))).collect();
        Decoder {
            kinds,
            names,
            schema,
            builders,
            batch_rows: batch_rows.max(1),
            buf: Vec::new(),
            header_done: false,
            ended: false,
            row: 0,
            rows_in_batch: 0,
            ready: Vec::new(),
            rejects: Vec::new(),
        }
    }

    /// Decode the complete tuples of `chunk` (with what an earlier chunk left over).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<(), String> {
        if self.ended {
            return if chunk.is_empty() { Ok(()) } else { Err("data after the end of the COPY stream".into()) };
        }
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        if !self.header_done {
            if self.buf.len() < SIGNATURE.len() + 8 {
                return Ok(());
            }
            if &self.buf[..SIGNATURE.len()] != SIGNATURE {
                return Err("not a binary COPY stream (bad signature)".into());
            }
            let ext = usize::try_from(be_i32(&self.buf[SIGNATURE.len() + 4..]))
                .map_err(|_| "a binary COPY header with a negative extension length")?;
            if self.buf.len() < SIGNATURE.len() + 8 + ext {
                return Ok(());
            }
            pos = SIGNATURE.len() + 8 + ext;
            self.header_done = true;
        }
        let buf = std::mem::take(&mut self.buf);
        let result = self.tuples(&buf, &mut pos);
        self.buf = buf;
        self.buf.drain(..pos);
        result
    }

    /// Decode tuples from `buf[*pos..]` while complete ones are there.
    fn tuples(&mut self, buf: &[u8], pos: &mut usize) -> Result<(), String> {
        let n = self.kinds.len();
        while buf.len() >= *pos + 2 {
            let count = be_i16(&buf[*pos..]);
            if count == -1 {
                *pos += 2;
                self.ended = true;
                return Ok(());
            }
            if count as usize != n {
                return Err(format!("row {}: {count} fields, expected {n}", self.row + 1));
            }
            // Find the tuple's fields; stop if it is not complete yet.
            let mut p = *pos + 2;
            let mut spans: Vec<Option<(usize, usize)>> = Vec::with_capacity(n);
            for _ in 0..n {
                if buf.len() < p + 4 {
                    return Ok(());
                }
                let len = be_i32(&buf[p..]);
                p += 4;
                if len < 0 {
                    spans.push(None);
                    continue;
                }
                let len = len as usize;
                if buf.len() < p + len {
                    return Ok(());
                }
                spans.push(Some((p, p + len)));
                p += len;
            }
            *pos = p;
            self.row += 1;
            let mut vals = Vec::with_capacity(n);
            let mut bad: Vec<String> = Vec::new();
            for (i, span) in spans.iter().enumerate() {
                match span {
                    None => vals.push(Val::Null),
                    Some((a, b)) => match value(&self.kinds[i], &buf[*a..*b]) {
                        Ok(v) => vals.push(v),
                        Err(e) => {
                            bad.push(format!("column `{}`: {e}", self.names[i]));
                            vals.push(Val::Null);
                        }
                    },
                }
            }
            if !bad.is_empty() {
                let reason = bad.join("; ");
                let raw = render_row(&self.names, &self.kinds, &vals);
                self.rejects.push(Reject { line: self.row, raw, reason, step: "cast".into() });
                continue;
            }
            for ((kind, builder), v) in self.kinds.iter().zip(self.builders.iter_mut()).zip(&vals) {
                append(kind, builder.as_mut(), v);
            }
            self.rows_in_batch += 1;
            if self.rows_in_batch >= self.batch_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.rows_in_batch == 0 {
            return Ok(());
        }
        let columns = self.builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        self.rows_in_batch = 0;
        self.ready.push(batch);
        Ok(())
    }

    /// The stream ended: flush the last rows, and check nothing was cut off.
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        if !self.ended {
            return Err(format!("the COPY stream ended early, after {} rows", self.row));
        }
        self.flush()
    }

    /// Batches decoded so far.
    pub(crate) fn take_batches(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.ready)
    }

    /// Rows set aside so far.
    pub(crate) fn take_rejects(&mut self) -> Vec<Reject> {
        std::mem::take(&mut self.rejects)
    }

    pub(crate) fn rows(&self) -> u64 {
        self.row
    }
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

fn exact<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], String> {
    b.try_into().map_err(|_| format!("{what} value of {} bytes, expected {N}", b.len()))
}

/// One field's bytes as a checked value.
fn value<'a>(kind: &Kind, b: &'a [u8]) -> Result<Val<'a>, String> {
    Ok(match kind {
        Kind::Bool => Val::Bool(exact::<1>(b, "bool")?[0] != 0),
        Kind::I16 => Val::I64(i16::from_be_bytes(exact(b, "int2")?) as i64),
        Kind::I32 => Val::I64(i32::from_be_bytes(exact(b, "int4")?) as i64),
        Kind::I64 => Val::I64(i64::from_be_bytes(exact(b, "int8")?)),
        Kind::Oid => Val::I64(u32::from_be_bytes(exact(b, "oid")?) as i64),
        Kind::F32 => Val::F64(f32::from_be_bytes(exact(b, "float4")?) as f64),
        Kind::F64 => Val::F64(f64::from_be_bytes(exact(b, "float8")?)),
        Kind::Decimal { precision, scale } => Val::Dec(numeric_to_i128(b, *precision, *scale)?),
        Kind::NumFloat => match special(b) {
            Some(s) => Val::F64(s.parse::<f64>().expect("NaN and infinities parse")),
            None => {
                let text = numeric_text(b)?;
                Val::F64(text.parse::<f64>().map_err(|e| format!("numeric {text}: {e}"))?)
            }
        },
        Kind::NumText => Val::Owned(match special(b) {
            Some(s) => s.to_string(),
            None => numeric_text(b)?,
        }),
        Kind::Text => Val::Str(utf8(b)?),
        Kind::Char => Val::Owned(String::from_utf8_lossy(b).into_owned()),
        Kind::Jsonb => match b.split_first() {
            Some((1, rest)) => Val::Str(utf8(rest)?),
            _ => return Err("jsonb value of an unknown version".into()),
        },
        Kind::Bytea => Val::Bytes(b),
        Kind::Uuid => {
            let u: [u8; 16] = exact(b, "uuid")?;
            let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
            Val::Owned(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
        }
        Kind::Date => {
            let d = i32::from_be_bytes(exact(b, "date")?);
            if d == i32::MAX || d == i32::MIN {
                return Err(format!("{}infinity has no Date32 value", if d < 0 { "-" } else { "" }));
            }
            Val::I64(d.checked_add(PG_EPOCH_DAYS).ok_or("date out of range")? as i64)
        }
        Kind::Timestamp | Kind::Timestamptz => {
            let t = i64::from_be_bytes(exact(b, "timestamp")?);
            if t == i64::MAX || t == i64::MIN {
                return Err(format!("{}infinity has no timestamp value", if t < 0 { "-" } else { "" }));
            }
            Val::I64(t.checked_add(PG_EPOCH_MICROS).ok_or("timestamp out of range")?)
        }
        Kind::Time => Val::I64(i64::from_be_bytes(exact(b, "time")?)),
        Kind::Interval => {
            // Read as a duration: a day is 24 hours; a month has no fixed length.
            let b: [u8; 16] = exact(b, "interval")?;
            let micros = be_i64(&b[0..8]);
            let days = be_i32(&b[8..12]);
            let months = be_i32(&b[12..16]);
            if micros == i64::MAX || micros == i64::MIN {
                return Err("an infinite interval has no duration".into());
            }
            if months != 0 {
                return Err(format!(
                    "an interval of {months} months has no fixed duration (cast it: `extract(epoch from col)` or `col::text`)"
                ));
            }
            Val::I64(
                (days as i64)
                    .checked_mul(86_400_000_000)
                    .and_then(|d| d.checked_add(micros))
                    .ok_or("an interval out of the range of a duration in microseconds")?,
            )
        }
        Kind::List(inner) => Val::List(array(inner, b)?),
    })
}

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("text that is not UTF-8 ({e})"))
}

/// A one-dimensional array's elements: ndim, has-null flag, element oid, then per dimension its
/// length and lower bound, then each element as a length and bytes.
fn array<'a>(inner: &Kind, b: &'a [u8]) -> Result<Vec<Val<'a>>, String> {
    if b.len() < 12 {
        return Err("array value too short".into());
    }
    let ndim = be_i32(b);
    if ndim == 0 {
        return Ok(Vec::new());
    }
    if ndim != 1 {
        return Err(format!("a {ndim}-dimensional array (only one dimension maps to a list)"));
    }
    if b.len() < 20 {
        return Err("array value too short".into());
    }
    let len = be_i32(&b[12..]);
    let mut p = 20;
    // Each element takes at least its 4-byte length: no more than the bytes allow.
    let mut out = Vec::with_capacity((len.max(0) as usize).min(b.len() / 4));
    for _ in 0..len {
        if b.len() < p + 4 {
            return Err("array value cut off".into());
        }
        let n = be_i32(&b[p..]);
        p += 4;
        if n < 0 {
            out.push(Val::Null);
            continue;
        }
        let n = n as usize;
        if b.len() < p + n {
            return Err("array value cut off".into());
        }
        out.push(value(inner, &b[p..p + n]).map_err(|e| format!("element {}: {e}", out.len() + 1))?);
        p += n;
    }
    Ok(out)
}

/// `NaN`, `Infinity` or `-Infinity`, as Postgres prints them, for those numerics.
fn special(b: &[u8]) -> Option<&'static str> {
    match u16::from_be_bytes([*b.get(4)?, *b.get(5)?]) {
        0xC000 => Some("NaN"),
        0xD000 => Some("Infinity"),
        0xF000 => Some("-Infinity"),
        _ => None,
    }
}

/// A numeric's header (digit count, weight, sign, display scale) and base-10000 digits.
fn numeric_parts(b: &[u8]) -> Result<(i16, u16, i16, Vec<u16>), String> {
    if b.len() < 8 {
        return Err("numeric value too short".into());
    }
    let ndigits = be_i16(b);
    let weight = be_i16(&b[2..]);
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = be_i16(&b[6..]);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN".into()),
        0xD000 => return Err("infinity".into()),
        0xF000 => return Err("-infinity".into()),
        _ => return Err(format!("numeric with an unknown sign {sign:#x}")),
    }
    if ndigits < 0 || b.len() != 8 + 2 * ndigits as usize {
        return Err("numeric value of the wrong length".into());
    }
    let digits = (0..ndigits as usize).map(|i| u16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]])).collect();
    Ok((weight, sign, dscale, digits))
}

/// The numeric as an integer scaled by 10^scale, refused when that would drop a nonzero digit or
/// need more than `precision` digits.
fn numeric_to_i128(b: &[u8], precision: u8, scale: i8) -> Result<i128, String> {
    let (weight, sign, _, digits) = numeric_parts(b).map_err(|e| format!("numeric {e} has no decimal value"))?;
    let mut acc: i128 = 0;
    let scale = scale as i32;
    for (i, &d) in digits.iter().enumerate() {
        // This group's value is d × 10000^(weight - i) = d × 10^(4·(weight - i)).
        let exp = 4 * (weight as i32 - i as i32) + scale;
        let term: i128 = if exp >= 0 {
            let pow = 10i128.checked_pow(exp as u32).ok_or_else(|| too_big(b, precision, scale))?;
            (d as i128).checked_mul(pow).ok_or_else(|| too_big(b, precision, scale))?
        } else {
            let div = 10i128.pow((-exp).min(8) as u32);
            if (-exp) >= 8 || d as i128 % div != 0 {
                if d != 0 {
                    return Err(format!(
                        "{} has more than {scale} fractional digits (the column is read as Decimal128 with scale {scale})",
                        numeric_text(b).unwrap_or_default()
                    ));
                }
                0
            } else {
                d as i128 / div
            }
        };
        acc = acc.checked_add(term).ok_or_else(|| too_big(b, precision, scale))?;
    }
    if acc >= 10i128.pow(precision as u32) {
        return Err(too_big(b, precision, scale));
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
}

fn too_big(b: &[u8], precision: u8, scale: i32) -> String {
    format!("{} does not fit Decimal128({precision}, {scale})", numeric_text(b).unwrap_or_default())
}

/// The numeric as Postgres prints it.
fn numeric_text(b: &[u8]) -> Result<String, String> {
    let (weight, sign, dscale, digits) = numeric_parts(b)?;
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    // Integer part: groups with weight >= 0.
    if weight < 0 {
        s.push('0');
    } else {
        for w in 0..=weight as usize {
            let d = digits.get(w).copied().unwrap_or(0);
            if w == 0 { s.push_str(&d.to_string()) } else { s.push_str(&format!("{d:04}")) }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut w = weight as i32 + 1;
        while (frac.len() as i32) < dscale as i32 {
            let d = if w < 0 { 0 } else { digits.get(w as usize).copied().unwrap_or(0) };
            frac.push_str(&format!("{d:04}"));
            w += 1;
        }
        frac.truncate(dscale as usize);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// Append a checked value (its kind matches the builder's, by construction).
fn append(kind: &Kind, builder: &mut dyn ArrayBuilder, v: &Val<'_>) {
    macro_rules! b {
        ($t:ty) => {
            builder.as_any_mut().downcast_mut::<$t>().expect("builder of the column's type")
        };
    }
    match (kind, v) {
        (Kind::Bool, Val::Bool(x)) => b!(BooleanBuilder).append_value(*x),
        (Kind::Bool, _) => b!(BooleanBuilder).append_null(),
        (Kind::I16, Val::I64(x)) => b!(Int16Builder).append_value(*x as i16),
        (Kind::I16, _) => b!(Int16Builder).append_null(),
        (Kind::I32, Val::I64(x)) => b!(Int32Builder).append_value(*x as i32),
        (Kind::I32, _) => b!(Int32Builder).append_null(),
        (Kind::I64, Val::I64(x)) => b!(Int64Builder).append_value(*x),
        (Kind::I64, _) => b!(Int64Builder).append_null(),
        (Kind::Oid, Val::I64(x)) => b!(UInt32Builder).append_value(*x as u32),
        (Kind::Oid, _) => b!(UInt32Builder).append_null(),
        (Kind::F32, Val::F64(x)) => b!(Float32Builder).append_value(*x as f32),
        (Kind::F32, _) => b!(Float32Builder).append_null(),
        (Kind::F64 | Kind::NumFloat, Val::F64(x)) => b!(Float64Builder).append_value(*x),
        (Kind::F64 | Kind::NumFloat, _) => b!(Float64Builder).append_null(),
        (Kind::Decimal { .. }, Val::Dec(x)) => b!(Decimal128Builder).append_value(*x),
        (Kind::Decimal { .. }, _) => b!(Decimal128Builder).append_null(),
        (Kind::NumText | Kind::Text | Kind::Char | Kind::Jsonb | Kind::Uuid, Val::Str(s)) => {
            b!(StringBuilder).append_value(s)
        }
        (Kind::NumText | Kind::Text | Kind::Char | Kind::Jsonb | Kind::Uuid, Val::Owned(s)) => {
            b!(StringBuilder).append_value(s)
        }
        (Kind::NumText | Kind::Text | Kind::Char | Kind::Jsonb | Kind::Uuid, _) => b!(StringBuilder).append_null(),
        (Kind::Bytea, Val::Bytes(x)) => b!(BinaryBuilder).append_value(x),
        (Kind::Bytea, _) => b!(BinaryBuilder).append_null(),
        (Kind::Date, Val::I64(x)) => b!(Date32Builder).append_value(*x as i32),
        (Kind::Date, _) => b!(Date32Builder).append_null(),
        (Kind::Timestamp | Kind::Timestamptz, Val::I64(x)) => b!(TimestampMicrosecondBuilder).append_value(*x),
        (Kind::Timestamp | Kind::Timestamptz, _) => b!(TimestampMicrosecondBuilder).append_null(),
        (Kind::Time, Val::I64(x)) => b!(Time64MicrosecondBuilder).append_value(*x),
        (Kind::Time, _) => b!(Time64MicrosecondBuilder).append_null(),
        (Kind::Interval, Val::I64(x)) => b!(DurationMicrosecondBuilder).append_value(*x),
        (Kind::Interval, _) => b!(DurationMicrosecondBuilder).append_null(),
        (Kind::List(inner), Val::List(items)) => {
            let lb = b!(ListBuilder<Box<dyn ArrayBuilder>>);
            for item in items {
                append(inner, lb.values().as_mut(), item);
            }
            lb.append(true);
        }
        (Kind::List(_), _) => b!(ListBuilder<Box<dyn ArrayBuilder>>).append(false),
    }
}

/// A rejected row as text: `name=value` for the values that were read.
fn render_row(names: &[String], kinds: &[Kind], vals: &[Val<'_>]) -> String {
    fn one(kind: &Kind, v: &Val<'_>) -> String {
        match v {
            Val::Dec(x) => match kind {
                Kind::Decimal { scale, .. } if *scale > 0 => {
                    let s = format!("{:0>width$}", x.unsigned_abs(), width = *scale as usize + 1);
                    let (i, f) = s.split_at(s.len() - *scale as usize);
                    format!("{}{i}.{f}", if *x < 0 { "-" } else { "" })
                }
                _ => x.to_string(),
            },
            Val::Null => "NULL".into(),
            Val::Bool(b) => b.to_string(),
            Val::I64(x) => x.to_string(),
            Val::F64(x) => x.to_string(),
            Val::Str(s) => format!("{s:?}"),
            Val::Owned(s) => format!("{s:?}"),
            Val::Bytes(b) => format!("<{} bytes>", b.len()),
            Val::List(items) => {
                let inner = match kind {
                    Kind::List(k) => k.as_ref(),
                    k => k,
                };
                format!("[{}]", items.iter().map(|v| one(inner, v)).collect::<Vec<_>>().join(","))
            }
        }
    }
    names.iter().zip(kinds).zip(vals).map(|((n, k), v)| format!("{n}={}", one(k, v))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    /// A numeric's wire bytes from its header and digits.
    fn numeric(weight: i16, sign: u16, dscale: i16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as i16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend(sign.to_be_bytes());
        b.extend(dscale.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_scale_exactly_or_are_refused() {
        // 12345.678 = [1, 2345, 6780] with weight 1, dscale 3
        let v = numeric(1, 0, 3, &[1, 2345, 6780]);
        assert_eq!(numeric_text(&v).unwrap(), "12345.678");
        assert_eq!(numeric_to_i128(&v, 10, 3).unwrap(), 12_345_678);
        assert_eq!(numeric_to_i128(&v, 12, 5).unwrap(), 1_234_567_800);
        let e = numeric_to_i128(&v, 10, 2).unwrap_err();
        assert!(e.contains("more than 2 fractional digits"), "{e}");
        assert!(numeric_to_i128(&v, 6, 3).unwrap_err().contains("does not fit"));
        // -0.0005 = [5] weight -1, dscale 4
        let v = numeric(-1, 0x4000, 4, &[5]);
        assert_eq!(numeric_text(&v).unwrap(), "-0.0005");
        assert_eq!(numeric_to_i128(&v, 10, 4).unwrap(), -5);
        // 1e8 = [1] weight 2 (trailing zero groups are not sent)
        let v = numeric(2, 0, 0, &[1]);
        assert_eq!(numeric_text(&v).unwrap(), "100000000");
        assert_eq!(numeric_to_i128(&v, 20, 2).unwrap(), 10_000_000_000);
        assert_eq!(
            numeric_to_i128(&numeric(0, 0xC000, 0, &[]), 10, 2).unwrap_err(),
            "numeric NaN has no decimal value"
        );
        assert_eq!(numeric_text(&numeric(0, 0, 0, &[])).unwrap(), "0");
        // Read as text or float, NaN and the infinities are values.
        let nan = numeric(0, 0xC000, 0, &[]);
        assert!(matches!(value(&Kind::NumText, &nan), Ok(Val::Owned(s)) if s == "NaN"));
        assert!(
            matches!(value(&Kind::NumFloat, &numeric(0, 0xF000, 0, &[])), Ok(Val::F64(x)) if x == f64::NEG_INFINITY)
        );
    }

    fn copy_stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut b = SIGNATURE.to_vec();
        b.extend(0i32.to_be_bytes());
        b.extend(0i32.to_be_bytes());
        for r in rows {
            b.extend((r.len() as i16).to_be_bytes());
            for f in r {
                match f {
                    None => b.extend((-1i32).to_be_bytes()),
                    Some(v) => {
                        b.extend((v.len() as i32).to_be_bytes());
                        b.extend(v);
                    }
                }
            }
        }
        b.extend((-1i16).to_be_bytes());
        b
    }

    #[test]
    fn a_stream_split_anywhere_decodes_the_same_and_bad_rows_are_set_aside() {
        let rows = vec![
            vec![Some(7i64.to_be_bytes().to_vec()), Some(b"a".to_vec()), Some(0i32.to_be_bytes().to_vec())],
            vec![Some(8i64.to_be_bytes().to_vec()), None, Some(i32::MAX.to_be_bytes().to_vec())],
            vec![Some(9i64.to_be_bytes().to_vec()), Some(vec![0xff]), Some(1i32.to_be_bytes().to_vec())],
            vec![Some(10i64.to_be_bytes().to_vec()), Some(b"d".to_vec()), None],
        ];
        let bytes = copy_stream(&rows);
        for step in [1, 3, 7, 1000] {
            let mut d =
                Decoder::new(vec!["id".into(), "s".into(), "day".into()], vec![Kind::I64, Kind::Text, Kind::Date], 2);
            for chunk in bytes.chunks(step) {
                d.push(chunk).unwrap();
            }
            d.finish().unwrap();
            let batches = d.take_batches();
            let ids: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap().values().to_vec())
                .collect();
            assert_eq!(ids, vec![7, 10], "chunk {step}");
            assert_eq!(
                batches[0].column(2).as_any().downcast_ref::<arrow_array::Date32Array>().unwrap().value(0),
                10_957
            );
            assert!(batches.last().unwrap().column(2).is_null(1));
            let rejects = d.take_rejects();
            assert_eq!(rejects.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 3]);
            assert!(rejects[0].reason.contains("column `day`: infinity"), "{}", rejects[0].reason);
            assert!(rejects[1].reason.contains("column `s`: text that is not UTF-8"), "{}", rejects[1].reason);
            assert_eq!(rejects[0].raw, "id=8, s=NULL, day=NULL");
        }
    }

    #[test]
    fn a_cut_off_stream_is_an_error() {
        let bytes = copy_stream(&[vec![Some(1i64.to_be_bytes().to_vec())]]);
        let mut d = Decoder::new(vec!["id".into()], vec![Kind::I64], 10);
        d.push(&bytes[..bytes.len() - 2]).unwrap();
        assert!(d.finish().unwrap_err().contains("ended early, after 1 rows"));
    }
}
