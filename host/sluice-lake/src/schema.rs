//! Dataset schemas and their evolution: new columns, safe widening, and the `schema_policy`.
//!
//! A dataset's schema (its data columns, without partition columns) is recorded in the ledger
//! when a commit changes it, and mirrored to `_sluice/schemas/<dataset>.json` for people.

use std::str::FromStr;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use sluice_core::spec::SchemaPolicy;

/// One column of a dataset's schema; the type is Arrow's display form (`Int64`, `Utf8`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl Column {
    fn of(f: &Field) -> Self {
        Column { name: f.name().clone(), data_type: f.data_type().to_string() }
    }
    fn parsed(&self) -> Option<DataType> {
        DataType::from_str(&self.data_type).ok()
    }
}

/// The type a column of `t` is written to Parquet as. Parquet has no seconds unit for
/// timestamps (Arrow's writer stores `Timestamp(s)` as a plain INT64 that DuckDB, Spark and
/// Polars read as an integer), so second timestamps are written as millisecond timestamps in the
/// same time zone; every other type is written as it is.
pub fn parquet_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(arrow_schema::TimeUnit::Second, tz) => {
            DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, tz.clone())
        }
        other => other.clone(),
    }
}

/// True when every value of `from` converts to `to` without loss of range: int32→int64,
/// float32→float64, any integer→float64 (the last may round beyond 2^53, accepted by design).
pub fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let signed_rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    let unsigned_rank = |t: &DataType| match t {
        UInt8 => Some(1),
        UInt16 => Some(2),
        UInt32 => Some(3),
        UInt64 => Some(4),
        _ => None,
    };
    if from == to || *from == Null {
        return true;
    }
    match (from, to) {
        (Float16, Float32 | Float64) | (Float32, Float64) => true,
        (f, Float64) if signed_rank(f).is_some() || unsigned_rank(f).is_some() => true,
        (f, t) if signed_rank(f).is_some() && signed_rank(t).is_some() => signed_rank(f) < signed_rank(t),
        (f, t) if unsigned_rank(f).is_some() && unsigned_rank(t).is_some() => unsigned_rank(f) < unsigned_rank(t),
        // An unsigned value fits a strictly wider signed type.
        (f, t) if unsigned_rank(f).is_some() && signed_rank(t).is_some() => unsigned_rank(f) < signed_rank(t),
        (Utf8, LargeUtf8) | (Binary, LargeBinary) => true,
        _ => false,
    }
}

/// What to do with one incoming column.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Keep,
    Cast(DataType),
    Drop,
}

/// How a unit's batches of one schema are written: which columns are cast or dropped, and the
/// dataset schema after the unit.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    actions: Vec<Action>,
    /// The schema of the files written.
    pub(crate) output: SchemaRef,
    /// The dataset's schema once this unit commits.
    pub(crate) dataset: Vec<Column>,
}

impl Plan {
    pub(crate) fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        if self.actions.iter().all(|a| *a == Action::Keep) {
            return Ok(batch.clone());
        }
        let mut cols = Vec::new();
        for (col, action) in batch.columns().iter().zip(&self.actions) {
            match action {
                Action::Keep => cols.push(col.clone()),
                Action::Cast(t) => cols.push(arrow_cast::cast(col, t).map_err(|e| e.to_string())?),
                Action::Drop => {}
            }
        }
        RecordBatch::try_new(self.output.clone(), cols).map_err(|e| e.to_string())
    }
}

/// Plan how batches of `incoming` enter a dataset whose schema is `stored` (empty: no commit yet,
/// and the first commit defines the schema under every policy). A rejection names the column
/// and both types; the caller's `SinkError::Schema` names the dataset.
pub(crate) fn plan(dataset: &str, stored: &[Column], incoming: &Schema, policy: SchemaPolicy) -> Result<Plan, String> {
    let mut next: Vec<Column> = stored.to_vec();
    let mut actions = Vec::new();
    let mut fields = Vec::new();
    let first = stored.is_empty();
    // A dataset recorded before second timestamps were written as milliseconds says
    // `Timestamp(s)`; its next commit records the type its new files have.
    for c in next.iter_mut() {
        if let Some(t) = c.parsed() {
            let written = parquet_type(&t);
            if written != t {
                c.data_type = written.to_string();
            }
        }
    }
    for f in incoming.fields() {
        let new = parquet_type(f.data_type());
        // Keep the column as it comes, or cast it to the type it is written as.
        let keep = || if new == *f.data_type() { Action::Keep } else { Action::Cast(new.clone()) };
        let written = f.as_ref().clone().with_data_type(new.clone());
        let Some(pos) = next.iter().position(|c| c.name == *f.name()) else {
            if first || policy == SchemaPolicy::Evolve {
                next.push(Column::of(&written));
                actions.push(keep());
                fields.push(written);
            } else if policy == SchemaPolicy::DiscardColumns {
                tracing::debug!(dataset, column = %f.name(), "schema_policy discard_columns: dropping a new column");
                actions.push(Action::Drop);
            } else {
                return Err(format!(
                    "new column `{}` ({}) is not in the frozen schema (schema_policy: freeze)",
                    f.name(),
                    f.data_type()
                ));
            }
            continue;
        };
        let old = next[pos].parsed().unwrap_or(DataType::Null);
        if old == new {
            actions.push(keep());
            fields.push(written);
        } else if widens(&new, &old) {
            // Narrower than the dataset's type: written as the dataset's type.
            actions.push(Action::Cast(old.clone()));
            fields.push(Field::new(f.name(), old, f.is_nullable()));
        } else if widens(&old, &new) && policy == SchemaPolicy::Evolve {
            next[pos] = Column::of(&written);
            actions.push(keep());
            fields.push(written);
        } else {
            let why = if widens(&old, &new) {
                format!("widening is not allowed by schema_policy: {}", policy_name(policy))
            } else {
                "not a safe widening".to_string()
            };
            return Err(format!("column `{}` changed type from {} to {} ({why})", f.name(), next[pos].data_type, new));
        }
    }
    Ok(Plan { actions, output: Arc::new(Schema::new(fields)), dataset: next })
}

fn policy_name(p: SchemaPolicy) -> &'static str {
    match p {
        SchemaPolicy::Evolve => "evolve",
        SchemaPolicy::Freeze => "freeze",
        SchemaPolicy::DiscardColumns => "discard_columns",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(cols: &[(&str, DataType)]) -> Schema {
        Schema::new(cols.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>())
    }

    #[test]
    fn evolve_adds_columns_and_widens() {
        let first =
            plan("d", &[], &schema(&[("a", DataType::Int32), ("b", DataType::Float32)]), SchemaPolicy::Evolve).unwrap();
        let p = plan(
            "d",
            &first.dataset,
            &schema(&[("a", DataType::Int64), ("b", DataType::Float32), ("c", DataType::Utf8)]),
            SchemaPolicy::Evolve,
        )
        .unwrap();
        let names: Vec<_> = p.dataset.iter().map(|c| (c.name.as_str(), c.data_type.as_str())).collect();
        assert_eq!(names, [("a", "Int64"), ("b", "Float32"), ("c", "Utf8")]);
        // Narrower data is cast up to the dataset's type.
        let p2 = plan("d", &p.dataset, &schema(&[("a", DataType::Int16)]), SchemaPolicy::Evolve).unwrap();
        assert_eq!(p2.output.field(0).data_type(), &DataType::Int64);
    }

    #[test]
    fn rejections_name_dataset_column_and_types() {
        let first = plan("d", &[], &schema(&[("a", DataType::Int64)]), SchemaPolicy::Evolve).unwrap();
        let e = plan("d", &first.dataset, &schema(&[("a", DataType::Utf8)]), SchemaPolicy::Evolve).unwrap_err();
        assert!(e.contains("column `a` changed type from Int64 to Utf8"), "{e}");
        let e = plan("d", &first.dataset, &schema(&[("z", DataType::Utf8)]), SchemaPolicy::Freeze).unwrap_err();
        assert!(e.contains("`z`"), "{e}");
        let p = plan(
            "d",
            &first.dataset,
            &schema(&[("a", DataType::Int64), ("z", DataType::Utf8)]),
            SchemaPolicy::DiscardColumns,
        )
        .unwrap();
        assert_eq!(p.output.fields().len(), 1);
        assert!(widens(&DataType::Int32, &DataType::Float64));
        assert!(!widens(&DataType::Float64, &DataType::Int64));
    }

    #[test]
    fn second_timestamps_are_written_and_recorded_as_milliseconds() {
        use arrow_schema::TimeUnit::{Millisecond, Second};
        let secs = DataType::Timestamp(Second, Some("UTC".into()));
        let ms = DataType::Timestamp(Millisecond, Some("UTC".into()));
        let p = plan("d", &[], &schema(&[("t", secs.clone())]), SchemaPolicy::Freeze).unwrap();
        assert_eq!(p.output.field(0).data_type(), &ms);
        assert_eq!(p.dataset[0].parsed(), Some(ms.clone()));
        // A dataset recorded as `Timestamp(s)` by an older version takes new commits under every
        // policy, and records the type its files now have.
        let old = vec![Column { name: "t".into(), data_type: secs.to_string() }];
        for policy in [SchemaPolicy::Freeze, SchemaPolicy::Evolve, SchemaPolicy::DiscardColumns] {
            let p = plan("d", &old, &schema(&[("t", secs.clone())]), policy).unwrap();
            assert_eq!(p.output.field(0).data_type(), &ms);
            assert_eq!(p.dataset[0].parsed(), Some(ms.clone()));
        }
    }
}
