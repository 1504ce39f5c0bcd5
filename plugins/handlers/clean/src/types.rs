//! `types`: column type mapping with a failure policy.

use std::collections::BTreeMap;
use std::sync::Arc;

use handler_kit::time::Unit;
use sluice_plugin::arrow_array::ArrowPrimitiveType;
use sluice_plugin::arrow_array::builder::{Date32Builder, PrimitiveBuilder};
use sluice_plugin::arrow_array::types::{
    Float32Type, Float64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use sluice_plugin::arrow_cast::display::{ArrayFormatter, FormatOptions};
use sluice_plugin::arrow_cast::{CastOptions, can_cast_types, cast_with_options};
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

/// Checks that `from` can be mapped (config error on `types.<column>`).
pub fn check(m: &Mapping, from: &DataType) -> Result<(), Error> {
    let key = format!("types.{}", m.column);
    if m.format.is_some() && !matches!(from, DataType::Utf8 | DataType::LargeUtf8) {
        return Err(Error::config(format!("`format` needs a text column; `{}` is {from}", m.column))
            .key(format!("{key}.format")));
    }
    if !can_cast_types(from, &m.data_type()) {
        return Err(
            Error::config(format!("column `{}` of type {from} cannot become {}", m.column, m.describe())).key(key)
        );
    }
    Ok(())
}

/// Converts `a`; rows that fail are null in the result and listed in the second value.
pub fn convert(m: &Mapping, a: &ArrayRef) -> Result<(ArrayRef, Vec<usize>), Error> {
    let to = m.data_type();
    if a.data_type() == &to {
        return Ok((a.clone(), vec![]));
    }
    let out = match (&m.format, a.data_type()) {
        (Some(fmt), DataType::Utf8) => with_format(m, fmt, a.as_string::<i32>()),
        (Some(fmt), DataType::LargeUtf8) => {
            let s = sluice_plugin::arrow_cast::cast(a, &DataType::Utf8)?;
            with_format(m, fmt, s.as_string::<i32>())
        }
        _ => cast_with_options(a, &to, &CastOptions { safe: true, ..Default::default() })?,
    };
    let mut failed: Vec<usize> = (0..a.len()).filter(|&i| a.is_valid(i) && out.is_null(i)).collect();
    // A cast from floats to integers truncates: a value with a fraction fails instead.
    if m.to == Target::Int64 {
        let fractional = |i: usize| match a.data_type() {
            DataType::Float64 => a.as_primitive::<Float64Type>().value(i).fract() != 0.0,
            DataType::Float32 => a.as_primitive::<Float32Type>().value(i).fract() != 0.0,
            _ => false,
        };
        let extra: Vec<usize> = (0..a.len()).filter(|&i| a.is_valid(i) && out.is_valid(i) && fractional(i)).collect();
        if !extra.is_empty() {
            failed.extend(extra);
            failed.sort_unstable();
            let mut nulls: Vec<bool> = (0..out.len()).map(|i| out.is_valid(i)).collect();
            for &i in &failed {
                nulls[i] = false;
            }
            let data = out.to_data().into_builder().nulls(Some(nulls.into())).build()?;
            return Ok((sluice_plugin::arrow_array::make_array(data), failed));
        }
    }
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
    s: &StringArray,
    f: impl Fn(&str) -> Option<chrono::NaiveDateTime>,
    unit: Unit,
) -> ArrayRef {
    let mut b = PrimitiveBuilder::<T>::with_capacity(s.len());
    for v in s.iter() {
        let t = v.and_then(&f).and_then(|t| {
            let t = t.and_utc();
            match unit {
                Unit::S => Some(t.timestamp()),
                Unit::Ms => Some(t.timestamp_millis()),
                Unit::Us => Some(t.timestamp_micros()),
                Unit::Ns => t.timestamp_nanos_opt(),
            }
        });
        b.append_option(t);
    }
    Arc::new(b.finish())
}

fn with_format(m: &Mapping, fmt: &str, s: &StringArray) -> ArrayRef {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    match m.to {
        Target::Date => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
            let mut b = Date32Builder::with_capacity(s.len());
            for v in s.iter() {
                let d = v.and_then(|v| NaiveDate::parse_from_str(v, fmt).ok());
                b.append_option(d.map(|d| (d - epoch).num_days() as i32));
            }
            Arc::new(b.finish())
        }
        _ => {
            let parse = |v: &str| {
                NaiveDateTime::parse_from_str(v, fmt)
                    .ok()
                    .or_else(|| DateTime::parse_from_str(v, fmt).ok().map(|t| t.naive_utc()))
                    .or_else(|| NaiveDate::parse_from_str(v, fmt).ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
            };
            match m.unit {
                Unit::S => ts::<TimestampSecondType>(s, parse, m.unit),
                Unit::Ms => ts::<TimestampMillisecondType>(s, parse, m.unit),
                Unit::Us => ts::<TimestampMicrosecondType>(s, parse, m.unit),
                Unit::Ns => ts::<TimestampNanosecondType>(s, parse, m.unit),
            }
        }
    }
}
