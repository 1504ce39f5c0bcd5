//! Sluice's Delta Lake sink (`kind: delta`): the lake sink's writer inside the table directory
//! (`<table>/_sluice`, which Delta readers skip), followed by the Delta log: after every unit's
//! ledger commit, one Delta commit with its `add`/`remove` actions, a `txn` action carrying the
//! ledger's sequence number, and the lineage in `commitInfo` (see [`table`]).

pub mod config;
pub mod stats;
pub mod table;

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_core::catalog::LakeSnapshot;
use sluice_core::connector::{BuiltSink, Publication, SinkConnector};
use sluice_core::error::SinkError;
use sluice_core::sink::{CommitReport, Sink, StateStore, UnitState, UnitWriter};
use sluice_core::source::{Source, SourceUnit};
use sluice_core::spec::{PipelineSpec, SinkSpec};
use sluice_lake::Lake;

pub use config::{DeltaKind, DeltaSpec, STATE_DIR};
pub use table::DeltaFollower;

/// The runtime half of `kind: delta`.
pub struct DeltaSinkConnector;

fn spec_of(sink: &SinkSpec) -> Result<&DeltaSpec, SinkError> {
    sink.config_as::<DeltaSpec>().ok_or_else(|| SinkError::Config("not a delta sink".into()))
}

impl SinkConnector for DeltaSinkConnector {
    fn kind(&self) -> &'static str {
        "delta"
    }

    fn check_output(&self, spec: &SinkSpec, output: &SchemaRef) -> Vec<sluice_core::connector::Finding> {
        let Ok(d) = spec_of(spec) else { return Vec::new() };
        let mut out = sluice_lake::LakeConnector.check_output(&lake_sink_spec(spec, d), output);
        for f in output.fields() {
            if let Some(why) = unsupported(f.data_type()) {
                out.push(sluice_core::connector::Finding {
                    path: vec!["sink".into(), "table".into()],
                    message: format!(
                        "sink: column `{}` ({}) cannot go into a Delta table: {why}",
                        f.name(),
                        f.data_type()
                    ),
                    hint: Some("cast it with the `cast` plugin, e.g. to int64, utf8 or a microsecond timestamp".into()),
                });
            }
        }
        out
    }

    fn target(&self, spec: &SinkSpec) -> String {
        spec_of(spec)
            .map(|d| d.table.canonicalize().unwrap_or_else(|_| d.table.clone()).display().to_string())
            .unwrap_or_default()
    }

    fn build(&self, pipeline: &PipelineSpec) -> Result<BuiltSink, SinkError> {
        let d = spec_of(&pipeline.sink)?;
        let app_id = d.app_id.clone().unwrap_or_else(|| format!("sluice:{}:{}", pipeline.name, d.lake.dataset));
        let follower = Arc::new(DeltaFollower::new(&d.table, app_id.clone(), Some(Facts::types_path(&d.lake.lake)))?);
        // What a later `sluice lake compact` of the table needs to follow it into the log.
        let facts = Facts { app_id, dataset: d.lake.dataset.clone(), partition_by: d.lake.partition_by.clone() };
        facts.write(&d.lake.lake)?;
        let lake = Lake::open_followed(&d.lake, Some(follower.clone())).map_err(|e| match e {
            e @ SinkError::Locked { .. } => e,
            e => SinkError::Config(format!("opening the delta table {}: {e}", d.table.display())),
        })?;
        lake.set_definition(pipeline.definition_hash());
        let sink = Arc::new(DeltaSink {
            lake,
            follower,
            partition_by: d.lake.partition_by.clone(),
            dataset: d.lake.dataset.clone(),
        });
        Ok(BuiltSink { sink: sink.clone(), publication: Some(sink) })
    }
}

/// What a table's sink was opened with, kept in `<table>/_sluice/_sluice/delta.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Facts {
    app_id: String,
    dataset: String,
    partition_by: Vec<String>,
}

impl Facts {
    fn path(lake: &std::path::Path) -> PathBuf {
        lake.join(sluice_lake::LEDGER_DIR).join("delta.json")
    }
    /// Where the follower keeps the partition columns' types.
    fn types_path(lake: &std::path::Path) -> PathBuf {
        lake.join(sluice_lake::LEDGER_DIR).join("delta-partition-types.json")
    }
    fn write(&self, lake: &std::path::Path) -> Result<(), SinkError> {
        let path = Self::path(lake);
        let dir = path.parent().expect("in a directory");
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
        table::write_replacing(&path, &serde_json::to_vec_pretty(self).unwrap_or_default())
            .map_err(|e| SinkError::io(&path, e))
    }
}

/// Bring the Delta log of the table at `table` in line with its lake's ledger now (after
/// `sluice lake compact`, which changes the ledger without a writer). `false`: not a table
/// Sluice writes.
pub fn follow(table: &std::path::Path) -> Result<bool, SinkError> {
    let lake = table.join(STATE_DIR);
    let Ok(text) = std::fs::read(Facts::path(&lake)) else { return Ok(false) };
    let facts: Facts = serde_json::from_slice(&text)
        .map_err(|e| SinkError::Config(format!("{}: {e}", Facts::path(&lake).display())))?;
    let follower = DeltaFollower::new(table, facts.app_id, Some(Facts::types_path(&lake)))?;
    let state = sluice_lake::followed_state(&lake, &facts.dataset, &facts.partition_by)?;
    sluice_lake::LedgerFollower::follow(&follower, &state)?;
    Ok(true)
}

/// The lake half of a delta sink's spec, for the lake connector's checks.
fn lake_sink_spec(spec: &SinkSpec, d: &DeltaSpec) -> SinkSpec {
    SinkSpec { config: Arc::new(d.lake.clone()), ..spec.clone() }
}

/// Arrow types a Delta table cannot hold as the lake writes them.
fn unsupported(dt: &arrow_schema::DataType) -> Option<&'static str> {
    use arrow_schema::{DataType as D, TimeUnit};
    match dt {
        D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => Some("Delta has no unsigned integers"),
        D::Timestamp(TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Nanosecond, _) => {
            Some("Delta timestamps are microseconds")
        }
        D::Time32(_) | D::Time64(_) | D::Duration(_) | D::Interval(_) => {
            Some("Delta has no time-of-day or duration type")
        }
        D::Date64 => Some("Delta dates are days (date32)"),
        _ => None,
    }
}

/// A delta sink: the lake writes and keeps the state; the follower commits the Delta log.
pub struct DeltaSink {
    lake: Lake,
    follower: Arc<DeltaFollower>,
    partition_by: Vec<String>,
    dataset: String,
}

impl Sink for DeltaSink {
    fn check_schema(&self, schema: &SchemaRef) -> Result<(), SinkError> {
        self.follower.learn_partition_types(schema, &self.partition_by);
        self.lake.check_schema(schema)
    }
    fn begin(&self, unit: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError> {
        Ok(Box::new(OwnedWriter {
            inner: self.lake.begin(unit)?,
            follower: self.follower.clone(),
            partition_by: self.partition_by.clone(),
            dataset: self.dataset.clone(),
            checked: None,
        }))
    }
    fn state(&self) -> &dyn StateStore {
        self.lake.state()
    }
    fn remove_deleted(&self, source: &dyn Source, present: &[SourceUnit]) -> Result<Vec<SourceUnit>, SinkError> {
        self.lake.remove_deleted(source, present)
    }
    fn rejects_location(&self) -> Option<String> {
        self.lake.rejects_location()
    }
    fn maintain(&self) -> Result<Option<String>, SinkError> {
        self.lake.maintain()
    }
    fn set_lineage(&self, lineage: Arc<sluice_core::lineage::Lineage>) {
        self.follower.set_lineage(serde_json::to_value(lineage.as_ref()).unwrap_or_default());
        self.lake.set_lineage(lineage);
    }
}

/// Learns the partition columns' types from the first batch, then writes through the lake.
struct OwnedWriter {
    inner: Box<dyn UnitWriter>,
    follower: Arc<DeltaFollower>,
    partition_by: Vec<String>,
    dataset: String,
    /// The last schema checked against the table's types.
    checked: Option<SchemaRef>,
}

impl UnitWriter for OwnedWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if self.checked.as_ref() != Some(&batch.schema()) {
            self.follower.learn_partition_types(&batch.schema(), &self.partition_by);
            self.follower.check_types(&batch.schema(), &self.dataset)?;
            self.checked = Some(batch.schema());
        }
        self.inner.write(batch)
    }
    fn write_rejects(&mut self, rejects: &RecordBatch) -> Result<(), SinkError> {
        self.inner.write_rejects(rejects)
    }
    fn write_state(&mut self, state: UnitState) -> Result<(), SinkError> {
        self.inner.write_state(state)
    }
    fn content_hash(&mut self, hash: &str, bytes: u64) {
        self.inner.content_hash(hash, bytes)
    }
    fn high_water(&mut self, mark: &str) {
        self.inner.high_water(mark)
    }
    fn input_rows(&mut self, rows_in: u64, rows_rejected: u64) {
        self.inner.input_rows(rows_in, rows_rejected)
    }
    fn continues(&mut self) {
        self.inner.continues()
    }
    fn commit(self: Box<Self>) -> Result<CommitReport, SinkError> {
        self.inner.commit()
    }
    fn abort(self: Box<Self>) {
        self.inner.abort()
    }
}

impl Publication for DeltaSink {
    /// The catalog lives inside the table's `_sluice` directory.
    fn catalog_dir(&self) -> PathBuf {
        self.lake.root().to_path_buf()
    }
    fn commits(&self) -> u64 {
        self.lake.commits()
    }
    /// The dataset's view lists the files of the Delta table's current snapshot (the same the
    /// ledger holds once the log has followed it); rejects come from the ledger.
    fn snapshot(&self) -> Result<LakeSnapshot, SinkError> {
        let mut snap = self.lake.snapshot()?;
        let files = self.follower.snapshot_files()?;
        if let Some(ds) = snap.datasets.iter_mut().find(|d| d.name != sluice_lake::REJECTS_DIR) {
            ds.files = files;
        }
        Ok(snap)
    }
}
