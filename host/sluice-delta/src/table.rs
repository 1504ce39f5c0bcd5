//! The Delta log as a follower of the lake's ledger.
//!
//! The lake inside the table (`<table>/_sluice`) writes the Parquet files and commits each unit
//! to its ledger, as a lake sink does: keyed state, rejects, write modes, schema policies and
//! recovery are the lake's. After every ledger commit (and when the sink opens) the follower
//! brings the Delta log in line with the ledger: one Delta commit whose `add` and `remove`
//! actions turn the table's current files into the ledger's live files, carrying
//! `txn {appId, version}` with the ledger's sequence number, and the lineage in `commitInfo`.
//!
//! Exactly once: the ledger is the write-ahead log. A crash after the ledger append and before
//! the Delta commit leaves the unit committed in the ledger (a re-run skips it) and the next
//! open commits it to the log. A crash after the Delta commit is seen through the `txn` version:
//! a follower never commits a version it already committed, and a commit is a diff of file sets,
//! so a file is never added twice. Data files live under `_sluice/`, which Delta vacuums skip:
//! the lake's own retention (`retain_replaced`, `sluice lake vacuum`) deletes replaced files.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_schema::{DataType, Schema};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{Action, Add, MetadataExt as _, Remove, StructField, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_core::error::SinkError;
use sluice_lake::{FollowedState, LedgerFollower};

/// Follows a lake's ledger into the Delta table at `root`.
pub struct DeltaFollower {
    root: PathBuf,
    url: url::Url,
    app_id: String,
    /// Partition column types, from the output schema (string until known), kept in `types_at`
    /// so that a table created at a later open (after a crash) gets them too.
    partition_types: Mutex<HashMap<String, DataType>>,
    types_at: Option<PathBuf>,
    /// The table's column types as of the last load (empty before the first commit).
    table_types: Mutex<HashMap<String, DataType>>,
    /// The lineage recorded in each commit's `commitInfo.sluice`.
    lineage: Mutex<Option<serde_json::Value>>,
    /// One follow at a time (commits from parallel workers each call it), and the table as of
    /// the last follow: loaded once, then brought up to date incrementally.
    serial: Mutex<Option<Cached>>,
    /// Its own runtime for delta-rs's async API (`None` only while dropping).
    rt: Option<tokio::runtime::Runtime>,
}

/// The table as this follower last saw it, with the `txn` version it held at `txn_at`.
struct Cached {
    table: DeltaTable,
    txn: Option<i64>,
    txn_at: Option<u64>,
}

impl Drop for DeltaFollower {
    /// The sink may be dropped inside an async task (`sluice watch`), where a runtime cannot
    /// block on its own shutdown; nothing runs on it between calls.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn remote(root: &Path, e: impl std::fmt::Display) -> SinkError {
    SinkError::Config(format!("delta table {}: {e}", root.display()))
}

impl DeltaFollower {
    /// A follower of the table at `root`; `types_at` keeps the partition columns' types.
    pub fn new(root: &Path, app_id: String, types_at: Option<PathBuf>) -> Result<Self, SinkError> {
        std::fs::create_dir_all(root).map_err(|e| SinkError::io(root, e))?;
        let root = root.canonicalize().map_err(|e| SinkError::io(root, e))?;
        let url = url::Url::from_directory_path(&root).map_err(|_| remote(&root, "not an absolute directory"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| remote(&root, format!("starting its runtime: {e}")))?;
        let known: HashMap<String, DataType> = types_at
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(DeltaFollower {
            root,
            url,
            app_id,
            partition_types: Mutex::new(known),
            types_at,
            table_types: Mutex::default(),
            lineage: Mutex::default(),
            serial: Mutex::new(None),
            rt: Some(rt),
        })
    }

    /// Take the types of the partition columns `schema` holds (the output's, or a batch's).
    pub fn learn_partition_types(&self, schema: &Schema, partition_by: &[String]) {
        let mut types = self.partition_types.lock().expect("types lock");
        let mut changed = false;
        for p in partition_by {
            if let Ok(f) = schema.field_with_name(p)
                && types.get(p) != Some(f.data_type())
            {
                types.insert(p.clone(), f.data_type().clone());
                changed = true;
            }
        }
        if !changed {
            return;
        }
        if let Some(path) = &self.types_at
            && let Err(e) = write_replacing(path, &serde_json::to_vec(&*types).unwrap_or_default())
        {
            tracing::warn!(path = %path.display(), "cannot keep the partition columns' types: {e}");
        }
    }

    /// Refuse a batch whose column is a wider type than the table's (the lake would widen its
    /// dataset; a Delta table here does not): before anything is committed.
    pub fn check_types(&self, schema: &Schema, dataset: &str) -> Result<(), SinkError> {
        let table = self.table_types.lock().expect("types lock");
        for f in schema.fields() {
            if let Some(t) = table.get(f.name())
                && t != f.data_type()
                && sluice_lake::widens(t, f.data_type())
            {
                return Err(SinkError::Schema {
                    dataset: dataset.to_string(),
                    message: format!(
                        "column `{}` is {t} in the Delta table {} and {} in this file: Delta tables are not \
                         widened (cast the column to {t}, or write to a new table)",
                        f.name(),
                        self.root.display(),
                        f.data_type()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Remember the table's column types (after a load).
    fn learn_table(&self, table: &DeltaTable) {
        use deltalake::kernel::engine::arrow_conversion::TryIntoArrow as _;
        let Ok(state) = table.snapshot() else { return };
        let schema: Result<Schema, _> = state.schema().as_ref().try_into_arrow();
        if let Ok(schema) = schema {
            *self.table_types.lock().expect("types lock") =
                schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        }
    }

    pub fn set_lineage(&self, lineage: serde_json::Value) {
        *self.lineage.lock().expect("lineage lock") = Some(lineage);
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime lives until drop")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The table as its log says now (`None`: no commit yet).
    pub fn load(&self) -> Result<Option<DeltaTable>, SinkError> {
        self.rt().block_on(load(&self.url)).map_err(|e| remote(&self.root, e))
    }

    /// The data files of the table's current snapshot, absolute.
    pub fn snapshot_files(&self) -> Result<Vec<PathBuf>, SinkError> {
        let mut cache = self.serial.lock().expect("serial lock");
        self.refresh(&mut cache)?;
        let Some(c) = cache.as_ref() else { return Ok(Vec::new()) };
        let state = c.table.snapshot().map_err(|e| remote(&self.root, e))?;
        let mut files: Vec<PathBuf> = state.log_data().iter().map(|f| self.root.join(f.path().as_ref())).collect();
        files.sort();
        Ok(files)
    }

    /// The `txn` version the table holds for this follower's application id.
    pub fn txn_version(&self, table: &DeltaTable) -> Result<Option<i64>, SinkError> {
        let state = table.snapshot().map_err(|e| remote(&self.root, e))?;
        self.rt()
            .block_on(state.transaction_version(table.log_store().as_ref(), &self.app_id))
            .map_err(|e| remote(&self.root, e))
    }

    /// Bring the cached table up to date with the log (loading it the first time), and its
    /// txn version when someone else committed meanwhile.
    fn refresh(&self, cache: &mut Option<Cached>) -> Result<(), SinkError> {
        match cache {
            None => {
                if let Some(table) = self.load()? {
                    let txn = self.txn_version(&table)?;
                    let txn_at = table.version();
                    *cache = Some(Cached { table, txn, txn_at });
                }
            }
            Some(c) => {
                self.rt().block_on(c.table.update_incremental(None)).map_err(|e| remote(&self.root, e))?;
                if c.table.version() != c.txn_at {
                    c.txn = self.txn_version(&c.table)?;
                    c.txn_at = c.table.version();
                }
            }
        }
        Ok(())
    }

    fn follow_inner(&self, state: &FollowedState) -> Result<(), SinkError> {
        let mut cache = self.serial.lock().expect("serial lock");
        self.refresh(&mut cache)?;
        let table = cache.as_ref().map(|c| c.table.clone());
        if let Some(t) = &table {
            self.learn_table(t);
        }
        let txn = cache.as_ref().and_then(|c| c.txn);
        if txn.is_some_and(|v| v >= state.seq as i64) {
            return Ok(());
        }
        // Current and wanted files, as paths relative to the table root.
        let current: HashMap<String, (i64, HashMap<String, Option<String>>)> = match &table {
            Some(t) => {
                let snap = t.snapshot().map_err(|e| remote(&self.root, e))?;
                let mut m = HashMap::new();
                for f in snap.log_data().iter() {
                    let pv = partition_values_of(&f.path(), &state.partition_by);
                    m.insert(f.path().to_string(), (f.size(), pv));
                }
                m
            }
            None => HashMap::new(),
        };
        let wanted: Vec<(String, &PathBuf)> = state
            .files
            .iter()
            .filter_map(|(abs, _)| {
                abs.strip_prefix(&self.root).ok().map(|r| (r.to_string_lossy().replace('\\', "/"), abs))
            })
            .collect();
        let wanted_set: HashSet<&str> = wanted.iter().map(|(r, _)| r.as_str()).collect();
        let data_change = txn.is_none_or(|v| v < state.data_seq as i64);
        let now = chrono::Utc::now().timestamp_millis();
        let mut adds = Vec::new();
        let mut schemas: Vec<Arc<Schema>> = Vec::new();
        // The lineage of the added files (each footer's), merged for the commit's commitInfo.
        let mut lineage: Option<sluice_core::lineage::FileLineage> = None;
        for (rel, abs) in wanted.iter().filter(|(r, _)| !current.contains_key(r)) {
            let file = std::fs::File::open(abs).map_err(|e| SinkError::io(abs, e))?;
            let size = file.metadata().map_err(|e| SinkError::io(abs, e))?.len() as i64;
            let reader =
                SerializedFileReader::new(file).map_err(|e| SinkError::Encode(format!("{}: {e}", abs.display())))?;
            let meta = reader.metadata();
            let schema = Arc::new(
                parquet::arrow::parquet_to_arrow_schema(
                    meta.file_metadata().schema_descr(),
                    meta.file_metadata().key_value_metadata(),
                )
                .map_err(|e| SinkError::Encode(format!("{}: {e}", abs.display())))?,
            );
            let stats = crate::stats::stats_json(meta, &schema);
            let kv = meta.file_metadata().key_value_metadata();
            let found = kv
                .and_then(|kv| kv.iter().find(|k| k.key == sluice_core::lineage::PARQUET_KEY))
                .and_then(|k| k.value.as_deref())
                .and_then(|v| serde_json::from_str::<sluice_core::lineage::FileLineage>(v).ok());
            if let Some(found) = found {
                match &mut lineage {
                    Some(all) => all.merge(found),
                    None => lineage = Some(found),
                }
            }
            schemas.push(schema);
            adds.push(Add {
                path: rel.clone(),
                partition_values: partition_values_of(rel, &state.partition_by),
                size,
                modification_time: now,
                data_change,
                stats: Some(stats),
                ..Default::default()
            });
        }
        let removes: Vec<Remove> = current
            .iter()
            .filter(|(p, _)| !wanted_set.contains(p.as_str()))
            .map(|(p, (size, pv))| Remove {
                path: p.clone(),
                data_change,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(pv.clone()),
                size: Some(*size),
                ..Default::default()
            })
            .collect();
        if table.is_some() && adds.is_empty() && removes.is_empty() {
            return Ok(());
        }
        if table.is_none() && adds.is_empty() {
            return Ok(()); // nothing to create a table with yet
        }
        sluice_core::fault_point("delta-after-ledger");
        let mut props = CommitProperties::default()
            .with_application_transaction(Transaction::new(&self.app_id, state.seq as i64))
            .with_max_retries(3);
        // What made the added rows: the run (pipeline, definition, plugins, Sluice version) and
        // the source units, as in the files' footers; the run alone when the commit adds none.
        let info = match lineage {
            Some(l) => serde_json::to_value(&l).ok(),
            None => self.lineage.lock().expect("lineage lock").clone(),
        };
        if let Some(info) = info {
            props = props.with_metadata([("sluice".to_string(), info)]);
        }
        // The table's columns: what it has, then new columns of the added files, then the
        // partition columns.
        let existing: Vec<StructField> = match &table {
            Some(t) => t.snapshot().map_err(|e| remote(&self.root, e))?.schema().fields().cloned().collect(),
            None => Vec::new(),
        };
        let mut fields = existing.clone();
        for s in &schemas {
            for f in s.fields() {
                if state.partition_by.contains(f.name()) {
                    continue;
                }
                let f = plain(f).with_nullable(true);
                let field: StructField = (&f).try_into_kernel().map_err(|e| SinkError::Schema {
                    dataset: self.root.display().to_string(),
                    message: format!("column `{}` ({}): Delta has no such type: {e}", f.name(), f.data_type()),
                })?;
                match fields.iter().find(|x| x.name() == field.name()) {
                    None => fields.push(field),
                    Some(x) if x.data_type() != field.data_type() => {
                        return Err(SinkError::Schema {
                            dataset: self.root.display().to_string(),
                            message: format!(
                                "column `{}` is {} in the Delta table but {} in the new file: Delta tables do not widen \
                                 column types here (cast it, or use schema_policy: freeze)",
                                f.name(),
                                x.data_type(),
                                field.data_type()
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        let types = self.partition_types.lock().expect("types lock").clone();
        for p in &state.partition_by {
            if !fields.iter().any(|f| f.name() == p) {
                let dt = types.get(p).cloned().unwrap_or(DataType::Utf8);
                let field = arrow_schema::Field::new(p, dt, true);
                let field: StructField = (&field).try_into_kernel().map_err(|e| SinkError::Schema {
                    dataset: self.root.display().to_string(),
                    message: format!("partition column `{p}`: {e}"),
                })?;
                fields.push(field);
            }
        }
        let operation = if data_change {
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: (!state.partition_by.is_empty()).then(|| state.partition_by.clone()),
                predicate: None,
            }
        } else {
            DeltaOperation::Optimize { predicate: None, target_size: 0 }
        };
        let url = self.url.clone();
        let partition_by = state.partition_by.clone();
        let root = self.root.clone();
        let created = table.is_none();
        let version = self
            .rt()
            .block_on(async move {
                match table {
                    None => {
                        let empty = DeltaTableBuilder::from_url(url)?.build()?;
                        let t = empty
                            .create()
                            .with_columns(fields)
                            .with_partition_columns(partition_by)
                            .with_actions(adds.into_iter().map(Action::Add))
                            .with_commit_properties(props)
                            .await?;
                        Ok::<_, DeltaTableError>(t.version().unwrap_or(0) as i64)
                    }
                    Some(t) => {
                        let snap = t.snapshot()?;
                        let mut actions = Vec::new();
                        if fields.len() != existing.len() {
                            let schema = StructType::try_new(fields)?;
                            actions.push(Action::Metadata(snap.metadata().clone().with_schema(&schema)?));
                        }
                        actions.extend(removes.into_iter().map(Action::Remove));
                        actions.extend(adds.into_iter().map(Action::Add));
                        let done = CommitBuilder::from(props)
                            .with_actions(actions)
                            .build(Some(snap as &dyn TableReference), t.log_store(), operation)
                            .await?;
                        Ok(done.version() as i64)
                    }
                }
            })
            .map_err(|e| remote(&root, e))?;
        // Nothing in the log store fsyncs: make the commit durable before anything relies on it.
        sync_log(&self.root, version)?;
        sluice_core::fault_point("delta-after-commit");
        // The cache follows the commit (loaded afresh after the table's creation).
        if created {
            *cache = None;
        }
        self.refresh(&mut cache)?;
        if let Some(c) = cache.as_mut()
            && c.table.version() == Some(version as u64)
        {
            c.txn = Some(state.seq as i64);
            c.txn_at = Some(version as u64);
        }
        tracing::debug!(table = %self.root.display(), version, seq = state.seq, "delta commit");
        Ok(())
    }
}

async fn load(url: &url::Url) -> Result<Option<DeltaTable>, DeltaTableError> {
    // No commit file yet: not a table (without asking the kernel, which logs an error).
    let has_commit =
        url.to_file_path().ok().and_then(|root| std::fs::read_dir(root.join("_delta_log")).ok()).is_some_and(
            |mut entries| entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))),
        );
    if !has_commit {
        return Ok(None);
    }
    let mut table = DeltaTableBuilder::from_url(url.clone())?.build()?;
    match table.load().await {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// fsync `_delta_log/<version>.json` (and a checkpoint written with it) and the log directory.
fn sync_log(root: &Path, version: i64) -> Result<(), SinkError> {
    let log = root.join("_delta_log");
    for name in [format!("{version:020}.json"), format!("{version:020}.checkpoint.parquet"), "_last_checkpoint".into()]
    {
        let p = log.join(name);
        if let Ok(f) = std::fs::File::open(&p) {
            f.sync_all().map_err(|e| SinkError::io(&p, e))?;
        }
    }
    std::fs::File::open(&log).and_then(|d| d.sync_all()).map_err(|e| SinkError::io(&log, e))
}

/// The column as Delta stores it: a dictionary as its values, large or view strings as strings.
fn plain(f: &arrow_schema::Field) -> arrow_schema::Field {
    match f.data_type() {
        DataType::Dictionary(_, v) => plain(&f.clone().with_data_type(v.as_ref().clone())),
        DataType::LargeUtf8 | DataType::Utf8View => f.clone().with_data_type(DataType::Utf8),
        DataType::LargeBinary | DataType::BinaryView => f.clone().with_data_type(DataType::Binary),
        _ => f.clone(),
    }
}

/// Write `bytes` to `path` through a temporary file renamed over it, so readers see the old or
/// the new content.
pub(crate) fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A file's partition values from its path's `col=value` directories (as the lake escaped them).
fn partition_values_of(rel: &str, partition_by: &[String]) -> HashMap<String, Option<String>> {
    let mut out: HashMap<String, Option<String>> = partition_by.iter().map(|p| (p.clone(), None)).collect();
    for seg in rel.split('/') {
        if let Some((k, v)) = seg.split_once('=')
            && partition_by.iter().any(|p| p == k)
        {
            out.insert(k.to_string(), sluice_lake::unescape_partition_value(v));
        }
    }
    out
}

impl LedgerFollower for DeltaFollower {
    fn follow(&self, state: &FollowedState) -> Result<(), SinkError> {
        self.follow_inner(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_come_back_from_the_lake_paths_unescaped() {
        let by = vec!["k".to_string(), "d".to_string()];
        for v in ["a b", "x:y", "100%", "k=v", "ü/ß", ""] {
            let dir = format!(
                "_sluice/_sluice/files/t/k={}/d=2024-01-02/part-1.parquet",
                sluice_lake::escape_partition_value(v)
            );
            let got = partition_values_of(&dir, &by);
            let want = (!v.is_empty()).then(|| v.to_string());
            assert_eq!(got["k"], want, "{dir}");
            assert_eq!(got["d"].as_deref(), Some("2024-01-02"));
        }
    }
}
