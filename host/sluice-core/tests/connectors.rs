//! The runner against connectors that are neither files nor a lake: an incremental source whose
//! units are ranges of a table's rows, and an in-memory sink with a state store of its own. A
//! stateful step (a per-key window over the last three values) keeps keyed state across units
//! and runs through a dropped connection, a retry and restarts that keep nothing but the state
//! store, and its output is exactly a one-pass computation over the whole table.
//!
//! Nothing here is a lake type or a path. The two kinds (`rows`, `memory`) are registered the
//! way any new kind is: a `SourceKind`/`SinkKind` for the language (schema, resolver, located
//! errors) and a `SourceConnector`/`SinkConnector` for the runtime (`validate`'s checks and
//! `build`). The pipeline is YAML; the runner sees only the `Source`, `Sink` and `StateStore`
//! traits. Neither the runner, `watch`, nor `validate`'s connector checks know these kinds.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_config::{Kinds, Section, SinkKind, SourceKind};
use sluice_core::connector::{
    BuiltSink, Connectors, Finding, SinkConfig, SinkConnector, SourceConfig, SourceConnector,
};
use sluice_core::error::{PluginError, SinkError, SourceError};
use sluice_core::plugin::{Handler, Plugin, PluginInfo, StateSpec};
use sluice_core::runner::{Job, NoProgress, RunOptions, run};
use sluice_core::sink::{
    CommitReport, DeadLetter, KeyRange, KeyValues, KeyedUnit, Sink, StateStore, UnitState, UnitWriter,
};
use sluice_core::source::{BatchStream, Source, SourceItem, SourceUnit};
use sluice_core::spec::{Limits, PipelineSpec, Settings, SinkSpec, SourceSpec};
use sluice_core::summary::RunSummary;

const RANGE_ROWS: usize = 100;

/// The rows of a table: `symbol` cycles through three keys, `t` is the row id, `v` varies.
#[derive(Default)]
struct Table {
    rows: Mutex<usize>,
}

impl Table {
    fn grow(&self, to: usize) {
        *self.rows.lock().unwrap() = to;
    }
    fn len(&self) -> usize {
        *self.rows.lock().unwrap()
    }
}

fn symbol(row: usize) -> &'static str {
    ["A", "B", "C"][row % 3]
}

fn value(row: usize) -> i64 {
    ((row * 7919) % 13) as i64
}

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn rows_batch(from: usize, to: usize) -> RecordBatch {
    RecordBatch::try_new(
        input_schema(),
        vec![
            Arc::new(StringArray::from_iter_values((from..to).map(symbol))),
            Arc::new(Int64Array::from_iter_values((from..to).map(|r| r as i64))),
            Arc::new(Int64Array::from_iter_values((from..to).map(value))),
        ],
    )
    .unwrap()
}

/// An incremental source over [`Table`]: from the committed high-water mark (the next row id),
/// ranges of up to [`RANGE_ROWS`] rows. A range named in `drop_once` loses its connection after
/// its first batch, once.
struct RowsSource {
    table: Arc<Table>,
    range_rows: usize,
    drop_once: Mutex<Vec<String>>,
}

fn range(unit: &SourceUnit) -> (usize, usize) {
    let (from, to) = unit.locator.strip_prefix("trades/rows/").unwrap().split_once('-').unwrap();
    (from.parse().unwrap(), to.parse().unwrap())
}

impl Source for RowsSource {
    fn name(&self) -> &str {
        "trades"
    }
    fn schema(&self) -> Option<SchemaRef> {
        Some(input_schema())
    }
    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
        self.discover_after(None)
    }
    fn discover_after(&self, high_water: Option<&str>) -> Result<Vec<SourceUnit>, SourceError> {
        let start: usize = high_water.map_or(0, |m| m.parse().unwrap());
        let len = self.table.len();
        Ok((start..len)
            .step_by(self.range_rows)
            .map(|from| {
                let to = (from + self.range_rows).min(len);
                SourceUnit {
                    source: "trades".into(),
                    locator: format!("trades/rows/{from}-{to}"),
                    member: None,
                    location: format!("memory://trades?rows={from}..{to}"),
                    size: ((to - from) * 24) as u64,
                    version: 0,
                    content_hash: None,
                }
            })
            .collect())
    }
    fn incremental(&self) -> bool {
        true
    }
    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let (from, to) = range(unit);
        let mid = (from + 50).min(to);
        let mut items = vec![Ok(SourceItem::Batch(rows_batch(from, mid)))];
        let mut drops = self.drop_once.lock().unwrap();
        if let Some(i) = drops.iter().position(|l| *l == unit.locator) {
            drops.remove(i);
            items.push(Err(SourceError::Io {
                path: unit.location.clone(),
                source: std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer"),
            }));
        } else {
            if mid < to {
                items.push(Ok(SourceItem::Batch(rows_batch(mid, to))));
            }
            items.push(Ok(SourceItem::HighWater(to.to_string())));
        }
        Ok(Box::new(items.into_iter()))
    }
}

/// What the in-memory sink committed for one unit, atomically.
#[derive(Clone)]
struct Committed {
    unit: SourceUnit,
    batches: Vec<RecordBatch>,
    states: Vec<UnitState>,
}

/// The in-memory sink's own state store: it outlives sink and source handles, as a database
/// outlives the processes that write to it.
#[derive(Default)]
struct Store {
    committed: Mutex<Vec<Committed>>,
    /// The mark each commit recorded, in commit order.
    marks: Mutex<HashMap<String, String>>,
    failures: Mutex<HashMap<String, (u32, String)>>,
}

impl Store {
    fn keyed(&self, step: &str) -> Vec<KeyedUnit> {
        let mut out = Vec::new();
        for c in self.committed.lock().unwrap().iter() {
            for s in c.states.iter().filter(|s| s.step == step) {
                for r in &s.ranges {
                    out.push(KeyedUnit {
                        unit: c.unit.clone(),
                        unit_id: c.unit.id(),
                        range: r.clone(),
                        lookback: s.lookback,
                        span: s.span,
                    });
                }
            }
        }
        out.sort_by_key(|k| (k.range.key.clone(), k.range.min));
        out
    }

    /// Every committed row, in `t` order.
    fn rows(&self) -> Vec<(String, i64, i64, i64)> {
        let mut out = Vec::new();
        for c in self.committed.lock().unwrap().iter() {
            for b in &c.batches {
                let s = b.column_by_name("symbol").unwrap().as_string::<i32>();
                let col = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>().clone();
                let (t, v, w) = (col("t"), col("v"), col("sum3"));
                for i in 0..b.num_rows() {
                    out.push((s.value(i).to_string(), t.value(i), v.value(i), w.value(i)));
                }
            }
        }
        out.sort_by_key(|r| r.1);
        out
    }
}

impl StateStore for Store {
    fn is_committed(&self, unit: &SourceUnit) -> Result<bool, SinkError> {
        Ok(self.committed.lock().unwrap().iter().any(|c| c.unit == *unit))
    }
    fn high_water(&self, source: &str) -> Result<Option<String>, SinkError> {
        Ok(self.marks.lock().unwrap().get(source).cloned())
    }
    fn dead_letter(&self, _letter: &DeadLetter) -> Result<(), SinkError> {
        Ok(())
    }
    fn failures(&self, unit: &SourceUnit) -> Result<u32, SinkError> {
        Ok(self.failures.lock().unwrap().get(&unit.id()).map_or(0, |f| f.0))
    }
    fn record_failure(&self, unit: &SourceUnit, error: &str) -> Result<(), SinkError> {
        let mut f = self.failures.lock().unwrap();
        let e = f.entry(unit.id()).or_insert((0, String::new()));
        *e = (e.0 + 1, error.to_string());
        Ok(())
    }
    fn key_history(&self, step: &str, key: &KeyValues) -> Result<Vec<KeyedUnit>, SinkError> {
        Ok(self.keyed(step).into_iter().filter(|k| &k.range.key == key).collect())
    }
    fn keyed_units(&self, step: &str) -> Result<Vec<Vec<KeyedUnit>>, SinkError> {
        let mut by_key: Vec<Vec<KeyedUnit>> = Vec::new();
        for k in self.keyed(step) {
            match by_key.last_mut() {
                Some(last) if last[0].range.key == k.range.key => last.push(k),
                _ => by_key.push(vec![k]),
            }
        }
        Ok(by_key)
    }
    fn unit_ranges(&self, step: &str, unit_id: &str) -> Result<Vec<KeyRange>, SinkError> {
        Ok(self.keyed(step).into_iter().filter(|k| k.unit_id == unit_id).map(|k| k.range).collect())
    }
    fn state_tails(&self, step: &str, unit_id: &str) -> Result<Option<RecordBatch>, SinkError> {
        let committed = self.committed.lock().unwrap();
        let c = committed.iter().find(|c| c.unit.id() == unit_id);
        Ok(c.and_then(|c| c.states.iter().find(|s| s.step == step)).and_then(|s| s.tails.clone()))
    }
}

struct MemorySink {
    store: Arc<Store>,
}

impl Sink for MemorySink {
    fn check_schema(&self, schema: &SchemaRef) -> Result<(), SinkError> {
        match schema.column_with_name("sum3") {
            Some(_) => Ok(()),
            None => Err(SinkError::Schema { dataset: "memory".into(), message: "no column `sum3`".into() }),
        }
    }
    fn begin(&self, unit: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError> {
        Ok(Box::new(MemoryWriter {
            store: self.store.clone(),
            pending: Committed { unit: unit.clone(), batches: Vec::new(), states: Vec::new() },
            mark: None,
        }))
    }
    fn state(&self) -> &dyn StateStore {
        &*self.store
    }
}

struct MemoryWriter {
    store: Arc<Store>,
    pending: Committed,
    mark: Option<String>,
}

impl UnitWriter for MemoryWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.pending.batches.push(batch.clone());
        Ok(())
    }
    fn write_state(&mut self, state: UnitState) -> Result<(), SinkError> {
        self.pending.states.push(state);
        Ok(())
    }
    fn high_water(&mut self, mark: &str) {
        self.mark = Some(mark.to_string());
    }
    /// Data, keyed state and the mark become visible together, under one lock.
    fn commit(self: Box<Self>) -> Result<CommitReport, SinkError> {
        let rows = self.pending.batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut committed = self.store.committed.lock().unwrap();
        let mut marks = self.store.marks.lock().unwrap();
        committed.retain(|c| c.unit.id() != self.pending.unit.id());
        if let Some(mark) = self.mark {
            marks.insert(self.pending.unit.source.clone(), mark);
        }
        committed.push(self.pending);
        Ok(CommitReport { rows, ..Default::default() })
    }
    fn abort(self: Box<Self>) {}
}

/// A native stateful step: per `symbol`, in `t` order, the sum of the last three `v`. A fresh
/// instance resumes exactly when seeded with a key's last two rows (`lookback_rows: 2`).
struct Sum3 {
    info: PluginInfo,
}

#[derive(Default)]
struct Sum3Handler {
    last: HashMap<String, VecDeque<i64>>,
}

impl Sum3Handler {
    fn push(&mut self, symbol: &str, v: i64) -> i64 {
        let q = self.last.entry(symbol.to_string()).or_default();
        q.push_back(v);
        if q.len() > 3 {
            q.pop_front();
        }
        q.iter().sum()
    }
}

impl Plugin for Sum3 {
    fn info(&self) -> &PluginInfo {
        &self.info
    }
    fn instantiate_with_tables(
        &self,
        _config_json: &str,
        _tables: &[Arc<sluice_core::plugin::LookupTable>],
        _limits: &Limits,
    ) -> Result<Box<dyn Handler>, PluginError> {
        Ok(Box::new(Sum3Handler::default()))
    }
}

impl Handler for Sum3Handler {
    fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("sum3", DataType::Int64, false));
        Ok(Arc::new(Schema::new(fields)))
    }
    fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
        Ok(Some(StateSpec {
            keys: vec!["symbol".into()],
            order_by: "t".into(),
            lookback_rows: 2,
            ..Default::default()
        }))
    }
    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
        let s = batch.column_by_name("symbol").unwrap().as_string::<i32>();
        let v = batch.column_by_name("v").unwrap().as_primitive::<Int64Type>();
        let sums: Int64Array = (0..batch.num_rows()).map(|i| Some(self.push(s.value(i), v.value(i)))).collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(sums));
        let schema = self.output_schema(&batch.schema())?;
        Ok(vec![RecordBatch::try_new(schema, columns).map_err(|e| PluginError::BadOutput(e.to_string()))?])
    }
    fn seed(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        self.process(batch).map(|_| ())
    }
    fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError> {
        Ok(Vec::new())
    }
}

// The language half of the two kinds: their keys, as `sluice-config` checks and resolves them.

/// `kind: rows`: ranges of a table's rows.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRows {
    /// The table to read.
    table: String,
    /// Rows per unit; default 100.
    range_rows: Option<usize>,
}

#[derive(Debug, Serialize)]
struct RowsConfig {
    table: String,
    range_rows: usize,
}

impl SourceConfig for RowsConfig {
    fn kind(&self) -> &'static str {
        "rows"
    }
    fn definition(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct RowsKind;

impl SourceKind for RowsKind {
    fn name(&self) -> &'static str {
        "rows"
    }
    fn schema(&self) -> serde_json::Value {
        sluice_config::schema_of::<RawRows>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: serde_json::Value) -> Option<Arc<dyn SourceConfig>> {
        let raw: RawRows = cx.deserialize(keys)?;
        let range_rows = raw.range_rows.unwrap_or(RANGE_ROWS);
        if range_rows == 0 {
            cx.error(&["range_rows"], format!("source `{}`: range_rows must be at least 1", cx.name()), None);
        }
        Some(Arc::new(RowsConfig { table: cx.interpolate(&["table"], &raw.table), range_rows }))
    }
}

/// `kind: memory`: the in-memory sink.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    /// A column the output must have.
    require: Option<String>,
}

#[derive(Debug, Serialize)]
struct MemoryConfig {
    require: Option<String>,
}

impl SinkConfig for MemoryConfig {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn definition(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct MemoryKind;

impl SinkKind for MemoryKind {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn schema(&self) -> serde_json::Value {
        sluice_config::schema_of::<RawMemory>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: serde_json::Value) -> Option<Arc<dyn SinkConfig>> {
        let raw: RawMemory = cx.deserialize(keys)?;
        Some(Arc::new(MemoryConfig { require: raw.require }))
    }
}

// The runtime half: what `validate` checks and what a run builds.

/// Builds [`RowsSource`]s over the tables it knows.
struct RowsConnector {
    tables: HashMap<String, Arc<Table>>,
    drop_once: Vec<String>,
}

impl SourceConnector for RowsConnector {
    fn kind(&self) -> &'static str {
        "rows"
    }
    fn check(&self, spec: &SourceSpec) -> Vec<Finding> {
        let config = spec.config_as::<RowsConfig>().unwrap();
        if self.tables.contains_key(&config.table) {
            return Vec::new();
        }
        vec![Finding {
            path: vec!["sources".into(), spec.name.clone(), "table".into()],
            message: format!("source `{}`: no table `{}`", spec.name, config.table),
            hint: Some(format!("tables: {}", self.tables.keys().cloned().collect::<Vec<_>>().join(", "))),
        }]
    }
    fn build(&self, spec: &SourceSpec, _settings: &Settings) -> Result<Arc<dyn Source>, SourceError> {
        let config = spec.config_as::<RowsConfig>().unwrap();
        let table = self.tables.get(&config.table).ok_or_else(|| SourceError::Config {
            source_name: spec.name.clone(),
            message: format!("no table `{}`", config.table),
        })?;
        Ok(Arc::new(RowsSource {
            table: table.clone(),
            range_rows: config.range_rows,
            drop_once: Mutex::new(self.drop_once.clone()),
        }))
    }
}

/// Opens [`MemorySink`]s over one store.
struct MemoryConnector {
    store: Arc<Store>,
}

impl SinkConnector for MemoryConnector {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn check_output(&self, spec: &SinkSpec, output: &SchemaRef) -> Vec<Finding> {
        let config = spec.config_as::<MemoryConfig>().unwrap();
        match &config.require {
            Some(c) if output.index_of(c).is_err() => vec![Finding {
                path: vec!["sink".into(), "require".into()],
                message: format!("sink: column `{c}` is not in the pipeline's output"),
                hint: None,
            }],
            _ => Vec::new(),
        }
    }
    fn target(&self, _spec: &SinkSpec) -> String {
        "memory".into()
    }
    fn build(&self, _pipeline: &PipelineSpec) -> Result<BuiltSink, SinkError> {
        Ok(BuiltSink { sink: Arc::new(MemorySink { store: self.store.clone() }), publication: None })
    }
}

fn kinds() -> Kinds {
    Kinds::builtin().with_source(RowsKind).with_sink(MemoryKind)
}

const PIPELINE: &str = "\
pipeline: rows
sources:
  trades:
    kind: rows
    table: trades
    range_rows: 100
steps:
  - plugin: sum3
sink:
  kind: memory
  require: sum3
  on_error: skip_file
settings: {workers: 2}
";

fn parse(text: &str) -> Result<PipelineSpec, Vec<String>> {
    match sluice_config::parse_located_with(text, std::path::Path::new("rows.yaml"), &|_| None, &kinds()) {
        Ok(mut l) => Ok(l.remove(0).spec),
        Err(e) => Err(e.0.iter().map(|e| e.to_string()).collect()),
    }
}

/// A fresh process: the pipeline parsed, and sources, sink and plugins built by the registries
/// over the same table and state store.
fn job(table: &Arc<Table>, store: &Arc<Store>, drop_once: &[&str]) -> Arc<Job> {
    let spec = parse(PIPELINE).unwrap();
    let connectors = Connectors::new()
        .with_source(RowsConnector {
            tables: HashMap::from([("trades".to_string(), table.clone())]),
            drop_once: drop_once.iter().map(|s| s.to_string()).collect(),
        })
        .with_sink(MemoryConnector { store: store.clone() });
    let info = PluginInfo {
        name: "sum3".into(),
        version: "1".into(),
        summary: "sum of the last three values per key".into(),
        config_doc: String::new(),
        contract: "native".into(),
        component_hash: String::new(),
        sdk: String::new(),
    };
    let sources = connectors.build_sources(&spec).unwrap();
    let sink = connectors.build_sink(&spec).unwrap().sink;
    Arc::new(Job { spec, sources, plugins: vec![Arc::new(Sum3 { info })], sink })
}

fn run_job(job: Arc<Job>) -> RunSummary {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(job, RunOptions::default(), Arc::new(NoProgress), Arc::new(AtomicBool::new(false)))).unwrap()
}

/// The window over the whole table in one pass: what every run together must have written.
fn expected(rows: usize) -> Vec<(String, i64, i64, i64)> {
    let mut h = Sum3Handler::default();
    (0..rows).map(|r| (symbol(r).to_string(), r as i64, value(r), h.push(symbol(r), value(r)))).collect()
}

/// Row for row, naming the first that differs.
fn same_rows(got: &[(String, i64, i64, i64)], want: &[(String, i64, i64, i64)], what: &str) {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        panic!("{what}: row {i} is {:?}, expected {:?}", got[i], want[i]);
    }
    assert_eq!(got.len(), want.len(), "{what}: row count");
}

#[test]
fn row_ranges_into_a_memory_sink_through_keyed_state_a_dropped_connection_a_retry_and_restarts() {
    let table = Arc::new(Table::default());
    let store = Arc::new(Store::default());
    table.grow(500);

    // Run 1: the third range loses its connection after its first batch. The two before it
    // commit; it commits nothing; the two after it wait, so the mark stays at row 200.
    let s = run_job(job(&table, &store, &["trades/rows/200-300"]));
    assert_eq!((s.files_committed, s.files_failed), (2, 1), "{s:?}");
    assert!(s.failures[0].error.contains("connection reset by peer"), "{:?}", s.failures);
    assert!(s.failures[0].file.contains("memory://trades?rows=200..300"), "{:?}", s.failures);
    assert_eq!(store.high_water("trades").unwrap().as_deref(), Some("200"));
    same_rows(&store.rows(), &expected(200), "the failed range left nothing behind");
    let failed = job(&table, &store, &[]).sources[0].discover_after(Some("200")).unwrap();
    assert_eq!(store.failures(&failed[0]).unwrap(), 1);

    // Run 2, a new process: the failed range and the two after it, seeded from the state store.
    let s = run_job(job(&table, &store, &[]));
    assert_eq!((s.files_seen, s.files_committed, s.files_failed), (3, 3, 0), "{s:?}");
    assert_eq!(store.high_water("trades").unwrap().as_deref(), Some("500"));
    same_rows(&store.rows(), &expected(500), "after the retry");

    // Nothing new: nothing to do.
    let s = run_job(job(&table, &store, &[]));
    assert_eq!((s.files_seen, s.files_committed), (0, 0), "{s:?}");

    // The table grows, with a partial last range; another restart picks up from the mark.
    table.grow(650);
    let s = run_job(job(&table, &store, &[]));
    assert_eq!((s.files_seen, s.files_committed), (2, 2), "{s:?}");
    table.grow(700);
    let s = run_job(job(&table, &store, &[]));
    assert_eq!((s.files_seen, s.files_committed), (1, 1), "{s:?}");
    assert_eq!(store.high_water("trades").unwrap().as_deref(), Some("700"));
    let rows = store.rows();
    assert_eq!(rows.len(), 700, "no row lost or written twice");
    same_rows(&rows, &expected(700), "keyed state carried across units, the failure and every restart");
}

#[test]
fn a_new_kind_gets_located_errors_validate_checks_and_a_place_in_the_schema() {
    // Errors in the kinds' own keys, located, in one pass.
    let bad =
        PIPELINE.replace("range_rows: 100", "range_rows: many\n    tabel: x").replace("kind: memory", "kind: memroy");
    let errs = parse(&bad).unwrap_err();
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs.iter().any(|e| e.starts_with("rows.yaml:6:17:") && e.contains("range_rows")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.starts_with("rows.yaml:7:5:") && e.contains("`tabel`")), "{errs:#?}");
    assert!(
        errs.iter().any(|e| e.starts_with("rows.yaml:11:9:")
            && e.contains("unknown sink kind `memroy`")
            && e.contains("did you mean `memory`?")),
        "{errs:#?}"
    );
    let errs = parse(&PIPELINE.replace("range_rows: 100", "range_rows: 0")).unwrap_err();
    assert_eq!(errs, ["rows.yaml:6:17: source `trades`: range_rows must be at least 1"]);
    // The built-in kinds still parse beside them.
    let both = PIPELINE.replace("sources:\n", "sources:\n  files:\n    path: in\n    format: {csv: {header: true}}\n");
    let spec = parse(&both).unwrap();
    assert_eq!(spec.sources.iter().map(|s| s.kind()).collect::<Vec<_>>(), ["directory", "rows"]);

    // `validate`'s connector checks: a table that does not exist, a column the sink requires.
    let spec = parse(PIPELINE).unwrap();
    let connectors = Connectors::new()
        .with_source(RowsConnector { tables: HashMap::new(), drop_once: Vec::new() })
        .with_sink(MemoryConnector { store: Arc::new(Store::default()) });
    let checked = connectors.check_sources(&spec);
    assert!(checked.sources.is_empty());
    assert_eq!(checked.findings[0].path, ["sources", "trades", "table"]);
    assert_eq!(checked.findings[0].message, "source `trades`: no table `trades`");
    let found = connectors.check_output(&spec, &input_schema());
    assert_eq!(found[0].path, ["sink", "require"]);

    // The JSON Schema offers every kind to editors.
    let schema = kinds().json_schema();
    let sources = schema["properties"]["sources"]["additionalProperties"]["anyOf"].as_array().unwrap();
    let consts: Vec<&str> = sources.iter().filter_map(|s| s["properties"]["kind"]["const"].as_str()).collect();
    assert_eq!(consts, ["directory", "rows"]);
    assert!(sources[1]["properties"].get("table").is_some() && sources[1]["properties"].get("retries").is_some());
}
