//! The ledger: an append-only, fsynced JSON-lines log of committed units inside the lake.
//!
//! A unit is committed exactly when its record is in the ledger. A later record for the same
//! unit supersedes earlier ones (a changed source replaces its outputs).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_core::error::SinkError;
use sluice_core::source::SourceUnit;

/// The lake's bookkeeping directory, which no dataset glob reaches.
pub const LEDGER_DIR: &str = "_sluice";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LedgerRecord {
    pub unit_id: String,
    pub dataset: String,
    pub unit: SourceUnit,
    /// Data files, relative to the lake root.
    pub files: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    /// Milliseconds since the epoch.
    pub committed_at_ms: u64,
}

pub(crate) struct Ledger {
    path: PathBuf,
    file: File,
    /// Latest record per (dataset, unit id).
    pub(crate) records: HashMap<(String, String), LedgerRecord>,
}

impl Ledger {
    pub(crate) fn open(lake: &Path) -> Result<Self, SinkError> {
        let path = lake.join(LEDGER_DIR).join("ledger.jsonl");
        let mut records = HashMap::new();
        truncate_torn_tail(&path)?;
        if path.exists() {
            let f = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| SinkError::io(&path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<LedgerRecord>(&line) {
                    Ok(r) => {
                        records.insert((r.dataset.clone(), r.unit_id.clone()), r);
                    }
                    // A torn final line is a crash mid-append: that unit never committed.
                    Err(e) => {
                        tracing::warn!(ledger = %path.display(), line = i + 1, "ignoring unreadable ledger line: {e}")
                    }
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| SinkError::io(&path, e))?;
        Ok(Ledger { path, file, records })
    }

    /// Durably append a record.
    pub(crate) fn append(&mut self, record: LedgerRecord) -> Result<(), SinkError> {
        let mut line = serde_json::to_string(&record)
            .map_err(|e| SinkError::Ledger { path: self.path.display().to_string(), message: e.to_string() })?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).map_err(|e| SinkError::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| SinkError::io(&self.path, e))?;
        self.records.insert((record.dataset.clone(), record.unit_id.clone()), record);
        Ok(())
    }
}

/// A crash mid-append leaves a final line without its newline. Cut it off, so the next append
/// starts on a fresh line; that unit was never committed and will be redone.
fn truncate_torn_tail(path: &Path) -> Result<(), SinkError> {
    let Ok(bytes) = std::fs::read(path) else { return Ok(()) };
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if keep < bytes.len() {
        tracing::warn!(ledger = %path.display(), bytes = bytes.len() - keep, "cutting a torn final ledger line");
        let f = OpenOptions::new().write(true).open(path).map_err(|e| SinkError::io(path, e))?;
        f.set_len(keep as u64).map_err(|e| SinkError::io(path, e))?;
        f.sync_all().map_err(|e| SinkError::io(path, e))?;
    }
    Ok(())
}
