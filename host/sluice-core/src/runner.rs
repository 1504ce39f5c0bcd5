//! The runner: discovers units, fans them out to a pool of blocking workers, and collects results.
//!
//! Async at the edges, sync in the middle: the orchestrator is a tokio task that feeds units into
//! a bounded channel and reacts to signals; each worker is a blocking thread that owns its handler
//! instances. Within a unit, a reader thread parses the source into a bounded channel of batches
//! while the worker runs the handler chain and encodes output, so memory per worker is bounded by
//! a few batches whatever the input size. Every spawned task and thread is joined.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::{Location, PluginError, SinkError, SourceError};
use crate::plugin::{Handler, Plugin};
use crate::sink::{DeadLetter, Sink};
use crate::source::{Source, SourceItem, SourceUnit, rejects_batch};
use crate::spec::{OnError, PipelineSpec};
use crate::summary::{RunSummary, StepStats, UnitFailure};

/// Everything a run needs, already loaded.
pub struct Job {
    pub spec: PipelineSpec,
    pub sources: Vec<Arc<dyn Source>>,
    /// One loaded plugin per step, aligned with `spec.steps`.
    pub plugins: Vec<Arc<dyn Plugin>>,
    pub sink: Arc<dyn Sink>,
}

/// Decides which discovered units a run takes (e.g. `sluice watch` takes only complete files).
pub type UnitFilter = Arc<dyn Fn(&SourceUnit) -> bool + Send + Sync>;

#[derive(Clone, Default)]
pub struct RunOptions {
    /// Reprocess units the lake already holds.
    pub force: bool,
    /// Override `settings.workers`.
    pub workers: Option<usize>,
    /// Take only the discovered units this accepts; the others are neither counted nor touched.
    pub filter: Option<UnitFilter>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("force", &self.force)
            .field("workers", &self.workers)
            .field("filter", &self.filter.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// Observes a run's progress (a progress bar, periodic log lines, metrics).
pub trait Progress: Send + Sync {
    fn planned(&self, _units: u64, _bytes: u64) {}
    fn unit_finished(&self, _unit: &SourceUnit, _rows: u64, _ok: bool) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// A run-level failure: the run could not start, or a `fail` policy stopped it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{location}: {error}")]
    Step { location: Box<Location>, error: PluginError },
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    #[error("schema check: {0}")]
    Schema(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a unit did not commit.
#[derive(Debug)]
enum UnitError {
    Source(SourceError),
    Step { index: usize, error: PluginError },
    Sink(SinkError),
}

struct UnitResult {
    unit: SourceUnit,
    rows_in: u64,
    /// Rows the source set aside into `_rejects`.
    rows_rejected: u64,
    outcome: Result<crate::sink::CommitReport, UnitError>,
    steps: Vec<StepStats>,
}

/// Checks the schema flowing through the chain: the sources' schema (when known without reading
/// data) through every step's declared output schema. Each step is constructed from its config,
/// so config errors surface here too. Returns the final schema, or `None` when the source schema
/// is only known after reading data. Has no side effects.
pub fn chain_schema(
    spec: &PipelineSpec,
    sources: &[Arc<dyn Source>],
    plugins: &[Arc<dyn Plugin>],
) -> Result<Option<SchemaRef>, RunError> {
    let mut schema = None;
    for src in sources {
        match (&schema, src.schema()) {
            (None, s) => schema = s,
            (Some(first), Some(other)) if other.fields() != first.fields() => {
                return Err(RunError::Schema(format!(
                    "sources `{}` and `{}` yield different schemas",
                    sources[0].name(),
                    src.name()
                )));
            }
            _ => {}
        }
    }
    for (i, (step, plugin)) in spec.steps.iter().zip(plugins).enumerate() {
        let location = step_location(spec, i, None);
        let mut h = plugin
            .instantiate(&step.config_json, &step.limits)
            .map_err(|error| RunError::Step { location: Box::new(location.clone()), error })?;
        if let Some(s) = &schema {
            schema = Some(h.output_schema(s).map_err(|error| RunError::Step { location: Box::new(location), error })?);
        }
    }
    Ok(schema)
}

fn step_location(spec: &PipelineSpec, index: usize, file: Option<&SourceUnit>) -> Location {
    let step = &spec.steps[index];
    Location {
        pipeline: spec.name.clone(),
        step: Some(index),
        step_name: Some(step.name.clone()),
        plugin: Some(step.plugin.to_string()),
        file: file.map(|u| u.display_name()),
    }
}

/// Run a job to completion. `cancel` is set by the caller (e.g. on SIGINT) to stop taking new
/// units; units in flight are finished and committed.
///
/// Errors before any data moves (a bad chain, an unreadable source directory) are returned as
/// `Err`. A `fail` policy that stops the run mid-way is reported in `RunSummary::fatal`, with the
/// summary of what was committed until then.
pub async fn run(
    job: Arc<Job>,
    opts: RunOptions,
    progress: Arc<dyn Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let mut summary = RunSummary {
        pipeline: job.spec.name.clone(),
        steps: job.spec.steps.iter().map(|s| StepStats { name: s.name.clone(), ..Default::default() }).collect(),
        ..Default::default()
    };

    // Plan: validate the chain, list units, drop the unchanged ones. All blocking work.
    let plan_job = job.clone();
    let force = opts.force;
    let filter = opts.filter.clone();
    let (units, unchanged, poisoned) = tokio::task::spawn_blocking(move || -> Result<_, RunError> {
        if let Some(schema) = chain_schema(&plan_job.spec, &plan_job.sources, &plan_job.plugins)? {
            plan_job.sink.check_schema(&schema)?;
        }
        let mut units = Vec::new();
        let mut unchanged = 0u64;
        let mut poisoned = Vec::new();
        for src in &plan_job.sources {
            let retries = plan_job.spec.sources.iter().find(|s| s.name == src.name()).map_or(u32::MAX, |s| s.retries);
            for unit in src.discover()? {
                if filter.as_ref().is_some_and(|f| !f(&unit)) {
                    continue;
                }
                if !force && plan_job.sink.is_committed(&unit)? {
                    unchanged += 1;
                } else if !force && plan_job.sink.failures(&unit)? >= retries {
                    poisoned.push(unit);
                } else {
                    units.push(unit);
                }
            }
        }
        Ok((units, unchanged, poisoned))
    })
    .await
    .map_err(|e| RunError::Internal(format!("planner panicked: {e}")))??;

    summary.files_seen = units.len() as u64 + unchanged + poisoned.len() as u64;
    summary.files_unchanged = unchanged;
    // Poisoned units failed `retries` times with this fingerprint: listed, not retried.
    summary.files_poisoned = poisoned.len() as u64;
    for unit in poisoned {
        let file = unit.display_name();
        let error = "failed too many times; skipped until the file changes or `--force` is given".to_string();
        tracing::warn!(file = %file, "poisoned: {error}");
        summary.failures.push(UnitFailure { file, step: None, action: "poisoned".into(), error });
    }
    progress.planned(units.len() as u64, units.iter().map(|u| u.size).sum());

    let workers = opts.workers.unwrap_or(job.spec.settings.workers).max(1).min(units.len().max(1));
    let (unit_tx, unit_rx) = tokio::sync::mpsc::channel::<SourceUnit>(workers);
    let (res_tx, mut res_rx) = tokio::sync::mpsc::channel::<UnitResult>(workers);
    let unit_rx = Arc::new(Mutex::new(unit_rx));
    let abort = Arc::new(AtomicBool::new(false));

    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (job, rx, tx, abort) = (job.clone(), unit_rx.clone(), res_tx.clone(), abort.clone());
        handles.push(tokio::task::spawn_blocking(move || worker(&job, &rx, &tx, &abort)));
    }
    drop(res_tx);

    // Feed units while collecting results, so a `fail` policy or a signal stops feeding early.
    let mut pending = units.into_iter().peekable();
    let mut fatal: Option<RunError> = None;
    while !cancel.load(Ordering::SeqCst) && !abort.load(Ordering::SeqCst) && fatal.is_none() && pending.peek().is_some()
    {
        tokio::select! {
            permit = unit_tx.reserve() => match permit {
                Ok(p) => p.send(pending.next().expect("peeked")),
                Err(_) => break,
            },
            res = res_rx.recv() => match res {
                Some(res) => {
                    if let Some(err) = absorb(&job, &mut summary, res, &*progress) {
                        abort.store(true, Ordering::SeqCst);
                        fatal.get_or_insert(err);
                    }
                }
                None => break,
            },
            // Re-check the cancel flag now and then.
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    // Close the channel so workers exit once the units in flight are done.
    drop(unit_tx);
    while let Some(res) = res_rx.recv().await {
        if let Some(err) = absorb(&job, &mut summary, res, &*progress) {
            abort.store(true, Ordering::SeqCst);
            fatal.get_or_insert(err);
        }
    }
    for h in handles {
        h.await.map_err(|e| RunError::Internal(format!("worker panicked: {e}")))?;
    }
    summary.interrupted = cancel.load(Ordering::SeqCst);
    summary.fatal = fatal.map(|e| e.to_string());
    summary.finish(started.elapsed());
    Ok(summary)
}

/// Fold a unit result into the summary; returns a fatal error when the policy says stop.
fn absorb(job: &Job, summary: &mut RunSummary, res: UnitResult, progress: &dyn Progress) -> Option<RunError> {
    for (acc, st) in summary.steps.iter_mut().zip(&res.steps) {
        acc.merge(st);
    }
    summary.rows_in += res.rows_in;
    let file = res.unit.display_name();
    match res.outcome {
        Ok(report) => {
            summary.files_committed += 1;
            summary.rows_rejected += res.rows_rejected;
            summary.rows_written += report.rows;
            summary.bytes_written += report.bytes;
            summary.bytes_in += res.unit.size;
            tracing::info!(file = %file, rows = report.rows, files = report.files.len(), bytes = report.bytes, "committed");
            progress.unit_finished(&res.unit, res.rows_in, true);
            None
        }
        Err(err) => {
            summary.files_failed += 1;
            progress.unit_finished(&res.unit, res.rows_in, false);
            let (step, policy, message, fatal) = match err {
                UnitError::Step { index, error } => {
                    let spec = &job.spec.steps[index];
                    let location = step_location(&job.spec, index, Some(&res.unit));
                    let message = format!("{location}: {error}");
                    let fatal = (spec.on_error == OnError::Fail)
                        .then_some(RunError::Step { location: Box::new(location), error });
                    (Some(spec.name.clone()), spec.on_error, message, fatal)
                }
                // An unreadable file is recorded and skipped; the next run retries it.
                UnitError::Source(e) => (None, OnError::SkipFile, e.to_string(), None),
                UnitError::Sink(e) => {
                    let message = e.to_string();
                    (None, OnError::Fail, message, Some(RunError::Sink(e)))
                }
            };
            let action = match policy {
                OnError::Fail => "failed",
                OnError::SkipFile => "skipped",
                OnError::DeadLetter => {
                    let letter = DeadLetter { unit: res.unit.clone(), step: step.clone(), error: message.clone() };
                    match job.sink.dead_letter(&letter) {
                        Ok(()) => "dead_lettered",
                        Err(e) => return Some(RunError::Sink(e)),
                    }
                }
            };
            tracing::warn!(file = %file, action, "{message}");
            if fatal.is_none()
                && let Err(e) = job.sink.record_failure(&res.unit, &message)
            {
                return Some(RunError::Sink(e));
            }
            summary.failures.push(UnitFailure { file, step, action: action.into(), error: message });
            fatal
        }
    }
}

/// A worker: takes units until the channel closes, keeps handler instances between units.
fn worker(
    job: &Job,
    rx: &Mutex<tokio::sync::mpsc::Receiver<SourceUnit>>,
    tx: &tokio::sync::mpsc::Sender<UnitResult>,
    abort: &AtomicBool,
) {
    let mut chain = Chain::new(job);
    loop {
        let unit = {
            let mut guard = rx.lock().expect("unit receiver lock");
            guard.blocking_recv()
        };
        let Some(unit) = unit else { return };
        if abort.load(Ordering::SeqCst) {
            return;
        }
        let res = process_unit(job, &mut chain, unit);
        // A `fail` policy stops the run: take no further units, even ones already queued.
        let stops = match &res.outcome {
            Err(UnitError::Step { index, .. }) => job.spec.steps[*index].on_error == OnError::Fail,
            Err(UnitError::Sink(_)) => true,
            _ => false,
        };
        if stops {
            abort.store(true, Ordering::SeqCst);
        }
        if tx.blocking_send(res).is_err() {
            return;
        }
    }
}

/// A worker's handler instances, created lazily and discarded after a trap.
struct Chain<'a> {
    job: &'a Job,
    handlers: Vec<Option<Box<dyn Handler>>>,
    /// Stateful handlers get a fresh instance per unit until keyed routing carries state.
    stateful: Vec<bool>,
    stats: Vec<StepStats>,
}

impl<'a> Chain<'a> {
    fn new(job: &'a Job) -> Self {
        let n = job.spec.steps.len();
        Chain {
            job,
            handlers: (0..n).map(|_| None).collect(),
            stateful: vec![false; n],
            stats: job.spec.steps.iter().map(|s| StepStats { name: s.name.clone(), ..Default::default() }).collect(),
        }
    }

    fn handler(&mut self, i: usize) -> Result<&mut Box<dyn Handler>, PluginError> {
        if self.handlers[i].is_none() {
            let step = &self.job.spec.steps[i];
            let mut h = self.job.plugins[i].instantiate(&step.config_json, &step.limits)?;
            self.stateful[i] = h.state()?.is_some();
            self.handlers[i] = Some(h);
        }
        Ok(self.handlers[i].as_mut().expect("just created"))
    }

    /// Pass `batches` through steps `from..`, returning the chain's output.
    fn run_from(&mut self, from: usize, mut batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, UnitError> {
        for i in from..self.handlers.len() {
            let mut out = Vec::with_capacity(batches.len());
            for b in &batches {
                if b.num_rows() == 0 {
                    continue;
                }
                out.extend(self.call(i, |h| h.process(b), b.num_rows() as u64)?);
            }
            batches = out;
        }
        Ok(batches)
    }

    fn call(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Box<dyn Handler>) -> Result<Vec<RecordBatch>, PluginError>,
        rows_in: u64,
    ) -> Result<Vec<RecordBatch>, UnitError> {
        let (started, cpu) = (Instant::now(), crate::summary::thread_cpu_ns());
        let res = self.handler(i).and_then(f);
        let st = &mut self.stats[i];
        st.calls += 1;
        st.rows_in += rows_in;
        st.plugin_ns += started.elapsed().as_nanos() as u64;
        st.plugin_cpu_ns += crate::summary::thread_cpu_ns().saturating_sub(cpu);
        match res {
            Ok(out) => {
                st.rows_out += out.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                Ok(out)
            }
            Err(error) => {
                st.errors += 1;
                if error.poisons_instance() {
                    self.handlers[i] = None;
                }
                Err(UnitError::Step { index: i, error })
            }
        }
    }

    /// End of a unit: flush every step in order, feeding its output to the steps after it.
    fn finish(&mut self) -> Result<Vec<RecordBatch>, UnitError> {
        let mut out = Vec::new();
        for i in 0..self.handlers.len() {
            if self.handlers[i].is_none() {
                continue;
            }
            let flushed = self.call(i, |h| h.finish(), 0)?;
            out.extend(self.run_from(i + 1, flushed)?);
        }
        Ok(out)
    }

    /// After a unit: drop instances that must not carry state into the next unit.
    fn reset(&mut self, failed: bool) {
        for (h, stateful) in self.handlers.iter_mut().zip(&self.stateful) {
            if failed || *stateful {
                *h = None;
            }
        }
    }

    fn take_stats(&mut self) -> Vec<StepStats> {
        self.stats
            .iter_mut()
            .map(|s| std::mem::replace(s, StepStats { name: s.name.clone(), ..Default::default() }))
            .collect()
    }
}

fn process_unit(job: &Job, chain: &mut Chain<'_>, unit: SourceUnit) -> UnitResult {
    let (mut rows_in, mut rows_rejected) = (0u64, 0u64);
    let outcome = process_unit_inner(job, chain, &unit, &mut rows_in, &mut rows_rejected);
    chain.reset(outcome.is_err());
    UnitResult { unit, rows_in, rows_rejected, outcome, steps: chain.take_stats() }
}

fn process_unit_inner(
    job: &Job,
    chain: &mut Chain<'_>,
    unit: &SourceUnit,
    rows_in: &mut u64,
    rows_rejected: &mut u64,
) -> Result<crate::sink::CommitReport, UnitError> {
    let source = job.sources.iter().find(|s| s.name() == unit.source).expect("units come from the job's sources");
    let stream = source.open(unit).map_err(UnitError::Source)?;
    let mut writer = job.sink.begin(unit).map_err(UnitError::Sink)?;
    let result = std::thread::scope(|scope| -> Result<(), UnitError> {
        // Reader stage: parse into a bounded channel so parsing overlaps with the chain.
        let (btx, brx) = std::sync::mpsc::sync_channel::<Result<SourceItem, SourceError>>(2);
        scope.spawn(move || {
            for item in stream {
                let stop = item.is_err();
                if btx.send(item).is_err() || stop {
                    break;
                }
            }
        });
        for item in brx {
            let batch = match item.map_err(UnitError::Source)? {
                SourceItem::Batch(batch) => batch,
                SourceItem::Rejects(rejects) => {
                    *rows_rejected += rejects.len() as u64;
                    writer.write_rejects(&rejects_batch(unit, &rejects)).map_err(UnitError::Sink)?;
                    continue;
                }
            };
            *rows_in += batch.num_rows() as u64;
            for out in chain.run_from(0, vec![batch])? {
                writer.write(&out).map_err(UnitError::Sink)?;
            }
        }
        for out in chain.finish()? {
            writer.write(&out).map_err(UnitError::Sink)?;
        }
        Ok(())
    });
    match result {
        Ok(()) => writer.commit().map_err(UnitError::Sink),
        Err(e) => {
            writer.abort();
            Err(e)
        }
    }
}
