//! The catalog trait: publish what the lake holds so query engines see consistent snapshots.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use serde::Serialize;

use crate::error::CatalogError;

/// The committed files of a lake.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LakeSnapshot {
    pub root: PathBuf,
    pub datasets: Vec<DatasetSnapshot>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DatasetSnapshot {
    pub name: String,
    pub partition_by: Vec<String>,
    /// Absolute paths of the committed data files.
    pub files: Vec<PathBuf>,
    /// Every file is known to have the same schema: a view need not read each file's schema to
    /// union them by name. False when unknown.
    pub one_schema: bool,
}

pub trait Catalog: Send + Sync {
    /// Replace the published catalog with one over exactly `snapshot`'s files.
    fn publish(&self, snapshot: &LakeSnapshot) -> Result<(), CatalogError>;
    /// Run SQL against the published catalog.
    fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, CatalogError>;
}

/// Row counts and column sums per group of a table, as two stores compute them for a
/// comparison (`sluice lake compare`): group values as text (`NULL` for a null).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupTotals {
    pub groups: std::collections::BTreeMap<Vec<String>, (i64, Vec<Option<f64>>)>,
}

/// One group whose totals differ, or that one side lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDiff {
    pub group: Vec<String>,
    /// Rows on each side (None: the side lacks the group).
    pub rows: (Option<i64>, Option<i64>),
    /// Each summed column whose sums differ: (column, this side, other side).
    pub sums: Vec<(String, Option<f64>, Option<f64>)>,
}

/// What a comparison found.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub groups: u64,
    pub rows: (i64, i64),
    pub diffs: Vec<GroupDiff>,
}

/// Compare two stores' totals: equal rows per group, sums equal within `tolerance` (relative).
pub fn compare_groups(a: &GroupTotals, b: &GroupTotals, sums: &[String], tolerance: f64) -> Comparison {
    let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => (x - y).abs() <= tolerance * x.abs().max(y.abs()).max(1.0),
        (None, None) => true,
        _ => false,
    };
    let mut out = Comparison::default();
    let keys: std::collections::BTreeSet<&Vec<String>> = a.groups.keys().chain(b.groups.keys()).collect();
    for k in keys {
        out.groups += 1;
        let (x, y) = (a.groups.get(k), b.groups.get(k));
        out.rows.0 += x.map_or(0, |v| v.0);
        out.rows.1 += y.map_or(0, |v| v.0);
        let mut diff = Vec::new();
        if let (Some(x), Some(y)) = (x, y) {
            for (i, c) in sums.iter().enumerate() {
                let (p, q) = (x.1.get(i).copied().flatten(), y.1.get(i).copied().flatten());
                if !close(p, q) {
                    diff.push((c.clone(), p, q));
                }
            }
        }
        let rows = (x.map(|v| v.0), y.map(|v| v.0));
        if rows.0 != rows.1 || !diff.is_empty() {
            out.diffs.push(GroupDiff { group: k.clone(), rows, sums: diff });
        }
    }
    out
}
