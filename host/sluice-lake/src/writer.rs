//! The lake sink: opens (locks, recovers) a lake, writes units, commits them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sluice_core::catalog::{DatasetSnapshot, LakeSnapshot};
use sluice_core::error::SinkError;
use sluice_core::sink::{
    CommitReport, DeadLetter, Freshness, KeyRange, KeyValues, KeyedUnit, Sink, StateStore, UnitState, UnitWriter,
};
use sluice_core::source::{Source, SourceUnit};
use sluice_core::spec::{Compression, LakeSpec, OnSourceDeleted, SyncMode, WriteMode};

use crate::failures::Failures;
use crate::ledger::{LEDGER_DIR, Ledger, LedgerRecord, StateRecord};
use crate::partition::Partitioner;
use crate::schema::{Column, Plan};

pub use crate::layout::REJECTS_DIR;
pub(crate) use crate::layout::{INPROGRESS, now_ms};

/// A Parquet lake opened for writing by this process.
pub struct Lake {
    inner: Arc<LakeInner>,
}

struct LakeInner {
    root: PathBuf,
    /// The root, open, for `syncfs` in `sync: filesystem` mode.
    root_dir: File,
    sync: SyncMode,
    spec: LakeSpec,
    props: WriterProperties,
    ledger: Mutex<Ledger>,
    /// Held for the lake's lifetime: one writer process per lake.
    _lock: File,
    /// What makes this run's output, recorded in every file written ([`Sink::set_lineage`]).
    lineage: Mutex<Option<Arc<sluice_core::lineage::Lineage>>>,
    /// Failed attempts per unit (`_sluice/failures.jsonl`).
    failures: Mutex<Failures>,
    /// Serializes whole commits in `replace_partition` and `upsert` modes, which read and
    /// rewrite partitions other units also write.
    partition_commits: Mutex<()>,
    /// Footer stats of live files, for `_sluice/stats/<dataset>.json`.
    stats: Mutex<crate::stats::StatsCache>,
    /// Schema prints of live files, for the catalog's views (see [`Lake::snapshot`]).
    prints: Mutex<crate::prints::SchemaPrints>,
    /// Serializes deleting expired retained files with choosing names for new files, so a name
    /// is never reused while its old file is being deleted.
    names: Mutex<()>,
    /// The pipeline definition failures are counted under (see [`Lake::set_definition`]).
    definition: Mutex<Option<String>>,
    /// What follows the ledger (a Delta log), told after every commit.
    follower: Option<Arc<dyn LedgerFollower>>,
    /// Held by the thread telling the follower; `follow_wanted` says commits arrived meanwhile,
    /// so that commits from parallel workers reach the follower together.
    following: Mutex<()>,
    follow_wanted: std::sync::atomic::AtomicBool,
}

/// One dataset's live files as the ledger holds them at a sequence number: what a follower
/// (the Delta log of a `kind: delta` sink) brings its own table in line with.
#[derive(Debug, Clone)]
pub struct FollowedState {
    /// The ledger's sequence number this state is at.
    pub seq: u64,
    /// Whether nothing but compactions changed the files since `since` (the caller's last
    /// followed sequence number): the rows are the same.
    pub data_seq: u64,
    /// Live data files: stored path (absolute) and rows.
    pub files: Vec<(PathBuf, Option<u64>)>,
    /// The partition columns, in order.
    pub partition_by: Vec<String>,
}

/// The state a follower of the lake at `root` would be told now, read without any lock
/// (`sluice lake compact` on a Delta table follows the compaction at once).
pub fn followed_state(root: &Path, dataset: &str, partition_by: &[String]) -> Result<FollowedState, SinkError> {
    let root = root.canonicalize().map_err(|e| SinkError::io(root, e))?;
    Ok(Ledger::read_only(&root)?.followed_state(&root, dataset, partition_by))
}

/// Follows the lake's ledger: called after every commit, and when the lake opens, with the
/// state as of then. It must be idempotent (it may be told the same or an older state again).
pub trait LedgerFollower: Send + Sync {
    fn follow(&self, state: &FollowedState) -> Result<(), SinkError>;
}

impl Drop for LakeInner {
    /// The stats of the last commits, which the once-a-second rewrite may not have written yet
    /// (before the writer lock is released with the other fields).
    fn drop(&mut self) {
        self.flush_stats();
    }
}

fn fsync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SinkError::io(dir, e))
}

/// Everything written to the filesystem holding `dir` made durable: file data, renames and
/// directory entries alike (`syncfs`; reports writeback errors since Linux 5.8).
#[cfg(target_os = "linux")]
fn sync_filesystem(dir: &File, path: &Path) -> Result<(), SinkError> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs takes an open file descriptor, which `dir` holds for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(SinkError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The sync mode this platform can keep: `filesystem` needs Linux's `syncfs`.
fn effective(mode: SyncMode) -> SyncMode {
    if cfg!(target_os = "linux") { mode } else { SyncMode::Files }
}

impl Lake {
    /// Open (creating if needed) the lake for `spec`, take the writer lock, and recover from any
    /// earlier crash.
    pub fn open(spec: &LakeSpec) -> Result<Self, SinkError> {
        Self::open_followed(spec, None)
    }

    /// [`Lake::open`], with a follower told of every commit (first right after recovery, so
    /// that it catches up with commits a crash kept from it).
    pub fn open_followed(spec: &LakeSpec, follower: Option<Arc<dyn LedgerFollower>>) -> Result<Self, SinkError> {
        let root = spec.lake.clone();
        let meta = root.join(LEDGER_DIR);
        std::fs::create_dir_all(&meta).map_err(|e| SinkError::io(&meta, e))?;
        let root = root.canonicalize().map_err(|e| SinkError::io(&root, e))?;
        let lock = acquire_lock(&root.join(LEDGER_DIR).join("writer.lock"))?;
        let ledger = Ledger::open(&root)?;
        let failures = Mutex::new(Failures::open(&root)?);
        let compression = match spec.compression {
            Compression::Zstd => {
                PqCompression::ZSTD(ZstdLevel::try_new(spec.zstd_level).map_err(|e| SinkError::Encode(e.to_string()))?)
            }
            Compression::Snappy => PqCompression::SNAPPY,
            Compression::None => PqCompression::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(spec.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by("sluice".to_string())
            .build();
        let lake = Lake {
            inner: Arc::new(LakeInner {
                root_dir: File::open(&root).map_err(|e| SinkError::io(&root, e))?,
                sync: effective(spec.sync),
                root,
                spec: spec.clone(),
                props,
                ledger: Mutex::new(ledger),
                _lock: lock,
                failures,
                partition_commits: Mutex::new(()),
                stats: Mutex::default(),
                prints: Mutex::default(),
                names: Mutex::new(()),
                definition: Mutex::new(None),
                lineage: Mutex::new(None),
                follower,
                following: Mutex::new(()),
                follow_wanted: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        lake.inner.purge_expired();
        lake.recover()?;
        lake.inner.follow()?;
        let root = lake.inner.root.clone();
        lake.inner
            .ledger
            .lock()
            .expect("ledger lock")
            .compact_if_worthwhile(&root, crate::ledger::COMPACT_MIN_SUPERSEDED)?;
        Ok(lake)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The definition of the pipeline writing (`PipelineSpec::definition_hash`): failed attempts
    /// are recorded under it and only those under the current one count towards poisoning, so
    /// a fixed pipeline retries the files an earlier one gave up on.
    pub fn set_definition(&self, definition: String) {
        *self.inner.definition.lock().expect("definition lock") = Some(definition);
    }

    /// Commits this process appended so far (a cheap change counter for catalog publishing).
    pub fn commits(&self) -> u64 {
        self.inner.absorb_foreign();
        self.inner.ledger.lock().expect("ledger lock").appended
    }

    /// Compact the lake's small files now (see [`crate::compact`]), as `sluice lake compact`
    /// would from another process; then take the result in.
    pub fn compact(&self, opts: &crate::compact::CompactOptions) -> Result<crate::compact::CompactReport, SinkError> {
        let report = crate::compact::compact(&self.inner.root, opts)?;
        self.inner.absorb_foreign();
        Ok(report)
    }

    /// Bring the files in line with the ledger after any earlier crash: remove in-progress files
    /// and stored files that no ledger record names (neither live nor retained for readers of
    /// older snapshots), and make the hive layout show exactly the live files. A lake written
    /// before files were stored under `_sluice/files` is moved there first.
    fn recover(&self) -> Result<(), SinkError> {
        let root = &self.inner.root;
        let dataset = &self.inner.spec.dataset;
        let stored_root = crate::files::stored_root(root);
        let tops = [dataset.clone(), format!("{REJECTS_DIR}/dataset={dataset}")];
        let (live, retained): (Vec<String>, Vec<String>) = {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            let mine = |f: &&String| tops.iter().any(|t| f.starts_with(&format!("{t}/")));
            (ledger.live.keys().filter(mine).cloned().collect(), ledger.retained.keys().filter(mine).cloned().collect())
        };
        // The layout of earlier versions: committed files at their ledger name in the hive tree.
        for f in live.iter().chain(&retained) {
            let (old, stored) = (root.join(f), crate::files::stored(root, f));
            if !stored.exists() && old.is_file() {
                let dir = stored.parent().expect("files live in directories");
                std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
                std::fs::rename(&old, &stored).map_err(|e| SinkError::io(&stored, e))?;
                fsync_dir(dir)?;
            }
        }
        let named: HashSet<String> = live.iter().chain(&retained).cloned().collect();
        let visible: HashMap<&str, &String> = live.iter().map(|f| (f.as_str(), f)).collect();
        let mut swept = 0usize;
        // A compactor at work writes files the ledger names only at its commit.
        let compacting = crate::compact::compacting(root);
        // Stored files: in-progress ones and those no record names go.
        for top in &tops {
            let dir = stored_root.join(top);
            for (path, rel) in crate::files::files_in(&dir, &stored_root)? {
                let name = rel.rsplit('/').next().unwrap_or_default();
                if compacting && crate::compact::is_compacted_name(name) {
                    continue;
                }
                if rel.ends_with(INPROGRESS) || (rel.ends_with(".parquet") && !named.contains(&rel)) {
                    std::fs::remove_file(&path).map_err(|e| SinkError::io(&path, e))?;
                    swept += 1;
                }
            }
        }
        // The hive layout: exactly one visible link per live file, to that file.
        let mut shown = HashSet::new();
        for top in &tops {
            for (path, rel) in crate::files::files_in(&root.join(top), root)? {
                if rel.ends_with(INPROGRESS) {
                    std::fs::remove_file(&path).map_err(|e| SinkError::io(&path, e))?;
                    swept += 1;
                } else if rel.ends_with(".parquet") {
                    match visible.get(rel.as_str()) {
                        Some(f) => {
                            let stored = crate::files::stored(root, f);
                            if !crate::files::same_file(&stored, &path) {
                                crate::files::expose(&stored, &path)?;
                            }
                            shown.insert(rel);
                        }
                        None => {
                            std::fs::remove_file(&path).map_err(|e| SinkError::io(&path, e))?;
                            swept += 1;
                        }
                    }
                }
            }
        }
        for (rel, f) in &visible {
            if !shown.contains(*rel) {
                crate::files::expose(&crate::files::stored(root, f), &root.join(rel))?;
            }
        }
        // Tails files no live record names (an interrupted commit, a replaced unit, a stream
        // unit every key of which has a later checkpoint).
        let tails_dir = crate::keyed::tails_dir(&self.inner.root, &self.inner.spec.dataset);
        if tails_dir.exists() {
            let named: HashSet<PathBuf> = {
                let ledger = self.inner.ledger.lock().expect("ledger lock");
                ledger
                    .records
                    .values()
                    .flat_map(|r| r.state.iter().filter_map(|s| s.tails.as_ref()))
                    .map(|t| self.inner.root.join(t))
                    .collect()
            };
            let entries = std::fs::read_dir(&tails_dir).map_err(|e| SinkError::io(&tails_dir, e))?;
            for entry in entries {
                let path = entry.map_err(|e| SinkError::io(&tails_dir, e))?.path();
                if !named.contains(&path) {
                    std::fs::remove_file(&path).map_err(|e| SinkError::io(&path, e))?;
                    swept += 1;
                }
            }
        }
        if swept > 0 {
            tracing::info!(lake = %self.inner.root.display(), swept, "recovered: removed files of uncommitted units");
        }
        Ok(())
    }
}

/// A follower (the Delta log) that could not take in a commit the ledger holds: the run stops,
/// saying so; the next open or commit tries again.
fn following_failed(root: &Path, e: SinkError) -> SinkError {
    SinkError::Config(format!(
        "{e} (the commit is in the ledger of {}; the next run brings the table up to date once this is fixed)",
        root.display()
    ))
}

/// Take the lake's writer lock, or say who holds it.
fn acquire_lock(path: &Path) -> Result<File, SinkError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| SinkError::io(path, e))?;
    match f.try_lock() {
        Ok(()) => {
            let me = format!("pid {} ({})", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
            f.set_len(0).map_err(|e| SinkError::io(path, e))?;
            f.write_all(me.as_bytes()).map_err(|e| SinkError::io(path, e))?;
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            Err(SinkError::Locked {
                path: path.parent().and_then(Path::parent).unwrap_or(path).display().to_string(),
                holder: if holder.is_empty() { "unknown process".into() } else { holder },
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(SinkError::io(path, e)),
    }
}

impl Sink for Lake {
    fn set_lineage(&self, lineage: Arc<sluice_core::lineage::Lineage>) {
        *self.inner.lineage.lock().expect("lineage lock") = Some(lineage);
    }

    fn check_schema(&self, schema: &SchemaRef) -> Result<(), SinkError> {
        Partitioner::new(schema, &self.inner.spec.partition_by)
            .map(|_| ())
            .map_err(|message| SinkError::Schema { dataset: self.inner.spec.dataset.clone(), message })
    }

    fn begin(&self, unit: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError> {
        Ok(Box::new(LakeUnitWriter {
            lake: self.inner.clone(),
            unit: unit.clone(),
            unit_id: unit.id(),
            partitioner: None,
            open: BTreeMap::new(),
            rows: 0,
            rejects: None,
            plan: None,
            states: Vec::new(),
            content: None,
            counts: None,
            continued: false,
            high_water: None,
        }))
    }

    fn state(&self) -> &dyn StateStore {
        self
    }

    fn remove_deleted(&self, source: &dyn Source, present: &[SourceUnit]) -> Result<Vec<SourceUnit>, SinkError> {
        if self.inner.spec.on_source_deleted != OnSourceDeleted::Delete {
            return Ok(Vec::new());
        }
        let dataset = &self.inner.spec.dataset;
        let present_ids: HashSet<String> = present.iter().map(SourceUnit::id).collect();
        let name = source.name();
        let mut missing: Vec<LedgerRecord> = {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            ledger
                .records
                .values()
                .filter(|r| &r.dataset == dataset && r.unit.source == name && !present_ids.contains(&r.unit_id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        // An empty listing is more likely a missing mount than a deliberate `rm *`.
        if present.is_empty() {
            tracing::warn!(
                source = name,
                units = missing.len(),
                "the source lists no files at all: not removing the rows of its committed files"
            );
            return Ok(Vec::new());
        }
        // Gone means gone, as the source decides: a file that still exists but is no longer
        // selected (a changed glob) keeps its rows.
        missing.retain(|r| source.is_gone(&r.unit, present));
        missing.sort_by(|a, b| (&a.unit.locator, &a.unit.member).cmp(&(&b.unit.locator, &b.unit.member)));
        let mut deleted = Vec::with_capacity(missing.len());
        for r in missing {
            self.inner.delete_unit(&r)?;
            deleted.push(r.unit);
        }
        Ok(deleted)
    }

    /// `compact:`: once a partition holds `min_files` small files, compact the dataset.
    fn maintain(&self) -> Result<Option<String>, SinkError> {
        let Some(c) = self.inner.spec.compact else { return Ok(None) };
        let dataset = &self.inner.spec.dataset;
        let by_dir: HashMap<String, Vec<String>> = {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            let prefix = format!("{dataset}/");
            let mut by_dir: HashMap<String, Vec<String>> = HashMap::new();
            for f in ledger.live.keys().filter(|f| f.starts_with(&prefix)) {
                let dir = f.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
                by_dir.entry(dir).or_default().push(f.clone());
            }
            by_dir
        };
        let small = |f: &String| {
            std::fs::metadata(crate::files::stored(&self.inner.root, f)).is_ok_and(|m| m.len() < c.target_size / 2)
        };
        let due = by_dir
            .values()
            .any(|files| files.len() >= c.min_files && files.iter().filter(|f| small(f)).count() >= c.min_files);
        if !due {
            return Ok(None);
        }
        let opts = crate::compact::CompactOptions {
            dataset: Some(dataset.clone()),
            target_size: c.target_size,
            min_files: c.min_files,
            retain: self.inner.spec.retain_replaced,
        };
        match self.compact(&opts) {
            Ok(r) => Ok(Some(format!(
                "compacted {} file(s) into {} in {} partition(s); {} live file(s) now",
                r.files_in, r.files_out, r.partitions, r.live_after
            ))),
            // Another compactor is at it: its result arrives through the ledger.
            Err(SinkError::Locked { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn rejects_location(&self) -> Option<String> {
        let root = self.inner.root.display();
        Some(format!(
            "{root}/{REJECTS_DIR}/dataset={}/ (read them with: sluice query --lake {root} \"SELECT * FROM {REJECTS_DIR}\")",
            self.inner.spec.dataset
        ))
    }
}

/// The lake keeps its state in its ledger, committed with the data (and failures in its failure log).
impl StateStore for Lake {
    fn high_water(&self, source: &str) -> Result<Option<String>, SinkError> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        Ok(ledger.marks.get(&(self.inner.spec.dataset.clone(), source.to_string())).cloned())
    }

    fn is_committed(&self, unit: &SourceUnit) -> Result<bool, SinkError> {
        Ok(self.freshness(unit)? == Freshness::Unchanged)
    }

    fn committed_lineage(&self, unit: &SourceUnit) -> Result<Option<String>, SinkError> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        Ok(ledger.records.get(&(self.inner.spec.dataset.clone(), unit.id())).and_then(|r| r.lineage.clone()))
    }

    /// Same size and mtime: unchanged. Another size: changed. Same size, another mtime: compare
    /// content hashes, here when the unit knows its own (a zip member's CRC), else through
    /// [`Sink::confirm_unchanged`] once the runner hashed it.
    fn freshness(&self, unit: &SourceUnit) -> Result<Freshness, SinkError> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        let Some(r) = ledger.records.get(&(self.inner.spec.dataset.clone(), unit.id())) else {
            return Ok(Freshness::New);
        };
        Ok(Freshness::of(&r.unit, unit))
    }

    /// Same content after a touch: append a record with the new mtime (and nothing else), so
    /// later runs see an unchanged fingerprint without hashing again.
    fn confirm_unchanged(&self, unit: &SourceUnit) -> Result<bool, SinkError> {
        let mut ledger = self.inner.ledger.lock().expect("ledger lock");
        let Some(r) = ledger.records.get(&(self.inner.spec.dataset.clone(), unit.id())) else { return Ok(false) };
        if unit.content_hash.is_none() || r.unit.content_hash != unit.content_hash || r.unit.size != unit.size {
            return Ok(false);
        }
        let mut refreshed = r.clone();
        let keep: Vec<usize> = (0..r.files.len()).filter(|&i| ledger.live.contains_key(&r.files[i])).collect();
        refreshed.files = keep.iter().map(|&i| r.files[i].clone()).collect();
        refreshed.file_rows = if r.file_rows.len() == r.files.len() {
            keep.iter().map(|&i| r.file_rows[i]).collect()
        } else {
            Vec::new()
        };
        refreshed.unit = unit.clone();
        refreshed.removed = Some(Vec::new());
        refreshed.schema = None;
        refreshed.retain_until_ms = None;
        refreshed.committed_at_ms = now_ms();
        ledger.append(refreshed)?;
        tracing::debug!(file = %unit.display_name(), "touched but unchanged: recorded the new mtime");
        Ok(true)
    }

    fn key_history(&self, step: &str, key: &KeyValues) -> Result<Vec<KeyedUnit>, SinkError> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        let dataset = &self.inner.spec.dataset;
        let Some(starts) = ledger.keys.get(&(dataset.clone(), step.to_string(), key.clone())) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(starts.len());
        for (_, unit_id) in starts.keys() {
            let Some(r) = ledger.records.get(&(dataset.clone(), unit_id.clone())) else { continue };
            let Some(st) = r.state.iter().find(|s| s.step == step) else { continue };
            if let Some(range) = sluice_core::sink::range_of(&st.ranges, key) {
                out.push(KeyedUnit {
                    unit: r.unit.clone(),
                    unit_id: unit_id.clone(),
                    range: range.clone(),
                    lookback: st.lookback,
                    span: st.span,
                });
            }
        }
        Ok(out)
    }

    fn unit_ranges(&self, step: &str, unit_id: &str) -> Result<Vec<KeyRange>, SinkError> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        let record = ledger.records.get(&(self.inner.spec.dataset.clone(), unit_id.to_string()));
        Ok(record.and_then(|r| r.state.iter().find(|s| s.step == step)).map(|s| s.ranges.clone()).unwrap_or_default())
    }

    fn keyed_units(&self, step: &str) -> Result<Vec<Vec<KeyedUnit>>, SinkError> {
        let keys: Vec<KeyValues> = {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            let dataset = &self.inner.spec.dataset;
            ledger.keys.keys().filter(|(d, s, _)| d == dataset && s == step).map(|(_, _, k)| k.clone()).collect()
        };
        keys.iter().map(|k| self.key_history(step, k)).collect()
    }

    fn state_tails(&self, step: &str, unit_id: &str) -> Result<Option<RecordBatch>, SinkError> {
        let path = {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            let record = ledger.records.get(&(self.inner.spec.dataset.clone(), unit_id.to_string()));
            match record.and_then(|r| r.state.iter().find(|s| s.step == step)).and_then(|s| s.tails.clone()) {
                Some(t) => self.inner.root.join(t),
                None => return Ok(None),
            }
        };
        crate::keyed::read(&path)
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let path = self.inner.root.join(LEDGER_DIR).join("dead_letter.jsonl");
        let mut line = serde_json::to_string(letter).map_err(|e| SinkError::Encode(e.to_string()))?;
        line.push('\n');
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| SinkError::io(&path, e))?;
        f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).map_err(|e| SinkError::io(&path, e))
    }

    fn failures(&self, unit: &SourceUnit) -> Result<u32, SinkError> {
        let definition = self.inner.definition.lock().expect("definition lock").clone();
        Ok(self.inner.failures.lock().expect("failures lock").attempts(
            &self.inner.spec.dataset,
            unit,
            definition.as_deref(),
        ))
    }

    fn record_failure(&self, unit: &SourceUnit, error: &str) -> Result<(), SinkError> {
        let definition = self.inner.definition.lock().expect("definition lock").clone();
        self.inner.failures.lock().expect("failures lock").record(
            &self.inner.spec.dataset,
            unit,
            error,
            now_ms(),
            definition.as_deref(),
        )
    }
}

impl Lake {
    /// Everything committed so far: what a catalog publishes. Each dataset says whether all its
    /// files have one schema (read from footers outside the ledger lock, once per file).
    pub fn snapshot(&self) -> Result<LakeSnapshot, SinkError> {
        // What other processes appended first (a compaction, whose inputs a vacuum may already
        // have deleted): a catalog of this process's older view would name files that are gone.
        self.inner.absorb_foreign();
        let mut by_dataset: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            for (f, live) in &ledger.live {
                // Rejected rows are their own dataset, never part of the data's view.
                let name = if f.starts_with(REJECTS_DIR) { REJECTS_DIR } else { live.dataset.as_str() };
                by_dataset.entry(name.to_string()).or_default().push(crate::files::stored(&self.inner.root, f));
            }
        }
        // A snapshot is what a catalog is about to publish: stats.json follows it, so that a
        // `watch` that goes quiet after a burst does not leave the last commits' stats unwritten.
        self.inner.flush_stats();
        let mut prints = self.inner.prints.lock().expect("prints lock");
        prints.keep_only(&by_dataset.values().flatten().collect());
        Ok(LakeSnapshot {
            root: self.inner.root.clone(),
            datasets: by_dataset
                .into_iter()
                .map(|(name, mut files)| {
                    files.sort();
                    let partition_by =
                        if name == self.inner.spec.dataset { self.inner.spec.partition_by.clone() } else { Vec::new() };
                    let one_schema = prints.one_schema(&files);
                    DatasetSnapshot { name, partition_by, files, one_schema }
                })
                .collect(),
        })
    }
}

/// One open partition file of a unit.
struct OpenFile {
    tmp: PathBuf,
    final_path: PathBuf,
    writer: ArrowWriter<File>,
}

struct LakeUnitWriter {
    lake: Arc<LakeInner>,
    unit: SourceUnit,
    unit_id: String,
    partitioner: Option<(SchemaRef, Partitioner)>,
    open: BTreeMap<String, OpenFile>,
    rows: u64,
    /// The unit's `_rejects` file, opened on the first rejected row.
    rejects: Option<OpenFile>,
    /// How data of the last seen schema enters the dataset (schema evolution).
    plan: Option<(SchemaRef, Plan)>,
    /// Keyed state of stateful steps, committed with the data.
    states: Vec<UnitState>,
    /// The content hash and length of the bytes the unit was read from, when the source sent it.
    content: Option<(String, u64)>,
    /// Rows read and rows rejected, when the runner told.
    counts: Option<(u64, u64)>,
    /// Some rows are in groups later units output.
    continued: bool,
    /// The source's high-water mark after this unit, when it keeps marks.
    high_water: Option<String>,
}

/// A deterministic data file name for (unit, fingerprint, partition sequence): a replay writes
/// the same names, and a changed source (new fingerprint) never reuses a live file's name.
fn unique_name(_dir: &Path, unit: &SourceUnit, unit_id: &str, seq: u32) -> String {
    let fp = sluice_core::sha256_hex(&[&unit.size.to_le_bytes(), &unit.version.to_le_bytes()]);
    format!("part-{}-{}-{seq:05}.parquet", &unit_id[..16], &fp[..8])
}

/// True when two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> Result<bool, SinkError> {
    use std::io::Read;
    let (ma, mb) = (
        std::fs::metadata(a).map_err(|e| SinkError::io(a, e))?,
        std::fs::metadata(b).map_err(|e| SinkError::io(b, e))?,
    );
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let mut fa = std::io::BufReader::new(File::open(a).map_err(|e| SinkError::io(a, e))?);
    let mut fb = std::io::BufReader::new(File::open(b).map_err(|e| SinkError::io(b, e))?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).map_err(|e| SinkError::io(a, e))?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n]).map_err(|e| SinkError::io(b, e))?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// A re-commit of the same unit and fingerprint (`--force`) finds its file names taken by live
/// files. Identical bytes may replace them (a deterministic replay keeps its names); different
/// bytes take the next free generation name, so a rename never changes a committed file before
/// the ledger says so. A name whose replaced file is retained is never reused while retained.
fn settle_name(s: &mut Staged, retained: &dyn Fn(&Path) -> bool) -> Result<(), SinkError> {
    if !retained(&s.final_path) && (!s.final_path.exists() || same_bytes(&s.tmp, &s.final_path)?) {
        return Ok(());
    }
    let name = s.final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = name.trim_end_matches(".parquet").to_string();
    let mut generation = 1;
    loop {
        let candidate = s.final_path.with_file_name(format!("{base}-g{generation}.parquet"));
        if !candidate.exists() && !retained(&candidate) {
            s.final_path = candidate;
            return Ok(());
        }
        generation += 1;
    }
}

impl LakeUnitWriter {
    /// The unit's rejects file, under the same in-progress/rename/ledger protocol as its data.
    fn open_rejects(&self, schema: &SchemaRef) -> Result<OpenFile, SinkError> {
        let source = crate::escape_partition_value(&self.unit.source);
        let dir = crate::files::stored_root(&self.lake.root)
            .join(REJECTS_DIR)
            .join(format!("dataset={}", self.lake.spec.dataset))
            .join(format!("source={source}"));
        std::fs::create_dir_all(&dir).map_err(|e| SinkError::io(&dir, e))?;
        let name = unique_name(&dir, &self.unit, &self.unit_id, 0);
        let final_path = dir.join(&name);
        let tmp = dir.join(format!(".{name}{INPROGRESS}"));
        let file = File::create(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(self.lake.props.clone()))
            .map_err(|e| SinkError::Encode(format!("{}: {e}", tmp.display())))?;
        Ok(OpenFile { tmp, final_path, writer })
    }

    /// The open file of partition `dir`, created for `first` (the batch about to be written) when
    /// the unit has none yet.
    fn file_for(&mut self, dir: &str, schema: &SchemaRef, first: &RecordBatch) -> Result<&mut OpenFile, SinkError> {
        if !self.open.contains_key(dir) {
            let dataset = crate::files::stored_root(&self.lake.root).join(&self.lake.spec.dataset);
            let dir_path = if dir.is_empty() { dataset } else { dataset.join(dir) };
            std::fs::create_dir_all(&dir_path).map_err(|e| SinkError::io(&dir_path, e))?;
            // Deterministic per (unit, partition, sequence): a replay writes the same names.
            let name = unique_name(&dir_path, &self.unit, &self.unit_id, 0);
            let final_path = dir_path.join(&name);
            let tmp = dir_path.join(format!(".{name}{INPROGRESS}"));
            let file = File::create(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
            let props = crate::dictionary::props_for(&self.lake.props, first);
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
                .map_err(|e| SinkError::Encode(format!("{}: {e}", tmp.display())))?;
            self.open.insert(dir.to_string(), OpenFile { tmp, final_path, writer });
        }
        Ok(self.open.get_mut(dir).expect("inserted above"))
    }
}

impl UnitWriter for LakeUnitWriter {
    fn write_state(&mut self, state: UnitState) -> Result<(), SinkError> {
        self.states.retain(|s| s.step != state.step);
        self.states.push(state);
        Ok(())
    }

    fn write_rejects(&mut self, rejects: &RecordBatch) -> Result<(), SinkError> {
        if self.rejects.is_none() {
            self.rejects = Some(self.open_rejects(&rejects.schema())?);
        }
        let f = self.rejects.as_mut().expect("opened above");
        f.writer.write(rejects).map_err(|e| SinkError::Encode(format!("{}: {e}", f.tmp.display())))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        let schema = batch.schema();
        let same = self.partitioner.as_ref().is_some_and(|(s, _)| s == &schema);
        if !same {
            let p = Partitioner::new(&schema, &self.lake.spec.partition_by)
                .map_err(|message| SinkError::Schema { dataset: self.lake.spec.dataset.clone(), message })?;
            self.partitioner = Some((schema.clone(), p));
        }
        let (_, partitioner) = self.partitioner.as_ref().expect("set above");
        let data_schema = partitioner.data_schema().clone();
        if data_schema.fields().is_empty() && batch.num_rows() > 0 {
            // A Parquet file needs a column, and readers (DuckDB) refuse one without.
            let besides = if schema.fields().is_empty() { "" } else { " besides the partition columns" };
            return Err(SinkError::Schema {
                dataset: self.lake.spec.dataset.clone(),
                message: format!(
                    "the rows had no columns{besides}, so there is nothing to write \
                     (if the file is a JSON array, `[{{...}}, ...]`, use `format: json`)"
                ),
            });
        }
        let slices = partitioner
            .split(batch)
            .map_err(|e| SinkError::Schema { dataset: self.lake.spec.dataset.clone(), message: e.to_string() })?;
        if !self.plan.as_ref().is_some_and(|(s, _)| s == &data_schema) {
            let stored = self.lake.schema_of(&self.lake.spec.dataset);
            let plan =
                crate::schema::plan(&self.lake.spec.dataset, &stored, &data_schema, self.lake.spec.schema_policy)
                    .map_err(|message| SinkError::Schema { dataset: self.lake.spec.dataset.clone(), message })?;
            self.plan = Some((data_schema, plan));
        }
        let (_, plan) = self.plan.as_ref().expect("set above");
        let (plan, output) = (plan.clone(), plan.output.clone());
        for slice in slices {
            self.rows += slice.batch.num_rows() as u64;
            let batch = plan
                .apply(&slice.batch)
                .map_err(|message| SinkError::Schema { dataset: self.lake.spec.dataset.clone(), message })?;
            let f = self.file_for(&slice.dir, &output, &batch)?;
            f.writer.write(&batch).map_err(|e| SinkError::Encode(format!("{}: {e}", f.tmp.display())))?;
        }
        Ok(())
    }

    fn content_hash(&mut self, hash: &str, bytes: u64) {
        self.content = Some((hash.to_string(), bytes));
    }

    fn input_rows(&mut self, rows_in: u64, rows_rejected: u64) {
        self.counts = Some((rows_in, rows_rejected));
    }

    fn continues(&mut self) {
        self.continued = true;
    }

    fn high_water(&mut self, mark: &str) {
        self.high_water = Some(mark.to_string());
    }

    fn commit(self: Box<Self>) -> Result<CommitReport, SinkError> {
        let LakeUnitWriter {
            lake,
            mut unit,
            unit_id,
            open,
            rows,
            rejects,
            plan,
            content,
            states,
            counts,
            continued,
            high_water,
            ..
        } = *self;
        // Record the hash of exactly the bytes read, and their length as the size.
        if let Some((hash, bytes)) = content {
            unit.content_hash = Some(hash);
            unit.size = bytes;
        }
        let dataset = lake.spec.dataset.clone();
        let schema_err = |message: String| SinkError::Schema { dataset: dataset.clone(), message };
        let by_partition = lake.spec.mode != WriteMode::Append;
        // Commits that read and rewrite shared partitions run one at a time.
        let _serial = by_partition.then(|| lake.partition_commits.lock().expect("commit lock"));
        let rel = |p: &Path| p.strip_prefix(&lake.root).expect("under the lake").to_string_lossy().replace('\\', "/");
        // Data and rejects files are named relative to the stored root (`_sluice/files`).
        let stored_root = crate::files::stored_root(&lake.root);
        let rel_data = |p: &Path| {
            p.strip_prefix(&stored_root).expect("under the stored root").to_string_lossy().replace('\\', "/")
        };

        // What made the rows, in each file's footer.
        let run_lineage = lake.lineage.lock().expect("lineage lock").clone();
        let lineage = run_lineage
            .as_deref()
            .map(|l| sluice_core::lineage::FileLineage::new(l, vec![sluice_core::lineage::UnitLineage::from(&unit)]));

        // Close (and in `sync: files` mode fsync) every file under its in-progress name.
        let mut syncs = 0u64;
        let mut staged: Vec<Staged> = Vec::new();
        for (is_data, mut f) in open.into_values().map(|f| (true, f)).chain(rejects.map(|f| (false, f))) {
            let enc = |e: parquet::errors::ParquetError| SinkError::Encode(format!("{}: {e}", f.tmp.display()));
            f.writer.flush().map_err(enc)?;
            if let Some(l) = &lineage {
                f.writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                    sluice_core::lineage::PARQUET_KEY.to_string(),
                    l.to_json(),
                ));
            }
            let rows: i64 = f.writer.flushed_row_groups().iter().map(|g| g.num_rows()).sum();
            // The schema print the catalog needs, from the writer's metadata: no footer read.
            let print = f
                .writer
                .flushed_row_groups()
                .first()
                .map(|g| crate::prints::print_of(g.columns().iter().map(|c| c.column_descr())));
            let file = f.writer.into_inner().map_err(|e| SinkError::Encode(format!("{}: {e}", f.tmp.display())))?;
            if lake.sync == SyncMode::Files {
                file.sync_all().map_err(|e| SinkError::io(&f.tmp, e))?;
                syncs += 1;
            }
            staged.push(Staged { tmp: f.tmp, final_path: f.final_path, rows: rows as u64, is_data, print });
        }

        // Keyed-state tails, staged like the data.
        let mut old_tails: Vec<String> = Vec::new();
        let mut state_records = Vec::with_capacity(states.len());
        let mut staged_tails = Vec::new();
        for st in states {
            let tails = match &st.tails {
                Some(t) if t.num_rows() > 0 => {
                    let per_file = lake.sync == SyncMode::Files;
                    let s = crate::keyed::stage(&lake.root, &dataset, &unit_id, &st.step, t, per_file)?;
                    syncs += u64::from(per_file);
                    let name = rel(&s.final_path);
                    staged_tails.push(s);
                    Some(name)
                }
                _ => None,
            };
            state_records.push(StateRecord {
                step: st.step,
                lookback: st.lookback,
                span: st.span,
                ranges: st.ranges,
                tails,
            });
        }

        // What this commit replaces: the unit's earlier outputs (append), or everything live in
        // the partitions it touches (replace_partition, upsert).
        let (previous, in_partitions, current_schema) = {
            let ledger = lake.ledger.lock().expect("ledger lock");
            if let Some(r) = ledger.records.get(&(dataset.clone(), unit_id.clone())) {
                old_tails.extend(r.state.iter().filter_map(|s| s.tails.clone()));
            }
            let previous = ledger.records.get(&(dataset.clone(), unit_id.clone())).map(|r| r.files.clone());
            let mut in_partitions: BTreeMap<String, Vec<String>> = BTreeMap::new();
            if by_partition {
                for s in staged.iter().filter(|s| s.is_data) {
                    let dir = rel_data(s.final_path.parent().expect("files live in directories"));
                    let live = ledger.live_in_dir(&dir);
                    in_partitions.insert(dir, live);
                }
            }
            (previous.unwrap_or_default(), in_partitions, ledger.schemas.get(&dataset).cloned().unwrap_or_default())
        };
        // Check the schema before anything becomes visible (again at the ledger append).
        if let Some((_, plan)) = &plan {
            crate::schema::plan(&dataset, &current_schema, &plan.output, lake.spec.schema_policy)
                .map_err(schema_err)?;
        }
        if lake.spec.mode == WriteMode::Upsert {
            for s in staged.iter_mut().filter(|s| s.is_data) {
                let dir = rel_data(s.final_path.parent().expect("files live in directories"));
                let old = in_partitions.get(&dir).map(Vec::as_slice).unwrap_or_default();
                s.rows = upsert_into(&lake, s, old)?;
            }
        }
        let mut removed: Vec<String> = if by_partition {
            let mut r: Vec<String> = in_partitions.into_values().flatten().collect();
            r.extend(previous.iter().filter(|f| f.starts_with(REJECTS_DIR)).cloned());
            r
        } else {
            previous
        };

        // The hive directories the files will be linked into, so that a path in the way fails
        // the commit now, before the ledger append, rather than the linking after it.
        for s in &staged {
            let visible = crate::files::visible(&lake.root, &rel_data(&s.final_path));
            let dir = visible.parent().expect("files live in directories");
            std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
        }
        // Publish: rename into place, fsync the directories.
        let mut report = CommitReport { rows, ..Default::default() };
        let mut dirs = HashSet::new();
        {
            let _names = lake.names.lock().expect("names lock");
            let retained = |p: &Path| {
                let ledger = lake.ledger.lock().expect("ledger lock");
                p.strip_prefix(&stored_root)
                    .is_ok_and(|r| ledger.retained.contains_key(&r.to_string_lossy().replace('\\', "/")))
            };
            for s in staged.iter_mut() {
                settle_name(s, &retained)?;
            }
            for s in &staged {
                std::fs::rename(&s.tmp, &s.final_path).map_err(|e| SinkError::io(&s.final_path, e))?;
                report.bytes += std::fs::metadata(&s.final_path).map(|m| m.len()).unwrap_or(0);
                dirs.insert(s.final_path.parent().expect("files live in directories").to_path_buf());
                report.files.push(s.final_path.clone());
            }
        }
        for t in &staged_tails {
            std::fs::rename(&t.tmp, &t.final_path).map_err(|e| SinkError::io(&t.final_path, e))?;
            dirs.insert(t.final_path.parent().expect("files live in directories").to_path_buf());
        }
        // Durable before the ledger says so: each directory, or the whole filesystem at once.
        match lake.sync {
            SyncMode::Files => {
                for d in &dirs {
                    fsync_dir(d)?;
                    syncs += 1;
                }
            }
            #[cfg(target_os = "linux")]
            SyncMode::Filesystem => {
                sync_filesystem(&lake.root_dir, &lake.root)?;
                syncs += 1;
            }
            #[cfg(not(target_os = "linux"))]
            SyncMode::Filesystem => unreachable!("effective() keeps `files` off Linux"),
        }
        report.other_files = staged_tails.len() as u64;
        let files: Vec<String> = report.files.iter().map(|p| rel_data(p)).collect();
        removed.retain(|f| !files.contains(f));
        removed.sort();
        removed.dedup();

        // Commit: the ledger append is the moment the unit becomes part of the lake.
        let committed_at_ms = now_ms();
        let mut record = LedgerRecord {
            unit_id,
            dataset: dataset.clone(),
            unit,
            files: files.clone(),
            file_rows: staged.iter().map(|s| s.rows).collect(),
            retain_until_ms: (!removed.is_empty()).then(|| committed_at_ms + lake.retention_ms()),
            removed: Some(removed.clone()),
            schema: None,
            rows: report.rows,
            rows_in: counts.map(|c| c.0),
            rows_rejected: counts.map(|c| c.1),
            continued,
            bytes: report.bytes,
            committed_at_ms,
            deleted: false,
            state: state_records,
            high_water,
            lineage: run_lineage.as_deref().map(sluice_core::lineage::Lineage::digest),
            shared: Vec::new(),
            seq: None,
        };
        let new_tails: Vec<String> = record.state.iter().filter_map(|s| s.tails.clone()).collect();
        let mut extra = (Vec::new(), Vec::new());
        let schema_changed = {
            let mut ledger = lake.ledger.lock().expect("ledger lock");
            let current = ledger.schemas.get(&dataset).cloned().unwrap_or_default();
            let next = match &plan {
                Some((_, plan)) => {
                    match crate::schema::plan(&dataset, &current, &plan.output, lake.spec.schema_policy) {
                        Ok(p) => p.dataset,
                        Err(message) => {
                            // Never delete a live file whose name this commit reused.
                            for (f, rel) in report.files.iter().zip(&files) {
                                if !ledger.live.contains_key(rel) {
                                    let _ = std::fs::remove_file(f);
                                }
                            }
                            return Err(schema_err(message));
                        }
                    }
                }
                None => current.clone(),
            };
            let changed = (next != current).then_some(next);
            record.schema = changed.clone();
            ledger.append_checked(record, |l, rec| lake.fix_removals(l, rec, by_partition, &mut extra))?;
            // A stream's units supersede their keys' earlier ranges: rewrite the ledger without
            // them once they dominate. The commit stands whatever happens here.
            let min = crate::ledger::COMPACT_MIN_SUPERSEDED * crate::ledger::STRIPPED_PER_RECORD;
            if let Err(e) = ledger.compact_if_stripped(&lake.root, min) {
                tracing::warn!(lake = %lake.root.display(), "could not compact the ledger after a commit: {e}");
            }
            changed
        };
        let (extra_added, extra_removed) = extra;
        let own_files = files.len();
        let mut files = files;
        files.extend(extra_added);
        removed.extend(extra_removed);
        if let Some(schema) = schema_changed {
            lake.write_schema_mirror(&schema);
        }
        // The unit's earlier tails are no longer named by the ledger.
        for old in old_tails.iter().filter(|t| !new_tails.contains(t)) {
            let _ = std::fs::remove_file(lake.root.join(old));
        }
        // The hive layout follows: replaced files leave it, then the new files join it.
        syncs += lake.show(&files, &removed);
        // The ledger append's fdatasync.
        report.syncs = syncs + 1;
        report.files = files.iter().take(own_files).map(|f| crate::files::visible(&lake.root, f)).collect();
        {
            let mut prints = lake.prints.lock().expect("prints lock");
            for s in &staged {
                if let Some(print) = s.print {
                    prints.insert(s.final_path.clone(), print);
                }
            }
        }
        lake.after_commit(&files, &removed);
        lake.follow().map_err(|e| following_failed(&lake.root, e))?;
        Ok(report)
    }

    fn abort(self: Box<Self>) {
        for f in self.open.into_values().chain(self.rejects) {
            drop(f.writer);
            let _ = std::fs::remove_file(&f.tmp);
        }
    }
}

/// A unit's file, closed and fsynced under its in-progress name.
struct Staged {
    tmp: PathBuf,
    final_path: PathBuf,
    rows: u64,
    /// False for the unit's `_rejects` file.
    is_data: bool,
    /// Its schema print (see `prints`), when known without reading its footer.
    print: Option<u64>,
}

/// `upsert`: rewrite a staged file as the partition's `old` live files merged with its rows,
/// keeping the newest row per key. Returns the merged file's row count.
fn upsert_into(lake: &LakeInner, s: &mut Staged, old: &[String]) -> Result<u64, SinkError> {
    let enc = |m: String| SinkError::Encode(m);
    let (new_schema, new_rows) = crate::merge::read_all(&s.tmp).map_err(enc)?;
    let mut older = Vec::new();
    let mut schemas = Vec::new();
    for f in old {
        let (schema, batches) = crate::merge::read_all(&crate::files::stored(&lake.root, f)).map_err(enc)?;
        schemas.push(schema);
        older.extend(batches);
    }
    let target = crate::merge::union_schema(&new_schema, &schemas);
    let conformed = older
        .iter()
        .chain(&new_rows)
        .map(|b| crate::merge::conform(b, &target))
        .collect::<Result<Vec<_>, _>>()
        .map_err(enc)?;
    let schema = conformed.first().map(|b| b.schema()).unwrap_or(target);
    let all = arrow_select::concat::concat_batches(&schema, &conformed).map_err(|e| enc(e.to_string()))?;
    let merged = crate::merge::keep_newest(&all, &lake.spec.key).map_err(enc)?;
    let tmp = s.tmp.with_file_name(format!(
        "{}.merge{INPROGRESS}",
        s.tmp.file_name().map(|n| n.to_string_lossy()).unwrap_or_default().trim_end_matches(INPROGRESS)
    ));
    let file = File::create(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
    let props = crate::dictionary::props_for(&lake.props, &merged);
    let mut w =
        ArrowWriter::try_new(file, merged.schema(), Some(props)).map_err(|e| enc(format!("{}: {e}", tmp.display())))?;
    // The merged file's lineage: this run's, with the units of every file merged into it.
    if let Ok(Some(mut lineage)) = crate::lineage::read(&s.tmp) {
        for f in old {
            if let Ok(Some(l)) = crate::lineage::read(&crate::files::stored(&lake.root, f)) {
                lineage.merge(l);
            }
        }
        w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
            sluice_core::lineage::PARQUET_KEY.to_string(),
            lineage.to_json(),
        ));
    }
    w.write(&merged).map_err(|e| enc(format!("{}: {e}", tmp.display())))?;
    let file = w.into_inner().map_err(|e| enc(format!("{}: {e}", tmp.display())))?;
    if lake.sync == SyncMode::Files {
        file.sync_all().map_err(|e| SinkError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &s.tmp).map_err(|e| SinkError::io(&s.tmp, e))?;
    // The merged file's schema is the union: its footer gives its print.
    s.print = None;
    Ok(merged.num_rows() as u64)
}

impl LakeInner {
    /// After a ledger append that made `added` live and `removed` dead: unlink the replaced
    /// files from the hive layout, then link the new ones in (so a glob read never sees both
    /// versions of a unit). The ledger is already the truth, so a failure here is logged and
    /// repaired by the next open.
    fn show(&self, added: &[String], removed: &[String]) -> u64 {
        // Links are derived from the ledger and repaired on open: `sync: filesystem` leaves
        // their directories to the next sync.
        crate::files::show(&self.root, added, removed, self.sync == SyncMode::Files)
    }

    /// Write stats.json when it is older than the totals.
    fn flush_stats(&self) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = stats.flush(&self.root, &self.spec.dataset, self.spec.time_column.as_deref()) {
            tracing::warn!(dataset = %self.spec.dataset, "cannot write stats.json: {e}");
        }
    }

    fn retention_ms(&self) -> u64 {
        self.spec.retain_replaced.as_millis() as u64
    }

    /// After a ledger append: the dataset's stats, and the deletion of expired replaced files.
    /// After a commit that made `added` live and `removed` dead: update `stats.json` and delete
    /// replaced files whose retention is over.
    fn after_commit(&self, added: &[String], removed: &[String]) {
        {
            let dataset = &self.spec.dataset;
            let mut stats = self.stats.lock().expect("stats lock");
            let prefix = format!("{dataset}/");
            // Every live file only the first time; then what this commit added and removed.
            let live = || -> Vec<String> {
                let ledger = self.ledger.lock().expect("ledger lock");
                ledger.live.keys().filter(|f| f.starts_with(&prefix)).cloned().collect()
            };
            stats.update(&self.root, dataset, live, added, removed, self.spec.time_column.as_deref());
        }
        self.purge_expired();
    }

    /// Delete the dataset's replaced files whose retention is over. The ledger says they are
    /// not live; a crash before the deletion leaves them to the next open, which deletes them.
    fn purge_expired(&self) {
        let _names = self.names.lock().expect("names lock");
        let expired =
            self.ledger.lock().expect("ledger lock").take_expired(&self.spec.dataset, now_ms(), self.retention_ms());
        for f in expired {
            let p = crate::files::stored(&self.root, &f);
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::debug!(file = %p.display(), "deleted a replaced file after its retention"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %p.display(), "cannot remove a replaced file: {e}"),
            }
        }
    }

    /// Remove a unit whose source file is gone: one ledger record removes every live file it
    /// wrote (retained like replaced files) and forgets the unit.
    fn delete_unit(&self, r: &LedgerRecord) -> Result<(), SinkError> {
        let _serial =
            (self.spec.mode != WriteMode::Append).then(|| self.partition_commits.lock().expect("commit lock"));
        let (removed, added) = {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            let removed: Vec<String> = ledger
                .live
                .iter()
                .filter(|(_, l)| l.unit_id == r.unit_id && l.dataset == r.dataset)
                .map(|(f, _)| f.clone())
                .collect();
            let committed_at_ms = now_ms();
            let record = LedgerRecord {
                unit_id: r.unit_id.clone(),
                dataset: r.dataset.clone(),
                unit: r.unit.clone(),
                files: Vec::new(),
                file_rows: Vec::new(),
                retain_until_ms: (!removed.is_empty()).then(|| committed_at_ms + self.retention_ms()),
                removed: Some(removed.clone()),
                schema: None,
                rows: 0,
                rows_in: None,
                rows_rejected: None,
                continued: false,
                bytes: 0,
                committed_at_ms,
                deleted: true,
                state: Vec::new(),
                high_water: None,
                lineage: None,
                shared: Vec::new(),
                seq: None,
            };
            let mut extra = (Vec::new(), Vec::new());
            ledger.append_checked(record, |l, rec| self.fix_removals(l, rec, false, &mut extra))?;
            let mut removed = removed;
            removed.extend(extra.1);
            (removed, extra.0)
        };
        tracing::info!(file = %r.unit.display_name(), "source file deleted: removed its rows");
        self.show(&added, &removed);
        self.after_commit(&added, &removed);
        self.follow().map_err(|e| following_failed(&self.root, e))
    }

    /// Under the commit lock, with the ledger as of now (another process's compaction
    /// included): complete what a record replaces. `by_partition`: every live file of the
    /// partitions it rewrites. Otherwise: compacted files holding the unit's rows are rewritten
    /// without them (their other units' rows stay). `extra` collects (added, removed) files.
    fn fix_removals(
        &self,
        l: &Ledger,
        rec: &mut LedgerRecord,
        by_partition: bool,
        extra: &mut (Vec<String>, Vec<String>),
    ) -> Result<(), SinkError> {
        let mut removed = rec.removed.take().unwrap_or_default();
        if by_partition {
            let dirs: HashSet<String> = rec
                .files
                .iter()
                .filter(|f| !f.starts_with(REJECTS_DIR))
                .filter_map(|f| f.rsplit_once('/').map(|(d, _)| d.to_string()))
                .collect();
            for dir in dirs {
                for f in l.live_in_dir(&dir) {
                    if !rec.files.contains(&f) && !removed.contains(&f) {
                        extra.1.push(f.clone());
                        removed.push(f);
                    }
                }
            }
        } else {
            let holding: Vec<(String, crate::ledger::LiveFile)> = l
                .live
                .iter()
                .filter(|(_, lf)| lf.dataset == rec.dataset && lf.segments.iter().any(|s| s.unit_id == rec.unit_id))
                .map(|(f, lf)| (f.clone(), lf.clone()))
                .collect();
            for (f, lf) in holding {
                if let Some(shared) = crate::compact::rewrite_without(&self.root, &f, &lf, &rec.unit_id, &self.props)? {
                    extra.0.push(shared.file.clone());
                    rec.shared.push(shared);
                }
                extra.1.push(f.clone());
                removed.push(f);
            }
        }
        if !removed.is_empty() && rec.retain_until_ms.is_none() {
            rec.retain_until_ms = Some(rec.committed_at_ms + self.retention_ms());
        }
        rec.removed = Some(removed);
        Ok(())
    }

    /// Tell the follower (if any) the dataset's live files as of now.
    /// Commits that arrive while another thread is telling the follower are told by that thread
    /// in its next round (one Delta commit for all of them); a thread returns only when no
    /// commit is left untold or another thread has taken over.
    fn follow(&self) -> Result<(), SinkError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.follower.is_none() {
            return Ok(());
        }
        self.follow_wanted.store(true, SeqCst);
        loop {
            let Ok(guard) = self.following.try_lock() else { return Ok(()) };
            if self.follow_wanted.swap(false, SeqCst) {
                let told = self.follow_once();
                drop(guard);
                if let Err(e) = told {
                    // Another thread may retry; this commit's caller learns of it.
                    self.follow_wanted.store(true, SeqCst);
                    return Err(e);
                }
                continue;
            }
            drop(guard);
            if !self.follow_wanted.load(SeqCst) {
                return Ok(());
            }
        }
    }

    fn follow_once(&self) -> Result<(), SinkError> {
        let Some(follower) = &self.follower else { return Ok(()) };
        let state = self.ledger.lock().expect("ledger lock").followed_state(
            &self.root,
            &self.spec.dataset,
            &self.spec.partition_by,
        );
        follower.follow(&state)
    }

    /// Take in what other processes appended to the ledger (a compaction): the stats follow.
    fn absorb_foreign(&self) {
        let foreign = {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            if let Err(e) = ledger.catch_up() {
                tracing::warn!(lake = %self.root.display(), "cannot read the ledger's new lines: {e}");
            }
            std::mem::take(&mut ledger.foreign)
        };
        let changed = !foreign.is_empty();
        for (added, removed) in foreign {
            self.after_commit(&added, &removed);
        }
        if changed && let Err(e) = self.follow() {
            // The next commit retries, and fails the run if it still cannot.
            tracing::warn!(lake = %self.root.display(), "{e}");
        }
    }

    /// The dataset's schema as committed so far (empty before the first commit).
    fn schema_of(&self, dataset: &str) -> Vec<Column> {
        self.ledger.lock().expect("ledger lock").schemas.get(dataset).cloned().unwrap_or_default()
    }

    /// Mirror a dataset's schema to `_sluice/schemas/<dataset>.json` for people and tools (the
    /// ledger holds the truth). Best effort, replaced atomically.
    fn write_schema_mirror(&self, schema: &[Column]) {
        let dir = self.root.join(LEDGER_DIR).join("schemas");
        let path = dir.join(format!("{}.json", self.spec.dataset));
        let tmp = dir.join(format!(".{}.json.tmp", self.spec.dataset));
        let res = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&tmp, serde_json::to_vec_pretty(schema).unwrap_or_default()))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), "cannot write the schema mirror: {e}");
        }
    }
}

/// What `sluice lake vacuum` deleted (or, in a dry run, would delete).
#[derive(Debug, Default)]
pub struct VacuumReport {
    /// Each file (relative to the stored root) and its size in bytes.
    pub files: Vec<(String, u64)>,
    pub bytes: u64,
}

impl Lake {
    /// Delete every dataset's replaced files whose retention has passed (`retain_replaced`
    /// after the commit that replaced them), or only list them (`dry_run`). Holds the commit
    /// lock, not the writer lock, so it may run beside `sluice watch`; a file already deleted
    /// (by a writer's own purge) is skipped.
    pub fn vacuum(root: &Path, dry_run: bool) -> Result<VacuumReport, SinkError> {
        let root = crate::layout::existing_lake(root)?;
        let mut ledger = Ledger::open(&root)?;
        let mut report = VacuumReport::default();
        ledger.locked(|ledger| {
            let now = now_ms();
            let datasets: std::collections::BTreeSet<String> =
                ledger.retained.values().map(|r| r.dataset.clone()).collect();
            for dataset in datasets {
                let expired: Vec<String> = if dry_run {
                    ledger
                        .retained
                        .iter()
                        .filter(|(_, r)| r.dataset == dataset && r.retain_until_ms <= now)
                        .map(|(f, _)| f.clone())
                        .collect()
                } else {
                    ledger.take_expired(&dataset, now, u64::MAX)
                };
                for f in expired {
                    let p = crate::files::stored(&root, &f);
                    let Ok(meta) = std::fs::metadata(&p) else { continue };
                    if !dry_run {
                        match std::fs::remove_file(&p) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(SinkError::io(&p, e)),
                        }
                    }
                    report.bytes += meta.len();
                    report.files.push((f, meta.len()));
                }
            }
            Ok(())
        })?;
        report.files.sort();
        Ok(report)
    }
}
