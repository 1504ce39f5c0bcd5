//! The lake sink: opens (locks, recovers) a lake, writes units, commits them.

use std::collections::{BTreeMap, HashSet};
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
use sluice_core::sink::{CommitReport, DeadLetter, Sink, UnitWriter};
use sluice_core::source::SourceUnit;
use sluice_core::spec::{Compression, SinkSpec, WriteMode};

use crate::failures::Failures;
use crate::ledger::{LEDGER_DIR, Ledger, LedgerRecord};
use crate::partition::Partitioner;
use crate::schema::{Column, Plan};

const INPROGRESS: &str = ".inprogress";
/// The dead-letter dataset of rejected rows: `<lake>/_rejects/dataset=<d>/source=<s>/part-*.parquet`.
pub const REJECTS_DIR: &str = "_rejects";

/// A Parquet lake opened for writing by this process.
pub struct Lake {
    inner: Arc<LakeInner>,
}

struct LakeInner {
    root: PathBuf,
    spec: SinkSpec,
    props: WriterProperties,
    ledger: Mutex<Ledger>,
    /// Held for the lake's lifetime: one writer process per lake.
    _lock: File,
    /// Failed attempts per unit (`_sluice/failures.jsonl`).
    failures: Mutex<Failures>,
    /// Serializes whole commits in `replace_partition` and `upsert` modes, which read and
    /// rewrite partitions other units also write.
    partition_commits: Mutex<()>,
    /// Footer stats of live files, for `_sluice/stats/<dataset>.json`.
    stats: Mutex<crate::stats::StatsCache>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn fsync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SinkError::io(dir, e))
}

impl Lake {
    /// Open (creating if needed) the lake for `spec`, take the writer lock, and recover from any
    /// earlier crash.
    pub fn open(spec: &SinkSpec) -> Result<Self, SinkError> {
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
                root,
                spec: spec.clone(),
                props,
                ledger: Mutex::new(ledger),
                _lock: lock,
                failures,
                partition_commits: Mutex::new(()),
                stats: Mutex::default(),
            }),
        };
        lake.recover()?;
        Ok(lake)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Commits this process appended so far (a cheap change counter for catalog publishing).
    pub fn commits(&self) -> u64 {
        self.inner.ledger.lock().expect("ledger lock").appended
    }

    /// Remove in-progress files and data files that no ledger record names.
    fn recover(&self) -> Result<(), SinkError> {
        let dataset_dir = self.inner.root.join(&self.inner.spec.dataset);
        let rejects_dir = self.inner.root.join(REJECTS_DIR).join(format!("dataset={}", self.inner.spec.dataset));
        if !dataset_dir.exists() && !rejects_dir.exists() {
            return Ok(());
        }
        let committed: HashSet<PathBuf> = {
            let ledger = self.inner.ledger.lock().expect("ledger lock");
            ledger.live.keys().map(|f| self.inner.root.join(f)).collect()
        };
        let mut swept = 0usize;
        let mut stack: Vec<PathBuf> = [dataset_dir, rejects_dir].into_iter().filter(|d| d.exists()).collect();
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| SinkError::io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| SinkError::io(&dir, e))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().map_err(|e| SinkError::io(&path, e))?.is_dir() {
                    stack.push(path);
                } else if name.ends_with(INPROGRESS) || (name.ends_with(".parquet") && !committed.contains(&path)) {
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
    fn check_schema(&self, schema: &SchemaRef) -> Result<(), SinkError> {
        Partitioner::new(schema, &self.inner.spec.partition_by)
            .map(|_| ())
            .map_err(|message| SinkError::Schema { dataset: self.inner.spec.dataset.clone(), message })
    }

    fn is_committed(&self, unit: &SourceUnit) -> Result<bool, SinkError> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        Ok(ledger
            .records
            .get(&(self.inner.spec.dataset.clone(), unit.id()))
            .is_some_and(|r| r.unit.size == unit.size && r.unit.mtime_ns == unit.mtime_ns))
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
        }))
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let path = self.inner.root.join(LEDGER_DIR).join("dead_letter.jsonl");
        let mut line = serde_json::to_string(letter).map_err(|e| SinkError::Encode(e.to_string()))?;
        line.push('\n');
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| SinkError::io(&path, e))?;
        f.write_all(line.as_bytes()).and_then(|_| f.sync_data()).map_err(|e| SinkError::io(&path, e))
    }

    fn failures(&self, unit: &SourceUnit) -> Result<u32, SinkError> {
        Ok(self.inner.failures.lock().expect("failures lock").attempts(&self.inner.spec.dataset, unit))
    }

    fn record_failure(&self, unit: &SourceUnit, error: &str) -> Result<(), SinkError> {
        self.inner.failures.lock().expect("failures lock").record(&self.inner.spec.dataset, unit, error, now_ms())
    }

    fn snapshot(&self) -> Result<LakeSnapshot, SinkError> {
        let ledger = self.inner.ledger.lock().expect("ledger lock");
        let mut by_dataset: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (f, live) in &ledger.live {
            // Rejected rows are their own dataset, never part of the data's view.
            let name = if f.starts_with(REJECTS_DIR) { REJECTS_DIR } else { live.dataset.as_str() };
            by_dataset.entry(name.to_string()).or_default().push(self.inner.root.join(f));
        }
        Ok(LakeSnapshot {
            root: self.inner.root.clone(),
            datasets: by_dataset
                .into_iter()
                .map(|(name, mut files)| {
                    files.sort();
                    let partition_by =
                        if name == self.inner.spec.dataset { self.inner.spec.partition_by.clone() } else { Vec::new() };
                    DatasetSnapshot { name, partition_by, files }
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
}

/// A deterministic data file name for (unit, fingerprint, partition sequence): a replay writes
/// the same names, and a changed source (new fingerprint) never reuses a live file's name.
fn unique_name(_dir: &Path, unit: &SourceUnit, unit_id: &str, seq: u32) -> String {
    let fp = sluice_core::sha256_hex(&[&unit.size.to_le_bytes(), &unit.mtime_ns.to_le_bytes()]);
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
/// the ledger says so.
fn settle_name(s: &mut Staged) -> Result<(), SinkError> {
    if !s.final_path.exists() || same_bytes(&s.tmp, &s.final_path)? {
        return Ok(());
    }
    let name = s.final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = name.trim_end_matches(".parquet").to_string();
    let mut generation = 1;
    loop {
        let candidate = s.final_path.with_file_name(format!("{base}-g{generation}.parquet"));
        if !candidate.exists() {
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
        let dir = self
            .lake
            .root
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
            let dataset = self.lake.root.join(&self.lake.spec.dataset);
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

    fn commit(self: Box<Self>) -> Result<CommitReport, SinkError> {
        let LakeUnitWriter { lake, unit, unit_id, open, rows, rejects, plan, .. } = *self;
        let dataset = lake.spec.dataset.clone();
        let schema_err = |message: String| SinkError::Schema { dataset: dataset.clone(), message };
        let by_partition = lake.spec.mode != WriteMode::Append;
        // Commits that read and rewrite shared partitions run one at a time.
        let _serial = by_partition.then(|| lake.partition_commits.lock().expect("commit lock"));
        let rel = |p: &Path| p.strip_prefix(&lake.root).expect("under the lake").to_string_lossy().replace('\\', "/");

        // Close and fsync every file under its in-progress name.
        let mut staged: Vec<Staged> = Vec::new();
        for (is_data, mut f) in open.into_values().map(|f| (true, f)).chain(rejects.map(|f| (false, f))) {
            let enc = |e: parquet::errors::ParquetError| SinkError::Encode(format!("{}: {e}", f.tmp.display()));
            f.writer.flush().map_err(enc)?;
            let rows: i64 = f.writer.flushed_row_groups().iter().map(|g| g.num_rows()).sum();
            let file = f.writer.into_inner().map_err(|e| SinkError::Encode(format!("{}: {e}", f.tmp.display())))?;
            file.sync_all().map_err(|e| SinkError::io(&f.tmp, e))?;
            staged.push(Staged { tmp: f.tmp, final_path: f.final_path, rows: rows as u64, is_data });
        }

        // What this commit replaces: the unit's earlier outputs (append), or everything live in
        // the partitions it touches (replace_partition, upsert).
        let (previous, in_partitions, current_schema) = {
            let ledger = lake.ledger.lock().expect("ledger lock");
            let previous = ledger.records.get(&(dataset.clone(), unit_id.clone())).map(|r| r.files.clone());
            let mut in_partitions: BTreeMap<String, Vec<String>> = BTreeMap::new();
            if by_partition {
                for s in staged.iter().filter(|s| s.is_data) {
                    let dir = rel(s.final_path.parent().expect("files live in directories"));
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
                let dir = rel(s.final_path.parent().expect("files live in directories"));
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

        for s in staged.iter_mut() {
            settle_name(s)?;
        }
        // Publish: rename into place, fsync the directories.
        let mut report = CommitReport { rows, ..Default::default() };
        let mut dirs = HashSet::new();
        for s in &staged {
            std::fs::rename(&s.tmp, &s.final_path).map_err(|e| SinkError::io(&s.final_path, e))?;
            report.bytes += std::fs::metadata(&s.final_path).map(|m| m.len()).unwrap_or(0);
            dirs.insert(s.final_path.parent().expect("files live in directories").to_path_buf());
            report.files.push(s.final_path.clone());
        }
        for d in &dirs {
            fsync_dir(d)?;
        }
        let files: Vec<String> = report.files.iter().map(|p| rel(p)).collect();
        removed.retain(|f| !files.contains(f));
        removed.sort();
        removed.dedup();

        // Commit: the ledger append is the moment the unit becomes part of the lake.
        let mut record = LedgerRecord {
            unit_id,
            dataset: dataset.clone(),
            unit,
            files: files.clone(),
            file_rows: staged.iter().map(|s| s.rows).collect(),
            removed: Some(removed.clone()),
            schema: None,
            rows: report.rows,
            bytes: report.bytes,
            committed_at_ms: now_ms(),
        };
        let schema_changed = {
            let mut ledger = lake.ledger.lock().expect("ledger lock");
            let current = ledger.schemas.get(&dataset).cloned().unwrap_or_default();
            let next = match &plan {
                Some((_, plan)) => {
                    match crate::schema::plan(&dataset, &current, &plan.output, lake.spec.schema_policy) {
                        Ok(p) => p.dataset,
                        Err(message) => {
                            drop(ledger);
                            for f in &report.files {
                                let _ = std::fs::remove_file(f);
                            }
                            return Err(schema_err(message));
                        }
                    }
                }
                None => current.clone(),
            };
            let changed = (next != current).then_some(next);
            record.schema = changed.clone();
            ledger.append(record)?;
            changed
        };
        if let Some(schema) = schema_changed {
            lake.write_schema_mirror(&schema);
        }
        {
            let mut stats = lake.stats.lock().expect("stats lock");
            let prefix = format!("{dataset}/");
            let live: Vec<String> = lake
                .ledger
                .lock()
                .expect("ledger lock")
                .live
                .keys()
                .filter(|f| f.starts_with(&prefix))
                .cloned()
                .collect();
            stats.write(&lake.root, &dataset, &live, lake.spec.time_column.as_deref());
        }
        // The replaced files are no longer live; a crash before this line leaves them to the
        // next start's sweep.
        for old in &removed {
            let p = lake.root.join(old);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %p.display(), "cannot remove replaced file: {e}");
            }
        }
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
}

/// `upsert`: rewrite a staged file as the partition's `old` live files merged with its rows,
/// keeping the newest row per key. Returns the merged file's row count.
fn upsert_into(lake: &LakeInner, s: &mut Staged, old: &[String]) -> Result<u64, SinkError> {
    let enc = |m: String| SinkError::Encode(m);
    let (new_schema, new_rows) = crate::merge::read_all(&s.tmp).map_err(enc)?;
    let mut older = Vec::new();
    let mut schemas = Vec::new();
    for f in old {
        let (schema, batches) = crate::merge::read_all(&lake.root.join(f)).map_err(enc)?;
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
    w.write(&merged).map_err(|e| enc(format!("{}: {e}", tmp.display())))?;
    let file = w.into_inner().map_err(|e| enc(format!("{}: {e}", tmp.display())))?;
    file.sync_all().map_err(|e| SinkError::io(&tmp, e))?;
    std::fs::rename(&tmp, &s.tmp).map_err(|e| SinkError::io(&s.tmp, e))?;
    Ok(merged.num_rows() as u64)
}

impl LakeInner {
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
