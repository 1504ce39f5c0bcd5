//! Calendar arithmetic over epoch values: wall time in UTC or a named time zone, truncation to
//! calendar units, date parts, month arithmetic. Shared by the expression language and the
//! calendar buckets of `aggregate` and `resample`.
//!
//! Values are `i64` in an epoch [`Unit`] (timestamps) or `i32` days (Date32). A time zone only
//! changes where the wall-clock boundaries fall: the values stay UTC instants. A local time that
//! does not exist (the hour skipped when clocks go forward) maps to the first instant after the
//! gap; one that exists twice (clocks go back) maps to the earlier instant.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike};

use crate::time::Unit;

/// Where wall-clock boundaries fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    #[default]
    Utc,
    Named(chrono_tz::Tz),
}

impl Zone {
    /// `UTC` or an IANA time zone name (`Europe/Berlin`, `America/New_York`).
    pub fn parse(s: &str) -> Result<Zone, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("gmt") {
            return Ok(Zone::Utc);
        }
        chrono_tz::Tz::from_str(t).map(Zone::Named).map_err(|_| {
            let lower = t.to_ascii_lowercase();
            let hint = chrono_tz::TZ_VARIANTS
                .iter()
                .find(|z| z.name().to_ascii_lowercase() == lower)
                .map(|z| format!(" (did you mean `{}`?)", z.name()))
                .unwrap_or_default();
            format!("unknown time zone `{t}`{hint}: use UTC or an IANA name such as Europe/Berlin")
        })
    }

    /// The wall-clock time of a UTC instant.
    pub fn local(self, utc: NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Utc => utc,
            Zone::Named(tz) => tz.from_utc_datetime(&utc).naive_local(),
        }
    }

    /// The UTC instant of a wall-clock time (see the module doc for gaps and repeats).
    pub fn utc(self, local: NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Utc => local,
            Zone::Named(tz) => match tz.from_local_datetime(&local) {
                LocalResult::Single(t) => t.naive_utc(),
                LocalResult::Ambiguous(a, b) => a.naive_utc().min(b.naive_utc()),
                LocalResult::None => {
                    // In a gap: read the wall time with the offset in force before the gap,
                    // which gives the transition itself for a boundary at the gap's start.
                    let before = tz.offset_from_utc_datetime(&(local - Duration::hours(26))).fix();
                    local - Duration::seconds(i64::from(before.local_minus_utc()))
                }
            },
        }
    }
}

/// A calendar unit, for `date_trunc`, `date_diff` and calendar buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CalUnit {
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    /// ISO weeks, starting on Monday.
    Week,
    Month,
    Quarter,
    Year,
}

impl CalUnit {
    pub const NAMES: &'static str = "millisecond, second, minute, hour, day, week, month, quarter, year";

    pub fn parse(s: &str) -> Result<CalUnit, String> {
        let l = s.trim().to_ascii_lowercase();
        let l = l.strip_suffix('s').filter(|x| !x.is_empty() && *x != "m").unwrap_or(&l);
        Ok(match l {
            "millisecond" | "ms" => CalUnit::Millisecond,
            "second" | "sec" => CalUnit::Second,
            "minute" | "min" => CalUnit::Minute,
            "hour" | "h" => CalUnit::Hour,
            "day" | "d" => CalUnit::Day,
            "week" | "w" => CalUnit::Week,
            "month" | "mon" => CalUnit::Month,
            "quarter" | "q" => CalUnit::Quarter,
            "year" | "y" => CalUnit::Year,
            _ => return Err(format!("unknown calendar unit `{}` (use {})", s.trim(), Self::NAMES)),
        })
    }

    /// Its fixed length in milliseconds, for units up to an hour.
    fn fixed_ms(self) -> Option<i64> {
        match self {
            CalUnit::Millisecond => Some(1),
            CalUnit::Second => Some(1_000),
            CalUnit::Minute => Some(60_000),
            CalUnit::Hour => Some(3_600_000),
            _ => None,
        }
    }
}

/// The UTC date-time of an epoch value, or None out of chrono's range.
pub fn to_datetime(v: i64, unit: Unit) -> Option<NaiveDateTime> {
    let per = unit.per_second();
    let secs = v.div_euclid(per);
    let nanos = (v.rem_euclid(per) * (1_000_000_000 / per)) as u32;
    DateTime::from_timestamp(secs, nanos).map(|d| d.naive_utc())
}

/// The epoch value of a UTC date-time, or None when it overflows `unit`.
pub fn from_datetime(t: NaiveDateTime, unit: Unit) -> Option<i64> {
    let u = t.and_utc();
    let secs = u.timestamp();
    let nanos = i64::from(u.timestamp_subsec_nanos());
    let per = unit.per_second();
    secs.checked_mul(per)?.checked_add(nanos / (1_000_000_000 / per))
}

/// Days since 1970-01-01 of a date.
pub fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// The date of days since 1970-01-01.
pub fn date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(Duration::days(i64::from(days)))
}

/// The first day of `unit` containing `d` (unit day or coarser; finer units keep `d`).
pub fn trunc_date(d: NaiveDate, unit: CalUnit) -> NaiveDate {
    match unit {
        CalUnit::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
        CalUnit::Month => d.with_day(1).expect("day 1"),
        CalUnit::Quarter => NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).expect("quarter"),
        CalUnit::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1).expect("year"),
        _ => d,
    }
}

/// The wall-clock time truncated to `unit`.
pub fn trunc_local(t: NaiveDateTime, unit: CalUnit) -> NaiveDateTime {
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight");
    match unit {
        CalUnit::Millisecond => t.with_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).expect("ms"),
        CalUnit::Second => t.with_nanosecond(0).expect("s"),
        CalUnit::Minute => t.date().and_hms_opt(t.hour(), t.minute(), 0).expect("min"),
        CalUnit::Hour => t.date().and_hms_opt(t.hour(), 0, 0).expect("h"),
        _ => midnight(trunc_date(t.date(), unit)),
    }
}

/// The epoch value `v` truncated to `unit` in `zone`, or None out of range.
pub fn trunc(v: i64, unit: Unit, zone: Zone, cu: CalUnit) -> Option<i64> {
    // Units up to an hour: arithmetic on the wall clock with the offset in force at `v`, so that
    // the repeated hour when clocks go back is two hours, not one of two hours.
    if let Some(ms) = cu.fixed_ms() {
        let w = ms.checked_mul(unit.per_second())? / 1000;
        if w < 1 {
            return Some(v);
        }
        let local = match zone {
            Zone::Utc => v,
            zone => from_datetime(zone.local(to_datetime(v, unit)?), unit)?,
        };
        return v.checked_sub(local.rem_euclid(w));
    }
    let t = to_datetime(v, unit)?;
    from_datetime(zone.utc(trunc_local(zone.local(t), cu)), unit)
}

/// The start of the unit after the one starting at `start` (a truncated value), in `zone`.
pub fn next(start: i64, unit: Unit, zone: Zone, cu: CalUnit) -> Option<i64> {
    if let Some(ms) = cu.fixed_ms() {
        let w = (ms.checked_mul(unit.per_second())? / 1000).max(1);
        return start.checked_add(w);
    }
    let local = zone.local(to_datetime(start, unit)?);
    let after = match cu {
        CalUnit::Millisecond => local + Duration::milliseconds(1),
        CalUnit::Second => local + Duration::seconds(1),
        CalUnit::Minute => local + Duration::minutes(1),
        CalUnit::Hour => local + Duration::hours(1),
        CalUnit::Day => local + Duration::days(1),
        CalUnit::Week => local + Duration::days(7),
        CalUnit::Month => local.checked_add_months(Months::new(1))?,
        CalUnit::Quarter => local.checked_add_months(Months::new(3))?,
        CalUnit::Year => local.checked_add_months(Months::new(12))?,
    };
    let r = from_datetime(zone.utc(trunc_local(after, cu)), unit)?;
    // A zone change can only move a boundary, never make the next one earlier.
    Some(r.max(start + 1))
}

/// Days since epoch truncated to `unit` (day or coarser).
pub fn trunc_days(d: i32, cu: CalUnit) -> Option<i32> {
    Some(days(trunc_date(date(d)?, cu)))
}

/// The days of the unit after the one starting at day `start`.
pub fn next_days(start: i32, cu: CalUnit) -> Option<i32> {
    let d = date(start)?;
    let n = match cu {
        CalUnit::Week => d + Duration::days(7),
        CalUnit::Month => d.checked_add_months(Months::new(1))?,
        CalUnit::Quarter => d.checked_add_months(Months::new(3))?,
        CalUnit::Year => d.checked_add_months(Months::new(12))?,
        _ => d + Duration::days(1),
    };
    Some(days(n))
}

/// A part of a date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Year,
    Quarter,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// ISO day of the week: 1 = Monday .. 7 = Sunday.
    Weekday,
    DayOfYear,
    /// ISO week number (1..=53).
    Week,
}

impl Part {
    pub fn of(self, t: NaiveDateTime) -> i64 {
        i64::from(match self {
            Part::Year => t.year(),
            Part::Quarter => (t.month0() / 3 + 1) as i32,
            Part::Month => t.month() as i32,
            Part::Day => t.day() as i32,
            Part::Hour => t.hour() as i32,
            Part::Minute => t.minute() as i32,
            Part::Second => t.second() as i32,
            Part::Weekday => t.weekday().number_from_monday() as i32,
            Part::DayOfYear => t.ordinal() as i32,
            Part::Week => t.iso_week().week() as i32,
        })
    }
}

/// Adds `months` calendar months and then a fixed duration to a wall-clock time (a day of the
/// month past the end of the target month becomes its last day, as in DuckDB and Postgres).
pub fn add(t: NaiveDateTime, months: i32, fixed: Duration) -> Option<NaiveDateTime> {
    let t = if months >= 0 {
        t.checked_add_months(Months::new(months as u32))?
    } else {
        t.checked_sub_months(Months::new(months.unsigned_abs()))?
    };
    t.checked_add_signed(fixed)
}

/// An interval literal: calendar months, days and a fixed part in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl Interval {
    /// Parses `'1 day'`, `'90 minutes'`, `'1 year 2 months'`, `'-3 hours'`, `'2w'`.
    pub fn parse(s: &str) -> Result<Interval, String> {
        let mut out = Interval::default();
        let toks: Vec<&str> = s.split_whitespace().collect();
        if toks.is_empty() {
            return Err("an empty interval (write e.g. '1 day' or '90 minutes')".into());
        }
        let mut i = 0;
        while i < toks.len() {
            // `2w` or `2 weeks`.
            let t = toks[i];
            let split = t
                .trim_start_matches(['-', '+'])
                .find(|c: char| !c.is_ascii_digit())
                .map(|p| p + t.len() - t.trim_start_matches(['-', '+']).len());
            let (num, unit) = match split {
                Some(p) if p > 0 => (&t[..p], t[p..].to_string()),
                _ => {
                    let u = toks.get(i + 1).ok_or_else(|| format!("`{t}` needs a unit in interval '{s}'"))?;
                    i += 1;
                    (t, u.to_string())
                }
            };
            i += 1;
            let n: i64 = num.parse().map_err(|_| format!("`{num}` is not a whole number in interval '{s}'"))?;
            let unit = CalUnit::parse(&unit).map_err(|m| format!("{m} in interval '{s}'"))?;
            let too_big = || format!("interval '{s}' is too large");
            match unit {
                CalUnit::Year => out.months += i32::try_from(n * 12).map_err(|_| too_big())?,
                CalUnit::Quarter => out.months += i32::try_from(n * 3).map_err(|_| too_big())?,
                CalUnit::Month => out.months += i32::try_from(n).map_err(|_| too_big())?,
                CalUnit::Week => out.days += i32::try_from(n * 7).map_err(|_| too_big())?,
                CalUnit::Day => out.days += i32::try_from(n).map_err(|_| too_big())?,
                u => {
                    let ms = u.fixed_ms().expect("fixed");
                    out.micros = n.checked_mul(ms * 1000).and_then(|x| out.micros.checked_add(x)).ok_or_else(too_big)?
                }
            }
        }
        Ok(out)
    }

    /// Whether it holds only whole days and months.
    pub fn is_days(&self) -> bool {
        self.micros == 0
    }

    pub fn negate(self) -> Interval {
        Interval { months: -self.months, days: -self.days, micros: -self.micros }
    }

    /// `t + self` (days as 24 hours: the values are UTC instants).
    pub fn add_to(self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        add(t, self.months, Duration::days(i64::from(self.days)) + Duration::microseconds(self.micros))
    }
}

/// The value `v` parsed as a date-time: `YYYY-MM-DD`, with an optional time `[T ]HH:MM[:SS[.f]]`
/// and an optional `Z` or offset. Returns the UTC date-time.
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.naive_utc());
        }
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        parse_datetime(s).unwrap().and_utc().timestamp_millis()
    }

    #[test]
    fn truncates_in_utc_and_in_a_zone() {
        let t = ms("2024-03-31T01:30:00Z");
        assert_eq!(trunc(t, Unit::Ms, Zone::Utc, CalUnit::Month), Some(ms("2024-03-01")));
        assert_eq!(trunc(t, Unit::Ms, Zone::Utc, CalUnit::Quarter), Some(ms("2024-01-01")));
        assert_eq!(trunc(t, Unit::Ms, Zone::Utc, CalUnit::Week), Some(ms("2024-03-25")));
        assert_eq!(trunc(t, Unit::Ms, Zone::Utc, CalUnit::Hour), Some(ms("2024-03-31T01:00:00Z")));
        // 01:30 UTC on 31 March is 03:30 CEST in Berlin: the local day began at 23:00 UTC.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(trunc(t, Unit::Ms, berlin, CalUnit::Day), Some(ms("2024-03-30T23:00:00Z")));
        // That day was 23 hours long (clocks went forward).
        let start = trunc(t, Unit::Ms, berlin, CalUnit::Day).unwrap();
        assert_eq!(next(start, Unit::Ms, berlin, CalUnit::Day), Some(ms("2024-03-31T22:00:00Z")));
        let ny = Zone::parse("America/New_York").unwrap();
        assert_eq!(trunc(ms("2024-01-01T03:00:00Z"), Unit::Ms, ny, CalUnit::Year), Some(ms("2023-01-01T05:00:00Z")));
        assert_eq!(trunc(-1, Unit::Ms, Zone::Utc, CalUnit::Second), Some(-1000));
        assert!(Zone::parse("europe/berlin").unwrap_err().contains("did you mean `Europe/Berlin`"));
        // Clocks go back in Berlin at 01:00 UTC on 27 October 2024: local 02:00-03:00 happens
        // twice, and each is an hour of its own.
        let first = ms("2024-10-27T00:30:00Z");
        let second = ms("2024-10-27T01:30:00Z");
        assert_eq!(trunc(first, Unit::Ms, berlin, CalUnit::Hour), Some(ms("2024-10-27T00:00:00Z")));
        assert_eq!(trunc(second, Unit::Ms, berlin, CalUnit::Hour), Some(ms("2024-10-27T01:00:00Z")));
        // India is 5:30 ahead: its hours start at half past in UTC.
        let india = Zone::parse("Asia/Kolkata").unwrap();
        assert_eq!(trunc(ms("2024-01-01T10:10:00Z"), Unit::Ms, india, CalUnit::Hour), Some(ms("2024-01-01T09:30:00Z")));
    }

    #[test]
    fn dates_intervals_and_parts() {
        let d = days(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        assert_eq!(date(trunc_days(d, CalUnit::Quarter).unwrap()).unwrap().to_string(), "2024-01-01");
        assert_eq!(
            date(next_days(trunc_days(d, CalUnit::Month).unwrap(), CalUnit::Month).unwrap()).unwrap().to_string(),
            "2024-03-01"
        );
        let i = Interval::parse("1 year 2 months -3 days 90 minutes").unwrap();
        assert_eq!(i, Interval { months: 14, days: -3, micros: 90 * 60_000_000 });
        assert_eq!(Interval::parse("2w").unwrap(), Interval { months: 0, days: 14, micros: 0 });
        assert!(Interval::parse("3 fortnights").unwrap_err().contains("unknown calendar unit"));
        let t = parse_datetime("2024-01-31 12:00").unwrap();
        assert_eq!(Interval::parse("1 month").unwrap().add_to(t).unwrap().to_string(), "2024-02-29 12:00:00");
        assert_eq!(Part::Weekday.of(t), 3);
        assert_eq!(Part::Week.of(t), 5);
        assert_eq!(parse_datetime("2024-01-31T12:00:00+02:00").unwrap().to_string(), "2024-01-31 10:00:00");
        assert_eq!(CalUnit::parse("Months"), Ok(CalUnit::Month));
        assert_eq!(CalUnit::parse("ms"), Ok(CalUnit::Millisecond));
    }
}
