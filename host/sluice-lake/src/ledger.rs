//! The ledger: an append-only, fsynced JSON-lines log of commits inside the lake.
//!
//! A unit is committed exactly when its record is in the ledger. Each record adds its `files`
//! and removes the files named in `removed` (the outputs it replaces: a changed unit's earlier
//! files, the partitions a `replace_partition`/`upsert` commit rewrote, or, in a `deleted`
//! record, the outputs of a unit whose source file is gone). Replaying the records in order gives
//! the set of live files, which is exactly what readers may see. Records written before
//! `removed` existed replace their unit's previous files.
//!
//! Removed files are not deleted at once: they are *retained* until `retain_until_ms` (the
//! sink's `retain_replaced` after the commit), for readers still holding an older catalog
//! snapshot, and deleted by a later commit or open. Replay knows them from the records.
//!
//! Compaction: when superseded records dominate (at open), or a stream's ranges that later
//! checkpoints superseded do (after a commit), the writer rewrites the ledger (under its lock)
//! as one `{"snapshot": ...}` line (schemas, retained files, live files that no unit's latest
//! record lists) followed by each unit's latest record, with only its live files, no removals
//! and no superseded ranges. The new file is written under a temporary name, fsynced, checked by replaying it,
//! renamed over the ledger and the directory fsynced: at every instant the ledger on disk is
//! either the old or the new one, which replay to the same state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_core::error::SinkError;
use sluice_core::sink::{KeyRange, KeyStarts, KeyValues, record_range};
use sluice_core::source::SourceUnit;

use crate::schema::Column;

pub use crate::layout::LEDGER_DIR;

const LEDGER_FILE: &str = "ledger.jsonl";
/// Where a compaction writes the new ledger before renaming it into place.
const COMPACT_TMP: &str = ".ledger.jsonl.compact";

/// Compact on open once more records than this are superseded, and more than are current (and,
/// times [`STRIPPED_PER_RECORD`], after a commit once that many stream ranges are superseded).
pub(crate) const COMPACT_MIN_SUPERSEDED: u64 = 1000;
/// Superseded key ranges that weigh as much as a superseded record (a range is about 40 bytes
/// of a line, a record about 4 KB), for [`Ledger::compact_if_stripped`].
pub(crate) const STRIPPED_PER_RECORD: u64 = 100;

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
    /// Rows the unit read from its source, when the writer was told (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_in: Option<u64>,
    /// Rows the unit set aside in `_rejects` (source and step rejects), when told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<u64>,
    /// Some of the unit's rows are in groups that later units output (it may write none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
    pub bytes: u64,
    /// Milliseconds since the epoch.
    pub committed_at_ms: u64,
    /// Keyed state the unit left for its stateful steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<StateRecord>,
    /// Until when (milliseconds since the epoch) the files in `removed` stay on disk for readers
    /// of older catalog snapshots. Absent: they may be deleted at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until_ms: Option<u64>,
    /// The unit's source file is gone and this record removed its outputs
    /// (`on_source_deleted: delete`): the unit is no longer in the lake.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The high-water mark an incremental source reached with this unit: the source's mark is
    /// the one of its latest record that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water: Option<String>,
    /// The lineage digest of the run that wrote the unit (its pipeline definition and plugins):
    /// a later run with another digest reports the unit stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
    /// Files this commit added that hold other units' rows: a compacted file rewritten without
    /// this unit's segment (see [`Compaction`]). They are not the unit's own files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<SharedFile>,
    /// The ledger's commit sequence number (one more than any line before it; absent in older
    /// ledgers): a follower such as a Delta log records how far it has followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// A run of consecutive rows in a compacted file that one unit wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    pub unit_id: String,
    pub rows: u64,
}

/// A file holding several units' rows, one segment each, in order (`sluice lake compact`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedFile {
    pub file: String,
    pub rows: u64,
    pub segments: Vec<Segment>,
}

/// A compaction: `files` replace `removed` (the same rows, in the same order per unit) in one
/// ledger line, `{"compact": ...}`. Removed files are retained like replaced ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Compaction {
    pub dataset: String,
    pub files: Vec<SharedFile>,
    pub removed: Vec<String>,
    pub retain_until_ms: u64,
    pub committed_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct CompactionLine {
    compact: Compaction,
}

/// One stateful step's record of a unit: the key ranges it fed the step, and where the tails
/// (each key's last input rows, an Arrow IPC file under `_sluice/state/`) are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateRecord {
    pub step: String,
    pub lookback: u64,
    /// The span the step declared, when any (absent in older records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<i64>,
    pub ranges: Vec<KeyRange>,
    /// The tails file, relative to the lake root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tails: Option<String>,
}

/// Where a key's committed units start, per (dataset, step, key): (start, unit id) -> whether
/// the unit's range came in arrival order ([`KeyRange::arrival`]).
pub(crate) type KeyIndex = HashMap<(String, String, KeyValues), KeyStarts>;

/// A file readers may see.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFile {
    pub dataset: String,
    /// Rows in the file, when the ledger knows (records before `file_rows` existed do not).
    pub rows: Option<u64>,
    /// The unit whose commit wrote the file (empty for a compacted file).
    pub unit_id: String,
    /// A compacted file's units, in row order (empty for a unit's own file).
    pub segments: Vec<Segment>,
}

impl LiveFile {
    /// Whether the file holds rows of `unit_id`.
    pub fn holds(&self, unit_id: &str) -> bool {
        self.unit_id == unit_id || self.segments.iter().any(|s| s.unit_id == unit_id)
    }
}

/// A file a commit replaced or removed, kept on disk until its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedFile {
    pub dataset: String,
    /// When the commit that replaced it was made (milliseconds since the epoch).
    pub removed_at_ms: u64,
    /// When it may be deleted.
    pub retain_until_ms: u64,
}

/// The first line of a compacted ledger: the state that the records after it do not carry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Snapshot {
    compacted_at_ms: u64,
    /// Ledger lines this snapshot replaced.
    records_before: u64,
    #[serde(default)]
    schemas: BTreeMap<String, Vec<Column>>,
    /// Live files that no unit's latest record lists (e.g. a unit's output in a partition its
    /// later commits no longer touch).
    #[serde(default)]
    live: Vec<SnapshotFile>,
    #[serde(default)]
    retained: Vec<SnapshotRetained>,
    /// The sequence number and the last data change's (not a compaction's) when rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_seq: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SnapshotFile {
    file: String,
    dataset: String,
    unit_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SnapshotRetained {
    file: String,
    #[serde(flatten)]
    retained: RetainedFile,
}

#[derive(Serialize, Deserialize)]
struct SnapshotLine {
    snapshot: Snapshot,
}

pub(crate) struct Ledger {
    path: PathBuf,
    /// `None` when opened read-only (status, verify).
    file: Option<File>,
    /// Latest record per (dataset, unit id): the fingerprints re-runs compare against. Units
    /// whose latest record is `deleted` are not here.
    pub(crate) records: HashMap<(String, String), LedgerRecord>,
    /// Live files, relative to the lake root.
    pub(crate) live: BTreeMap<String, LiveFile>,
    /// Each dataset's schema (data columns, without partition columns).
    pub(crate) schemas: HashMap<String, Vec<Column>>,
    /// Files that are no longer live but may still be on disk, relative to the lake root.
    pub(crate) retained: BTreeMap<String, RetainedFile>,
    /// Records appended by this process.
    pub(crate) appended: u64,
    /// Keyed-state ranges of the latest records.
    pub(crate) keys: KeyIndex,
    /// Arrival ranges a later checkpoint of their key superseded, taken out of their records
    /// since the ledger was read (the file still holds them until it is compacted), and the
    /// units whose records lost some.
    stripped: u64,
    stripped_units: HashSet<(String, String)>,
    /// [`Self::compact_if_stripped`] counts the ranges left only once `stripped` passes this.
    stripped_checked: u64,
    /// The warning that unreadable lines keep the ledger from being compacted was given.
    warned_unreadable: bool,
    /// Tails files no record names any more (every key they held has a later checkpoint):
    /// deleted once the ledger is compacted, and swept at open.
    orphaned_tails: Vec<String>,
    /// Records replayed (or appended since), and lines that did not parse.
    lines: u64,
    unreadable: u64,
    /// The 0-based number of the file's next line (blank lines count).
    next_line: u64,
    /// The line (0-based) of each unit's latest record, for compaction.
    latest_line: HashMap<(String, String), u64>,
    /// The high-water mark of each (dataset, source): the latest record's that has one.
    pub(crate) marks: HashMap<(String, String), String>,
    /// Bytes of the file replayed so far (whole lines only), and the file's inode: another
    /// process's appends are read from here ([`Ledger::catch_up`]); a rewritten ledger (new
    /// inode) is replayed again.
    offset: u64,
    ino: u64,
    /// `_sluice/commit.lock`, held (flock) around every append by any process: the writer's
    /// commits, `sluice lake compact`, `sluice lake vacuum`. `None` when read-only.
    commit_lock: Option<File>,
    /// Live files other processes added and removed, as [`Ledger::catch_up`] found them; the
    /// writer drains them into its stats.
    pub(crate) foreign: Vec<(Vec<String>, Vec<String>)>,
    /// The highest commit sequence number replayed or appended, and that of the last line that
    /// changed data (a unit's record; not a compaction).
    pub(crate) seq: u64,
    pub(crate) data_seq: u64,
}

/// The file every process locks around ledger appends.
pub(crate) const COMMIT_LOCK: &str = "commit.lock";

fn inode(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0
    }
}

/// A lock file, opened (created if missing) for `flock`.
pub(crate) fn open_lock(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| SinkError::io(path, e))
}

impl Ledger {
    pub(crate) fn open(lake: &Path) -> Result<Self, SinkError> {
        let dir = lake.join(LEDGER_DIR);
        let path = dir.join(LEDGER_FILE);
        let lock_path = dir.join(COMMIT_LOCK);
        let lock = open_lock(&lock_path)?;
        lock.lock().map_err(|e| SinkError::io(&lock_path, e))?;
        let opened = (|| {
            // A compaction that crashed before its rename left its temporary file: the ledger
            // itself is intact.
            let tmp = dir.join(COMPACT_TMP);
            if tmp.exists() {
                std::fs::remove_file(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
            }
            truncate_torn_tail(&path)?;
            let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| SinkError::io(&path, e))?;
            Self::load(path.clone(), Some(file))
        })();
        let _ = lock.unlock();
        let mut ledger = opened?;
        ledger.commit_lock = Some(lock);
        Ok(ledger)
    }

    /// Run `f` holding the commit lock, after reading what other processes appended (and
    /// cutting a line a crashed process left half-written). Every append goes through here.
    pub(crate) fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, SinkError>) -> Result<T, SinkError> {
        let lock = self.commit_lock.take().expect("appends only to a ledger opened for writing");
        if let Err(e) = lock.lock() {
            self.commit_lock = Some(lock);
            return Err(SinkError::io(&self.path, e));
        }
        let out = self.catch_up().and_then(|_| {
            // Under the lock nobody is writing: bytes after the last whole line are torn.
            let len = std::fs::metadata(&self.path).map_err(|e| SinkError::io(&self.path, e))?.len();
            if len > self.offset {
                let f = OpenOptions::new().write(true).open(&self.path).map_err(|e| SinkError::io(&self.path, e))?;
                f.set_len(self.offset).and_then(|_| f.sync_all()).map_err(|e| SinkError::io(&self.path, e))?;
                tracing::warn!(ledger = %self.path.display(), "cut a torn final line (a process died mid-append)");
            }
            f(self)
        });
        let _ = lock.unlock();
        self.commit_lock = Some(lock);
        out
    }

    /// Replay what other processes appended since this process last read the ledger, or the
    /// whole ledger again when it was rewritten. Returns whether anything changed. Needs no
    /// lock: only whole lines are read, and a rewrite is a rename.
    pub(crate) fn catch_up(&mut self) -> Result<bool, SinkError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.file.is_none() => return Ok(false),
            Err(e) => return Err(SinkError::io(&self.path, e)),
        };
        let before: Vec<String> = if inode(&meta) != self.ino || meta.len() > self.offset {
            self.live.keys().cloned().collect()
        } else {
            return Ok(false);
        };
        if inode(&meta) != self.ino || meta.len() < self.offset {
            let file = match self.file {
                Some(_) => {
                    Some(OpenOptions::new().append(true).open(&self.path).map_err(|e| SinkError::io(&self.path, e))?)
                }
                None => None,
            };
            let fresh = Ledger::load(self.path.clone(), file)?;
            let (appended, lock, foreign) = (self.appended, self.commit_lock.take(), std::mem::take(&mut self.foreign));
            *self = Ledger { appended: appended + 1, commit_lock: lock, foreign, ..fresh };
        } else {
            let mut f = File::open(&self.path).map_err(|e| SinkError::io(&self.path, e))?;
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(self.offset)).map_err(|e| SinkError::io(&self.path, e))?;
            let n = self.replay(BufReader::new(f))?;
            self.appended += n;
            if n == 0 {
                return Ok(false);
            }
        }
        let after: HashSet<&String> = self.live.keys().collect();
        let before_set: HashSet<&String> = before.iter().collect();
        let added: Vec<String> = after.difference(&before_set).map(|f| (*f).clone()).collect();
        let removed: Vec<String> = before_set.difference(&after).map(|f| (*f).clone()).collect();
        self.foreign.push((added, removed));
        Ok(true)
    }

    /// Replay the ledger without taking the writer lock or changing anything (a torn final line
    /// is skipped, as the next writer will cut it).
    pub(crate) fn read_only(lake: &Path) -> Result<Self, SinkError> {
        let path = lake.join(LEDGER_DIR).join(LEDGER_FILE);
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
            retained: BTreeMap::new(),
            appended: 0,
            keys: HashMap::new(),
            stripped: 0,
            stripped_units: HashSet::new(),
            stripped_checked: 0,
            warned_unreadable: false,
            orphaned_tails: Vec::new(),
            lines: 0,
            unreadable: 0,
            next_line: 0,
            latest_line: HashMap::new(),
            marks: HashMap::new(),
            offset: 0,
            ino: 0,
            commit_lock: None,
            foreign: Vec::new(),
            seq: 0,
            data_seq: 0,
        };
        let f = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
        ledger.ino = inode(&f.metadata().map_err(|e| SinkError::io(&path, e))?);
        ledger.replay(BufReader::new(f))?;
        Ok(ledger)
    }

    /// Apply the whole lines `reader` holds from `self.offset` on; a final line without its
    /// newline (being written, or torn) is left for later. Returns the lines applied.
    fn replay(&mut self, mut reader: impl BufRead) -> Result<u64, SinkError> {
        let mut applied = 0;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(|e| SinkError::io(&self.path, e))?;
            if n == 0 || buf.last() != Some(&b'\n') {
                return Ok(applied);
            }
            self.offset += n as u64;
            let i = self.next_line;
            self.next_line += 1;
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            self.lines += 1;
            applied += 1;
            let parsed = if line.starts_with("{\"snapshot\"") {
                serde_json::from_str::<SnapshotLine>(line).map(|s| self.apply_snapshot(s.snapshot))
            } else if line.starts_with("{\"compact\"") {
                serde_json::from_str::<CompactionLine>(line).map(|c| self.apply_compaction(c.compact))
            } else {
                serde_json::from_str::<LedgerRecord>(line).map(|r| self.apply(r, i))
            };
            if let Err(e) = parsed {
                self.unreadable += 1;
                tracing::warn!(ledger = %self.path.display(), line = i + 1, "ignoring unreadable ledger line: {e}");
            }
        }
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

    fn apply(&mut self, r: LedgerRecord, line: u64) {
        self.seq = r.seq.unwrap_or(self.seq + 1).max(self.seq);
        // A record that changes the live files (not a touch that only records a new mtime).
        let changes = r.deleted
            || !r.shared.is_empty()
            || r.files.iter().any(|f| !self.live.contains_key(f))
            || self.removals_of(&r).iter().any(|f| self.live.contains_key(f));
        if changes {
            self.data_seq = self.seq;
        }
        let retained =
            RetainedFile { dataset: r.dataset.clone(), removed_at_ms: r.committed_at_ms, retain_until_ms: 0 };
        let retained = RetainedFile { retain_until_ms: r.retain_until_ms.unwrap_or(r.committed_at_ms), ..retained };
        for f in self.removals_of(&r) {
            if let Some(live) = self.live.remove(&f) {
                self.retained.insert(f, RetainedFile { dataset: live.dataset, ..retained.clone() });
            }
        }
        for (i, f) in r.files.iter().enumerate() {
            self.retained.remove(f);
            self.live.insert(
                f.clone(),
                LiveFile {
                    dataset: r.dataset.clone(),
                    rows: r.file_rows.get(i).copied(),
                    unit_id: r.unit_id.clone(),
                    segments: Vec::new(),
                },
            );
        }
        for sf in &r.shared {
            self.retained.remove(&sf.file);
            self.live.insert(
                sf.file.clone(),
                LiveFile {
                    dataset: r.dataset.clone(),
                    rows: Some(sf.rows),
                    unit_id: String::new(),
                    segments: sf.segments.clone(),
                },
            );
        }
        if let Some(schema) = &r.schema {
            self.schemas.insert(r.dataset.clone(), schema.clone());
        }
        if let Some(mark) = r.high_water.as_ref().filter(|_| !r.deleted) {
            self.marks.insert((r.dataset.clone(), r.unit.source.clone()), mark.clone());
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
        if !r.deleted {
            // Per (unit, step): the keys whose arrival ranges a checkpoint of this record supersedes
            // (its stream's own: another stream's state is its own).
            let mut superseded: HashMap<(String, String), HashSet<KeyValues>> = HashMap::new();
            let records = &self.records;
            let same_stream = |unit: &str| {
                records.get(&(r.dataset.clone(), unit.to_string())).is_some_and(|o| o.unit.source == r.unit.source)
            };
            for st in &r.state {
                for range in &st.ranges {
                    let starts = self.keys.entry((r.dataset.clone(), st.step.clone(), range.key.clone())).or_default();
                    for unit in record_range(starts, &r.unit_id, range, same_stream) {
                        superseded.entry((unit, st.step.clone())).or_default().insert(range.key.clone());
                    }
                }
            }
            for ((unit, step), keys) in superseded {
                self.strip(&r.dataset, &unit, &step, &keys);
            }
        }
        let key = (r.dataset.clone(), r.unit_id.clone());
        if r.deleted {
            self.records.remove(&key);
            self.latest_line.remove(&key);
        } else {
            self.records.insert(key.clone(), r);
            self.latest_line.insert(key, line);
        }
    }

    /// Take the arrival ranges of `keys` out of a unit's record for `step` (a later checkpoint
    /// of each key holds them); a step record left with no range goes, and its tails file with it.
    fn strip(&mut self, dataset: &str, unit_id: &str, step: &str, keys: &HashSet<KeyValues>) {
        let id = (dataset.to_string(), unit_id.to_string());
        let Some(record) = self.records.get_mut(&id) else { return };
        let before: usize = record.state.iter().map(|st| st.ranges.len()).sum();
        for st in record.state.iter_mut().filter(|st| st.step == step) {
            st.ranges.retain(|g| !(g.arrival && keys.contains(&g.key)));
        }
        let orphaned = &mut self.orphaned_tails;
        record.state.retain(|st| {
            let keep = !st.ranges.is_empty();
            if !keep {
                orphaned.extend(st.tails.clone());
            }
            keep
        });
        let after: usize = record.state.iter().map(|st| st.ranges.len()).sum();
        if after < before {
            self.stripped += (before - after) as u64;
            self.stripped_units.insert(id);
        }
    }

    fn apply_compaction(&mut self, c: Compaction) {
        self.seq = c.seq.unwrap_or(self.seq + 1).max(self.seq);
        for f in &c.removed {
            if let Some(live) = self.live.remove(f) {
                self.retained.insert(
                    f.clone(),
                    RetainedFile {
                        dataset: live.dataset,
                        removed_at_ms: c.committed_at_ms,
                        retain_until_ms: c.retain_until_ms,
                    },
                );
            }
        }
        for sf in c.files {
            self.retained.remove(&sf.file);
            self.live.insert(
                sf.file,
                LiveFile {
                    dataset: c.dataset.clone(),
                    rows: Some(sf.rows),
                    unit_id: String::new(),
                    segments: sf.segments,
                },
            );
        }
    }

    fn apply_snapshot(&mut self, s: Snapshot) {
        self.seq = self.seq.max(s.seq.unwrap_or(0));
        self.data_seq = self.data_seq.max(s.data_seq.unwrap_or(0));
        self.schemas.extend(s.schemas);
        for f in s.live {
            self.retained.remove(&f.file);
            self.live.insert(
                f.file,
                LiveFile { dataset: f.dataset, rows: f.rows, unit_id: f.unit_id, segments: f.segments },
            );
        }
        for r in s.retained {
            if !self.live.contains_key(&r.file) {
                self.retained.insert(r.file, r.retained);
            }
        }
    }

    /// Durably append a record, then apply it (under the commit lock).
    pub(crate) fn append(&mut self, record: LedgerRecord) -> Result<(), SinkError> {
        self.append_checked(record, |_, _| Ok(()))
    }

    /// Append a record after `check` saw the ledger as of now (other processes' appends
    /// included) and adjusted the record, all under the commit lock.
    pub(crate) fn append_checked(
        &mut self,
        mut record: LedgerRecord,
        check: impl FnOnce(&Ledger, &mut LedgerRecord) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        self.locked(|l| {
            check(l, &mut record)?;
            record.seq = Some(l.seq + 1);
            l.write_line(&record)?;
            l.apply(record, l.next_line - 1);
            Ok(())
        })
    }

    /// Append a compaction; the caller holds the commit lock ([`Ledger::locked`]).
    pub(crate) fn append_compaction(&mut self, mut c: Compaction) -> Result<(), SinkError> {
        c.seq = Some(self.seq + 1);
        self.write_line(&CompactionLine { compact: c.clone() })?;
        self.apply_compaction(c);
        Ok(())
    }

    fn write_line(&mut self, value: &impl Serialize) -> Result<(), SinkError> {
        let mut line = serde_json::to_string(value)
            .map_err(|e| SinkError::Ledger { path: self.path.display().to_string(), message: e.to_string() })?;
        line.push('\n');
        let file = self.file.as_mut().expect("appends only to a ledger opened for writing");
        file.write_all(line.as_bytes()).map_err(|e| SinkError::io(&self.path, e))?;
        file.sync_data().map_err(|e| SinkError::io(&self.path, e))?;
        self.offset += line.len() as u64;
        self.next_line += 1;
        self.lines += 1;
        self.appended += 1;
        Ok(())
    }

    /// What a follower of `dataset` is told: the sequence numbers and the live files (stored
    /// paths under the lake `root`).
    pub(crate) fn followed_state(&self, root: &Path, dataset: &str, partition_by: &[String]) -> crate::FollowedState {
        let prefix = format!("{dataset}/");
        crate::FollowedState {
            seq: self.seq,
            data_seq: self.data_seq,
            files: self
                .live
                .iter()
                .filter(|(f, _)| f.starts_with(&prefix))
                .map(|(f, l)| (crate::files::stored(root, f), l.rows))
                .collect(),
            partition_by: partition_by.to_vec(),
        }
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

    /// Take out the retained files of `dataset` whose time is up: their recorded deadline, or
    /// `retention_ms` after their removal, whichever comes first (so lowering `retain_replaced`
    /// takes effect at once). The caller deletes them.
    pub(crate) fn take_expired(&mut self, dataset: &str, now_ms: u64, retention_ms: u64) -> Vec<String> {
        let due: Vec<String> = self
            .retained
            .iter()
            .filter(|(_, r)| {
                r.dataset == dataset && r.retain_until_ms.min(r.removed_at_ms.saturating_add(retention_ms)) <= now_ms
            })
            .map(|(f, _)| f.clone())
            .collect();
        for f in &due {
            self.retained.remove(f);
        }
        due
    }

    /// Records that no longer describe the state (superseded by a later record of their unit).
    pub(crate) fn superseded(&self) -> u64 {
        self.lines.saturating_sub(self.records.len() as u64)
    }

    /// Compact when superseded records dominate (more than `min_superseded`, and more than the
    /// current ones), or superseded key ranges do ([`Self::compact_if_stripped`]). Returns
    /// whether it did.
    pub(crate) fn compact_if_worthwhile(&mut self, lake: &Path, min_superseded: u64) -> Result<bool, SinkError> {
        let superseded = self.superseded();
        if superseded <= min_superseded || superseded <= self.records.len() as u64 {
            return self.compact_if_stripped(lake, min_superseded * STRIPPED_PER_RECORD);
        }
        self.compact_unless_unreadable(lake)
    }

    /// Compact when the arrival ranges later checkpoints superseded (a stream's keys, unit after
    /// unit) are more than `min_stripped` and more than the ranges left: what keeps a stream's
    /// ledger, and its tails files, from growing with every unit. Returns whether it did.
    pub(crate) fn compact_if_stripped(&mut self, lake: &Path, min_stripped: u64) -> Result<bool, SinkError> {
        if self.stripped <= min_stripped.max(self.stripped_checked) {
            return Ok(false);
        }
        let left: u64 = self.records.values().flat_map(|r| &r.state).map(|st| st.ranges.len() as u64).sum();
        if self.stripped <= left {
            // Not before the stripped ranges outnumber those left now (counted once, not at
            // every commit).
            self.stripped_checked = left;
            return Ok(false);
        }
        self.compact_unless_unreadable(lake)
    }

    fn compact_unless_unreadable(&mut self, lake: &Path) -> Result<bool, SinkError> {
        if self.unreadable > 0 {
            if !self.warned_unreadable {
                tracing::warn!(ledger = %self.path.display(), unreadable = self.unreadable,
                    "not compacting the ledger: it has lines this version cannot read, which a rewrite would lose");
            }
            self.warned_unreadable = true;
            return Ok(false);
        }
        self.locked(|l| l.compact(lake, None))?;
        Ok(true)
    }

    /// Rewrite the ledger as a snapshot (see the module docs). `crash_after` is a test hook that
    /// stops at a step, as a crash would: 1 after writing the temporary file, 2 after fsyncing
    /// it, 3 after the rename.
    pub(crate) fn compact(&mut self, lake: &Path, crash_after: Option<u8>) -> Result<(), SinkError> {
        let dir = self.path.parent().expect("the ledger lives in a directory").to_path_buf();
        let tmp = dir.join(COMPACT_TMP);
        let before = self.lines;
        let text = self.snapshot_text(lake)?;
        let mut f = File::create(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
        f.write_all(text.as_bytes()).map_err(|e| SinkError::io(&tmp, e))?;
        if crash_after == Some(1) {
            return Ok(());
        }
        f.sync_all().map_err(|e| SinkError::io(&tmp, e))?;
        drop(f);
        if crash_after == Some(2) {
            return Ok(());
        }
        // Check the new ledger by replaying it before it replaces the old one.
        let replayed = Ledger::load(tmp.clone(), None)?;
        if let Some(difference) = self.differs_from(&replayed) {
            let _ = std::fs::remove_file(&tmp);
            return Err(SinkError::Ledger {
                path: self.path.display().to_string(),
                message: format!("compaction check failed, ledger left as it was: {difference}"),
            });
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| SinkError::io(&self.path, e))?;
        if crash_after == Some(3) {
            return Ok(());
        }
        File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| SinkError::io(&dir, e))?;
        let file = OpenOptions::new().append(true).open(&self.path).map_err(|e| SinkError::io(&self.path, e))?;
        let (appended, lock) = (self.appended, self.commit_lock.take());
        let orphaned = std::mem::take(&mut self.orphaned_tails);
        // Other processes' changes read but not yet drained into the writer's stats stay.
        let foreign = std::mem::take(&mut self.foreign);
        *self = Ledger { path: self.path.clone(), file: Some(file), appended, commit_lock: lock, foreign, ..replayed };
        // No line names them now (a crash before this leaves them to the sweep at open).
        for t in &orphaned {
            let path = lake.join(t);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), "could not remove a superseded tails file: {e}");
            }
        }
        tracing::info!(ledger = %self.path.display(), before, after = self.lines, tails = orphaned.len(),
            "compacted the ledger");
        Ok(())
    }

    /// The compacted ledger's text: the snapshot line, then each unit's latest record as it was
    /// written (fields this version does not know are kept) with only its live files, no
    /// removals and no schema, and for a record that lost stream ranges to later checkpoints,
    /// its `state` as it stands (written anew: unknown fields inside it are not kept).
    fn snapshot_text(&self, lake: &Path) -> Result<String, SinkError> {
        let ledger_err = |message: String| SinkError::Ledger { path: self.path.display().to_string(), message };
        let listed: HashSet<&String> =
            self.records.values().flat_map(|r| r.files.iter()).filter(|f| self.live.contains_key(*f)).collect();
        let snapshot = Snapshot {
            compacted_at_ms: crate::layout::now_ms(),
            records_before: self.lines,
            schemas: self.schemas.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            live: self
                .live
                .iter()
                .filter(|(f, _)| !listed.contains(f))
                .map(|(f, l)| SnapshotFile {
                    file: f.clone(),
                    dataset: l.dataset.clone(),
                    unit_id: l.unit_id.clone(),
                    rows: l.rows,
                    segments: l.segments.clone(),
                })
                .collect(),
            // Files already deleted need no record.
            retained: self
                .retained
                .iter()
                .filter(|(f, _)| crate::files::stored(lake, f).exists())
                .map(|(f, r)| SnapshotRetained { file: f.clone(), retained: r.clone() })
                .collect(),
            seq: Some(self.seq),
            data_seq: Some(self.data_seq),
        };
        let mut out = serde_json::to_string(&SnapshotLine { snapshot }).map_err(|e| ledger_err(e.to_string()))?;
        out.push('\n');
        let keep: HashMap<u64, &(String, String)> = self.latest_line.iter().map(|(k, &n)| (n, k)).collect();
        let f = File::open(&self.path).map_err(|e| SinkError::io(&self.path, e))?;
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| SinkError::io(&self.path, e))?;
            let Some(key) = keep.get(&(i as u64)) else { continue };
            let record = &self.records[*key];
            let mut value: serde_json::Value =
                serde_json::from_str(&line).map_err(|e| ledger_err(format!("line {}: {e}", i + 1)))?;
            let obj = value.as_object_mut().ok_or_else(|| ledger_err(format!("line {}: not an object", i + 1)))?;
            let (mut files, mut rows) = (Vec::new(), Vec::new());
            for (j, f) in record.files.iter().enumerate() {
                if self.live.contains_key(f) {
                    files.push(f.clone());
                    rows.extend(record.file_rows.get(j).copied());
                }
            }
            obj.insert("files".into(), serde_json::json!(files));
            if rows.len() == files.len() && !files.is_empty() {
                obj.insert("file_rows".into(), serde_json::json!(rows));
            } else {
                obj.remove("file_rows");
            }
            obj.insert("removed".into(), serde_json::json!([]));
            // Without the ranges later checkpoints superseded.
            if self.stripped_units.contains(*key) {
                if record.state.is_empty() {
                    obj.remove("state");
                } else {
                    obj.insert(
                        "state".into(),
                        serde_json::to_value(&record.state).map_err(|e| ledger_err(e.to_string()))?,
                    );
                }
            }
            for gone in ["schema", "retain_until_ms", "deleted", "shared"] {
                obj.remove(gone);
            }
            out.push_str(&serde_json::to_string(&value).map_err(|e| ledger_err(e.to_string()))?);
            out.push('\n');
        }
        Ok(out)
    }

    /// How another replay differs from this one (for the compaction check), if it does.
    fn differs_from(&self, other: &Ledger) -> Option<String> {
        if self.live != other.live {
            return Some("live files differ".into());
        }
        let schemas = |l: &Ledger| l.schemas.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>();
        if schemas(self) != schemas(other) {
            return Some("schemas differ".into());
        }
        if self.records.len() != other.records.len() {
            return Some("unit records differ".into());
        }
        for (k, r) in &self.records {
            if other.records.get(k).map(|o| &o.unit) != Some(&r.unit) {
                return Some(format!("the record of unit {} differs", r.unit.display_name()));
            }
            if other.records.get(k).map(|o| &o.state) != Some(&r.state) {
                return Some(format!("the keyed state of unit {} differs", r.unit.display_name()));
            }
        }
        if other.retained.iter().any(|(f, r)| self.retained.get(f) != Some(r)) {
            return Some("retained files differ".into());
        }
        None
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
                location: unit.into(),
                locator: unit.into(),
                member: None,
                size: 1,
                version: 1,
                content_hash: None,
            },
            files: files.iter().map(|s| s.to_string()).collect(),
            file_rows: vec![1; files.len()],
            removed: removed.map(|r| r.iter().map(|s| s.to_string()).collect()),
            schema: None,
            rows: files.len() as u64,
            rows_in: None,
            rows_rejected: None,
            continued: false,
            bytes: 0,
            committed_at_ms: 0,
            state: Vec::new(),
            retain_until_ms: None,
            deleted: false,
            high_water: None,
            lineage: None,
            shared: Vec::new(),
            seq: None,
        }
    }

    fn lake() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(LEDGER_DIR)).unwrap();
        tmp
    }

    #[test]
    fn replay_applies_additions_and_removals_in_order() {
        let tmp = lake();
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
        // Replaced files are retained, due at once for records without a deadline.
        let retained: Vec<&String> = l.retained.keys().collect();
        assert_eq!(retained, ["ds/p=1/a1", "ds/p=2/a2"]);
        assert_eq!(l.retained["ds/p=1/a1"].retain_until_ms, 0);
    }

    #[test]
    fn a_sources_high_water_mark_is_its_latest_records_and_survives_compaction() {
        let tmp = lake();
        let marked = |unit: &str, mark: Option<&str>| LedgerRecord {
            high_water: mark.map(str::to_string),
            ..rec(unit, &[&format!("ds/{unit}")], None)
        };
        {
            let mut l = Ledger::open(tmp.path()).unwrap();
            l.append(marked("r0", Some("100"))).unwrap();
            l.append(marked("r1", Some("200"))).unwrap();
            // A record without a mark (a re-run of a unit of a source that keeps none) keeps it.
            l.append(marked("r0", None)).unwrap();
            assert_eq!(l.marks[&("ds".to_string(), "s".to_string())], "200");
        }
        let mut l = Ledger::open(tmp.path()).unwrap();
        assert_eq!(l.marks[&("ds".to_string(), "s".to_string())], "200");
        l.compact(tmp.path(), None).unwrap();
        let l = Ledger::open(tmp.path()).unwrap();
        assert_eq!(l.marks[&("ds".to_string(), "s".to_string())], "200");
    }

    #[test]
    fn retained_files_expire_at_their_deadline_or_sooner_when_retention_is_lowered() {
        let tmp = lake();
        let mut l = Ledger::open(tmp.path()).unwrap();
        l.append(rec("a", &["ds/a1"], None)).unwrap();
        let mut b = rec("a", &["ds/a2"], Some(&["ds/a1"]));
        (b.committed_at_ms, b.retain_until_ms) = (1_000, Some(61_000));
        l.append(b).unwrap();
        assert!(l.take_expired("ds", 60_000, 60_000).is_empty());
        assert!(l.take_expired("other", 70_000, 0).is_empty(), "another dataset's files are its own business");
        assert_eq!(l.take_expired("ds", 2_000, 500), ["ds/a1"], "a lower retention applies at once");
        assert!(l.retained.is_empty());
        // A deleted unit's files are retained and the unit is forgotten.
        let mut d = rec("a", &[], Some(&["ds/a2"]));
        (d.deleted, d.committed_at_ms, d.retain_until_ms) = (true, 5_000, Some(9_000));
        l.append(d).unwrap();
        drop(l);
        let l = Ledger::open(tmp.path()).unwrap();
        assert!(l.records.is_empty() && l.live.is_empty());
        assert_eq!(
            l.retained["ds/a2"],
            RetainedFile { dataset: "ds".into(), removed_at_ms: 5_000, retain_until_ms: 9_000 }
        );
    }

    /// A ledger with superseded records, a live file no latest record lists, a retained file,
    /// a schema change, a deleted unit, and a field this version does not know.
    fn busy_ledger(root: &Path) -> Ledger {
        let mut l = Ledger::open(root).unwrap();
        let mut first = rec("a", &["ds/p=1/a1", "ds/p=2/a2"], Some(&[]));
        first.schema = Some(vec![Column { name: "x".into(), data_type: "Int64".into() }]);
        l.append(first).unwrap();
        for i in 0..30i64 {
            let mut r = rec("b", &[&format!("ds/p=3/b{i}")], None);
            r.removed = Some(if i == 0 { vec![] } else { vec![format!("ds/p=3/b{}", i - 1)] });
            r.unit.version = i;
            (r.committed_at_ms, r.retain_until_ms) = (i as u64, Some(u64::MAX));
            l.append(r).unwrap();
        }
        // `a` changes: partition 1 only, so a2 stays live though a's latest record omits it.
        let mut a = rec("a", &["ds/p=1/a3"], Some(&["ds/p=1/a1"]));
        a.schema = Some(vec![Column { name: "x".into(), data_type: "Float64".into() }]);
        l.append(a).unwrap();
        l.append(rec("c", &["ds/p=4/c1"], Some(&[]))).unwrap();
        let mut gone = rec("c", &[], Some(&["ds/p=4/c1"]));
        gone.deleted = true;
        l.append(gone).unwrap();
        drop(l);
        // A field from a newer version, on the latest record of `b`.
        let path = root.join(LEDGER_DIR).join(LEDGER_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[30] = lines[30].replacen('{', "{\"future\":{\"k\":[1,2]},", 1);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        // Retained files on disk (one of them deleted already).
        for f in ["ds/p=3/b28", "ds/p=3/b27", "ds/p=1/a1"] {
            let stored = crate::files::stored(root, f);
            std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
            std::fs::write(stored, b"x").unwrap();
        }
        Ledger::open(root).unwrap()
    }

    #[test]
    fn compaction_keeps_the_state_and_unknown_fields() {
        let tmp = lake();
        let root = tmp.path();
        let mut l = busy_ledger(root);
        assert_eq!((l.lines, l.records.len(), l.superseded()), (34, 2, 32));
        assert!(!l.compact_if_worthwhile(root, 100).unwrap(), "below the threshold");
        assert!(l.compact_if_worthwhile(root, 10).unwrap());
        let text = std::fs::read_to_string(root.join(LEDGER_DIR).join(LEDGER_FILE)).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("{\"snapshot\":"), "{text}");
        assert!(text.contains("\"future\":{\"k\":[1,2]}"), "unknown fields survive: {text}");
        let again = Ledger::open(root).unwrap();
        let live: Vec<&String> = again.live.keys().collect();
        assert_eq!(live, ["ds/p=1/a3", "ds/p=2/a2", "ds/p=3/b29"]);
        assert_eq!(again.live["ds/p=2/a2"].unit_id, "a");
        assert_eq!(again.schemas["ds"][0].data_type, "Float64");
        let retained: Vec<&String> = again.retained.keys().collect();
        assert_eq!(retained, ["ds/p=1/a1", "ds/p=3/b27", "ds/p=3/b28"], "only files still on disk");
        assert_eq!(again.records[&("ds".into(), "b".into())].unit.version, 29);
        assert!(!again.records.contains_key(&("ds".into(), "c".into())));
        // Appends after a compaction land in the new file and replay.
        drop(again);
        l.append(rec("d", &["ds/p=5/d1"], Some(&[]))).unwrap();
        let after = Ledger::open(root).unwrap();
        assert!(after.live.contains_key("ds/p=5/d1") && after.live.contains_key("ds/p=2/a2"));
        assert_eq!(after.superseded(), 1);
    }

    #[test]
    fn a_crash_at_any_step_of_a_compaction_leaves_an_equivalent_ledger() {
        for step in 1..=3u8 {
            let tmp = lake();
            let root = tmp.path();
            let mut l = busy_ledger(root);
            let (live, schemas) = (l.live.clone(), l.schemas.clone());
            l.compact(root, Some(step)).unwrap();
            drop(l);
            let tmp_file = root.join(LEDGER_DIR).join(COMPACT_TMP);
            assert_eq!(tmp_file.exists(), step < 3, "step {step}");
            let again = Ledger::open(root).unwrap();
            assert!(!tmp_file.exists(), "open removes a compaction's leftover");
            assert_eq!(again.live, live, "step {step}");
            assert_eq!(again.schemas, schemas, "step {step}");
            let lines = std::fs::read_to_string(root.join(LEDGER_DIR).join(LEDGER_FILE)).unwrap().lines().count();
            assert_eq!(lines, if step < 3 { 34 } else { 3 }, "step {step}");
        }
    }

    fn compaction(files: &[(&str, &[(&str, u64)])], removed: &[&str]) -> Compaction {
        Compaction {
            dataset: "ds".into(),
            files: files
                .iter()
                .map(|(f, segs)| SharedFile {
                    file: f.to_string(),
                    rows: segs.iter().map(|s| s.1).sum(),
                    segments: segs.iter().map(|(u, r)| Segment { unit_id: u.to_string(), rows: *r }).collect(),
                })
                .collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
            retain_until_ms: u64::MAX,
            committed_at_ms: 1,
            seq: None,
        }
    }

    #[test]
    fn another_process_appends_are_caught_up_and_a_torn_tail_is_cut_under_the_lock() {
        let tmp = lake();
        let root = tmp.path();
        let mut writer = Ledger::open(root).unwrap();
        writer.append(rec("a", &["ds/p=1/a1"], Some(&[]))).unwrap();
        writer.append(rec("b", &["ds/p=1/b1"], Some(&[]))).unwrap();
        // A compactor (another process: its own handle) packs both files.
        let mut compactor = Ledger::open(root).unwrap();
        compactor
            .locked(|l| {
                l.append_compaction(compaction(&[("ds/p=1/c1", &[("a", 1), ("b", 1)])], &["ds/p=1/a1", "ds/p=1/b1"]))
            })
            .unwrap();
        assert!(writer.catch_up().unwrap());
        assert_eq!(writer.live.keys().collect::<Vec<_>>(), ["ds/p=1/c1"]);
        assert!(writer.live["ds/p=1/c1"].holds("b"));
        let (added, removed) = writer.foreign.pop().unwrap();
        assert_eq!((added, removed.len()), (vec!["ds/p=1/c1".to_string()], 2));
        assert!(!writer.catch_up().unwrap(), "nothing new");
        // A half-written line (a process killed mid-append) is cut before the next append.
        let path = root.join(LEDGER_DIR).join(LEDGER_FILE);
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"unit_id\":\"x").unwrap();
        writer.append(rec("d", &["ds/p=2/d1"], Some(&[]))).unwrap();
        let replayed = Ledger::read_only(root).unwrap();
        assert_eq!(replayed.unreadable, 0);
        assert_eq!(replayed.live, writer.live);
        // The compactor, in turn, sees the writer's append.
        assert!(compactor.catch_up().unwrap());
        assert!(compactor.live.contains_key("ds/p=2/d1"));
    }

    #[test]
    fn compacted_files_and_their_segments_survive_a_ledger_rewrite() {
        let tmp = lake();
        let root = tmp.path();
        let mut l = busy_ledger(root);
        l.locked(|l| l.append_compaction(compaction(&[("ds/p=9/c1", &[("a", 3), ("b", 4)])], &["ds/p=2/a2"]))).unwrap();
        // A unit rewritten after compaction: the shared file without its segment.
        let mut b = rec("b", &["ds/p=3/b30"], Some(&["ds/p=3/b29", "ds/p=9/c1"]));
        b.shared = compaction(&[("ds/p=9/c2", &[("a", 3)])], &[]).files;
        l.append(b).unwrap();
        let (live, retained) = (l.live.clone(), l.retained.clone());
        assert_eq!(live["ds/p=9/c2"].segments, [Segment { unit_id: "a".into(), rows: 3 }]);
        assert!(!live.contains_key("ds/p=9/c1") && retained.contains_key("ds/p=9/c1"));
        l.locked(|l| l.compact(root, None)).unwrap();
        let again = Ledger::open(root).unwrap();
        assert_eq!(again.live, live);
        let text = std::fs::read_to_string(root.join(LEDGER_DIR).join(LEDGER_FILE)).unwrap();
        assert!(!text.contains("\"shared\""), "a rewrite keeps shared files in the snapshot only: {text}");
    }

    /// A record of a stream's unit: checkpoints for `keys` at step `st`, with a tails file.
    fn stream_rec(unit: &str, keys: &[&str], tails: &str) -> LedgerRecord {
        let mut r = rec(unit, &[&format!("ds/{unit}")], Some(&[]));
        r.state = vec![StateRecord {
            step: "st".into(),
            lookback: 1,
            span: None,
            ranges: keys
                .iter()
                .map(|k| KeyRange {
                    key: vec![Some(k.to_string())],
                    min: 0,
                    max: 1,
                    rows: 1,
                    next: None,
                    arrival: true,
                    cumulative: true,
                })
                .collect(),
            tails: Some(tails.into()),
        }];
        r
    }

    fn units_of(l: &Ledger, key: &str) -> Vec<String> {
        let k = ("ds".to_string(), "st".to_string(), vec![Some(key.to_string())]);
        l.keys.get(&k).map(|m| m.keys().map(|(_, u)| u.clone()).collect()).unwrap_or_default()
    }

    #[test]
    fn checkpoints_keep_only_each_keys_latest_unit() {
        let tmp = lake();
        let root = tmp.path();
        let tails = |n: u32| format!("_sluice/state/ds/t{n}.arrow");
        for n in 1..=4 {
            std::fs::create_dir_all(root.join("_sluice/state/ds")).unwrap();
            std::fs::write(root.join(tails(n)), b"x").unwrap();
        }
        let mut l = Ledger::open(root).unwrap();
        l.append(stream_rec("u1", &["a", "b"], &tails(1))).unwrap();
        l.append(stream_rec("u2", &["a"], &tails(2))).unwrap();
        // A range that did not come in arrival order (a file's) stays beside them.
        let mut file = stream_rec("f", &["a"], "_sluice/state/ds/f.arrow");
        file.state[0].ranges[0].cumulative = false;
        file.state[0].ranges[0].arrival = false;
        l.append(file).unwrap();
        // Another stream's checkpoint of the same key is its own state, and stays too.
        let mut other = stream_rec("o", &["a"], "_sluice/state/ds/o.arrow");
        other.unit.source = "other".into();
        l.append(other).unwrap();
        assert_eq!(units_of(&l, "a"), ["f", "o", "u2"]);
        assert_eq!(units_of(&l, "b"), ["u1"]);
        assert_eq!(l.records[&("ds".into(), "u1".into())].state[0].ranges.len(), 1, "u1 keeps only b");
        l.append(stream_rec("u3", &["a", "b"], &tails(3))).unwrap();
        assert_eq!(units_of(&l, "a"), ["f", "o", "u3"]);
        assert_eq!(units_of(&l, "b"), ["u3"]);
        // u1 and u2 hold no key's latest range: their state and tails are gone.
        assert!(l.records[&("ds".into(), "u1".into())].state.is_empty());
        assert!(l.records[&("ds".into(), "u2".into())].state.is_empty());
        assert_eq!((l.stripped, l.orphaned_tails.len()), (3, 2));
        // A replay strips the same (the file still holds every range until it is compacted).
        let again = Ledger::open(root).unwrap();
        assert_eq!(again.differs_from(&l), None);
        assert_eq!(again.stripped, 3);
        // Not while the stripped ranges are no more than those left (3: u3's and f's).
        assert!(!l.compact_if_stripped(root, 2).unwrap());
        l.append(stream_rec("u4", &["a", "b"], &tails(4))).unwrap();
        // Below the threshold nothing happens; above it the ledger is rewritten without them.
        assert!(!l.compact_if_stripped(root, 5).unwrap());
        assert!(l.compact_if_stripped(root, 4).unwrap());
        let text = std::fs::read_to_string(root.join(LEDGER_DIR).join(LEDGER_FILE)).unwrap();
        assert!((1..=3).all(|n| !text.contains(&tails(n))), "{text}");
        assert!(text.contains(&tails(4)), "{text}");
        assert!((1..=3).all(|n| !root.join(tails(n)).exists()) && root.join(tails(4)).exists());
        let compacted = Ledger::open(root).unwrap();
        assert_eq!(compacted.differs_from(&l), None);
        assert_eq!((compacted.stripped, units_of(&compacted, "a")), (0, vec!["f".into(), "o".into(), "u4".into()]));
        assert_eq!(compacted.live.len(), 6, "every unit's data stays live");
    }
}
