//! File-name fields: typed values captured from a unit's path, added as constant columns.

use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use sluice_core::error::SourceError;
use sluice_core::spec::{FieldKind, FieldsPattern};

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Int(i64),
    Date(i32),
}

/// The typed values of one file's fields.
#[derive(Debug, Clone)]
pub(crate) struct FieldValues {
    values: Vec<(String, Value)>,
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn parse_date(s: &str) -> Option<i32> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d == 0 || d > days_in[m as usize - 1] {
        return None;
    }
    Some(days_from_civil(y, m, d) as i32)
}

impl FieldValues {
    /// Match the pattern against the relative path (or its file name when the pattern has no `/`).
    pub(crate) fn parse(pattern: &FieldsPattern, rel_path: &str) -> Result<Self, String> {
        let subject =
            if pattern.pattern.contains('/') { rel_path } else { rel_path.rsplit('/').next().unwrap_or(rel_path) };
        let caps = pattern
            .captures(subject)
            .ok_or_else(|| format!("`{subject}` does not match the fields pattern `{}`", pattern.pattern))?;
        let mut values = Vec::with_capacity(caps.len());
        for ((name, raw), (_, kind)) in caps.into_iter().zip(pattern.fields()) {
            let v = match kind {
                FieldKind::String => Value::Str(raw),
                FieldKind::Int => {
                    Value::Int(raw.parse().map_err(|_| format!("field `{name}`: `{raw}` is not an integer"))?)
                }
                FieldKind::Date => Value::Date(
                    parse_date(&raw).ok_or_else(|| format!("field `{name}`: `{raw}` is not a YYYY-MM-DD date"))?,
                ),
            };
            values.push((name, v));
        }
        Ok(FieldValues { values })
    }

    /// The values as text, for grouping units by key (dates as days since the epoch).
    pub(crate) fn texts(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(n, v)| {
                let t = match v {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    Value::Date(d) => d.to_string(),
                };
                (n.clone(), t)
            })
            .collect()
    }

    pub(crate) fn append_to(&self, batch: RecordBatch) -> Result<RecordBatch, SourceError> {
        let n = batch.num_rows();
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (name, v) in &self.values {
            let (col, dt): (ArrayRef, _) = match v {
                Value::Str(s) => {
                    (Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n))), FieldKind::String)
                }
                Value::Int(i) => (Arc::new(Int64Array::from_value(*i, n)), FieldKind::Int),
                Value::Date(d) => (Arc::new(Date32Array::from_value(*d, n)), FieldKind::Date),
            };
            fields.push(Field::new(name, dt.data_type(), false));
            columns.push(col);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| SourceError::Format { path: String::new(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_and_converted() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-03-01"), Some(19783));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-1-01"), None);
    }
}
