//! A read-only view of a lake for `sluice lake status` and `verify`: the ledger's live files per
//! dataset, the replaced files still retained on disk, what is on disk, and the row counts in
//! the Parquet footers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_core::error::SinkError;

use crate::layout::REJECTS_DIR;
use crate::ledger::{LEDGER_DIR, Ledger, RetainedFile};
use crate::schema::Column;

/// One dataset as the ledger describes it.
#[derive(Debug, Clone, Default)]
pub struct DatasetState {
    /// Live files (relative to the lake root) and their rows as recorded, when recorded.
    pub files: BTreeMap<String, Option<u64>>,
    pub schema: Vec<Column>,
    /// Replaced or removed files still on disk for readers of older catalog snapshots (relative
    /// to the lake root), until their deadline; not part of the dataset.
    pub retained: BTreeMap<String, RetainedFile>,
    /// Every unit the ledger holds (its latest record), by unit id.
    pub units: BTreeMap<String, UnitRecord>,
}

/// What the ledger recorded of one unit's latest commit.
#[derive(Debug, Clone, Default)]
pub struct UnitRecord {
    /// The unit's source file (and zip member), for people.
    pub file: String,
    /// Its data files (relative to the lake root) and their recorded rows.
    pub files: Vec<(String, Option<u64>)>,
    /// Rows written to the dataset.
    pub rows: u64,
    /// Rows read from the source and rows set aside in `_rejects`, when recorded.
    pub rows_in: Option<u64>,
    pub rows_rejected: Option<u64>,
    /// Some of its rows are in groups later units output (it may write none).
    pub continued: bool,
}

impl DatasetState {
    /// Distinct partition directories.
    pub fn partitions(&self) -> usize {
        self.files.keys().map(|f| f.rsplit_once('/').map_or("", |(d, _)| d)).collect::<BTreeSet<_>>().len()
    }
}

/// What the ledger says a lake holds. Reading takes no lock and changes nothing.
#[derive(Debug, Clone)]
pub struct LakeState {
    pub root: PathBuf,
    pub datasets: BTreeMap<String, DatasetState>,
}

impl LakeState {
    pub fn read(root: &Path) -> Result<Self, SinkError> {
        let ledger = Ledger::read_only(root)?;
        let mut datasets: BTreeMap<String, DatasetState> = BTreeMap::new();
        for (f, live) in &ledger.live {
            let name = if f.starts_with(REJECTS_DIR) { REJECTS_DIR } else { live.dataset.as_str() };
            datasets.entry(name.to_string()).or_default().files.insert(f.clone(), live.rows);
        }
        for r in ledger.records.values().filter(|r| !r.deleted) {
            let files = r
                .files
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.starts_with(REJECTS_DIR))
                .map(|(i, f)| (f.clone(), r.file_rows.get(i).copied()))
                .collect();
            let unit = UnitRecord {
                file: r.unit.display_name(),
                files,
                rows: r.rows,
                rows_in: r.rows_in,
                rows_rejected: r.rows_rejected,
                continued: r.continued,
            };
            datasets.entry(r.dataset.clone()).or_default().units.insert(r.unit_id.clone(), unit);
        }
        for (name, schema) in &ledger.schemas {
            datasets.entry(name.clone()).or_default().schema = schema.clone();
        }
        for (f, r) in &ledger.retained {
            if crate::files::stored(root, f).exists() {
                let name = if f.starts_with(REJECTS_DIR) { REJECTS_DIR } else { r.dataset.as_str() };
                datasets.entry(name.to_string()).or_default().retained.insert(f.clone(), r.clone());
            }
        }
        Ok(LakeState { root: root.to_path_buf(), datasets })
    }

    /// A dataset's stored files on disk, named as the ledger names them: (data files,
    /// in-progress files).
    pub fn on_disk(&self, dataset: &str) -> Result<(BTreeSet<String>, Vec<String>), SinkError> {
        self.files_under(&crate::files::stored_root(&self.root), dataset)
    }

    /// The dataset's hive layout as glob readers list it, relative to the lake root: (data files,
    /// in-progress files).
    pub fn visible_on_disk(&self, dataset: &str) -> Result<(BTreeSet<String>, Vec<String>), SinkError> {
        self.files_under(&self.root, dataset)
    }

    fn files_under(&self, base: &Path, dataset: &str) -> Result<(BTreeSet<String>, Vec<String>), SinkError> {
        let (mut data, mut inprogress) = (BTreeSet::new(), Vec::new());
        for (_, rel) in crate::files::files_in(&base.join(dataset), base)? {
            if rel.ends_with(".inprogress") {
                inprogress.push(rel);
            } else if rel.ends_with(".parquet") {
                data.insert(rel);
            }
        }
        Ok((data, inprogress))
    }

    /// Rows in a data file's Parquet footer.
    pub fn footer_rows(&self, rel: &str) -> Result<u64, SinkError> {
        let path = crate::files::stored(&self.root, rel);
        let f = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
        let reader = SerializedFileReader::new(f).map_err(|e| SinkError::Encode(format!("{}: {e}", path.display())))?;
        Ok(reader.metadata().file_metadata().num_rows() as u64)
    }

    /// The lake's bookkeeping directory.
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(LEDGER_DIR)
    }
}

/// What a catalog publishes for the lake at `root` as its ledger says now, read without the
/// writer lock (after `sluice lake compact`, which does not hold it).
pub fn read_snapshot(root: &Path) -> Result<sluice_core::catalog::LakeSnapshot, SinkError> {
    let root = root.canonicalize().map_err(|e| SinkError::io(root, e))?;
    let ledger = Ledger::read_only(&root)?;
    let mut by_dataset: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (f, live) in &ledger.live {
        let name = if f.starts_with(REJECTS_DIR) { REJECTS_DIR } else { live.dataset.as_str() };
        by_dataset.entry(name.to_string()).or_default().push(crate::files::stored(&root, f));
    }
    let mut prints = crate::prints::SchemaPrints::default();
    let datasets = by_dataset
        .into_iter()
        .map(|(name, mut files)| {
            files.sort();
            let one_schema = prints.one_schema(&files);
            sluice_core::catalog::DatasetSnapshot { name, partition_by: Vec::new(), files, one_schema }
        })
        .collect();
    Ok(sluice_core::catalog::LakeSnapshot { root, datasets })
}
