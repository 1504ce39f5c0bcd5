//! Dates, timestamps and intervals in the expression language: their type rules and their
//! evaluation (see [`crate::expr`] for the grammar).
//!
//! - A `date` is a Date32 (days); a `timestamp` keeps its column's unit (an instant, shown in
//!   UTC; a time zone in the column type is dropped from computed columns). Intervals exist
//!   only as literals (`interval '90 minutes'`).
//! - `timestamp ± interval` is a timestamp of the same unit; `date ± interval` is a date when
//!   the interval is whole days or months, else a timestamp; `date ± integer` adds days;
//!   `date - date` is an integer (days). Timestamps do not subtract: `date_diff` or `epoch`.
//! - A date or timestamp compares with another (a date is its midnight) and with a string
//!   literal (`t >= '2024-01-01'`), not with a number.
//! - Parts (`year` .. `dayofyear`), `date_trunc`, `date_diff`, `strftime` and `date` take an
//!   optional time zone (`'Europe/Berlin'`) for the wall clock; the default is UTC.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use sluice_plugin::arrow_array::types::{Int64Type, IntervalMonthDayNanoType};
use sluice_plugin::arrow_array::{Date32Array, Float64Array, Int64Array, IntervalMonthDayNanoArray, new_null_array};
use sluice_plugin::arrow_buffer::{IntervalMonthDayNano, NullBuffer};
use sluice_plugin::prelude::*;

use crate::cal::{self, CalUnit, Interval, Part, Zone};
use crate::expr::{BinOp, Expr, ExprError, Func, Kind, Lit, Ty, Value};
use crate::num::to_i64;
use crate::time::Unit;

/// The temporal functions' names, for the unknown-function message.
pub(crate) const NAMES: &str = "year, quarter, month, day, hour, minute, second, weekday, dayofyear, week, \
     date_trunc, date_diff, strftime, strptime, try_strptime, date, make_date, epoch, epoch_ms, to_timestamp";

/// The temporal function called `name`, if any.
pub(crate) fn func(name: &str) -> Option<Func> {
    Some(match name {
        "year" => Func::Part(Part::Year),
        "quarter" => Func::Part(Part::Quarter),
        "month" => Func::Part(Part::Month),
        "day" => Func::Part(Part::Day),
        "hour" => Func::Part(Part::Hour),
        "minute" => Func::Part(Part::Minute),
        "second" => Func::Part(Part::Second),
        "weekday" | "isodow" => Func::Part(Part::Weekday),
        "dayofyear" => Func::Part(Part::DayOfYear),
        "week" => Func::Part(Part::Week),
        "date_trunc" => Func::DateTrunc,
        "date_diff" | "datediff" => Func::DateDiff,
        "strftime" => Func::Strftime,
        "strptime" => Func::Strptime,
        "try_strptime" => Func::TryStrptime,
        "date" => Func::Date,
        "make_date" => Func::MakeDate,
        "epoch" => Func::Epoch,
        "epoch_ms" => Func::EpochMs,
        "to_timestamp" => Func::ToTimestamp,
        _ => return None,
    })
}

/// A typed literal: `date '2024-01-31'`, `timestamp '2024-01-31 12:00'`, `interval '1 day'`.
pub(crate) fn literal(kind: &str, text: &str) -> Result<Lit, String> {
    match kind {
        "date" => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map(|d| Lit::Date(cal::days(d)))
            .map_err(|_| format!("'{text}' is not a date (write 'YYYY-MM-DD')")),
        "timestamp" => {
            cal::parse_datetime(text).and_then(|t| cal::from_datetime(t, Unit::Us)).map(Lit::Ts).ok_or_else(|| {
                format!("'{text}' is not a timestamp (write 'YYYY-MM-DD HH:MM:SS', optionally with Z or an offset)")
            })
        }
        _ => Interval::parse(text).map(Lit::Interval),
    }
}

fn name(f: Func) -> String {
    match f {
        Func::Part(p) => format!("{p:?}").to_lowercase(),
        Func::DateTrunc => "date_trunc".into(),
        Func::DateDiff => "date_diff".into(),
        Func::TryStrptime => "try_strptime".into(),
        Func::MakeDate => "make_date".into(),
        Func::EpochMs => "epoch_ms".into(),
        Func::ToTimestamp => "to_timestamp".into(),
        f => format!("{f:?}").to_lowercase(),
    }
}

/// A string literal argument (a unit, a format, a zone), or an error at it.
fn str_lit<'a>(e: &'a Expr, what: &str) -> Result<&'a str, ExprError> {
    match &e.kind {
        Kind::Lit(Lit::Str(s)) => Ok(s),
        _ => Err(ExprError::new(e.pos, format!("{what} must be a string literal"))),
    }
}

fn zone_arg(e: Option<&Expr>) -> Result<Zone, ExprError> {
    match e {
        None => Ok(Zone::Utc),
        Some(e) => Zone::parse(str_lit(e, "the time zone")?).map_err(|m| ExprError::new(e.pos, m)),
    }
}

fn unit_arg(e: &Expr) -> Result<CalUnit, ExprError> {
    CalUnit::parse(str_lit(e, "the unit (such as 'month')")?).map_err(|m| ExprError::new(e.pos, m))
}

/// The parsed items of a strftime/strptime format, or an error at the literal.
fn format_arg(e: &Expr) -> Result<Vec<Item<'_>>, ExprError> {
    let f = str_lit(e, "the format (such as '%Y-%m-%d')")?;
    let items: Vec<Item<'_>> = StrftimeItems::new(f).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(ExprError::new(
            e.pos,
            format!("'{f}' is not a valid format (see chrono's strftime: %Y-%m-%d %H:%M:%S)"),
        ));
    }
    Ok(items)
}

/// The value of an interval expression known before any row (literals and their negation).
pub(crate) fn const_interval(e: &Expr) -> Option<Interval> {
    match &e.kind {
        Kind::Lit(Lit::Interval(i)) => Some(*i),
        Kind::Neg(x) => const_interval(x).map(Interval::negate),
        _ => None,
    }
}

fn is_temporal(t: Ty) -> bool {
    matches!(t, Ty::Date | Ty::Ts(_))
}

/// The type of `l op r` when either side is a date, timestamp or interval.
pub(crate) fn arith_type(op: BinOp, lt: Ty, rt: Ty, l: &Expr, r: &Expr) -> Result<Ty, String> {
    use BinOp::{Add, Sub};
    let days_only = |e: &Expr| const_interval(e).is_some_and(|i| i.is_days());
    Ok(match (op, lt, rt) {
        (Add | Sub, Ty::Ts(u), Ty::Interval) | (Add, Ty::Interval, Ty::Ts(u)) => Ty::Ts(u),
        (Add | Sub, Ty::Date, Ty::Interval) => {
            if days_only(r) {
                Ty::Date
            } else {
                Ty::Ts(Unit::Us)
            }
        }
        (Add, Ty::Interval, Ty::Date) => {
            if days_only(l) {
                Ty::Date
            } else {
                Ty::Ts(Unit::Us)
            }
        }
        (Add | Sub, Ty::Date, Ty::Int) | (Add, Ty::Int, Ty::Date) => Ty::Date,
        (Sub, Ty::Date, Ty::Date) => Ty::Int,
        (Add | Sub, t, Ty::Null) | (Add | Sub, Ty::Null, t) if is_temporal(t) => t,
        (Sub, a, b) if is_temporal(a) && is_temporal(b) => {
            return Err(
                "timestamps do not subtract: use date_diff('second', a, b), or epoch(b) - epoch(a) for seconds".into(),
            );
        }
        (Add | Sub, Ty::Ts(_), Ty::Int | Ty::Float) | (Add, Ty::Int | Ty::Float, Ty::Ts(_)) => {
            return Err("a timestamp does not add a number: add an interval, such as interval '5 minutes'".into());
        }
        (op, a, b) => {
            let verb = format!("{op:?}").to_lowercase();
            return Err(format!("cannot {verb} {} and {}", a.a(), b.a()));
        }
    })
}

/// Checks a comparison where either side is a date or timestamp.
pub(crate) fn check_compare(lt: Ty, rt: Ty, l: &Expr, r: &Expr) -> Result<(), ExprError> {
    for (t, other, oe) in [(lt, rt, r), (rt, lt, l)] {
        if !is_temporal(t) {
            continue;
        }
        match other {
            o if is_temporal(o) || o == Ty::Null => {}
            Ty::Str => match &oe.kind {
                Kind::Lit(Lit::Str(s)) if cal::parse_datetime(s).is_some() => {}
                Kind::Lit(Lit::Str(s)) => {
                    return Err(ExprError::new(
                        oe.pos,
                        format!("'{s}' is not a date or timestamp (write 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS')"),
                    ));
                }
                _ => {
                    return Err(ExprError::new(
                        oe.pos,
                        format!(
                            "cannot compare {} with a string column: parse it with date(...) or strptime(...)",
                            t.a()
                        ),
                    ));
                }
            },
            o => {
                return Err(ExprError::new(
                    oe.pos,
                    format!(
                        "cannot compare {} with {}: compare epoch_ms(...) with the number, or the {} with a literal such as '2024-01-31'",
                        t.a(),
                        o.a(),
                        t.name()
                    ),
                ));
            }
        }
    }
    if lt == Ty::Interval || rt == Ty::Interval {
        return Err(ExprError::new(l.pos, "intervals do not compare"));
    }
    Ok(())
}

/// Checks a `t in ('2024-01-01', ...)` list.
pub(crate) fn check_in(t: Ty, list: &[(usize, Lit)]) -> Result<(), ExprError> {
    for (pos, l) in list {
        match l {
            Lit::Str(s) if cal::parse_datetime(s).is_some() => {}
            _ => {
                return Err(ExprError::new(
                    *pos,
                    format!("{} is compared with date or timestamp strings, such as '2024-01-31'", t.a()),
                ));
            }
        }
    }
    Ok(())
}

/// The type of a temporal function call.
pub(crate) fn check_call(f: Func, pos: usize, args: &[Expr], tys: &[Ty]) -> Result<Ty, ExprError> {
    let arity = |lo: usize, hi: usize| -> Result<(), ExprError> {
        if tys.len() < lo || tys.len() > hi {
            let n = if lo == hi { format!("{lo}") } else { format!("{lo} to {hi}") };
            Err(ExprError::new(pos, format!("{} takes {n} arguments, found {}", name(f), tys.len())))
        } else {
            Ok(())
        }
    };
    let want = |i: usize, ok: &dyn Fn(Ty) -> bool, what: &str| -> Result<(), ExprError> {
        if ok(tys[i]) || tys[i] == Ty::Null {
            Ok(())
        } else {
            Err(ExprError::new(args[i].pos, format!("{} expects {what}, found {}", name(f), tys[i].a())))
        }
    };
    let no_zone_on_date = |t: usize, z: usize| -> Result<(), ExprError> {
        if tys[t] == Ty::Date && args.len() > z {
            return Err(ExprError::new(args[z].pos, "a date has no time zone: the zone applies to timestamps"));
        }
        Ok(())
    };
    Ok(match f {
        Func::Part(p) => {
            arity(1, 2)?;
            want(0, &is_temporal, "a date or timestamp")?;
            if matches!(p, Part::Hour | Part::Minute | Part::Second) && tys[0] == Ty::Date {
                return Err(ExprError::new(args[0].pos, format!("{} of a date (it has no time of day)", name(f))));
            }
            zone_arg(args.get(1))?;
            no_zone_on_date(0, 1)?;
            Ty::Int
        }
        Func::DateTrunc => {
            arity(2, 3)?;
            unit_arg(&args[0])?;
            want(1, &is_temporal, "a date or timestamp")?;
            zone_arg(args.get(2))?;
            no_zone_on_date(1, 2)?;
            tys[1]
        }
        Func::DateDiff => {
            arity(3, 4)?;
            unit_arg(&args[0])?;
            want(1, &is_temporal, "a date or timestamp")?;
            want(2, &is_temporal, "a date or timestamp")?;
            zone_arg(args.get(3))?;
            Ty::Int
        }
        Func::Strftime => {
            arity(2, 3)?;
            want(0, &is_temporal, "a date or timestamp")?;
            format_arg(&args[1])?;
            zone_arg(args.get(2))?;
            no_zone_on_date(0, 2)?;
            Ty::Str
        }
        Func::Strptime | Func::TryStrptime => {
            arity(2, 2)?;
            want(0, &|t| t == Ty::Str, "a string")?;
            format_arg(&args[1])?;
            Ty::Ts(Unit::Us)
        }
        Func::Date => {
            arity(1, 2)?;
            want(0, &|t| is_temporal(t) || t == Ty::Str, "a timestamp, date or string")?;
            zone_arg(args.get(1))?;
            no_zone_on_date(0, 1)?;
            Ty::Date
        }
        Func::MakeDate => {
            arity(3, 3)?;
            for i in 0..3 {
                want(i, &|t| t == Ty::Int, "integers (year, month, day)")?;
            }
            Ty::Date
        }
        Func::Epoch => {
            arity(1, 1)?;
            want(0, &is_temporal, "a date or timestamp")?;
            Ty::Float
        }
        Func::EpochMs => {
            arity(1, 1)?;
            want(0, &|t| is_temporal(t) || t == Ty::Int, "a date, timestamp or integer")?;
            if tys[0] == Ty::Int { Ty::Ts(Unit::Ms) } else { Ty::Int }
        }
        Func::ToTimestamp => {
            arity(1, 1)?;
            want(0, &|t| matches!(t, Ty::Int | Ty::Float), "a number of seconds")?;
            Ty::Ts(Unit::Us)
        }
        _ => unreachable!("not a temporal function"),
    })
}

// ---------------------------------------------------------------- evaluation

/// A per-row error as a data error pointing into the expression.
fn at(pos: usize, row: usize, msg: String) -> Error {
    Error::data(format!("{msg} (at column {} of the expression)", pos + 1)).row(row)
}

/// Int64 values of a date (days) or timestamp (in its unit) value.
fn ints(v: &Value) -> Int64Array {
    match v.array.data_type() {
        DataType::Null => Int64Array::new_null(v.array.len()),
        _ => to_i64(v.array.as_ref()).expect("temporal"),
    }
}

/// A timestamp array of `unit` (no time zone).
pub(crate) fn ts_array(values: Vec<i64>, nulls: Option<NullBuffer>, unit: Unit) -> ArrayRef {
    crate::agg::time_array(values, nulls, &DataType::Timestamp(unit.arrow(), None))
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    let n = NullBuffer::from(valid);
    (n.null_count() > 0).then_some(n)
}

/// Runs `f` over the rows, building values and validity.
fn rows<T: Default>(
    n: usize,
    mut f: impl FnMut(usize) -> Result<Option<T>, Error>,
) -> Result<(Vec<T>, Option<NullBuffer>), Error> {
    let mut out = Vec::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    for i in 0..n {
        match f(i)? {
            Some(v) => {
                out.push(v);
                valid.push(true);
            }
            None => {
                out.push(T::default());
                valid.push(false);
            }
        }
    }
    Ok((out, nulls(valid)))
}

/// A date or timestamp operand: its ints, the value's type.
struct Temporal {
    v: Int64Array,
    ty: Ty,
    scalar: bool,
}

impl Temporal {
    fn of(v: &Value) -> Temporal {
        Temporal { v: ints(v), ty: v.ty(), scalar: v.scalar }
    }
    #[inline]
    fn get(&self, row: usize) -> Option<i64> {
        let i = if self.scalar { 0 } else { row };
        self.v.is_valid(i).then(|| self.v.value(i))
    }
    /// The UTC date-time of row `row` (a date is its midnight).
    fn datetime(&self, row: usize) -> Option<NaiveDateTime> {
        let x = self.get(row)?;
        match self.ty {
            Ty::Date => cal::date(i32::try_from(x).ok()?)?.and_hms_opt(0, 0, 0),
            Ty::Ts(u) => cal::to_datetime(x, u),
            _ => None,
        }
    }
}

fn out_of_range(pos: usize, row: usize) -> Error {
    at(pos, row, "a date or timestamp out of range".into())
}

/// `a op b` where either is a date, timestamp or interval (types as [`arith_type`]).
pub(crate) fn arith(op: BinOp, a: &Value, b: &Value, l: &Expr, r: &Expr, pos: usize, n: usize) -> Result<Value, Error> {
    let scalar = a.scalar && b.scalar;
    let n = if scalar { 1 } else { n };
    let out_ty = arith_type(op, a.ty(), b.ty(), l, r).map_err(Error::data)?;
    // Put the temporal operand first (`interval + t`, `3 + date`).
    let (t, other, sign) = match (a.ty(), b.ty()) {
        (Ty::Interval | Ty::Int | Ty::Null, x) if is_temporal(x) => (b, a, 1),
        _ => (a, b, if op == BinOp::Sub { -1 } else { 1 }),
    };
    if out_ty == Ty::Null || other.ty() == Ty::Null || t.ty() == Ty::Null {
        return Ok(Value { array: new_null_array(&out_ty.arrow(), n), scalar });
    }
    let tv = Temporal::of(t);
    match other.ty() {
        Ty::Interval => {
            let iv = other.array.as_primitive::<IntervalMonthDayNanoType>();
            let interval = |row: usize| {
                let i = other.at(row);
                iv.is_valid(i).then(|| {
                    let x = iv.value(i);
                    let i = Interval { months: x.months, days: x.days, micros: x.nanoseconds / 1000 };
                    if sign < 0 { i.negate() } else { i }
                })
            };
            let unit = match out_ty {
                Ty::Ts(u) => u,
                _ => Unit::S,
            };
            let (vals, nb) = rows(n, |row| {
                let (Some(dt), Some(i)) = (tv.datetime(row), interval(row)) else { return Ok(None) };
                let r = i.add_to(dt).ok_or_else(|| out_of_range(pos, row))?;
                Ok(Some(match out_ty {
                    Ty::Date => i64::from(cal::days(r.date())),
                    _ => cal::from_datetime(r, unit).ok_or_else(|| out_of_range(pos, row))?,
                }))
            })?;
            Ok(Value { array: build(out_ty, vals, nb), scalar })
        }
        Ty::Int => {
            let ov = ints(other);
            let (vals, nb) = rows(n, |row| {
                let i = other.at(row);
                let (Some(d), true) = (tv.get(row), ov.is_valid(i)) else { return Ok(None) };
                let r = d.checked_add(sign * ov.value(i)).filter(|x| i32::try_from(*x).is_ok());
                Ok(Some(r.ok_or_else(|| out_of_range(pos, row))?))
            })?;
            Ok(Value { array: build(Ty::Date, vals, nb), scalar })
        }
        _ => {
            // date - date: days.
            let ov = Temporal::of(other);
            let (vals, nb) = rows(n, |row| Ok(tv.get(row).zip(ov.get(row)).map(|(x, y)| x - y)))?;
            Ok(Value { array: Arc::new(Int64Array::new(vals.into(), nb)), scalar })
        }
    }
}

/// An array of `ty` (Date, Ts or Int) from i64 values.
fn build(ty: Ty, vals: Vec<i64>, nb: Option<NullBuffer>) -> ArrayRef {
    match ty {
        Ty::Date => Arc::new(Date32Array::new(vals.into_iter().map(|x| x as i32).collect::<Vec<_>>().into(), nb)),
        Ty::Ts(u) => ts_array(vals, nb, u),
        _ => Arc::new(Int64Array::new(vals.into(), nb)),
    }
}

/// The finest timestamp unit among `tys`, or None when all are dates.
fn common_unit(tys: &[Ty]) -> Option<Unit> {
    tys.iter().filter_map(|t| if let Ty::Ts(u) = t { Some(*u) } else { None }).max_by_key(|u| u.per_second())
}

/// An operand of a comparison with a date or timestamp as Int64 in the common representation:
/// days when both are dates, else the finest timestamp unit of the two. A string operand is a
/// (checked) literal.
pub(crate) fn comparable(a: &Value, b: &Value) -> Result<(Value, Value), Error> {
    let unit = common_unit(&[a.ty(), b.ty()]);
    let conv = |v: &Value| -> Result<Value, Error> {
        let arr: ArrayRef = match (v.ty(), unit) {
            (Ty::Null, _) => Arc::new(Int64Array::new_null(v.array.len())),
            (Ty::Str, _) => {
                let s = v.array.as_string::<i32>();
                let mut out = Vec::with_capacity(s.len());
                for x in s.iter() {
                    out.push(match x {
                        None => None,
                        Some(x) => {
                            let dt = cal::parse_datetime(x)
                                .ok_or_else(|| Error::data(format!("'{x}' is not a date or timestamp")))?;
                            Some(match unit {
                                None => i64::from(cal::days(dt.date())),
                                Some(u) => cal::from_datetime(dt, u)
                                    .ok_or_else(|| Error::data(format!("'{x}' is out of range")))?,
                            })
                        }
                    });
                }
                Arc::new(Int64Array::from(out))
            }
            (Ty::Date, Some(u)) => {
                let per_day = 86_400 * u.per_second();
                let d = ints(v);
                Arc::new(d.unary::<_, Int64Type>(|x| x.saturating_mul(per_day)))
            }
            (Ty::Ts(from), Some(u)) if from != u => {
                let (m, _) = from.factor(u);
                Arc::new(ints(v).unary::<_, Int64Type>(|x| x.saturating_mul(m)))
            }
            _ => Arc::new(ints(v)),
        };
        Ok(v.map(arr))
    };
    Ok((conv(a)?, conv(b)?))
}

/// The list of `t in (...)` as values of `t`'s representation.
pub(crate) fn in_list(t: Ty, list: &[(usize, Lit)]) -> Vec<i64> {
    list.iter()
        .filter_map(|(_, l)| match l {
            Lit::Str(s) => {
                let dt = cal::parse_datetime(s)?;
                match t {
                    Ty::Ts(u) => cal::from_datetime(dt, u),
                    _ => Some(i64::from(cal::days(dt.date()))),
                }
            }
            _ => None,
        })
        .collect()
}

/// Writes a date or timestamp value as text (for `concat`).
pub(crate) fn write_value(v: &Value, row: usize, out: &mut impl std::fmt::Write) {
    let t = Temporal::of(v);
    let _ = match (t.ty, t.datetime(row)) {
        (Ty::Date, Some(dt)) => write!(out, "{}", dt.date()),
        (_, Some(dt)) => write!(out, "{}", dt),
        _ => Ok(()),
    };
}

/// Evaluates a temporal function (after [`check_call`]).
pub(crate) fn eval_call(f: Func, pos: usize, args: &[Expr], vals: &[Value], n: usize) -> Result<Value, Error> {
    let scalar = vals.iter().all(|v| v.scalar);
    let n = if scalar { 1 } else { n };
    let cfg = |e: ExprError| Error::data(e.msg);
    let value = |array: ArrayRef| Value { array, scalar };
    Ok(match f {
        Func::Part(p) => {
            let zone = zone_arg(args.get(1)).map_err(cfg)?;
            let t = Temporal::of(&vals[0]);
            let (v, nb) = rows(n, |row| Ok(t.datetime(row).map(|dt| p.of(zone.local(dt)))))?;
            value(Arc::new(Int64Array::new(v.into(), nb)))
        }
        Func::DateTrunc => {
            let unit = unit_arg(&args[0]).map_err(cfg)?;
            let zone = zone_arg(args.get(2)).map_err(cfg)?;
            let t = Temporal::of(&vals[1]);
            let ty = vals[1].ty();
            if ty == Ty::Null {
                return Ok(vals[1].clone());
            }
            let (v, nb) = rows(n, |row| {
                let Some(x) = t.get(row) else { return Ok(None) };
                let r = match ty {
                    Ty::Date if unit <= CalUnit::Day => Some(x),
                    Ty::Date => i32::try_from(x).ok().and_then(|d| cal::trunc_days(d, unit)).map(i64::from),
                    Ty::Ts(u) => cal::trunc(x, u, zone, unit),
                    _ => None,
                };
                Ok(Some(r.ok_or_else(|| out_of_range(pos, row))?))
            })?;
            value(build(ty, v, nb))
        }
        Func::DateDiff => {
            let unit = unit_arg(&args[0]).map_err(cfg)?;
            let zone = zone_arg(args.get(3)).map_err(cfg)?;
            let (a, b) = (Temporal::of(&vals[1]), Temporal::of(&vals[2]));
            let (v, nb) = rows(n, |row| {
                let (Some(x), Some(y)) = (a.datetime(row), b.datetime(row)) else { return Ok(None) };
                Ok(Some(diff(unit, zone.local(x), zone.local(y), x, y)))
            })?;
            value(Arc::new(Int64Array::new(v.into(), nb)))
        }
        Func::Strftime => {
            let items = format_arg(&args[1]).map_err(cfg)?;
            let zone = zone_arg(args.get(2)).map_err(cfg)?;
            let t = Temporal::of(&vals[0]);
            let mut b = sluice_plugin::arrow_array::builder::StringBuilder::with_capacity(n, n * 16);
            let mut s = String::new();
            for row in 0..n {
                let Some(dt) = t.datetime(row) else {
                    b.append_null();
                    continue;
                };
                s.clear();
                let r = match (t.ty, zone) {
                    (Ty::Date, _) => write!(s, "{}", dt.date().format_with_items(items.iter())),
                    (_, Zone::Utc) => write!(s, "{}", Utc.from_utc_datetime(&dt).format_with_items(items.iter())),
                    (_, Zone::Named(tz)) => write!(s, "{}", tz.from_utc_datetime(&dt).format_with_items(items.iter())),
                };
                if r.is_err() {
                    return Err(at(
                        pos,
                        row,
                        "the format asks for a field the value does not have (a time of a date?)".into(),
                    ));
                }
                b.append_value(&s);
            }
            value(Arc::new(b.finish()))
        }
        Func::Strptime | Func::TryStrptime => {
            let fmt = str_lit(&args[1], "the format").map_err(cfg)?;
            let strict = f == Func::Strptime;
            let s = vals[0].as_string_array();
            let (v, nb) = rows(n, |row| {
                let i = vals[0].at(row);
                if s.is_null(i) {
                    return Ok(None);
                }
                let x = s.value(i);
                match strptime(x, fmt).and_then(|dt| cal::from_datetime(dt, Unit::Us)) {
                    Some(v) => Ok(Some(v)),
                    None if strict => Err(at(pos, row, format!("'{x}' does not match the strptime format '{fmt}'"))),
                    None => Ok(None),
                }
            })?;
            value(ts_array(v, nb, Unit::Us))
        }
        Func::Date => {
            let zone = zone_arg(args.get(1)).map_err(cfg)?;
            let v0 = &vals[0];
            let (v, nb) = match v0.ty() {
                Ty::Str => {
                    let s = v0.as_string_array();
                    rows(n, |row| {
                        let i = v0.at(row);
                        if s.is_null(i) {
                            return Ok(None);
                        }
                        let x = s.value(i);
                        let dt = cal::parse_datetime(x)
                            .ok_or_else(|| at(pos, row, format!("'{x}' is not a date (write 'YYYY-MM-DD')")))?;
                        Ok(Some(i64::from(cal::days(dt.date()))))
                    })?
                }
                _ => {
                    let t = Temporal::of(v0);
                    rows(n, |row| Ok(t.datetime(row).map(|dt| i64::from(cal::days(zone.local(dt).date())))))?
                }
            };
            value(build(Ty::Date, v, nb))
        }
        Func::MakeDate => {
            let (y, m, d) = (ints(&vals[0]), ints(&vals[1]), ints(&vals[2]));
            let (v, nb) = rows(n, |row| {
                let (iy, im, id) = (vals[0].at(row), vals[1].at(row), vals[2].at(row));
                if y.is_null(iy) || m.is_null(im) || d.is_null(id) {
                    return Ok(None);
                }
                let (yy, mm, dd) = (y.value(iy), m.value(im), d.value(id));
                let date = i32::try_from(yy)
                    .ok()
                    .and_then(|yy| NaiveDate::from_ymd_opt(yy, u32::try_from(mm).ok()?, u32::try_from(dd).ok()?));
                let date = date.ok_or_else(|| at(pos, row, format!("make_date({yy}, {mm}, {dd}) is not a date")))?;
                Ok(Some(i64::from(cal::days(date))))
            })?;
            value(build(Ty::Date, v, nb))
        }
        Func::Epoch => {
            let t = Temporal::of(&vals[0]);
            let per = match t.ty {
                Ty::Ts(u) => u.per_second() as f64,
                _ => 1.0 / 86_400.0,
            };
            let (v, nb) = rows(n, |row| Ok(t.get(row).map(|x| x as f64 / per)))?;
            value(Arc::new(Float64Array::new(v.into(), nb)))
        }
        Func::EpochMs => {
            let v0 = &vals[0];
            match v0.ty() {
                Ty::Int => value(ts_array(ints(v0).values().to_vec(), v0.array.nulls().cloned(), Unit::Ms)),
                Ty::Ts(u) => {
                    let (_, div) = u.factor(Unit::Ms);
                    let (m, _) = u.factor(Unit::Ms);
                    value(Arc::new(ints(v0).unary::<_, Int64Type>(|x| x.saturating_mul(m).div_euclid(div))))
                }
                Ty::Date => value(Arc::new(ints(v0).unary::<_, Int64Type>(|x| x * 86_400_000))),
                _ => value(new_null_array(&DataType::Int64, n)),
            }
        }
        Func::ToTimestamp => {
            let v0 = &vals[0];
            let f = v0.as_float64();
            let (v, nb) = rows(n, |row| {
                let i = v0.at(row);
                if f.is_null(i) {
                    return Ok(None);
                }
                let us = (f.value(i) * 1e6).round();
                if !us.is_finite() || us.abs() >= 9.2e18 {
                    return Err(out_of_range(pos, row));
                }
                Ok(Some(us as i64))
            })?;
            value(ts_array(v, nb, Unit::Us))
        }
        _ => unreachable!("not a temporal function"),
    })
}

/// The number of `unit` boundaries between `a` and `b` (as DuckDB's `date_diff`): calendar
/// units count on the wall clock (`la`, `lb`), fixed units on the instants.
fn diff(unit: CalUnit, la: NaiveDateTime, lb: NaiveDateTime, a: NaiveDateTime, b: NaiveDateTime) -> i64 {
    use chrono::Datelike;
    let months = |t: NaiveDateTime| i64::from(t.year()) * 12 + i64::from(t.month0());
    let fixed = |w: i64| {
        let (x, y) = (a.and_utc().timestamp_millis(), b.and_utc().timestamp_millis());
        y.div_euclid(w) - x.div_euclid(w)
    };
    match unit {
        CalUnit::Millisecond => fixed(1),
        CalUnit::Second => fixed(1_000),
        CalUnit::Minute => fixed(60_000),
        CalUnit::Hour => fixed(3_600_000),
        CalUnit::Day => (lb.date() - la.date()).num_days(),
        CalUnit::Week => {
            (cal::trunc_date(lb.date(), CalUnit::Week) - cal::trunc_date(la.date(), CalUnit::Week)).num_days() / 7
        }
        CalUnit::Month => months(lb) - months(la),
        CalUnit::Quarter => months(lb).div_euclid(3) - months(la).div_euclid(3),
        CalUnit::Year => i64::from(lb.year()) - i64::from(la.year()),
    }
}

/// Parses `s` with a strptime format: with an offset (`%z`) to UTC; without a time, midnight.
fn strptime(s: &str, fmt: &str) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_str(s, fmt) {
        return Some(t.naive_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
        return Some(t);
    }
    NaiveDate::parse_from_str(s, fmt).ok().and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// The array of an interval literal.
pub(crate) fn interval_array(i: Interval) -> ArrayRef {
    Arc::new(IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(i.months, i.days, i.micros * 1000)]))
}

/// `-interval`.
pub(crate) fn negate_interval(v: &Value) -> Value {
    let a = v.array.as_primitive::<IntervalMonthDayNanoType>();
    v.map(Arc::new(
        a.unary::<_, IntervalMonthDayNanoType>(|x| IntervalMonthDayNano::new(-x.months, -x.days, -x.nanoseconds)),
    ))
}

#[cfg(test)]
mod tests {
    use sluice_plugin::arrow_array::types::{Date32Type, Float64Type, TimestampMicrosecondType};
    use sluice_plugin::arrow_array::{Date32Array, TimestampMillisecondArray};

    use super::*;
    use crate::expr::parse;

    fn ms(s: &str) -> i64 {
        cal::parse_datetime(s).unwrap().and_utc().timestamp_millis()
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
            Field::new("d", DataType::Date32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let t = TimestampMillisecondArray::from(vec![
            Some(ms("2024-01-31T23:30:00Z")),
            Some(ms("2024-03-31T01:30:00Z")),
            None,
            Some(ms("1969-12-31T23:59:59.500Z")),
        ])
        .with_timezone("UTC");
        let day = |s: &str| cal::days(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(t),
                Arc::new(Date32Array::from(vec![
                    Some(day("2024-02-29")),
                    Some(day("2023-12-31")),
                    Some(day("2024-01-01")),
                    None,
                ])),
                Arc::new(StringArray::from(vec![
                    Some("31/01/2024 10:15"),
                    Some("bad"),
                    None,
                    Some("01/02/2024 00:00"),
                ])),
                Arc::new(Int64Array::from(vec![Some(1_700_000_000_000), Some(0), None, Some(-1)])),
            ],
        )
        .unwrap()
    }

    fn eval(src: &str) -> (Ty, ArrayRef) {
        let b = batch();
        let e = parse(src).unwrap_or_else(|e| panic!("{src}: {e:?}"));
        let t = e.check(&b.schema()).unwrap_or_else(|e| panic!("{src}: {e:?}"));
        let v = e.eval(&b).unwrap_or_else(|e| panic!("{src}: {e}")).into_array(b.num_rows()).unwrap();
        assert_eq!(v.data_type(), &t.arrow(), "{src}: declared type");
        (t, v)
    }

    fn ints(src: &str) -> Vec<Option<i64>> {
        eval(src).1.as_primitive::<Int64Type>().iter().collect()
    }

    fn dates(src: &str) -> Vec<Option<String>> {
        eval(src).1.as_primitive::<Date32Type>().iter().map(|d| d.map(|d| cal::date(d).unwrap().to_string())).collect()
    }

    fn stamps(src: &str) -> Vec<Option<String>> {
        let (t, v) = eval(src);
        let u = match t {
            Ty::Ts(u) => u,
            t => panic!("{src}: {t:?}"),
        };
        let v = to_i64(v.as_ref()).unwrap();
        v.iter().map(|x| x.map(|x| cal::to_datetime(x, u).unwrap().to_string())).collect()
    }

    fn strs(src: &str) -> Vec<Option<String>> {
        eval(src).1.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect()
    }

    #[test]
    fn parts_in_utc_and_in_a_zone() {
        assert_eq!(ints("year(t)"), vec![Some(2024), Some(2024), None, Some(1969)]);
        assert_eq!(ints("month(t)"), vec![Some(1), Some(3), None, Some(12)]);
        assert_eq!(ints("day(d)"), vec![Some(29), Some(31), Some(1), None]);
        assert_eq!(ints("hour(t, 'Europe/Berlin')"), vec![Some(0), Some(3), None, Some(0)]);
        assert_eq!(ints("day(t, 'Europe/Berlin')"), vec![Some(1), Some(31), None, Some(1)]);
        assert_eq!(ints("weekday(d)"), vec![Some(4), Some(7), Some(1), None]);
        assert_eq!(ints("quarter(d) * 10 + week(d) % 10"), vec![Some(19), Some(42), Some(11), None]);
        assert_eq!(ints("second(t)"), vec![Some(0), Some(0), None, Some(59)]);
        assert_eq!(ints("dayofyear(d)"), vec![Some(60), Some(365), Some(1), None]);
    }

    #[test]
    fn truncation_diff_and_arithmetic() {
        assert_eq!(stamps("date_trunc('month', t)")[0].as_deref(), Some("2024-01-01 00:00:00"));
        assert_eq!(stamps("date_trunc('day', t, 'Europe/Berlin')")[0].as_deref(), Some("2024-01-31 23:00:00"));
        assert_eq!(stamps("date_trunc('second', t)")[3].as_deref(), Some("1969-12-31 23:59:59"));
        assert_eq!(
            dates("date_trunc('quarter', d)"),
            vec![Some("2024-01-01".into()), Some("2023-10-01".into()), Some("2024-01-01".into()), None]
        );
        assert_eq!(dates("d + interval '1 month'")[0].as_deref(), Some("2024-03-29"));
        assert_eq!(dates("d - 60")[0].as_deref(), Some("2023-12-31"));
        assert_eq!(ints("d - date '2024-01-01'"), vec![Some(59), Some(-1), Some(0), None]);
        assert_eq!(stamps("t + interval '1 month 2 hours'")[0].as_deref(), Some("2024-03-01 01:30:00"));
        assert_eq!(stamps("t - interval 30 minutes")[1].as_deref(), Some("2024-03-31 01:00:00"));
        assert_eq!(stamps("d + interval '90 minutes'")[0].as_deref(), Some("2024-02-29 01:30:00"));
        assert_eq!(ints("date_diff('month', d, t)"), vec![Some(-1), Some(3), None, None]);
        assert_eq!(ints("date_diff('day', date '2024-01-01', d)"), vec![Some(59), Some(-1), Some(0), None]);
        assert_eq!(ints("date_diff('hour', timestamp '2024-01-31 22:59:59', t)")[0], Some(1));
        assert_eq!(ints("epoch_ms(t)")[3], Some(-500));
        assert_eq!(ints("epoch_ms(d)")[2], Some(ms("2024-01-01")));
        assert_eq!(stamps("epoch_ms(n)")[0].as_deref(), Some("2023-11-14 22:13:20"));
        assert_eq!(stamps("to_timestamp(n / 1000)")[3].as_deref(), Some("1969-12-31 23:59:59.999"));
        let (_, v) = eval("epoch(t)");
        assert_eq!(v.as_primitive::<Float64Type>().value(3), -0.5);
    }

    #[test]
    fn formats_parsing_and_comparisons() {
        assert_eq!(strs("strftime(t, '%Y-%m-%d %H:%M')")[0].as_deref(), Some("2024-01-31 23:30"));
        assert_eq!(strs("strftime(t, '%d.%m. %H:%M %Z', 'Europe/Berlin')")[0].as_deref(), Some("01.02. 00:30 CET"));
        assert_eq!(strs("strftime(d, '%A %e %B')")[0].as_deref(), Some("Thursday 29 February"));
        assert_eq!(strs("concat(d, ' ', t)")[0].as_deref(), Some("2024-02-29 2024-01-31 23:30:00"));
        let v = eval("try_strptime(s, '%d/%m/%Y %H:%M')").1;
        let v = v.as_primitive::<TimestampMicrosecondType>();
        assert_eq!((v.value(0), v.is_null(1), v.is_null(2)), (ms("2024-01-31T10:15:00Z") * 1000, true, true));
        let b = batch();
        let e = parse("strptime(s, '%d/%m/%Y %H:%M')").unwrap();
        e.check(&b.schema()).unwrap();
        let err = e.eval(&b).unwrap_err();
        assert!(
            matches!(err, Error::Data { row: Some(1), .. }) && err.message().contains("'bad' does not match"),
            "{err}"
        );
        assert_eq!(dates("date(t, 'Asia/Tokyo')")[0].as_deref(), Some("2024-02-01"));
        assert_eq!(dates("make_date(2024, 2, 29)")[0].as_deref(), Some("2024-02-29"));
        let bools = |src: &str| eval(src).1.as_boolean().iter().collect::<Vec<_>>();
        assert_eq!(bools("t >= '2024-02-01'"), vec![Some(false), Some(true), None, Some(false)]);
        assert_eq!(bools("d = '2024-02-29' or d < date '2024-01-01'"), vec![Some(true), Some(true), Some(false), None]);
        assert_eq!(bools("t < d"), vec![Some(true), Some(false), None, None]);
        assert_eq!(bools("d in ('2024-01-01', '2023-12-31')"), vec![Some(false), Some(true), Some(true), None]);
    }

    #[test]
    fn type_errors_point_at_the_mistake() {
        let b = batch();
        let check = |src: &str| parse(src).and_then(|e| e.check(&b.schema())).unwrap_err();
        for (src, pos, msg) in [
            ("t > 5", 4, "cannot compare a timestamp with an integer"),
            ("t - t", 2, "timestamps do not subtract"),
            ("t + 1", 2, "add an interval"),
            ("t > 'soon'", 4, "'soon' is not a date or timestamp"),
            ("d = s", 4, "string column"),
            ("date_trunc('fortnight', t)", 11, "unknown calendar unit `fortnight`"),
            ("hour(t, 'Mars/Olympus')", 8, "unknown time zone"),
            ("hour(d)", 5, "of a date"),
            ("year(n)", 5, "expects a date or timestamp"),
            ("strftime(t, '%Q')", 12, "not a valid format"),
            ("date_trunc(s, t)", 11, "string literal"),
            ("t + interval '2 fortnights'", 13, "unknown calendar unit"),
            ("now()", 0, "cannot read the clock"),
            ("year(t, 'UTC', 1)", 0, "takes 1 to 2 arguments"),
        ] {
            let e = check(src);
            assert_eq!(e.pos, pos, "{src}: {e:?}");
            assert!(e.msg.contains(msg), "{src}: {}", e.msg);
        }
    }
}
