//! Failed attempts per unit, so that a unit failing again and again is poisoned instead of being
//! retried forever: an append-only JSON-lines log `<lake>/_sluice/failures.jsonl`, kept apart
//! from the ledger. Attempts count only while the unit's fingerprint (size, mtime) is unchanged;
//! a changed file starts from zero, and a commit makes them irrelevant.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_core::error::SinkError;
use sluice_core::source::SourceUnit;

use crate::ledger::LEDGER_DIR;

#[derive(Debug, Serialize, Deserialize)]
struct FailureRecord {
    dataset: String,
    unit_id: String,
    file: String,
    size: u64,
    mtime_ns: i64,
    error: String,
    at_ms: u64,
}

pub(crate) struct Failures {
    path: PathBuf,
    /// (dataset, unit id) -> (size, mtime, attempts with that fingerprint).
    counts: HashMap<(String, String), (u64, i64, u32)>,
}

impl Failures {
    pub(crate) fn open(lake: &Path) -> Result<Self, SinkError> {
        let path = lake.join(LEDGER_DIR).join("failures.jsonl");
        let mut f = Failures { path, counts: HashMap::new() };
        if let Ok(file) = File::open(&f.path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|e| SinkError::io(&f.path, e))?;
                // A torn or foreign line only loses one attempt: failures are advisory.
                if let Ok(r) = serde_json::from_str::<FailureRecord>(&line) {
                    f.count(r.dataset, r.unit_id, r.size, r.mtime_ns);
                }
            }
        }
        Ok(f)
    }

    fn count(&mut self, dataset: String, unit_id: String, size: u64, mtime_ns: i64) {
        let e = self.counts.entry((dataset, unit_id)).or_insert((size, mtime_ns, 0));
        if (e.0, e.1) != (size, mtime_ns) {
            *e = (size, mtime_ns, 0);
        }
        e.2 += 1;
    }

    pub(crate) fn attempts(&self, dataset: &str, unit: &SourceUnit) -> u32 {
        match self.counts.get(&(dataset.to_string(), unit.id())) {
            Some(&(size, mtime, n)) if size == unit.size && mtime == unit.mtime_ns => n,
            _ => 0,
        }
    }

    pub(crate) fn record(
        &mut self,
        dataset: &str,
        unit: &SourceUnit,
        error: &str,
        at_ms: u64,
    ) -> Result<(), SinkError> {
        let r = FailureRecord {
            dataset: dataset.to_string(),
            unit_id: unit.id(),
            file: unit.display_name(),
            size: unit.size,
            mtime_ns: unit.mtime_ns,
            error: error.to_string(),
            at_ms,
        };
        let mut line = serde_json::to_string(&r).map_err(|e| SinkError::Encode(e.to_string()))?;
        line.push('\n');
        let mut f =
            OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| SinkError::io(&self.path, e))?;
        f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).map_err(|e| SinkError::io(&self.path, e))?;
        self.count(r.dataset, r.unit_id, r.size, r.mtime_ns);
        Ok(())
    }
}
