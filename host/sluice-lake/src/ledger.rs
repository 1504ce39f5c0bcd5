//! The ledger: an append-only, fsynced JSON-lines log of commits inside the lake.
//!
//! A unit is committed exactly when its record is in the ledger. Each record adds its `files`
//! and removes the files named in `removed` (the outputs it replaces: a changed unit's earlier
//! files, or the partitions a `replace_partition`/`upsert` commit rewrote). Replaying the records
//! in order gives the set of live files, which is exactly what readers may see. Records written
//! before `removed` existed replace their unit's previous files.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_core::error::SinkError;
use sluice_core::sink::{KeyRange, KeyValues};
use sluice_core::source::SourceUnit;

use crate::schema::Column;

/// The lake's bookkeeping directory, which no dataset glob reaches.
pub const LEDGER_DIR: &str = "_sluice";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LedgerRecord {
    pub unit_id: String,
    pub dataset: String,
    pub unit: SourceUnit,
    /// Data files, relative to the lake root.
    pub files: Vec<String>,
    /// Rows of each file in `files`, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_rows: Vec<u64>,
    /// Files (relative to the lake root) this commit replaced; they are no longer live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<String>>,
    /// The dataset's schema after this commit, when the commit changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<Column>>,
    pub rows: u64,
    pub bytes: u64,
    /// Milliseconds since the epoch.
    pub committed_at_ms: u64,
    /// Keyed state the unit left for its stateful steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<StateRecord>,
}

/// One stateful step's record of a unit: the key ranges it fed the step, and where the tails
/// (each key's last input rows, an Arrow IPC file under `_sluice/state/`) are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateRecord {
    pub step: String,
    pub lookback: u64,
    pub ranges: Vec<KeyRange>,
    /// The tails file, relative to the lake root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tails: Option<String>,
}

/// Where a key's committed units start, per (dataset, step, key): start -> unit ids.
pub(crate) type KeyIndex = HashMap<(String, String, KeyValues), BTreeMap<(i64, String), ()>>;

/// A file readers may see.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFile {
    pub dataset: String,
    /// Rows in the file, when the ledger knows (records before `file_rows` existed do not).
    pub rows: Option<u64>,
}

pub(crate) struct Ledger {
    path: PathBuf,
    /// `None` when opened read-only (status, verify).
    file: Option<File>,
    /// Latest record per (dataset, unit id): the fingerprints re-runs compare against.
    pub(crate) records: HashMap<(String, String), LedgerRecord>,
    /// Live files, relative to the lake root.
    pub(crate) live: BTreeMap<String, LiveFile>,
    /// Each dataset's schema (data columns, without partition columns).
    pub(crate) schemas: HashMap<String, Vec<Column>>,
    /// Records appended by this process.
    pub(crate) appended: u64,
    /// Keyed-state ranges of the latest records.
    pub(crate) keys: KeyIndex,
}

impl Ledger {
    pub(crate) fn open(lake: &Path) -> Result<Self, SinkError> {
        let path = lake.join(LEDGER_DIR).join("ledger.jsonl");
        truncate_torn_tail(&path)?;
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| SinkError::io(&path, e))?;
        Self::load(path, Some(file))
    }

    /// Replay the ledger without taking the writer lock or changing anything (a torn final line
    /// is skipped, as the next writer will cut it).
    pub(crate) fn read_only(lake: &Path) -> Result<Self, SinkError> {
        let path = lake.join(LEDGER_DIR).join("ledger.jsonl");
        if !path.exists() {
            return Err(SinkError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no ledger: not a lake"),
            ));
        }
        Self::load(path, None)
    }

    fn load(path: PathBuf, file: Option<File>) -> Result<Self, SinkError> {
        let mut ledger = Ledger {
            path: path.clone(),
            file,
            records: HashMap::new(),
            live: BTreeMap::new(),
            schemas: HashMap::new(),
            appended: 0,
            keys: HashMap::new(),
        };
        let f = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| SinkError::io(&path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<LedgerRecord>(&line) {
                Ok(r) => ledger.apply(r),
                Err(e) => {
                    tracing::warn!(ledger = %path.display(), line = i + 1, "ignoring unreadable ledger line: {e}")
                }
            }
        }
        Ok(ledger)
    }

    /// The files a record removes: its explicit list, or its unit's previous files.
    pub(crate) fn removals_of(&self, r: &LedgerRecord) -> Vec<String> {
        match &r.removed {
            Some(list) => list.clone(),
            None => self
                .records
                .get(&(r.dataset.clone(), r.unit_id.clone()))
                .map(|prev| prev.files.clone())
                .unwrap_or_default(),
        }
    }

    fn apply(&mut self, r: LedgerRecord) {
        for f in self.removals_of(&r) {
            self.live.remove(&f);
        }
        for (i, f) in r.files.iter().enumerate() {
            self.live.insert(f.clone(), LiveFile { dataset: r.dataset.clone(), rows: r.file_rows.get(i).copied() });
        }
        if let Some(schema) = &r.schema {
            self.schemas.insert(r.dataset.clone(), schema.clone());
        }
        if let Some(prev) = self.records.get(&(r.dataset.clone(), r.unit_id.clone())) {
            for st in &prev.state {
                for range in &st.ranges {
                    let k = (prev.dataset.clone(), st.step.clone(), range.key.clone());
                    if let Some(starts) = self.keys.get_mut(&k) {
                        starts.remove(&(range.min, prev.unit_id.clone()));
                    }
                }
            }
        }
        for st in &r.state {
            for range in &st.ranges {
                self.keys
                    .entry((r.dataset.clone(), st.step.clone(), range.key.clone()))
                    .or_default()
                    .insert((range.min, r.unit_id.clone()), ());
            }
        }
        self.records.insert((r.dataset.clone(), r.unit_id.clone()), r);
    }

    /// Durably append a record, then apply it.
    pub(crate) fn append(&mut self, record: LedgerRecord) -> Result<(), SinkError> {
        let mut line = serde_json::to_string(&record)
            .map_err(|e| SinkError::Ledger { path: self.path.display().to_string(), message: e.to_string() })?;
        line.push('\n');
        let file = self.file.as_mut().expect("appends only to a ledger opened for writing");
        file.write_all(line.as_bytes()).map_err(|e| SinkError::io(&self.path, e))?;
        file.sync_data().map_err(|e| SinkError::io(&self.path, e))?;
        self.apply(record);
        self.appended += 1;
        Ok(())
    }

    /// Live files of one partition directory (relative to the lake, e.g. `ds/a=1`).
    pub(crate) fn live_in_dir(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.live
            .range(prefix.clone()..)
            .take_while(|(f, _)| f.starts_with(&prefix))
            .filter(|(f, _)| !f[prefix.len()..].contains('/'))
            .map(|(f, _)| f.clone())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(unit: &str, files: &[&str], removed: Option<&[&str]>) -> LedgerRecord {
        LedgerRecord {
            unit_id: unit.into(),
            dataset: "ds".into(),
            unit: SourceUnit {
                source: "s".into(),
                path: unit.into(),
                rel_path: unit.into(),
                member: None,
                size: 1,
                mtime_ns: 1,
            },
            files: files.iter().map(|s| s.to_string()).collect(),
            file_rows: vec![1; files.len()],
            removed: removed.map(|r| r.iter().map(|s| s.to_string()).collect()),
            schema: None,
            rows: files.len() as u64,
            bytes: 0,
            committed_at_ms: 0,
            state: Vec::new(),
        }
    }

    #[test]
    fn replay_applies_additions_and_removals_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(LEDGER_DIR)).unwrap();
        {
            let mut l = Ledger::open(tmp.path()).unwrap();
            l.append(rec("a", &["ds/p=1/a1", "ds/p=2/a2"], None)).unwrap();
            l.append(rec("b", &["ds/p=1/b1"], Some(&["ds/p=1/a1"]))).unwrap();
            // A legacy-style record (no `removed`) replaces its unit's previous files.
            l.append(rec("a", &["ds/p=3/a3"], None)).unwrap();
        }
        let l = Ledger::open(tmp.path()).unwrap();
        let live: Vec<&String> = l.live.keys().collect();
        assert_eq!(live, ["ds/p=1/b1", "ds/p=3/a3"]);
        assert_eq!(l.live_in_dir("ds/p=1"), ["ds/p=1/b1"]);
        assert!(l.live_in_dir("ds/p=").is_empty());
    }
}
