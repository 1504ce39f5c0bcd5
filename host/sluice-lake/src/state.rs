//! A read-only view of a lake for `sluice lake status` and `verify`: the ledger's live files per
//! dataset, the replaced files still retained on disk, what is on disk, and the row counts in
//! the Parquet footers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_core::error::SinkError;

use crate::ledger::{LEDGER_DIR, Ledger, RetainedFile};
use crate::schema::Column;
use crate::writer::REJECTS_DIR;

/// One dataset as the ledger describes it.
#[derive(Debug, Clone, Default)]
pub struct DatasetState {
    /// Live files (relative to the lake root) and their rows as recorded, when recorded.
    pub files: BTreeMap<String, Option<u64>>,
    pub schema: Vec<Column>,
    /// Replaced or removed files still on disk for readers of older catalog snapshots (relative
    /// to the lake root), until their deadline; not part of the dataset.
    pub retained: BTreeMap<String, RetainedFile>,
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
        for (name, schema) in &ledger.schemas {
            datasets.entry(name.clone()).or_default().schema = schema.clone();
        }
        for (f, r) in &ledger.retained {
            if root.join(f).exists() {
                let name = if f.starts_with(REJECTS_DIR) { REJECTS_DIR } else { r.dataset.as_str() };
                datasets.entry(name.to_string()).or_default().retained.insert(f.clone(), r.clone());
            }
        }
        Ok(LakeState { root: root.to_path_buf(), datasets })
    }

    /// Files under a dataset's directory on disk, relative to the lake root: (data files,
    /// in-progress files).
    pub fn on_disk(&self, dataset: &str) -> Result<(BTreeSet<String>, Vec<String>), SinkError> {
        let (mut data, mut inprogress) = (BTreeSet::new(), Vec::new());
        let top = self.root.join(dataset);
        let mut stack = if top.is_dir() { vec![top] } else { vec![] };
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(|e| SinkError::io(&dir, e))? {
                let entry = entry.map_err(|e| SinkError::io(&dir, e))?;
                let path = entry.path();
                if entry.file_type().map_err(|e| SinkError::io(&path, e))?.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&self.root).expect("under the lake").to_string_lossy().replace('\\', "/");
                if rel.ends_with(".inprogress") {
                    inprogress.push(rel);
                } else if rel.ends_with(".parquet") {
                    data.insert(rel);
                }
            }
        }
        Ok((data, inprogress))
    }

    /// Rows in a data file's Parquet footer.
    pub fn footer_rows(&self, rel: &str) -> Result<u64, SinkError> {
        let path = self.root.join(rel);
        let f = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
        let reader = SerializedFileReader::new(f).map_err(|e| SinkError::Encode(format!("{}: {e}", path.display())))?;
        Ok(reader.metadata().file_metadata().num_rows() as u64)
    }

    /// The lake's bookkeeping directory.
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(LEDGER_DIR)
    }
}
