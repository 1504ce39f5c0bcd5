//! Numeric columns as Float64 or Int64 without arrow-cast (which would add
//! megabytes to every component).

use sluice_plugin::arrow_array::types::*;
use sluice_plugin::arrow_array::{ArrowPrimitiveType, Float64Array, Int64Array};
use sluice_plugin::prelude::*;

fn conv<T: ArrowPrimitiveType, O: ArrowPrimitiveType>(
    a: &dyn Array,
    f: impl Fn(T::Native) -> O::Native,
) -> sluice_plugin::arrow_array::PrimitiveArray<O> {
    a.as_primitive::<T>().unary::<_, O>(f)
}

/// Whether [`to_f64`] accepts this type.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Decimal128(_, _))
}

/// A numeric column as Float64 (None for other types).
pub fn to_f64(a: &dyn Array) -> Option<Float64Array> {
    Some(match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().clone(),
        DataType::Float32 => conv::<Float32Type, Float64Type>(a, f64::from),
        DataType::Float16 => conv::<Float16Type, Float64Type>(a, f64::from),
        DataType::Int8 => conv::<Int8Type, Float64Type>(a, f64::from),
        DataType::Int16 => conv::<Int16Type, Float64Type>(a, f64::from),
        DataType::Int32 => conv::<Int32Type, Float64Type>(a, f64::from),
        DataType::Int64 => conv::<Int64Type, Float64Type>(a, |v| v as f64),
        DataType::UInt8 => conv::<UInt8Type, Float64Type>(a, f64::from),
        DataType::UInt16 => conv::<UInt16Type, Float64Type>(a, f64::from),
        DataType::UInt32 => conv::<UInt32Type, Float64Type>(a, f64::from),
        DataType::UInt64 => conv::<UInt64Type, Float64Type>(a, |v| v as f64),
        DataType::Decimal128(_, scale) => {
            let div = 10f64.powi(i32::from(*scale));
            conv::<Decimal128Type, Float64Type>(a, move |v| v as f64 / div)
        }
        _ => return None,
    })
}

/// An integer-like column (integers, dates, timestamps) as Int64 values (None for other types).
/// UInt64 values above `i64::MAX` saturate.
pub fn to_i64(a: &dyn Array) -> Option<Int64Array> {
    Some(match a.data_type() {
        DataType::Int64 => a.as_primitive::<Int64Type>().clone(),
        DataType::Int8 => conv::<Int8Type, Int64Type>(a, i64::from),
        DataType::Int16 => conv::<Int16Type, Int64Type>(a, i64::from),
        DataType::Int32 => conv::<Int32Type, Int64Type>(a, i64::from),
        DataType::UInt8 => conv::<UInt8Type, Int64Type>(a, i64::from),
        DataType::UInt16 => conv::<UInt16Type, Int64Type>(a, i64::from),
        DataType::UInt32 => conv::<UInt32Type, Int64Type>(a, i64::from),
        DataType::UInt64 => conv::<UInt64Type, Int64Type>(a, |v| i64::try_from(v).unwrap_or(i64::MAX)),
        DataType::Date32 => conv::<Date32Type, Int64Type>(a, i64::from),
        DataType::Date64 => conv::<Date64Type, Int64Type>(a, |v| v),
        DataType::Timestamp(TimeUnit::Second, _) => conv::<TimestampSecondType, Int64Type>(a, |v| v),
        DataType::Timestamp(TimeUnit::Millisecond, _) => conv::<TimestampMillisecondType, Int64Type>(a, |v| v),
        DataType::Timestamp(TimeUnit::Microsecond, _) => conv::<TimestampMicrosecondType, Int64Type>(a, |v| v),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => conv::<TimestampNanosecondType, Int64Type>(a, |v| v),
        _ => return None,
    })
}

/// Whether [`to_i64`] accepts this type.
pub fn is_integer_like(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _))
}
