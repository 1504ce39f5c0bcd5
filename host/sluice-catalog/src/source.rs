//! `kind: duckdb` sources: a table or query of a DuckDB database file, opened read-only, for
//! moving a monolithic `.duckdb` file into the lake.
//!
//! A table's units are ranges of its `rowid` (`range_rows` each), read a batch at a time, so a
//! large table streams in bounded memory and its ranges load in parallel. A query is one unit,
//! read whole. Every unit's version is the file's modification time: a file that changes is read
//! again, an unchanged one is skipped. Nothing is opened by `validate` (only the file's presence
//! is checked); the file is opened at discovery, read-only, so another process may read it too,
//! and a process holding it open for writing is named in the error.

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use duckdb::{AccessMode, Config, Connection};
use sluice_core::connector::{Finding, SourceConnector};
use sluice_core::error::SourceError;
use sluice_core::source::{BatchStream, Source, SourceItem, SourceUnit};
use sluice_core::spec::{DuckSourceSpec, Settings, SourceSpec};

use crate::quote_ident;

/// The runtime half of `kind: duckdb`.
pub struct DuckdbConnector;

fn spec_of(spec: &SourceSpec) -> Result<&DuckSourceSpec, SourceError> {
    spec.config_as::<DuckSourceSpec>()
        .ok_or_else(|| SourceError::Config { source_name: spec.name.clone(), message: "not a duckdb source".into() })
}

impl SourceConnector for DuckdbConnector {
    fn kind(&self) -> &'static str {
        "duckdb"
    }

    fn check(&self, spec: &SourceSpec) -> Vec<Finding> {
        let Ok(d) = spec_of(spec) else { return Vec::new() };
        if d.path.is_file() {
            return Vec::new();
        }
        vec![Finding {
            path: vec!["sources".into(), spec.name.clone(), "path".into()],
            message: format!("source `{}`: no DuckDB file at {}", spec.name, d.path.display()),
            hint: None,
        }]
    }

    fn build(&self, spec: &SourceSpec, settings: &Settings) -> Result<Arc<dyn Source>, SourceError> {
        let d = spec_of(spec)?;
        Ok(Arc::new(DuckSource { name: spec.name.clone(), spec: d.clone(), batch_rows: settings.batch_rows.max(1) }))
    }

    fn unchecked_schema(&self, spec: &SourceSpec) -> String {
        format!("the schema is unchecked: source `{}` is a DuckDB table, read when the run opens it", spec.name)
    }
}

pub struct DuckSource {
    name: String,
    spec: DuckSourceSpec,
    batch_rows: usize,
}

/// `schema.table`, or `table` in `main`, quoted (prefix it with a database alias to read an
/// attached file).
pub(crate) fn table_sql(table: &str) -> String {
    let (schema, name) = table.split_once('.').unwrap_or(("main", table));
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

impl DuckSource {
    fn path(&self) -> &Path {
        &self.spec.path
    }

    fn err(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Format { path: self.path().display().to_string(), message: e.to_string() }
    }

    /// Open the file read-only; a writer holding it is named.
    fn connect(&self) -> Result<Connection, SourceError> {
        let config = Config::default().access_mode(AccessMode::ReadOnly).map_err(|e| self.err(e))?;
        Connection::open_with_flags(self.path(), config).map_err(|e| {
            let text = e.to_string();
            if text.contains("Could not set lock") || text.contains("Conflicting lock") {
                SourceError::Config {
                    source_name: self.name.clone(),
                    message: format!(
                        "{} is open for writing by another process ({}): stop it, or copy the file and read the copy",
                        self.path().display(),
                        text.lines().next().unwrap_or(&text)
                    ),
                }
            } else {
                self.err(format!("cannot open it as a DuckDB database: {text}"))
            }
        })
    }

    fn version(&self) -> Result<i64, SourceError> {
        let meta = std::fs::metadata(self.path())
            .map_err(|e| SourceError::Io { path: self.path().display().to_string(), source: e })?;
        Ok(sluice_core::source::mtime_ns(&meta))
    }

    fn unit(&self, locator: String, location: String, size: u64, version: i64) -> SourceUnit {
        SourceUnit { source: self.name.clone(), locator, member: None, location, size, version, content_hash: None }
    }
}

/// A table's rowid range of a unit's locator: `<table>/rowid/<lo>-<hi>` (hi exclusive).
fn rowid_range(locator: &str) -> Option<(i64, i64)> {
    let (_, range) = locator.rsplit_once("/rowid/")?;
    let (lo, hi) = range.split_once('-')?;
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

impl Source for DuckSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> Option<SchemaRef> {
        None
    }

    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
        let version = self.version()?;
        let conn = self.connect()?;
        let path = self.path().display().to_string();
        match (&self.spec.table, &self.spec.query) {
            (Some(table), _) => {
                let sql = format!("SELECT min(rowid), max(rowid) FROM {}", table_sql(table));
                let (min, max): (Option<i64>, Option<i64>) = conn
                    .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(|e| self.err(format!("{table}: {e}")))?;
                let (Some(min), Some(max)) = (min, max) else { return Ok(Vec::new()) };
                let step = self.spec.range_rows as i64;
                let mut units = Vec::new();
                let mut lo = min - min.rem_euclid(step);
                while lo <= max {
                    let hi = lo + step;
                    units.push(self.unit(
                        format!("{table}/rowid/{lo}-{hi}"),
                        format!("{path}#{table}[rowid {lo}..{hi}]"),
                        step as u64,
                        version,
                    ));
                    lo = hi;
                }
                Ok(units)
            }
            (None, Some(query)) => {
                let id = &sluice_core::sha256_hex(&[query.as_bytes()])[..16];
                Ok(vec![self.unit(format!("query/{id}"), format!("{path}#query"), 0, version)])
            }
            (None, None) => {
                Err(SourceError::Config { source_name: self.name.clone(), message: "no table or query".into() })
            }
        }
    }

    fn still_current(&self, unit: &SourceUnit) -> bool {
        self.version().is_ok_and(|v| v == unit.version)
    }

    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let conn = self.connect()?;
        match (&self.spec.table, rowid_range(&unit.locator)) {
            (Some(table), Some((lo, hi))) => Ok(Box::new(Ranges {
                conn,
                table: table_sql(table),
                next: lo,
                end: hi,
                step: self.batch_rows as i64,
                location: unit.location.clone(),
                done: false,
            })),
            _ => {
                let query = self.spec.query.clone().unwrap_or_default();
                let mut stmt = conn.prepare(&query).map_err(|e| self.err(format!("query: {e}")))?;
                let batches: Vec<RecordBatch> =
                    stmt.query_arrow([]).map_err(|e| self.err(format!("query: {e}")))?.collect();
                let batches = merge(batches, self.batch_rows).map_err(|e| self.err(e))?;
                Ok(Box::new(batches.into_iter().map(|b| Ok(SourceItem::Batch(b)))))
            }
        }
    }
}

/// A unit's rowid range, read `step` rowids per query (DuckDB materializes a result: a query per
/// batch keeps memory at a batch).
struct Ranges {
    conn: Connection,
    table: String,
    next: i64,
    end: i64,
    step: i64,
    location: String,
    done: bool,
}

impl Iterator for Ranges {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done && self.next < self.end {
            let (lo, hi) = (self.next, (self.next + self.step).min(self.end));
            self.next = hi;
            let sql = format!("SELECT * FROM {} WHERE rowid >= {lo} AND rowid < {hi} ORDER BY rowid", self.table);
            let read = self.conn.prepare(&sql).and_then(|mut s| Ok(s.query_arrow([])?.collect::<Vec<RecordBatch>>()));
            let batches = match read {
                Ok(b) => b,
                Err(e) => {
                    self.done = true;
                    return Some(Err(SourceError::Format { path: self.location.clone(), message: e.to_string() }));
                }
            };
            match merge(batches, usize::MAX) {
                Ok(b) if b.is_empty() => continue,
                Ok(mut b) => return Some(Ok(SourceItem::Batch(b.remove(0)))),
                Err(e) => {
                    self.done = true;
                    return Some(Err(SourceError::Format { path: self.location.clone(), message: e }));
                }
            }
        }
        None
    }
}

/// DuckDB's 2048-row vectors, merged into batches of up to `rows` rows.
fn merge(batches: Vec<RecordBatch>, rows: usize) -> Result<Vec<RecordBatch>, String> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    let Some(first) = batches.first() else { return Ok(Vec::new()) };
    let schema = first.schema();
    let mut out = Vec::new();
    let mut group: Vec<RecordBatch> = Vec::new();
    let mut n = 0;
    for b in batches {
        if n + b.num_rows() > rows && !group.is_empty() {
            out.push(arrow_select::concat::concat_batches(&schema, &group).map_err(|e| e.to_string())?);
            group.clear();
            n = 0;
        }
        n += b.num_rows();
        group.push(b);
    }
    if !group.is_empty() {
        out.push(arrow_select::concat::concat_batches(&schema, &group).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
