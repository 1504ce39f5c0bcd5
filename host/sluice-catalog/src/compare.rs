//! `sluice lake compare`: a lake dataset against a table of a DuckDB file, per group (row count
//! and sums of chosen columns), in one DuckDB session that attaches the lake's catalog and the
//! other file read-only.

use std::path::Path;

use duckdb::Connection;
use sluice_core::error::CatalogError;

use crate::{quote_ident, quote_str};

/// One group (partition) whose totals differ, or that one side lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDiff {
    /// The group's values, as text (`NULL` for a null).
    pub group: Vec<String>,
    /// Rows in the lake and in the other table (None: the side lacks the group).
    pub rows: (Option<i64>, Option<i64>),
    /// Each summed column whose sums differ: (column, lake, other).
    pub sums: Vec<(String, Option<f64>, Option<f64>)>,
}

/// What a comparison found.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub groups: u64,
    pub rows: (i64, i64),
    pub diffs: Vec<GroupDiff>,
}

fn table_sql(alias: &str, table: &str) -> String {
    match table.split_once('.') {
        Some((s, t)) => format!("{alias}.{}.{}", quote_ident(s), quote_ident(t)),
        None => format!("{alias}.main.{}", quote_ident(table)),
    }
}

fn close(a: Option<f64>, b: Option<f64>, tolerance: f64) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0),
        (None, None) => true,
        _ => false,
    }
}

/// Compare `dataset` of the lake whose catalog is `catalog` with `table` of the DuckDB file
/// `other`, grouped by `by` (none: one group), summing `sums` (sums equal within `tolerance`,
/// relative).
pub fn compare_with_duckdb(
    catalog: &Path,
    dataset: &str,
    other: &Path,
    table: &str,
    by: &[String],
    sums: &[String],
    tolerance: f64,
) -> Result<Comparison, CatalogError> {
    let q = |e: duckdb::Error| CatalogError::Query(e.to_string());
    if !catalog.exists() {
        return Err(CatalogError::Query(format!(
            "no catalog at {}: run a pipeline into the lake first",
            catalog.display()
        )));
    }
    let conn = Connection::open_in_memory().map_err(q)?;
    conn.execute_batch(&format!(
        "ATTACH {} AS lake (READ_ONLY); ATTACH {} AS other (READ_ONLY);",
        quote_str(&catalog.to_string_lossy()),
        quote_str(&other.to_string_lossy())
    ))
    .map_err(|e| CatalogError::Query(format!("{}: {e}", other.display())))?;
    let lake = format!("lake.main.{}", quote_ident(dataset));
    let theirs = table_sql("other", table);
    let keys: Vec<String> = by.iter().map(|c| quote_ident(c)).collect();
    let group_text: Vec<String> = keys.iter().map(|k| format!("coalesce({k}::VARCHAR, 'NULL')")).collect();
    let side = |rel: &str| {
        let mut cols = group_text.iter().enumerate().map(|(i, g)| format!("{g} AS g{i}")).collect::<Vec<_>>();
        cols.push("count(*) AS n".into());
        cols.extend(sums.iter().enumerate().map(|(i, c)| format!("sum({})::DOUBLE AS s{i}", quote_ident(c))));
        let group = if keys.is_empty() { String::new() } else { " GROUP BY ALL".into() };
        format!("SELECT {} FROM {rel}{group}", cols.join(", "))
    };
    let join = if by.is_empty() {
        "ON true".to_string()
    } else {
        format!("USING ({})", (0..by.len()).map(|i| format!("g{i}")).collect::<Vec<_>>().join(", "))
    };
    let mut select: Vec<String> = (0..by.len()).map(|i| format!("g{i}")).collect();
    select.extend(["a.n".to_string(), "b.n".to_string()]);
    for i in 0..sums.len() {
        select.push(format!("a.s{i}"));
        select.push(format!("b.s{i}"));
    }
    let order = if by.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", (1..=by.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
    };
    let sql = format!(
        "WITH a AS ({}), b AS ({}) SELECT {} FROM a FULL OUTER JOIN b {join}{order}",
        side(&lake),
        side(&theirs),
        select.join(", ")
    );
    let mut stmt = conn.prepare(&sql).map_err(q)?;
    let mut rows = stmt.query([]).map_err(q)?;
    let mut out = Comparison::default();
    while let Some(r) = rows.next().map_err(q)? {
        out.groups += 1;
        let group: Vec<String> = (0..by.len()).map(|i| r.get::<_, String>(i)).collect::<Result<_, _>>().map_err(q)?;
        let (a, b): (Option<i64>, Option<i64>) = (r.get(by.len()).map_err(q)?, r.get(by.len() + 1).map_err(q)?);
        out.rows.0 += a.unwrap_or(0);
        out.rows.1 += b.unwrap_or(0);
        let mut diff_sums = Vec::new();
        for (i, c) in sums.iter().enumerate() {
            let x: Option<f64> = r.get(by.len() + 2 + 2 * i).map_err(q)?;
            let y: Option<f64> = r.get(by.len() + 3 + 2 * i).map_err(q)?;
            if a.is_some() && b.is_some() && !close(x, y, tolerance) {
                diff_sums.push((c.clone(), x, y));
            }
        }
        if a != b || !diff_sums.is_empty() {
            out.diffs.push(GroupDiff { group, rows: (a, b), sums: diff_sums });
        }
    }
    Ok(out)
}
