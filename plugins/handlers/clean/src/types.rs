//! `types`: column type mapping with a failure policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use handler_kit::num::{is_numeric, to_f64, to_i64};
use handler_kit::time::Unit;
use sluice_plugin::arrow_array::builder::PrimitiveBuilder;
use sluice_plugin::arrow_array::types::{
    Date32Type, Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use sluice_plugin::arrow_array::{ArrowPrimitiveType, PrimitiveArray};
use sluice_plugin::arrow_cast::display::{ArrayFormatter, FormatOptions};
use sluice_plugin::arrow_cast::parse::Parser;
use sluice_plugin::prelude::*;

/// What happens to a value that does not convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// The row goes to the lake's `_rejects` (reason: column, value, target type).
    #[default]
    Reject,
    /// The value becomes null (then the column's null policy applies).
    Null,
    /// The file fails (a data error; the step's `on_error` applies).
    Fail,
}

/// A target type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Int64,
    Float64,
    Bool,
    Date,
    Timestamp,
    Utf8,
}

impl Target {
    fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "int64" | "int" | "integer" => Target::Int64,
            "float64" | "float" | "double" => Target::Float64,
            "bool" | "boolean" => Target::Bool,
            "date" | "date32" => Target::Date,
            "timestamp" => Target::Timestamp,
            "utf8" | "string" | "str" => Target::Utf8,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Target::Int64 => "int64",
            Target::Float64 => "float64",
            Target::Bool => "bool",
            Target::Date => "date",
            Target::Timestamp => "timestamp",
            Target::Utf8 => "utf8",
        }
    }
}

/// One column's mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub column: String,
    pub to: Target,
    /// Timestamps: the unit (default ms).
    pub unit: Unit,
    /// Dates and timestamps from text: a strftime format (`%d/%m/%Y %H:%M`); default ISO 8601.
    pub format: Option<String>,
    pub on_fail: OnFail,
}

impl Mapping {
    pub fn data_type(&self) -> DataType {
        match self.to {
            Target::Int64 => DataType::Int64,
            Target::Float64 => DataType::Float64,
            Target::Bool => DataType::Boolean,
            Target::Date => DataType::Date32,
            Target::Timestamp => DataType::Timestamp(self.unit.arrow(), None),
            Target::Utf8 => DataType::Utf8,
        }
    }

    /// The target type as named in reasons (`timestamp[ms]`).
    pub fn describe(&self) -> String {
        match self.to {
            Target::Timestamp => format!("timestamp[{:?}]", self.unit).to_lowercase(),
            t => t.name().into(),
        }
    }
}

const TYPES: &str = "int64, float64, bool, date, timestamp or utf8";

/// Parses the `types` map: `{column: type}` or `{column: {type, unit, format, on_fail}}`.
pub fn parse(raw: &BTreeMap<String, serde_json::Value>, default: OnFail) -> Result<Vec<Mapping>, Error> {
    let mut out = Vec::new();
    for (column, v) in raw {
        let key = format!("types.{column}");
        let target = |s: &str, key: &str| {
            Target::parse(s)
                .ok_or_else(|| Error::config(format!("unknown type `{s}` (use {TYPES})")).key(key.to_string()))
        };
        let m = match v {
            serde_json::Value::String(s) => {
                Mapping { column: column.clone(), to: target(s, &key)?, unit: Unit::Ms, format: None, on_fail: default }
            }
            serde_json::Value::Object(o) => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Full {
                    #[serde(rename = "type")]
                    to: String,
                    #[serde(default)]
                    unit: Option<Unit>,
                    #[serde(default)]
                    format: Option<String>,
                    #[serde(default)]
                    on_fail: Option<OnFail>,
                }
                let f: Full = sluice_plugin::parse_config(&serde_json::Value::Object(o.clone()).to_string()).map_err(
                    |e| match e {
                        Error::Config { message, key: k } => {
                            Error::config(message).key(k.map(|k| format!("{key}.{k}")).unwrap_or_else(|| key.clone()))
                        }
                        e => e,
                    },
                )?;
                let to = target(&f.to, &format!("{key}.type"))?;
                if f.unit.is_some() && to != Target::Timestamp {
                    return Err(Error::config("`unit` applies to timestamp only").key(format!("{key}.unit")));
                }
                if f.format.is_some() && !matches!(to, Target::Date | Target::Timestamp) {
                    return Err(
                        Error::config("`format` applies to date and timestamp only").key(format!("{key}.format"))
                    );
                }
                Mapping {
                    column: column.clone(),
                    to,
                    unit: f.unit.unwrap_or(Unit::Ms),
                    format: f.format,
                    on_fail: f.on_fail.unwrap_or(default),
                }
            }
            _ => {
                return Err(Error::config(format!(
                    "expected a type name ({TYPES}) or {{type, unit, format, on_fail}}"
                ))
                .key(key));
            }
        };
        out.push(m);
    }
    Ok(out)
}

/// Whether a column of type `from` can become `to` (a `format` needs text).
fn supported(from: &DataType, to: Target) -> bool {
    let text = matches!(from, DataType::Utf8 | DataType::LargeUtf8);
    let num = is_numeric(from) && !matches!(from, DataType::Decimal128(_, _));
    match to {
        Target::Utf8 => true,
        Target::Int64 | Target::Float64 | Target::Bool => text || num || from == &DataType::Boolean,
        Target::Date => text || from == &DataType::Date32,
        Target::Timestamp => text || from.is_integer() || matches!(from, DataType::Timestamp(_, _) | DataType::Date32),
    }
}

/// Checks that `from` can be mapped (config error on `types.<column>`).
pub fn check(m: &Mapping, from: &DataType) -> Result<(), Error> {
    let key = format!("types.{}", m.column);
    if m.format.is_some() && !matches!(from, DataType::Utf8 | DataType::LargeUtf8) {
        return Err(Error::config(format!("`format` needs a text column; `{}` is {from}", m.column))
            .key(format!("{key}.format")));
    }
    if !supported(from, m.to) {
        return Err(
            Error::config(format!("column `{}` of type {from} cannot become {}", m.column, m.describe())).key(key)
        );
    }
    Ok(())
}

fn parse_bool(s: &str) -> Option<bool> {
    const T: [&str; 6] = ["true", "t", "yes", "y", "on", "1"];
    const F: [&str; 6] = ["false", "f", "no", "n", "off", "0"];
    if T.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if F.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Text values through `f`, into a primitive array.
fn from_text<T: ArrowPrimitiveType>(s: &[Option<&str>], f: impl Fn(&str) -> Option<T::Native>) -> ArrayRef {
    let mut b = PrimitiveBuilder::<T>::with_capacity(s.len());
    for v in s {
        b.append_option(v.and_then(&f));
    }
    Arc::new(b.finish())
}

fn timestamp_array(unit: Unit, v: Int64Array) -> ArrayRef {
    let (values, nulls) = (v.values().clone(), v.nulls().cloned());
    match unit {
        Unit::S => Arc::new(PrimitiveArray::<TimestampSecondType>::new(values, nulls)),
        Unit::Ms => Arc::new(PrimitiveArray::<TimestampMillisecondType>::new(values, nulls)),
        Unit::Us => Arc::new(PrimitiveArray::<TimestampMicrosecondType>::new(values, nulls)),
        Unit::Ns => Arc::new(PrimitiveArray::<TimestampNanosecondType>::new(values, nulls)),
    }
}

/// Converts `a`; rows that fail are null in the result and listed in the second value. Parses
/// text with arrow-cast's small per-type parsers (not its cast kernels, which would add
/// megabytes to the component).
pub fn convert(m: &Mapping, a: &ArrayRef) -> Result<(ArrayRef, Vec<usize>), Error> {
    let to = m.data_type();
    if a.data_type() == &to {
        return Ok((a.clone(), vec![]));
    }
    let out: ArrayRef = match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => {
            let text: Vec<Option<&str>> = match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().iter().collect(),
                _ => a.as_string::<i64>().iter().collect(),
            };
            match (m.to, &m.format) {
                (Target::Int64, _) => from_text::<Int64Type>(&text, |s| Int64Type::parse(s.trim())),
                (Target::Float64, _) => from_text::<Float64Type>(&text, |s| Float64Type::parse(s.trim())),
                (Target::Bool, _) => {
                    Arc::new(text.iter().map(|v| v.and_then(|s| parse_bool(s.trim()))).collect::<BooleanArray>())
                }
                (Target::Utf8, _) => Arc::new(text.iter().copied().collect::<StringArray>()),
                (Target::Date, Some(fmt)) => from_text::<Date32Type>(&text, |s| Date32Type::parse_formatted(s, fmt)),
                (Target::Date, None) => from_text::<Date32Type>(&text, |s| Date32Type::parse(s.trim())),
                (Target::Timestamp, Some(fmt)) => with_format(m.unit, fmt, &text),
                (Target::Timestamp, None) => match m.unit {
                    Unit::S => from_text::<TimestampSecondType>(&text, |s| TimestampSecondType::parse(s.trim())),
                    Unit::Ms => {
                        from_text::<TimestampMillisecondType>(&text, |s| TimestampMillisecondType::parse(s.trim()))
                    }
                    Unit::Us => {
                        from_text::<TimestampMicrosecondType>(&text, |s| TimestampMicrosecondType::parse(s.trim()))
                    }
                    Unit::Ns => {
                        from_text::<TimestampNanosecondType>(&text, |s| TimestampNanosecondType::parse(s.trim()))
                    }
                },
            }
        }
        _ if m.to == Target::Utf8 => {
            let f = ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())?;
            Arc::new((0..a.len()).map(|i| a.is_valid(i).then(|| f.value(i).to_string())).collect::<StringArray>())
        }
        DataType::Boolean => {
            let b = a.as_boolean();
            match m.to {
                Target::Int64 => Arc::new(b.iter().map(|v| v.map(i64::from)).collect::<Int64Array>()),
                Target::Float64 => {
                    Arc::new(b.iter().map(|v| v.map(|v| f64::from(u8::from(v)))).collect::<Float64Array>())
                }
                _ => a.clone(),
            }
        }
        DataType::Timestamp(u, _) if m.to == Target::Timestamp => {
            let (mul, div) = Unit::of(*u).factor(m.unit);
            let v = to_i64(a.as_ref()).expect("a timestamp");
            let v: Int64Array =
                v.iter().map(|x| x.and_then(|x| x.checked_mul(mul)).map(|x| x.div_euclid(div))).collect();
            timestamp_array(m.unit, v)
        }
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>();
            let per_day = 86_400 * m.unit.per_second();
            let v: Int64Array = days.iter().map(|d| d.and_then(|d| i64::from(d).checked_mul(per_day))).collect();
            timestamp_array(m.unit, v)
        }
        t if t.is_floating() => {
            let f = to_f64(a.as_ref()).expect("numeric");
            match m.to {
                // A fraction or an out-of-range value fails instead of truncating.
                Target::Int64 => Arc::new(
                    f.iter()
                        .map(|v| v.filter(|v| v.fract() == 0.0 && v.abs() < 9.2e18).map(|v| v as i64))
                        .collect::<Int64Array>(),
                ),
                Target::Bool => Arc::new(f.iter().map(|v| v.map(|v| v != 0.0)).collect::<BooleanArray>()),
                _ => Arc::new(f),
            }
        }
        _ => {
            // Integers (checked above).
            let i = to_i64(a.as_ref()).expect("integer");
            match m.to {
                Target::Float64 => Arc::new(to_f64(a.as_ref()).expect("numeric")),
                Target::Bool => Arc::new(i.iter().map(|v| v.map(|v| v != 0)).collect::<BooleanArray>()),
                Target::Timestamp => timestamp_array(m.unit, i),
                _ => Arc::new(i),
            }
        }
    };
    let failed: Vec<usize> = (0..a.len()).filter(|&i| a.is_valid(i) && out.is_null(i)).collect();
    Ok((out, failed))
}

/// `value` of row `i` as text, for reasons.
pub fn render(a: &ArrayRef, i: usize) -> String {
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).to_string(),
        _ => ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
            .map(|f| f.value(i).to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

fn ts<T: ArrowPrimitiveType<Native = i64>>(
    s: &[Option<&str>],
    f: impl Fn(&str) -> Option<chrono::NaiveDateTime>,
    unit: Unit,
) -> ArrayRef {
    from_text::<T>(s, |v| {
        let t = f(v)?.and_utc();
        match unit {
            Unit::S => Some(t.timestamp()),
            Unit::Ms => Some(t.timestamp_millis()),
            Unit::Us => Some(t.timestamp_micros()),
            Unit::Ns => t.timestamp_nanos_opt(),
        }
    })
}

/// Timestamps from text with a strftime `fmt` (with or without an offset, or a date only).
fn with_format(unit: Unit, fmt: &str, s: &[Option<&str>]) -> ArrayRef {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let parse = |v: &str| {
        NaiveDateTime::parse_from_str(v, fmt)
            .ok()
            .or_else(|| DateTime::parse_from_str(v, fmt).ok().map(|t| t.naive_utc()))
            .or_else(|| NaiveDate::parse_from_str(v, fmt).ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
    };
    match unit {
        Unit::S => ts::<TimestampSecondType>(s, parse, unit),
        Unit::Ms => ts::<TimestampMillisecondType>(s, parse, unit),
        Unit::Us => ts::<TimestampMicrosecondType>(s, parse, unit),
        Unit::Ns => ts::<TimestampNanosecondType>(s, parse, unit),
    }
}
