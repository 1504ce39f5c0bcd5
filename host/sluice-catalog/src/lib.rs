//! Sluice's DuckDB catalog: a database file holding one view per dataset over exactly the
//! committed files, rebuilt under a temporary name and renamed into place so readers always
//! see a consistent snapshot and never block the writer.

mod compare;
mod source;

pub use compare::{duckdb_group_totals, lake_group_totals};
pub use source::{DuckSource, DuckdbConnector};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arrow_array::RecordBatch;
use duckdb::Connection;
use sluice_core::catalog::{Catalog, LakeSnapshot};
use sluice_core::error::CatalogError;

/// The storage version written, so that every DuckDB 1.x reader can open the catalog.
pub const STORAGE_VERSION: &str = "v1.0.0";

/// A DuckDB catalog file.
pub struct DuckCatalog {
    path: PathBuf,
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl DuckCatalog {
    /// The default catalog location of a lake.
    pub fn for_lake(lake: &Path) -> Self {
        DuckCatalog { path: lake.join("catalog.duckdb") }
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        DuckCatalog { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn publish_err(&self, e: impl std::fmt::Display) -> CatalogError {
        CatalogError::Publish { path: self.path.display().to_string(), message: e.to_string() }
    }
}

/// SQL that defines a dataset's view over its committed files. Files of different schemas
/// (an evolved dataset) are unioned by name, which makes DuckDB read every file's schema when
/// it binds the view; files of `one_schema` are not.
pub fn view_sql(schema: &str, name: &str, files: &[PathBuf], one_schema: bool) -> String {
    let list: Vec<String> = files.iter().map(|f| quote_str(&f.to_string_lossy())).collect();
    format!(
        "CREATE OR REPLACE VIEW {schema}.{} AS SELECT * FROM read_parquet([{}], hive_partitioning = true, union_by_name = {})",
        quote_ident(name),
        list.join(", "),
        !one_schema
    )
}

impl DuckCatalog {
    /// Build the catalog at `tmp` and rename it into place.
    fn publish_through(&self, tmp: &Path, dir: &Path, snapshot: &LakeSnapshot) -> Result<(), CatalogError> {
        let conn = Connection::open_in_memory().map_err(|e| self.publish_err(e))?;
        let mut sql = format!(
            "ATTACH {} AS cat (STORAGE_VERSION {});\n",
            quote_str(&tmp.to_string_lossy()),
            quote_str(STORAGE_VERSION)
        );
        for ds in &snapshot.datasets {
            if ds.files.is_empty() {
                continue;
            }
            sql.push_str(&view_sql("cat.main", &ds.name, &ds.files, ds.one_schema));
            sql.push_str(";\n");
        }
        sql.push_str("CHECKPOINT cat;\nDETACH cat;\n");
        conn.execute_batch(&sql).map_err(|e| self.publish_err(e))?;
        drop(conn);
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| CatalogError::Io { path: tmp.display().to_string(), source: e })?;
        std::fs::rename(tmp, &self.path)
            .map_err(|e| CatalogError::Io { path: self.path.display().to_string(), source: e })?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CatalogError::Io { path: dir.display().to_string(), source: e })
    }
}

impl Catalog for DuckCatalog {
    fn publish(&self, snapshot: &LakeSnapshot) -> Result<(), CatalogError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| CatalogError::Io { path: dir.display().to_string(), source: e })?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            self.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            std::process::id()
        ));
        let wal = tmp.with_extension("tmp.wal");
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&wal);
        let result = self.publish_through(&tmp, dir, snapshot);
        if result.is_err() {
            // Nothing of a failed publish stays behind: the old catalog, if any, is untouched.
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&wal);
        }
        result
    }

    fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, CatalogError> {
        if !self.path.exists() {
            return Err(CatalogError::Query(format!(
                "no catalog at {}: run a pipeline into this lake first",
                self.path.display()
            )));
        }
        let conn = Connection::open_in_memory().map_err(|e| CatalogError::Query(e.to_string()))?;
        conn.execute_batch(&format!(
            "ATTACH {} AS lake (READ_ONLY); USE lake;",
            quote_str(&self.path.to_string_lossy())
        ))
        .map_err(|e| CatalogError::Query(e.to_string()))?;
        let mut stmt = conn.prepare(sql).map_err(|e| CatalogError::Query(e.to_string()))?;
        let batches: Vec<RecordBatch> = stmt.query_arrow([]).map_err(|e| CatalogError::Query(e.to_string()))?.collect();
        Ok(batches)
    }
}

/// Publishes the catalog in the background while a run commits, at most once per interval and
/// only when something changed, so catalog readers follow the ingest. A publish that takes long
/// (a catalog over thousands of files) stretches the wait after it to nine times its duration,
/// so that publishing takes at most a tenth of a core from the run. `stop` joins the thread.
pub struct BackgroundPublisher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

/// Called each interval: `None` when nothing changed, else the snapshot to publish.
pub type ChangedSnapshot = Box<dyn FnMut() -> Option<Result<LakeSnapshot, String>> + Send>;

impl BackgroundPublisher {
    pub fn start(catalog: DuckCatalog, interval: Duration, mut changed: ChangedSnapshot) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-catalog".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut stopped = lock.lock().expect("publisher lock");
                let mut wait = interval;
                loop {
                    stopped = cv.wait_timeout(stopped, wait).expect("publisher lock").0;
                    if *stopped {
                        return;
                    }
                    match changed() {
                        None => {}
                        Some(Ok(snapshot)) => {
                            let started = std::time::Instant::now();
                            if let Err(e) = catalog.publish(&snapshot) {
                                tracing::warn!("publishing the catalog during the run: {e}");
                            }
                            wait = interval.max(started.elapsed() * 9);
                        }
                        Some(Err(e)) => tracing::warn!("snapshot for the catalog: {e}"),
                    }
                }
            })
            .ok();
        BackgroundPublisher { stop, handle }
    }

    /// Stop publishing and wait for a publish in progress to finish.
    pub fn stop(mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().expect("publisher lock") = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Row count and per-column sums (numeric columns, as DOUBLE) of a relation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    pub rows: u64,
    pub sums: std::collections::BTreeMap<String, Option<f64>>,
}

impl DuckCatalog {
    /// Totals of a dataset's view in the published catalog.
    pub fn view_totals(&self, dataset: &str) -> Result<Totals, CatalogError> {
        self.totals(&format!("lake.main.{}", quote_ident(dataset)))
    }

    /// Totals of a list of files read the way the catalog's views read them.
    pub fn file_totals(&self, files: &[PathBuf]) -> Result<Totals, CatalogError> {
        let list: Vec<String> = files.iter().map(|f| quote_str(&f.to_string_lossy())).collect();
        self.totals(&format!("read_parquet([{}], hive_partitioning = true, union_by_name = true)", list.join(", ")))
    }

    fn totals(&self, relation: &str) -> Result<Totals, CatalogError> {
        let q = |e: duckdb::Error| CatalogError::Query(format!("{relation}: {e}"));
        let conn = Connection::open_in_memory().map_err(q)?;
        if self.path.exists() {
            conn.execute_batch(&format!("ATTACH {} AS lake (READ_ONLY);", quote_str(&self.path.to_string_lossy())))
                .map_err(q)?;
        }
        let mut numeric = Vec::new();
        {
            let mut stmt = conn.prepare(&format!("DESCRIBE SELECT * FROM {relation}")).map_err(q)?;
            let mut rows = stmt.query([]).map_err(q)?;
            while let Some(row) = rows.next().map_err(q)? {
                let (name, ty): (String, String) = (row.get(0).map_err(q)?, row.get(1).map_err(q)?);
                let numeric_type = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"]
                    .iter()
                    .any(|t| ty == *t || ty == format!("U{t}"))
                    || ty.starts_with("DECIMAL");
                if numeric_type {
                    numeric.push(name);
                }
            }
        }
        let mut select = vec!["count(*)".to_string()];
        select.extend(numeric.iter().map(|c| format!("sum({})::DOUBLE", quote_ident(c))));
        let sql = format!("SELECT {} FROM {relation}", select.join(", "));
        conn.query_row(&sql, [], |row| {
            let rows: i64 = row.get(0)?;
            let mut sums = std::collections::BTreeMap::new();
            for (i, c) in numeric.iter().enumerate() {
                sums.insert(c.clone(), row.get::<_, Option<f64>>(i + 1)?);
            }
            Ok(Totals { rows: rows as u64, sums })
        })
        .map_err(q)
    }
}
