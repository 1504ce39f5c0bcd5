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
