//! Epoch units and durations.

use sluice_plugin::prelude::*;

/// An epoch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    S,
    Ms,
    Us,
    Ns,
}

impl Unit {
    /// Units per second.
    pub fn per_second(self) -> i64 {
        match self {
            Unit::S => 1,
            Unit::Ms => 1_000,
            Unit::Us => 1_000_000,
            Unit::Ns => 1_000_000_000,
        }
    }

    /// The unit of an Arrow timestamp type.
    pub fn of(t: TimeUnit) -> Unit {
        match t {
            TimeUnit::Second => Unit::S,
            TimeUnit::Millisecond => Unit::Ms,
            TimeUnit::Microsecond => Unit::Us,
            TimeUnit::Nanosecond => Unit::Ns,
        }
    }

    /// The Arrow time unit.
    pub fn arrow(self) -> TimeUnit {
        match self {
            Unit::S => TimeUnit::Second,
            Unit::Ms => TimeUnit::Millisecond,
            Unit::Us => TimeUnit::Microsecond,
            Unit::Ns => TimeUnit::Nanosecond,
        }
    }

    /// The unit of an epoch value by its magnitude: below 1e11 seconds (up to
    /// year 5138), below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
    #[inline]
    pub fn detect(v: i64) -> Unit {
        let a = v.unsigned_abs();
        if a < 100_000_000_000 {
            Unit::S
        } else if a < 100_000_000_000_000 {
            Unit::Ms
        } else if a < 100_000_000_000_000_000 {
            Unit::Us
        } else {
            Unit::Ns
        }
    }

    /// The factor to convert a value in `self` to `to`: (multiply, divide).
    pub fn factor(self, to: Unit) -> (i64, i64) {
        let (a, b) = (self.per_second(), to.per_second());
        if b >= a { (b / a, 1) } else { (1, a / b) }
    }
}

/// Parses a duration like `500ms`, `1s`, `5m`, `1h`, `1d`, `2w` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 1s, 5m, 1h or 1d"))?;
    let mult = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        u => return Err(format!("unknown duration unit `{u}` in `{s}` (use ms, s, m, h, d or w)")),
    };
    if n <= 0 {
        return Err(format!("duration `{s}` must be positive"));
    }
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_units_by_magnitude() {
        assert_eq!(Unit::detect(1_700_000_000), Unit::S);
        assert_eq!(Unit::detect(1_700_000_000_000), Unit::Ms);
        assert_eq!(Unit::detect(1_700_000_000_000_000), Unit::Us);
        assert_eq!(Unit::detect(1_700_000_000_000_000_000), Unit::Ns);
        assert_eq!(Unit::Ms.factor(Unit::Us), (1000, 1));
        assert_eq!(Unit::Ns.factor(Unit::Ms), (1, 1_000_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert!(parse_duration_ms("1y").is_err());
        assert!(parse_duration_ms("0s").is_err());
    }
}
