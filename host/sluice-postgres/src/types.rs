//! Arrow types and Postgres column types: the DDL a new column gets, the Arrow type a column's
//! binary `COPY` data must have, and which changes `schema_policy: evolve` may make.

use arrow_schema::{DataType, Field, TimeUnit};

/// The Postgres type a column of this Arrow type is created with. `None`: no lossless mapping.
pub(crate) fn ddl_type(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) if *s >= 0 && *s <= *p as i8 => format!("numeric({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Duration(_) => "interval".into(),
        DataType::Dictionary(_, v) => return ddl_type(v),
        DataType::List(f) | DataType::LargeList(f) => {
            let inner = ddl_type(f.data_type())?;
            if matches!(f.data_type(), DataType::List(_) | DataType::LargeList(_)) {
                return None;
            }
            format!("{inner}[]")
        }
        _ => return None,
    })
}

/// The Arrow type whose binary COPY encoding a column of Postgres type `pg` (as `format_type`
/// prints it) accepts, or `None` when Sluice cannot write that column.
pub(crate) fn copy_type(pg: &str) -> Option<DataType> {
    if let Some(inner) = pg.strip_suffix("[]") {
        return copy_type(inner).map(|t| DataType::List(std::sync::Arc::new(Field::new("item", t, true))));
    }
    let base = pg.split('(').next().unwrap_or(pg).trim();
    Some(match base {
        "boolean" => DataType::Boolean,
        "smallint" => DataType::Int16,
        "integer" => DataType::Int32,
        "bigint" => DataType::Int64,
        "real" => DataType::Float32,
        "double precision" => DataType::Float64,
        "numeric" => {
            let (p, s) = numeric_args(pg)?;
            DataType::Decimal128(p, s)
        }
        "text" | "character varying" | "character" => DataType::Utf8,
        "bytea" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamp without time zone" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp with time zone" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "time without time zone" => DataType::Time64(TimeUnit::Microsecond),
        "interval" => DataType::Duration(TimeUnit::Microsecond),
        _ => return None,
    })
}

/// `numeric(p,s)`'s precision and scale (an unbounded `numeric` has none: not writable as a
/// Decimal128 without a stated scale).
fn numeric_args(pg: &str) -> Option<(u8, i8)> {
    let args = pg.split_once('(')?.1.strip_suffix(')')?;
    let (p, s) = args.split_once(',').unwrap_or((args, "0"));
    let p: u8 = p.trim().parse().ok()?;
    let s: i8 = s.trim().parse().ok()?;
    (p <= 38).then_some((p, s))
}

/// A column of the table holds `from` values without loss after a cast to its type `to`.
pub(crate) fn fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to {
        return true;
    }
    match (from, to) {
        (Dictionary(_, v), t) => fits(v, t),
        (Int8 | UInt8, Int16 | Int32 | Int64 | Float32 | Float64) => true,
        (Int16 | UInt16, Int32 | Int64 | Float32 | Float64) => true,
        (Int32 | UInt32, Int64 | Float64) => true,
        (Int64, Decimal128(p, s)) => *p as i16 - *s as i16 >= 19,
        (UInt64, Decimal128(p, s)) => *p as i16 - *s as i16 >= 20,
        (Float16 | Float32, Float32 | Float64) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16),
        (Utf8 | LargeUtf8 | Utf8View, Utf8) => true,
        (Binary | LargeBinary | BinaryView, Binary) => true,
        (Date32 | Date64, Date32) => true,
        (Timestamp(_, a), Timestamp(TimeUnit::Microsecond, b)) => a.is_some() == b.is_some(),
        (Time32(_) | Time64(_), Time64(TimeUnit::Microsecond)) => true,
        (Duration(_), Duration(TimeUnit::Microsecond)) => true,
        (List(a) | LargeList(a), List(b)) => fits(a.data_type(), b.data_type()),
        _ => false,
    }
}

/// Under `evolve`: the wider column type that holds both the table's `pg` values and `from`
/// (integer widening, integers into `double precision`), as DDL.
pub(crate) fn widened(pg: &str, from: &DataType) -> Option<&'static str> {
    use DataType::*;
    match (pg, from) {
        ("smallint", Int32 | UInt16) => Some("integer"),
        ("smallint" | "integer", Int64 | UInt32) => Some("bigint"),
        ("smallint" | "integer" | "bigint" | "real", Float64) => Some("double precision"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ddl_type_reads_back_as_a_copy_type_its_arrow_type_fits() {
        let tz = Some("UTC".into());
        let cases = [
            DataType::Boolean,
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Float32,
            DataType::Float64,
            DataType::Decimal128(18, 4),
            DataType::Utf8,
            DataType::LargeUtf8,
            DataType::Binary,
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            DataType::Timestamp(TimeUnit::Nanosecond, tz),
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Duration(TimeUnit::Second),
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            DataType::List(std::sync::Arc::new(Field::new("item", DataType::Int64, true))),
        ];
        for dt in cases {
            let ddl = ddl_type(&dt).unwrap_or_else(|| panic!("{dt} has no DDL type"));
            // format_type prints the long names.
            let printed = match ddl.as_str() {
                "timestamptz" => "timestamp with time zone".to_string(),
                "timestamp" => "timestamp without time zone".to_string(),
                "time" => "time without time zone".to_string(),
                other => other.to_string(),
            };
            let back = copy_type(&printed).unwrap_or_else(|| panic!("{printed} has no copy type"));
            assert!(fits(&dt, &back), "{dt} does not fit {back} ({printed})");
        }
        assert!(ddl_type(&DataType::Struct(Default::default())).is_none());
        assert!(copy_type("jsonb").is_none());
        assert!(copy_type("numeric").is_none(), "unbounded numeric has no scale to write at");
        assert_eq!(copy_type("numeric(10,2)"), Some(DataType::Decimal128(10, 2)));
        assert!(!fits(&DataType::Int64, &DataType::Int32));
        assert!(!fits(&DataType::Utf8, &DataType::Int64));
        assert_eq!(widened("integer", &DataType::Int64), Some("bigint"));
        assert_eq!(widened("bigint", &DataType::Utf8), None);
    }
}
