//! Group totals for `sluice lake compare`: a lake dataset (through its catalog) or a table of a
//! DuckDB file, grouped and summed by DuckDB; `sluice_core::catalog::compare_groups` compares
//! them with another store's.

use std::path::Path;

use duckdb::Connection;
use sluice_core::catalog::GroupTotals;
use sluice_core::error::CatalogError;

use crate::{quote_ident, quote_str};

/// Totals of `relation` (attached as `alias` from `file`) grouped by `by`, summing `sums`.
fn totals(
    file: &Path,
    alias: &str,
    relation: &str,
    by: &[String],
    sums: &[String],
) -> Result<GroupTotals, CatalogError> {
    let q = |e: duckdb::Error| CatalogError::Query(format!("{}: {e}", file.display()));
    let conn = Connection::open_in_memory().map_err(q)?;
    conn.execute_batch(&format!("ATTACH {} AS {alias} (READ_ONLY);", quote_str(&file.to_string_lossy()))).map_err(q)?;
    let mut cols: Vec<String> = by.iter().map(|c| format!("coalesce({}::VARCHAR, 'NULL')", quote_ident(c))).collect();
    cols.push("count(*)".into());
    cols.extend(sums.iter().map(|c| format!("sum({})::DOUBLE", quote_ident(c))));
    let group = if by.is_empty() { "" } else { " GROUP BY ALL" };
    let sql = format!("SELECT {} FROM {relation}{group}", cols.join(", "));
    let mut stmt = conn.prepare(&sql).map_err(q)?;
    let mut rows = stmt.query([]).map_err(q)?;
    let mut out = GroupTotals::default();
    while let Some(r) = rows.next().map_err(q)? {
        let key: Vec<String> = (0..by.len()).map(|i| r.get::<_, String>(i)).collect::<Result<_, _>>().map_err(q)?;
        let n: i64 = r.get(by.len()).map_err(q)?;
        let s: Vec<Option<f64>> =
            (0..sums.len()).map(|i| r.get(by.len() + 1 + i)).collect::<Result<_, _>>().map_err(q)?;
        out.groups.insert(key, (n, s));
    }
    Ok(out)
}

/// A lake dataset's totals, through the catalog at `catalog`.
pub fn lake_group_totals(
    catalog: &Path,
    dataset: &str,
    by: &[String],
    sums: &[String],
) -> Result<GroupTotals, CatalogError> {
    if !catalog.exists() {
        return Err(CatalogError::Query(format!(
            "no catalog at {}: run a pipeline into the lake first",
            catalog.display()
        )));
    }
    totals(catalog, "lake", &format!("lake.main.{}", quote_ident(dataset)), by, sums)
}

/// A table's totals in the DuckDB file `file` (opened read-only).
pub fn duckdb_group_totals(
    file: &Path,
    table: &str,
    by: &[String],
    sums: &[String],
) -> Result<GroupTotals, CatalogError> {
    totals(file, "other", &format!("other.{}", crate::source::table_sql(table)), by, sums)
}
