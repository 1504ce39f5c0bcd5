//! The runner's plan phase and sink errors against fake sources and sinks: deletions are decided
//! from the full listing (a filter does not hide units), a touched unit is hashed and confirmed,
//! and a sink's data error follows `sink.on_error` while its I/O error stops the run.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_core::error::{SinkError, SourceError};
use sluice_core::runner::{Job, NoProgress, RunOptions, run};
use sluice_core::sink::{CommitReport, DeadLetter, Freshness, Sink, StateStore, UnitWriter};
use sluice_core::source::{BatchStream, Source, SourceItem, SourceUnit};
use sluice_core::spec::{OnError, PipelineSpec, Settings, SinkSpec};

fn unit(name: &str) -> SourceUnit {
    SourceUnit {
        source: "s".into(),
        location: format!("/in/{name}"),
        locator: name.into(),
        member: None,
        size: 1,
        version: 1,
        content_hash: None,
    }
}

struct FakeSource(Vec<&'static str>);

impl Source for FakeSource {
    fn name(&self) -> &str {
        "s"
    }
    fn schema(&self) -> Option<SchemaRef> {
        None
    }
    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
        Ok(self.0.iter().map(|n| unit(n)).collect())
    }
    fn open(&self, _unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let hash = SourceItem::ContentHash { hash: "h:read".into(), bytes: 1 };
        Ok(Box::new(vec![Ok(SourceItem::Batch(batch)), Ok(hash)].into_iter()))
    }
    fn content_hash(&self, unit: &SourceUnit) -> Result<Option<String>, SourceError> {
        Ok(Some(if unit.locator.contains("same") { "h:same".into() } else { "h:other".into() }))
    }
}

/// Committed units with the content hash their writer was given.
type Commits = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Default)]
struct FakeSink {
    /// (source, the units it was shown) per `remove_deleted` call.
    listings: Mutex<Vec<(String, Vec<String>)>>,
    confirmed: Mutex<Vec<(String, Option<String>)>>,
    committed: Commits,
}

impl Sink for FakeSink {
    fn check_schema(&self, _schema: &SchemaRef) -> Result<(), SinkError> {
        Ok(())
    }
    fn begin(&self, unit: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError> {
        Ok(Box::new(FakeWriter { unit: unit.clone(), hash: None, committed: self.committed.clone() }))
    }
    fn state(&self) -> &dyn StateStore {
        self
    }
    fn remove_deleted(&self, source: &dyn Source, present: &[SourceUnit]) -> Result<Vec<SourceUnit>, SinkError> {
        let names = present.iter().map(|u| u.locator.clone()).collect();
        self.listings.lock().unwrap().push((source.name().into(), names));
        Ok(vec![unit("gone")])
    }
}

impl StateStore for FakeSink {
    fn is_committed(&self, _unit: &SourceUnit) -> Result<bool, SinkError> {
        unreachable!("the runner asks for freshness")
    }
    fn freshness(&self, unit: &SourceUnit) -> Result<Freshness, SinkError> {
        Ok(if unit.locator.starts_with("touched") { Freshness::Touched } else { Freshness::New })
    }
    fn confirm_unchanged(&self, unit: &SourceUnit) -> Result<bool, SinkError> {
        self.confirmed.lock().unwrap().push((unit.locator.clone(), unit.content_hash.clone()));
        Ok(unit.content_hash.as_deref() == Some("h:same"))
    }
    fn dead_letter(&self, _letter: &DeadLetter) -> Result<(), SinkError> {
        Ok(())
    }
}

struct FakeWriter {
    unit: SourceUnit,
    hash: Option<String>,
    committed: Commits,
}

impl UnitWriter for FakeWriter {
    fn write(&mut self, _batch: &RecordBatch) -> Result<(), SinkError> {
        match self.unit.locator.as_str() {
            n if n.starts_with("bad") => {
                Err(SinkError::Schema { dataset: "d".into(), message: "column `x` changed type".into() })
            }
            n if n.starts_with("io") => Err(SinkError::io("/lake/d", std::io::Error::other("disk full"))),
            _ => Ok(()),
        }
    }
    fn content_hash(&mut self, hash: &str, _bytes: u64) {
        self.hash = Some(hash.into());
    }
    fn commit(self: Box<Self>) -> Result<CommitReport, SinkError> {
        self.committed.lock().unwrap().push((self.unit.locator.clone(), self.hash.clone()));
        Ok(CommitReport { rows: 2, ..Default::default() })
    }
    fn abort(self: Box<Self>) {}
}

fn job(units: Vec<&'static str>, on_error: OnError, sink: Arc<FakeSink>) -> Arc<Job> {
    let spec = PipelineSpec {
        name: "p".into(),
        origin: "p.yaml".into(),
        sources: Vec::new(),
        steps: Vec::new(),
        sink: SinkSpec {
            config: std::sync::Arc::new(sluice_core::spec::LakeSpec {
                compact: None,
                lake: "/lake".into(),
                dataset: "d".into(),
                partition_by: Vec::new(),
                mode: Default::default(),
                compression: Default::default(),
                zstd_level: 3,
                row_group_rows: 1024,
                key: Vec::new(),
                schema_policy: Default::default(),
                time_column: None,
                retain_replaced: sluice_core::spec::DEFAULT_RETAIN_REPLACED,
                on_source_deleted: Default::default(),
                sync: Default::default(),
            }),
            on_error,
        },
        settings: Settings { workers: 1, ..Default::default() },
    };
    Arc::new(Job { spec, sources: vec![Arc::new(FakeSource(units))], plugins: Vec::new(), sink })
}

fn run_job(job: Arc<Job>, opts: RunOptions) -> sluice_core::summary::RunSummary {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(job, opts, Arc::new(NoProgress), Arc::new(AtomicBool::new(false)))).unwrap()
}

#[test]
fn deletions_see_the_full_listing_and_touched_units_are_hashed_before_deciding() {
    let sink = Arc::new(FakeSink::default());
    let j = job(vec!["a", "skipped-by-filter", "touched-same", "touched-other"], OnError::Fail, sink.clone());
    let filter: sluice_core::runner::UnitFilter = Arc::new(|u: &SourceUnit| !u.locator.starts_with("skipped"));
    let s = run_job(j, RunOptions { filter: Some(filter), ..Default::default() });
    // The filter hides a unit from processing, never from the deletion decision.
    let listings = sink.listings.lock().unwrap().clone();
    assert_eq!(
        listings,
        [(
            "s".to_string(),
            vec!["a", "skipped-by-filter", "touched-same", "touched-other"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        )]
    );
    assert_eq!(s.files_deleted, 1);
    // Touched units are hashed by the source and confirmed (or not) by the sink.
    let confirmed = sink.confirmed.lock().unwrap().clone();
    assert_eq!(
        confirmed,
        [
            ("touched-same".to_string(), Some("h:same".to_string())),
            ("touched-other".to_string(), Some("h:other".to_string()))
        ]
    );
    assert_eq!((s.files_unchanged, s.files_committed), (1, 2));
    // The hash the source sent after the last batch reaches the writer.
    let committed = sink.committed.lock().unwrap().clone();
    assert!(committed.iter().all(|(_, h)| h.as_deref() == Some("h:read")), "{committed:?}");
}

#[test]
fn a_sink_data_error_follows_on_error_and_an_io_error_stops_the_run() {
    let sink = Arc::new(FakeSink::default());
    let s = run_job(job(vec!["bad", "good"], OnError::SkipFile, sink.clone()), RunOptions::default());
    assert_eq!((s.files_failed, s.files_committed), (1, 1));
    assert!(s.fatal.is_none());
    assert_eq!(s.failures[0].action, "skipped");
    assert!(s.failures[0].error.contains("pipeline `p`, file /in/bad: dataset `d`: column `x`"), "{:?}", s.failures);

    let s = run_job(job(vec!["bad", "good"], OnError::Fail, Arc::new(FakeSink::default())), RunOptions::default());
    assert_eq!(s.files_committed, 0);
    assert!(s.fatal.as_deref().unwrap().contains("file /in/bad: dataset `d`"), "{:?}", s.fatal);

    let sink = Arc::new(FakeSink::default());
    let s = run_job(job(vec!["io", "good"], OnError::SkipFile, sink.clone()), RunOptions::default());
    assert_eq!(s.files_committed, 0, "an I/O error stops the run whatever on_error says");
    assert!(s.fatal.as_deref().unwrap().contains("disk full"), "{:?}", s.fatal);
}
