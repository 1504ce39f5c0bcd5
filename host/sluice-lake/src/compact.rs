//! Compaction: `sluice lake compact` bin-packs each partition's small files into files near a
//! target size, and a unit replaced after its rows were compacted takes its segment out.
//!
//! Protocol (safe while `sluice watch` writes the same lake):
//! 1. `_sluice/compact.lock` (flock, `try_lock`): one compactor at a time; while it is held a
//!    writer's open does not sweep `compact-*` files it does not know yet.
//! 2. Plan from the ledger as of now: per partition directory, the live files smaller than half
//!    the target, in unit order (a keyed unit's first key range, then the source locator),
//!    packed into consecutive bins of about the target size.
//! 3. Write each bin without any lock (stored files are immutable): the inputs' rows
//!    concatenated in that order, so a key's rows keep their order. Its lineage footer merges
//!    the inputs', and the ledger records which unit wrote which run of rows (segments).
//! 4. Under `_sluice/commit.lock` (which every ledger append takes, for milliseconds): catch up
//!    with the ledger, drop bins an input of which is no longer live (a writer replaced it
//!    meanwhile), append one `{"compact": ...}` line, and relink the hive layout.
//!
//! The replaced files are retained like any replaced file (`retain_replaced`), for readers of
//! older catalog snapshots; `sluice lake vacuum` deletes them once due.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::Serialize;
use sluice_core::error::SinkError;

use crate::layout::{INPROGRESS, LEDGER_DIR, now_ms};
use crate::ledger::{Compaction, Ledger, LiveFile, Segment, SharedFile};
use crate::writer::REJECTS_DIR;

/// The file a compactor holds for its whole run.
pub(crate) const COMPACT_LOCK: &str = "compact.lock";
/// Names of compacted files (and of a compacted file rewritten without a unit).
pub(crate) const COMPACT_PREFIX: &str = "compact-";

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only this dataset (default: every dataset of the lake).
    pub dataset: Option<String>,
    /// Bytes a compacted file aims at; files under half of it are small.
    pub target_size: u64,
    /// A partition is compacted when it has at least this many small files (at least 2).
    pub min_files: usize,
    /// How long replaced files stay for readers of older snapshots.
    pub retain: Duration,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            dataset: None,
            target_size: 128 * 1024 * 1024,
            min_files: 2,
            retain: sluice_core::spec::DEFAULT_RETAIN_REPLACED,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CompactReport {
    /// Partitions whose files were rewritten.
    pub partitions: u64,
    pub files_in: u64,
    pub files_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    /// Bins dropped because a writer replaced one of their files meanwhile.
    pub conflicts: u64,
    /// Live data files of the compacted datasets before and after.
    pub live_before: u64,
    pub live_after: u64,
}

/// Whether another process is compacting `root` now (holds `compact.lock`).
pub(crate) fn compacting(root: &Path) -> bool {
    let Ok(f) = crate::ledger::open_lock(&root.join(LEDGER_DIR).join(COMPACT_LOCK)) else { return false };
    match f.try_lock() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(_) => true,
    }
}

/// Whether a stored file name is a compactor's (finished or in progress).
pub(crate) fn is_compacted_name(name: &str) -> bool {
    name.starts_with(COMPACT_PREFIX) || name.starts_with(&format!(".{COMPACT_PREFIX}"))
}

/// Compact the lake at `root` (see the module docs).
pub fn compact(root: &Path, opts: &CompactOptions) -> Result<CompactReport, SinkError> {
    let root = crate::layout::existing_lake(root)?;
    let lock = crate::ledger::open_lock(&root.join(LEDGER_DIR).join(COMPACT_LOCK))?;
    if lock.try_lock().is_err() {
        return Err(SinkError::Locked {
            path: root.display().to_string(),
            holder: "another `sluice lake compact` (compact.lock)".into(),
        });
    }
    let mut ledger = Ledger::open(&root)?;
    ledger.locked(|l| sweep_orphans(&root, l))?;

    let datasets: Vec<String> = {
        let mut all: Vec<String> =
            ledger.live.iter().filter(|(f, _)| !f.starts_with(REJECTS_DIR)).map(|(_, l)| l.dataset.clone()).collect();
        all.sort();
        all.dedup();
        match &opts.dataset {
            Some(d) if !all.contains(d) => {
                return Err(SinkError::Config(format!(
                    "the lake {} has no dataset `{d}` (it has: {})",
                    root.display(),
                    if all.is_empty() { "none".to_string() } else { all.join(", ") }
                )));
            }
            Some(d) => vec![d.clone()],
            None => all,
        }
    };
    let mut report = CompactReport::default();
    let props_base = WriterProperties::builder()
        .set_max_row_group_row_count(Some(512 * 1024))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by("sluice".to_string());

    // Plan and write, without the commit lock.
    let mut written: Vec<(String, Vec<String>, SharedFile, u64)> = Vec::new();
    for dataset in &datasets {
        let prefix = format!("{dataset}/");
        let mut by_dir: BTreeMap<String, Vec<(String, LiveFile)>> = BTreeMap::new();
        for (f, l) in ledger.live.iter().filter(|(f, l)| f.starts_with(&prefix) && &l.dataset == dataset) {
            report.live_before += 1;
            let dir = f.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
            by_dir.entry(dir).or_default().push((f.clone(), l.clone()));
        }
        for (dir, files) in by_dir {
            let bins = plan_bins(&root, &ledger, files, opts)?;
            for bin in bins {
                let (shared, bytes_in) = write_bin(&root, &dir, &bin, &props_base)?;
                written.push((dataset.clone(), bin.iter().map(|(f, _)| f.clone()).collect(), shared, bytes_in));
            }
        }
    }

    sluice_core::fault_point("compact-after-write");
    // Commit, under the commit lock.
    let retain_ms = opts.retain.as_millis() as u64;
    ledger.locked(|l| {
        let mut by_dataset: BTreeMap<String, Compaction> = BTreeMap::new();
        let mut partitions = std::collections::BTreeSet::new();
        let committed_at_ms = now_ms();
        for (dataset, inputs, shared, bytes_in) in &written {
            if !inputs.iter().all(|f| l.live.contains_key(f)) {
                let _ = std::fs::remove_file(crate::files::stored(&root, &shared.file));
                report.conflicts += 1;
                continue;
            }
            let c = by_dataset.entry(dataset.clone()).or_insert_with(|| Compaction {
                dataset: dataset.clone(),
                files: Vec::new(),
                removed: Vec::new(),
                retain_until_ms: committed_at_ms + retain_ms,
                committed_at_ms,
                seq: None,
            });
            report.files_in += inputs.len() as u64;
            report.files_out += 1;
            report.bytes_in += bytes_in;
            report.bytes_out +=
                std::fs::metadata(crate::files::stored(&root, &shared.file)).map(|m| m.len()).unwrap_or(0);
            report.rows += shared.rows;
            partitions.insert(shared.file.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default());
            c.removed.extend(inputs.iter().cloned());
            c.files.push(shared.clone());
        }
        report.partitions = partitions.len() as u64;
        for (_, c) in by_dataset {
            let (added, removed): (Vec<String>, Vec<String>) =
                (c.files.iter().map(|f| f.file.clone()).collect(), c.removed.clone());
            l.append_compaction(c)?;
            sluice_core::fault_point("compact-after-ledger");
            crate::files::show(&root, &added, &removed, true);
        }
        Ok(())
    })?;
    report.live_after = report.live_before + report.files_out - report.files_in;
    drop(lock);
    Ok(report)
}

/// Delete `compact-*` files no ledger line names: what a compactor (or a writer's rewrite)
/// that crashed before its commit left. The caller holds both locks.
fn sweep_orphans(root: &Path, l: &mut Ledger) -> Result<(), SinkError> {
    let stored_root = crate::files::stored_root(root);
    for (path, rel) in crate::files::files_in(&stored_root, &stored_root)? {
        let name = rel.rsplit('/').next().unwrap_or_default();
        if is_compacted_name(name)
            && (rel.ends_with(INPROGRESS) || (!l.live.contains_key(&rel) && !l.retained.contains_key(&rel)))
        {
            std::fs::remove_file(&path).map_err(|e| SinkError::io(&path, e))?;
            tracing::info!(file = %path.display(), "removed the output of an interrupted compaction");
        }
    }
    Ok(())
}

/// The bins of one partition directory's files.
fn plan_bins(
    root: &Path,
    ledger: &Ledger,
    files: Vec<(String, LiveFile)>,
    opts: &CompactOptions,
) -> Result<Vec<Vec<(String, LiveFile)>>, SinkError> {
    let mut small = Vec::new();
    for (f, l) in files {
        let path = crate::files::stored(root, &f);
        let size = std::fs::metadata(&path).map_err(|e| SinkError::io(&path, e))?.len();
        if size < opts.target_size / 2 {
            let key = order_key(ledger, &f, &l);
            small.push((key, f, l, size));
        }
    }
    small.sort_by(|a, b| a.0.cmp(&b.0));
    let mut bins = Vec::new();
    let (mut bin, mut bytes) = (Vec::new(), 0u64);
    for (_, f, l, size) in small {
        bin.push((f, l));
        bytes += size;
        if bytes >= opts.target_size {
            bins.push(std::mem::take(&mut bin));
            bytes = 0;
        }
    }
    if !bin.is_empty() {
        bins.push(bin);
    }
    bins.retain(|b| b.len() >= opts.min_files.max(2));
    Ok(bins)
}

/// Files in unit order: a keyed unit's earliest key-range start, then its source locator, then
/// the file name (a compacted file sorts as its first unit).
fn order_key(ledger: &Ledger, file: &str, live: &LiveFile) -> (i64, String, String) {
    let unit_id = live.segments.first().map(|s| s.unit_id.as_str()).unwrap_or(&live.unit_id);
    let record = ledger.records.get(&(live.dataset.clone(), unit_id.to_string()));
    let start =
        record.and_then(|r| r.state.iter().flat_map(|s| s.ranges.iter().map(|g| g.min)).min()).unwrap_or(i64::MIN);
    let locator = record.map(|r| r.unit.display_name()).unwrap_or_default();
    (start, locator, file.to_string())
}

/// A free name `compact-<hash>[-gN].parquet` in `dir` (stored), from what the file holds.
fn free_name(dir: &Path, seed: &[&[u8]]) -> String {
    let hash = sluice_core::sha256_hex(seed);
    let base = format!("{COMPACT_PREFIX}{}", &hash[..16]);
    let mut name = format!("{base}.parquet");
    let mut generation = 1;
    while dir.join(&name).exists() {
        name = format!("{base}-g{generation}.parquet");
        generation += 1;
    }
    name
}

/// The codec the input was written with (zstd level 3 when it cannot be told).
fn codec_of(meta: &parquet::file::metadata::ParquetMetaData) -> PqCompression {
    meta.row_groups()
        .first()
        .and_then(|g| g.columns().first())
        .map(|c| c.compression())
        .unwrap_or(PqCompression::ZSTD(ZstdLevel::try_new(3).expect("a valid level")))
}

/// Write one bin's rows, in order, into a new stored file. Returns it and the inputs' bytes.
fn write_bin(
    root: &Path,
    dir: &str,
    bin: &[(String, LiveFile)],
    props: &parquet::file::properties::WriterPropertiesBuilder,
) -> Result<(SharedFile, u64), SinkError> {
    let enc = |p: &Path, e: &dyn std::fmt::Display| SinkError::Encode(format!("{}: {e}", p.display()));
    let stored_dir = crate::files::stored(root, dir);
    let mut schemas: Vec<SchemaRef> = Vec::with_capacity(bin.len());
    let mut bytes_in = 0;
    let mut codec = None;
    for (f, _) in bin {
        let path = crate::files::stored(root, f);
        let file = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
        bytes_in += file.metadata().map(|m| m.len()).unwrap_or(0);
        let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| enc(&path, &e))?;
        codec.get_or_insert_with(|| codec_of(b.metadata()));
        schemas.push(b.schema().clone());
    }
    let same = schemas.windows(2).all(|w| w[0] == w[1]);
    let target = if same { schemas[0].clone() } else { crate::merge::union_schema(&schemas[0], &schemas[1..]) };
    let seed: Vec<&[u8]> = bin.iter().map(|(f, _)| f.as_bytes()).collect();
    let name = free_name(&stored_dir, &seed);
    let final_path = stored_dir.join(&name);
    let tmp = stored_dir.join(format!(".{name}{INPROGRESS}"));
    let props = props.clone().set_compression(codec.unwrap_or(PqCompression::SNAPPY)).build();
    let mut segments = Vec::new();
    let mut lineage: Option<sluice_core::lineage::FileLineage> = None;
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut rows = 0u64;
    for (f, live) in bin {
        let path = crate::files::stored(root, f);
        if let Ok(Some(l)) = crate::lineage::read(&path) {
            match &mut lineage {
                Some(all) => all.merge(l),
                None => lineage = Some(l),
            }
        }
        let file = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(|e| enc(&path, &e))?;
        let mut file_rows = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| enc(&path, &e))?;
            let batch =
                if same { batch } else { crate::merge::conform(&batch, &target).map_err(|e| enc(&path, &e))? };
            file_rows += batch.num_rows() as u64;
            write_batch(&mut writer, &tmp, &props, &batch)?;
        }
        match live.segments.is_empty() {
            true => segments.push(Segment { unit_id: live.unit_id.clone(), rows: file_rows }),
            false => segments.extend(live.segments.iter().cloned()),
        }
        rows += file_rows;
    }
    let writer = match writer {
        Some(w) => w,
        None => {
            // Every input was empty: an empty file of the schema keeps the segments honest.
            let file = File::create(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
            ArrowWriter::try_new(file, target.clone(), Some(props.clone())).map_err(|e| enc(&tmp, &e))?
        }
    };
    finish(writer, &tmp, &final_path, lineage)?;
    let file = format!("{dir}/{name}");
    Ok((SharedFile { file, rows, segments }, bytes_in))
}

fn write_batch(
    writer: &mut Option<ArrowWriter<File>>,
    tmp: &Path,
    props: &WriterProperties,
    batch: &RecordBatch,
) -> Result<(), SinkError> {
    if writer.is_none() {
        let file = File::create(tmp).map_err(|e| SinkError::io(tmp, e))?;
        let props = crate::dictionary::props_for(props, batch);
        *writer = Some(
            ArrowWriter::try_new(file, batch.schema(), Some(props))
                .map_err(|e| SinkError::Encode(format!("{}: {e}", tmp.display())))?,
        );
    }
    let w = writer.as_mut().expect("created above");
    w.write(batch).map_err(|e| SinkError::Encode(format!("{}: {e}", tmp.display())))
}

/// Close, fsync and rename a written file into place, with its lineage footer.
fn finish(
    mut writer: ArrowWriter<File>,
    tmp: &Path,
    final_path: &Path,
    lineage: Option<sluice_core::lineage::FileLineage>,
) -> Result<(), SinkError> {
    if let Some(l) = lineage {
        writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
            sluice_core::lineage::PARQUET_KEY.to_string(),
            l.to_json(),
        ));
    }
    let file = writer.into_inner().map_err(|e| SinkError::Encode(format!("{}: {e}", tmp.display())))?;
    file.sync_all().map_err(|e| SinkError::io(tmp, e))?;
    std::fs::rename(tmp, final_path).map_err(|e| SinkError::io(final_path, e))?;
    let dir = final_path.parent().expect("files live in directories");
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SinkError::io(dir, e))
}

/// Rewrite the compacted file `file` without the rows `unit_id` wrote (a unit replaced or
/// deleted after compaction). `None` when nothing else is left in it.
pub(crate) fn rewrite_without(
    root: &Path,
    file: &str,
    live: &LiveFile,
    unit_id: &str,
    props: &WriterProperties,
) -> Result<Option<SharedFile>, SinkError> {
    let path = crate::files::stored(root, file);
    let enc = |e: &dyn std::fmt::Display| SinkError::Encode(format!("{}: {e}", path.display()));
    // Row ranges to keep, from the segments.
    let mut keep = Vec::new();
    let mut segments = Vec::new();
    let mut at = 0u64;
    for s in &live.segments {
        if s.unit_id != unit_id {
            keep.push((at, at + s.rows));
            segments.push(s.clone());
        }
        at += s.rows;
    }
    if segments.is_empty() {
        return Ok(None);
    }
    let (dir, _) = file.rsplit_once('/').unwrap_or(("", file));
    let stored_dir = crate::files::stored(root, dir);
    let name = free_name(&stored_dir, &[file.as_bytes(), b"-", unit_id.as_bytes()]);
    let final_path = stored_dir.join(&name);
    let tmp = stored_dir.join(format!(".{name}{INPROGRESS}"));
    let f = File::open(&path).map_err(|e| SinkError::io(&path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| enc(&e))?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(64 * 1024).build().map_err(|e| enc(&e))?;
    let mut writer: Option<ArrowWriter<File>> = None;
    let (mut offset, mut rows) = (0u64, 0u64);
    for batch in reader {
        let batch = batch.map_err(|e| enc(&e))?;
        let (start, end) = (offset, offset + batch.num_rows() as u64);
        for &(a, b) in &keep {
            let (lo, hi) = (a.max(start), b.min(end));
            if lo < hi {
                let slice = batch.slice((lo - start) as usize, (hi - lo) as usize);
                rows += slice.num_rows() as u64;
                write_batch(&mut writer, &tmp, props, &slice)?;
            }
        }
        offset = end;
    }
    let writer = match writer {
        Some(w) => w,
        None => {
            let file = File::create(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
            ArrowWriter::try_new(file, schema, Some(props.clone())).map_err(|e| enc(&e))?
        }
    };
    let lineage = crate::lineage::read(&path).ok().flatten();
    finish(writer, &tmp, &final_path, lineage)?;
    Ok(Some(SharedFile { file: format!("{dir}/{name}"), rows, segments }))
}
