//! Failed attempts per unit, so that a unit failing again and again is poisoned instead of being
//! retried forever: an append-only JSON-lines log `<lake>/_sluice/failures.jsonl`, kept apart
//! from the ledger. Attempts count only while the unit's fingerprint (size, mtime) and the
//! pipeline's definition are unchanged: a changed file or a fixed pipeline starts from zero, and
//! a commit makes them irrelevant.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_core::error::SinkError;
use sluice_core::source::SourceUnit;

use crate::layout::LEDGER_DIR;

#[derive(Debug, Serialize, Deserialize)]
struct FailureRecord {
    dataset: String,
    unit_id: String,
    file: String,
    size: u64,
    mtime_ns: i64,
    error: String,
    at_ms: u64,
    /// The pipeline definition the attempt ran under (`PipelineSpec::definition_hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    definition: Option<String>,
}

pub(crate) struct Failures {
    path: PathBuf,
    /// (dataset, unit id) -> its attempts with its latest fingerprint and pipeline definition.
    counts: HashMap<(String, String), Attempts>,
}

/// Failed attempts at one unit with one fingerprint under one pipeline definition.
#[derive(Debug, Clone, PartialEq)]
struct Attempts {
    size: u64,
    mtime_ns: i64,
    definition: Option<String>,
    n: u32,
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
                    f.count(r.dataset, r.unit_id, r.size, r.mtime_ns, r.definition);
                }
            }
        }
        Ok(f)
    }

    fn count(&mut self, dataset: String, unit_id: String, size: u64, mtime_ns: i64, definition: Option<String>) {
        let fresh = Attempts { size, mtime_ns, definition, n: 0 };
        let e = self.counts.entry((dataset, unit_id)).or_insert_with(|| fresh.clone());
        if (e.size, e.mtime_ns, &e.definition) != (fresh.size, fresh.mtime_ns, &fresh.definition) {
            *e = fresh;
        }
        e.n += 1;
    }

    /// Failed attempts at `unit` with its current fingerprint under pipeline `definition`.
    pub(crate) fn attempts(&self, dataset: &str, unit: &SourceUnit, definition: Option<&str>) -> u32 {
        match self.counts.get(&(dataset.to_string(), unit.id())) {
            Some(a) if a.size == unit.size && a.mtime_ns == unit.version && a.definition.as_deref() == definition => {
                a.n
            }
            _ => 0,
        }
    }

    pub(crate) fn record(
        &mut self,
        dataset: &str,
        unit: &SourceUnit,
        error: &str,
        at_ms: u64,
        definition: Option<&str>,
    ) -> Result<(), SinkError> {
        let r = FailureRecord {
            dataset: dataset.to_string(),
            unit_id: unit.id(),
            file: unit.display_name(),
            size: unit.size,
            mtime_ns: unit.version,
            error: error.to_string(),
            at_ms,
            definition: definition.map(str::to_string),
        };
        let mut line = serde_json::to_string(&r).map_err(|e| SinkError::Encode(e.to_string()))?;
        line.push('\n');
        let mut f =
            OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| SinkError::io(&self.path, e))?;
        f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).map_err(|e| SinkError::io(&self.path, e))?;
        self.count(r.dataset, r.unit_id, r.size, r.mtime_ns, r.definition);
        Ok(())
    }
}
