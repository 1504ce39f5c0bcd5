//! The runner: discovers units, fans them out to a pool of blocking workers, and collects results.
//!
//! Async at the edges, sync in the middle: the orchestrator is a tokio task that feeds units into
//! a bounded channel and reacts to signals; each worker is a blocking thread that owns its handler
//! instances. Within a unit, a reader thread parses the source into a bounded channel of batches
//! while the worker runs the handler chain and encodes output, so memory per worker is bounded by
//! a few batches whatever the input size. Every spawned task and thread is joined.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::{Location, PluginError, SinkError, SourceError};
use crate::keyed::{KeyedError, KeyedStep, Prepared, within_span};
use crate::plugin::{Plugin, StateSpec};
use crate::sink::{CommitReport, DeadLetter, Freshness, KeyRange, KeyedUnit, Sink};
use crate::source::{Settled, Source, SourceItem, SourceUnit, rejects_batch};
use crate::spec::{OnError, PipelineSpec};
use crate::summary::{RunSummary, StepStats, UnitFailure};
use sluice_chain::Call;

/// Everything a run needs, already loaded.
pub struct Job {
    pub spec: PipelineSpec,
    pub sources: Vec<Arc<dyn Source>>,
    /// One loaded plugin per step, aligned with `spec.steps`.
    pub plugins: Vec<Arc<dyn Plugin>>,
    pub sink: Arc<dyn Sink>,
}

impl Job {
    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&Arc<dyn Source>> {
        self.sources.iter().find(|s| s.name() == name)
    }
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
    /// Re-run the committed units that another pipeline definition or plugin made (stale),
    /// instead of only reporting them.
    pub rerun_stale: bool,
    /// Keep the handler instances of incremental sources' groups here after the run, and take
    /// them back in the next (`sluice watch` passes over a stream).
    pub carry: Option<Arc<ChainCarry>>,
}

/// Handler instances and their keyed state, kept from one run to the next per incremental
/// source: a stream's keys stay in the instances between `watch` passes instead of being seeded
/// from the sink's tails on every pass. Only a group that ended with every unit committed or
/// failed (a failure drops the instances) is kept; a run that stops in the middle keeps nothing,
/// and the next one seeds afresh.
#[derive(Default)]
pub struct ChainCarry {
    chains: Mutex<HashMap<String, Carried>>,
}

/// A chain's instances and their keyed bookkeeping, between runs.
type Carried = (sluice_chain::Chain, Vec<Option<KeyedStep>>);

impl ChainCarry {
    fn take(&self, source: &str) -> Option<Carried> {
        self.chains.lock().expect("carry lock").remove(source)
    }

    fn put(&self, source: String, inner: sluice_chain::Chain, keyed: Vec<Option<KeyedStep>>) {
        self.chains.lock().expect("carry lock").insert(source, (inner, keyed));
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("force", &self.force)
            .field("rerun_stale", &self.rerun_stale)
            .field("workers", &self.workers)
            .field("filter", &self.filter.as_ref().map(|_| "<fn>"))
            .field("carry", &self.carry.is_some())
            .finish()
    }
}

/// Observes a run's progress (a progress bar, periodic log lines, metrics).
pub trait Progress: Send + Sync {
    fn planned(&self, _units: u64, _bytes: u64) {}
    fn unit_finished(&self, _unit: &SourceUnit, _rows: u64, _ok: bool) {}
    /// A unit committed (called after `unit_finished`): what it wrote.
    fn unit_committed(&self, _unit: &SourceUnit, _report: &crate::sink::CommitReport) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// A run-level failure: the run could not start, or a `fail` policy stopped it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{location}: {error}")]
    Step { location: Box<Location>, error: PluginError },
    // Not `#[from]`: that would also make the inner error the source, and a report that prints
    // the chain (`{:#}`) would say its message twice.
    #[error("source: {0}")]
    Source(SourceError),
    #[error("sink: {0}")]
    Sink(SinkError),
    /// The sink rejected a unit's data (e.g. its schema) under `sink.on_error: fail`.
    #[error("{location}: {error}")]
    SinkData { location: Box<Location>, error: SinkError },
    #[error("schema check: {0}")]
    Schema(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a unit did not commit.
#[derive(Debug)]
enum UnitError {
    Source(SourceError),
    Step {
        index: usize,
        error: PluginError,
    },
    Sink(SinkError),
    /// The instance of stateful step `index` holds state that does not lead up to this unit's
    /// rows: the unit must be redone on a fresh instance.
    Stale {
        index: usize,
    },
}

struct UnitResult {
    unit: SourceUnit,
    /// A committed unit re-run because an earlier unit of its key arrived after it.
    rerun: bool,
    rows_in: u64,
    /// Rows the source set aside into `_rejects`.
    rows_rejected: u64,
    /// Some of its rows are in groups later units output.
    continued: bool,
    outcome: Result<CommitReport, UnitError>,
    steps: Vec<StepStats>,
}

impl From<SourceError> for RunError {
    fn from(e: SourceError) -> Self {
        RunError::Source(e)
    }
}

impl From<SinkError> for RunError {
    fn from(e: SinkError) -> Self {
        RunError::Sink(e)
    }
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
            let out = crate::plugin::next_schema(&mut *h, s);
            schema = Some(out.map_err(|error| RunError::Step { location: Box::new(location), error })?);
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

    // Plan: validate the chain, list units, drop the unchanged ones, group them for keyed
    // state. All blocking work.
    let plan_job = job.clone();
    let force = opts.force;
    let rerun_stale = opts.rerun_stale;
    let filter = opts.filter.clone();
    let plan = tokio::task::spawn_blocking(move || -> Result<Plan, RunError> {
        if let Some(schema) = chain_schema(&plan_job.spec, &plan_job.sources, &plan_job.plugins)? {
            plan_job.sink.check_schema(&schema)?;
        }
        let states = state_specs(&plan_job)?;
        let mut plan = Plan::default();
        // What this run's output is made by; committed units made otherwise are stale.
        let components: Vec<&str> = plan_job.plugins.iter().map(|p| p.info().component_hash.as_str()).collect();
        let current = crate::lineage::digest(&plan_job.spec.output_hash(), &components);
        let mut pending = Vec::new();
        for src in &plan_job.sources {
            let retries = plan_job.spec.source(src.name()).map_or(u32::MAX, |s| s.retries);
            let high_water = plan_job.sink.state().high_water(src.name())?;
            let found = src.discover_after(high_water.as_deref())?;
            if found.is_empty()
                && filter.is_none()
                && let Some(warning) = src.nothing_found()
            {
                plan.warnings.push(warning);
            }
            // Decided from the full listing: units a filter leaves out still exist.
            plan.deleted.extend(plan_job.sink.remove_deleted(&**src, &found)?);
            // An incremental source's units carry marks that cover every earlier unit: only a
            // leading run of them may go ahead. After one the filter leaves out (a failed unit
            // backing off, a range that grew since the scan) or that is poisoned, the later
            // ones wait, so that no committed mark passes a unit that did not commit.
            let incremental = src.incremental();
            let mut held = false;
            for unit in found {
                if held {
                    continue;
                }
                if filter.as_ref().is_some_and(|f| !f(&unit)) {
                    held = incremental;
                    continue;
                }
                plan.all.insert(unit.id(), unit.clone());
                if !force && is_unchanged(&*plan_job.sink, &**src, &unit)? {
                    let made_by = plan_job.sink.state().committed_lineage(&unit)?;
                    if made_by.is_some_and(|d| d != current) {
                        if rerun_stale {
                            plan.stale_rerun += 1;
                            pending.push(unit);
                            continue;
                        }
                        plan.stale.push(unit.clone());
                    }
                    plan.unchanged += 1;
                    src.settled(&unit, Settled::Unchanged);
                } else if !force && plan_job.sink.state().failures(&unit)? >= retries {
                    src.settled(&unit, Settled::Poisoned);
                    plan.poisoned.push(unit);
                    held = incremental;
                } else {
                    pending.push(unit);
                }
            }
        }
        // Groups across units: committed units whose output assumed another next unit than the
        // one committed now (a run stopped before re-running them) are re-run.
        plan.lookahead = plan_job
            .spec
            .steps
            .iter()
            .zip(&states)
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.lookahead))
            .map(|(step, _)| step.name.clone())
            .collect();
        let stale = out_of_date(&plan_job, &plan.lookahead)?;
        let taken: HashSet<String> = if stale.is_empty() {
            HashSet::new()
        } else {
            pending.iter().chain(&plan.poisoned).map(SourceUnit::id).collect()
        };
        for unit in stale {
            if taken.contains(&unit) {
                continue;
            }
            if let Some(u) = plan.all.get(&unit).filter(|u| filter.as_ref().is_none_or(|f| f(u))) {
                // A re-run that keeps failing is poisoned like any unit.
                let retries = plan_job.spec.source(&u.source).map_or(u32::MAX, |s| s.retries);
                if !force && plan_job.sink.state().failures(u)? >= retries {
                    continue;
                }
                plan.unchanged = plan.unchanged.saturating_sub(1);
                plan.warnings.push(format!(
                    "{}: re-run, its groups continue in a file committed after it (an earlier run stopped \
                     before re-running it)",
                    u.display_name()
                ));
                pending.push(u.clone());
            }
        }
        plan.groups = group_units(&plan_job, &states, pending);
        Ok(plan)
    })
    .await
    .map_err(|e| RunError::Internal(format!("planner panicked: {e}")))??;
    let Plan { groups, unchanged, poisoned, all, deleted, mut warnings, lookahead, stale, stale_rerun } = plan;
    if let Some(first) = stale.first() {
        warnings.push(format!(
            "{} committed file(s) were made by another pipeline definition or plugin (stale), {} among them: \
             `sluice run --rerun-stale` re-runs them",
            stale.len(),
            first.display_name()
        ));
    }
    if stale_rerun > 0 {
        tracing::info!(files = stale_rerun, "re-running stale files (another pipeline definition or plugin made them)");
    }
    summary.files_stale = stale.len() as u64;
    let lookahead = Arc::new(lookahead);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    summary.warnings = warnings;
    let units: usize = groups.iter().map(|g| g.len()).sum();

    summary.files_seen = units as u64 + unchanged + poisoned.len() as u64;
    summary.files_unchanged = unchanged;
    // Poisoned units failed `retries` times with this fingerprint: listed, not retried.
    summary.files_poisoned = poisoned.len() as u64;
    summary.files_deleted = deleted.len() as u64;
    for unit in &deleted {
        tracing::info!(file = %unit.display_name(), "deleted at the source: its outputs were removed");
    }
    for unit in poisoned {
        let file = unit.display_name();
        let error = "failed too many times with this file and this pipeline; skipped until the file or the \
                     pipeline changes, or `sluice run --force` retries it"
            .to_string();
        tracing::warn!(file = %file, "poisoned: {error}");
        summary.failures.push(UnitFailure { file, step: None, action: "poisoned".into(), error });
    }
    progress.planned(units as u64, groups.iter().flatten().map(|u| u.size).sum());
    // Sources that fetch their units first start on them, in the order workers will take them.
    for src in &job.sources {
        let own: Vec<SourceUnit> = groups.iter().flatten().filter(|u| u.source == src.name()).cloned().collect();
        src.prefetch(&own);
    }

    let workers = opts.workers.unwrap_or(job.spec.settings.workers).max(1).min(groups.len().max(1));
    let (group_tx, group_rx) = tokio::sync::mpsc::channel::<Vec<SourceUnit>>(workers);
    let (res_tx, mut res_rx) = tokio::sync::mpsc::channel::<UnitResult>(workers);
    let group_rx = Arc::new(Mutex::new(group_rx));
    let abort = Arc::new(AtomicBool::new(false));
    let all = Arc::new(all);

    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let ctx = WorkerCtx {
            job: job.clone(),
            rx: group_rx.clone(),
            tx: res_tx.clone(),
            abort: abort.clone(),
            cancel: cancel.clone(),
            all: all.clone(),
            lookahead: lookahead.clone(),
            carry: opts.carry.clone(),
        };
        handles.push(tokio::task::spawn_blocking(move || worker(&ctx)));
    }
    drop(res_tx);

    // Feed groups while collecting results, so a `fail` policy or a signal stops feeding early.
    let mut pending = groups.into_iter().peekable();
    let mut fatal: Option<RunError> = None;
    while !cancel.load(Ordering::SeqCst) && !abort.load(Ordering::SeqCst) && fatal.is_none() && pending.peek().is_some()
    {
        tokio::select! {
            permit = group_tx.reserve() => match permit {
                Ok(p) => p.send(pending.next().expect("peeked")),
                Err(_) => break,
            },
            res = res_rx.recv() => match res {
                Some(res) => absorb_into(&job, &mut summary, res, &*progress, &abort, &mut fatal),
                None => break,
            },
            // Re-check the cancel flag now and then.
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    // Close the channel so workers exit once the groups in flight are done.
    drop(group_tx);
    // On a signal or a fatal error, sources stop waits for units not yet fetched, so that
    // workers blocked opening one return.
    let mut sources_cancelled = false;
    loop {
        if !sources_cancelled && (cancel.load(Ordering::SeqCst) || abort.load(Ordering::SeqCst)) {
            sources_cancelled = true;
            for src in &job.sources {
                src.cancel();
            }
        }
        tokio::select! {
            res = res_rx.recv() => match res {
                Some(res) => absorb_into(&job, &mut summary, res, &*progress, &abort, &mut fatal),
                None => break,
            },
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
    for h in handles {
        h.await.map_err(|e| RunError::Internal(format!("worker panicked: {e}")))?;
    }
    if summary.rows_rejected > 0 {
        summary.rejects_at = job.sink.rejects_location();
    }
    summary.interrupted = cancel.load(Ordering::SeqCst);
    summary.fatal = fatal.map(|e| e.to_string());
    summary.finish(started.elapsed());
    Ok(summary)
}

/// What the planner found.
#[derive(Default)]
struct Plan {
    /// Things the run's output should say (a source that matched no file).
    warnings: Vec<String>,
    /// Units to process, grouped: a group's units go in order through one worker.
    groups: Vec<Vec<SourceUnit>>,
    unchanged: u64,
    poisoned: Vec<SourceUnit>,
    /// Every discovered unit by id, for re-runs of committed units.
    all: HashMap<String, SourceUnit>,
    /// Units whose source is gone and whose outputs the sink removed.
    deleted: Vec<SourceUnit>,
    /// The names of the steps with lookahead (groups across units).
    lookahead: Vec<String>,
    /// Committed units another definition or plugin made (stale), left as they are.
    stale: Vec<SourceUnit>,
    /// Stale units taken to be re-run (`--rerun-stale`).
    stale_rerun: u64,
}

/// Each step's declared keyed state (constructing one instance per step).
fn state_specs(job: &Job) -> Result<Vec<Option<StateSpec>>, RunError> {
    let mut out = Vec::with_capacity(job.spec.steps.len());
    for (i, (step, plugin)) in job.spec.steps.iter().zip(&job.plugins).enumerate() {
        let at = || Box::new(step_location(&job.spec, i, None));
        let mut h = plugin
            .instantiate(&step.config_json, &step.limits)
            .map_err(|error| RunError::Step { location: at(), error })?;
        let state = h.state().map_err(|error| RunError::Step { location: at(), error })?;
        if let Some(s) = state.as_ref().filter(|s| crate::keyed::unit_scoped(s)) {
            tracing::warn!(
                step = %step.name, lookback = s.lookback_rows,
                "the step keeps keyed history but names no ordering column: its state restarts with every file"
            );
        }
        out.push(state);
    }
    Ok(out)
}

/// Ids of committed units of lookahead steps whose recorded continuation (`KeyRange::next`) is
/// not the next committed unit of the key (or that assumed one and now are the last).
fn out_of_date(job: &Job, lookahead: &[String]) -> Result<BTreeSet<String>, RunError> {
    let mut out = BTreeSet::new();
    for step in lookahead {
        for chain in job.sink.state().keyed_units(step)? {
            // `chain`: one key's units, ordered by their ranges' start.
            for (i, v) in chain.iter().enumerate() {
                // Arrival order: no later unit continues a key (`KeyedStep::continuing`).
                if v.range.arrival {
                    continue;
                }
                // As `KeyedStep::continuing` recorded it.
                let next = chain.get(i + 1).map(|n| n.range.min).filter(|&m| within_span(v.span, v.range.max, m));
                if v.range.next != next {
                    out.insert(v.unit_id.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Group units so that every unit that may hold rows of a stateful step's key is in the same
/// group: by the key columns all stateful steps share that the units' file-name fields give.
/// Without stateful steps every unit is its own group. Within a group, units go in path order;
/// groups go largest first, so the last group to finish is a small one.
fn group_units(job: &Job, states: &[Option<StateSpec>], units: Vec<SourceUnit>) -> Vec<Vec<SourceUnit>> {
    // An incremental source's units follow one another: one group, in discovery order.
    let mut ordered: Vec<(String, Vec<SourceUnit>)> = Vec::new();
    let mut units_left = Vec::with_capacity(units.len());
    for unit in units {
        if !job.source(&unit.source).is_some_and(|s| s.incremental()) {
            units_left.push(unit);
        } else if let Some((_, g)) = ordered.iter_mut().find(|(name, _)| *name == unit.source) {
            g.push(unit);
        } else {
            ordered.push((unit.source.clone(), vec![unit]));
        }
    }
    // They start first: each runs on one worker, start to end.
    let mut groups: Vec<Vec<SourceUnit>> = ordered.into_iter().map(|(_, g)| g).collect();
    groups.extend(group_others(job, states, units_left));
    groups
}

/// Groups of the units of sources that are not incremental: one per value of the unit fields
/// that are keys of every (run-scoped) stateful step, else one per unit.
fn group_others(job: &Job, states: &[Option<StateSpec>], units: Vec<SourceUnit>) -> Vec<Vec<SourceUnit>> {
    // Unit-scoped steps start fresh per unit and do not tie units together.
    let mut keyed = states.iter().flatten().filter(|s| !crate::keyed::unit_scoped(s));
    let Some(first) = keyed.next() else {
        return units.into_iter().map(|u| vec![u]).collect();
    };
    let mut shared: Vec<String> = first.keys.clone();
    for s in keyed {
        shared.retain(|k| s.keys.contains(k));
    }
    let mut groups: BTreeMap<Vec<Option<String>>, Vec<SourceUnit>> = BTreeMap::new();
    for unit in units {
        let fields = job.source(&unit.source).map(|s| s.unit_fields(&unit)).unwrap_or_default();
        let key = shared.iter().map(|k| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).collect();
        groups.entry(key).or_default().push(unit);
    }
    let mut groups: Vec<Vec<SourceUnit>> = groups.into_values().collect();
    for g in &mut groups {
        g.sort_by(|a, b| (&a.locator, &a.member, &a.source).cmp(&(&b.locator, &b.member, &b.source)));
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.iter().map(|u| u.size).sum::<u64>()));
    groups
}

/// True when the sink holds this unit with the same content: the same fingerprint, or, for a
/// file whose mtime moved but whose size did not (a `touch`, a copy), the same content hash.
fn is_unchanged(sink: &dyn Sink, source: &dyn Source, unit: &SourceUnit) -> Result<bool, SinkError> {
    match sink.state().freshness(unit)? {
        Freshness::Unchanged => Ok(true),
        Freshness::New | Freshness::Changed => Ok(false),
        Freshness::Touched => match source.content_hash(unit) {
            Ok(Some(hash)) => sink.state().confirm_unchanged(&SourceUnit { content_hash: Some(hash), ..unit.clone() }),
            Ok(None) => Ok(false),
            Err(e) => {
                tracing::warn!(file = %unit.display_name(), "cannot hash the file to compare it with its commit: {e}");
                Ok(false)
            }
        },
    }
}

/// True when a unit's outcome stops the run: a `fail` policy, or a sink I/O or internal error.
fn stops_run(job: &Job, outcome: &Result<CommitReport, UnitError>) -> bool {
    match outcome {
        Err(UnitError::Step { index, .. }) => job.spec.steps[*index].on_error == OnError::Fail,
        Err(UnitError::Sink(e)) => !e.is_data() || job.spec.sink.on_error == OnError::Fail,
        _ => false,
    }
}

/// [`absorb`], keeping the first fatal error and stopping the feeding of groups on one.
fn absorb_into(
    job: &Job,
    summary: &mut RunSummary,
    res: UnitResult,
    progress: &dyn Progress,
    abort: &AtomicBool,
    fatal: &mut Option<RunError>,
) {
    if let Some(err) = absorb(job, summary, res, progress) {
        abort.store(true, Ordering::SeqCst);
        fatal.get_or_insert(err);
    }
}

/// Fold a unit result into the summary; returns a fatal error when the policy says stop.
fn absorb(job: &Job, summary: &mut RunSummary, res: UnitResult, progress: &dyn Progress) -> Option<RunError> {
    for (acc, st) in summary.steps.iter_mut().zip(&res.steps) {
        acc.merge(st);
    }
    let file = res.unit.display_name();
    if let Ok(report) = &res.outcome {
        // What every commit cost, re-runs included.
        summary.sink_files += report.files.len() as u64 + report.other_files;
        summary.sink_syncs += report.syncs;
        summary.units.push(crate::summary::UnitCounts {
            file: file.clone(),
            rows_in: res.rows_in,
            rows_written: report.rows,
            rows_rejected: res.rows_rejected,
            rerun: res.rerun,
            continued: res.continued,
        });
    }
    if let Some(src) = job.source(&res.unit.source) {
        let outcome = if res.outcome.is_ok() { Settled::Committed } else { Settled::Failed };
        src.settled(&res.unit, outcome);
    }
    if res.rerun {
        // A re-run replaces a committed unit's output; its rows are not new.
        if let Ok(report) = &res.outcome {
            summary.files_rerun += 1;
            tracing::info!(file = %file, rows = report.rows, "re-ran: an earlier unit of its keys arrived later");
            return None;
        }
    }
    summary.rows_in += res.rows_in;
    match res.outcome {
        Ok(report) => {
            summary.files_committed += 1;
            summary.rows_rejected += res.rows_rejected;
            summary.rows_written += report.rows;
            summary.bytes_written += report.bytes;
            summary.bytes_in += res.unit.size;
            tracing::info!(file = %file, rows = report.rows, files = report.files.len(), bytes = report.bytes, "committed");
            progress.unit_finished(&res.unit, res.rows_in, true);
            progress.unit_committed(&res.unit, &report);
            None
        }
        Err(err) => {
            summary.files_failed += 1;
            progress.unit_finished(&res.unit, res.rows_in, false);
            // A server that failed or could not be reached says nothing about the unit: the
            // failure is reported and the next run retries it, but it does not count towards
            // poisoning (an outage would otherwise poison every unit it met).
            let counts = !matches!(err, UnitError::Source(SourceError::Remote { .. }));
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
                // Rows the sink rejects are the unit's data error: `sink.on_error` decides.
                UnitError::Sink(e) if e.is_data() => {
                    let policy = job.spec.sink.on_error;
                    let location =
                        Location { pipeline: job.spec.name.clone(), file: Some(file.clone()), ..Default::default() };
                    let message = format!("{location}: {e}");
                    let fatal = (policy == OnError::Fail)
                        .then_some(RunError::SinkData { location: Box::new(location), error: e });
                    (None, policy, message, fatal)
                }
                UnitError::Sink(e) => {
                    let message = e.to_string();
                    (None, OnError::Fail, message, Some(RunError::Sink(e)))
                }
                UnitError::Stale { index } => {
                    let message = format!("internal error: step {} kept stale state after a redo", index + 1);
                    (None, OnError::Fail, message.clone(), Some(RunError::Internal(message)))
                }
            };
            let action = match policy {
                OnError::Fail => "failed",
                OnError::SkipFile => "skipped",
                OnError::DeadLetter => {
                    let letter = DeadLetter { unit: res.unit.clone(), step: step.clone(), error: message.clone() };
                    match job.sink.state().dead_letter(&letter) {
                        Ok(()) => "dead_lettered",
                        Err(e) => return Some(RunError::Sink(e)),
                    }
                }
            };
            tracing::warn!(file = %file, action, "{message}");
            if fatal.is_none()
                && counts
                && let Err(e) = job.sink.state().record_failure(&res.unit, &message)
            {
                return Some(RunError::Sink(e));
            }
            summary.failures.push(UnitFailure { file, step, action: action.into(), error: message });
            fatal
        }
    }
}

/// What a worker shares with the orchestrator.
struct WorkerCtx {
    job: Arc<Job>,
    rx: Arc<Mutex<tokio::sync::mpsc::Receiver<Vec<SourceUnit>>>>,
    tx: tokio::sync::mpsc::Sender<UnitResult>,
    abort: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    all: Arc<HashMap<String, SourceUnit>>,
    /// The steps with lookahead, whose committed ranges a new version of a unit may orphan.
    lookahead: Arc<Vec<String>>,
    carry: Option<Arc<ChainCarry>>,
}

/// A worker: takes groups until the channel closes and runs each group's units in order through
/// the same handler instances, so keyed state carries from one unit of a key to the next.
fn worker(ctx: &WorkerCtx) {
    let job = &*ctx.job;
    let mut chain = Chain::new(job);
    loop {
        let group = {
            let mut guard = ctx.rx.lock().expect("group receiver lock");
            guard.blocking_recv()
        };
        let Some(group) = group else { return };
        // A group's keys are new to the instances: start them fresh (bounded state), unless the
        // group is an incremental source's and an earlier run kept its instances.
        let carried = ctx.carry.as_ref().and_then(|carry| {
            let first = group.first()?;
            job.source(&first.source).is_some_and(|s| s.incremental()).then(|| (carry.clone(), first.source.clone()))
        });
        chain.drop_stateful();
        if let Some((inner, keyed)) = carried.as_ref().and_then(|(carry, source)| carry.take(source)) {
            chain.inner = inner;
            chain.keyed = keyed;
        }
        let mut queue: VecDeque<(SourceUnit, bool)> = group.into_iter().map(|u| (u, false)).collect();
        // Predecessors to re-run (groups across units), after the group's queue: in order, one
        // after another on the same instances, so that each carries state to the next unseeded.
        let mut deferred: HashMap<String, SourceUnit> = HashMap::new();
        // The deferred re-runs moved into the queue: a `fail` policy that stops the run still
        // lets them finish, so that no committed unit keeps a group a later one holds too.
        let mut finishing: HashSet<String> = HashSet::new();
        loop {
            if ctx.cancel.load(Ordering::SeqCst) {
                return;
            }
            if ctx.abort.load(Ordering::SeqCst) {
                queue.retain(|(u, _)| finishing.contains(&u.id()));
            }
            let Some((unit, rerun)) = queue.pop_front().or_else(|| {
                let mut units: Vec<(String, SourceUnit)> = deferred.drain().collect();
                units.sort_by(|(_, a), (_, b)| a.locator.cmp(&b.locator).then_with(|| a.member.cmp(&b.member)));
                for (id, u) in units {
                    finishing.insert(id);
                    queue.push_back((u, true));
                }
                queue.pop_front()
            }) else {
                break;
            };
            // What a committed version of the unit recorded, to find groups its new version
            // leaves without an owner.
            let old_ranges: Vec<(String, Vec<KeyRange>)> = if rerun {
                Vec::new()
            } else {
                let id = unit.id();
                ctx.lookahead
                    .iter()
                    .filter_map(|s| match job.sink.state().unit_ranges(s, &id) {
                        Ok(r) if !r.is_empty() => Some((s.clone(), r)),
                        _ => None,
                    })
                    .collect()
            };
            let (res, ranges) = process_unit(job, &mut chain, unit, rerun);
            // An incremental source's later units wait for the next run after one fails: their
            // high-water mark would pass the unit that did not commit.
            if res.outcome.is_err() && job.source(&res.unit.source).is_some_and(|s| s.incremental()) {
                let before = queue.len();
                queue.retain(|(u, _)| u.source != res.unit.source);
                if queue.len() < before {
                    tracing::warn!(file = %res.unit.display_name(), waiting = before - queue.len(),
                        "failed: the source's later units wait for the next run");
                }
            }
            // A `fail` policy stops the run: take no further units, even ones already queued.
            if stops_run(job, &res.outcome) {
                ctx.abort.store(true, Ordering::SeqCst);
            }
            // A unit that arrived earlier in its keys' order than committed ones changes their
            // lookback: re-run them (not the ones still queued), right after it. Re-runs do not
            // change their own input rows, so they trigger no further re-runs.
            // An incremental source's units come in arrival order and are never read again: a
            // late row is the step's to handle, and no committed unit is re-run for it.
            let arrival = job.source(&res.unit.source).is_some_and(|s| s.incremental());
            if res.outcome.is_ok() && !rerun && !arrival {
                let mut succ = Vec::new();
                let mut pred = Vec::new();
                for (index, ranges) in &ranges {
                    let Some(step) = chain.keyed[*index].as_ref() else { continue };
                    match step.successors(job.sink.state(), &res.unit.id(), ranges) {
                        Ok(found) => succ.extend(found.into_iter().map(|v| (step.name.clone(), v))),
                        Err(e) => tracing::warn!(step = %step.name, "cannot look up units to re-run: {e}"),
                    }
                    // Groups across units: the unit before it may have output a group this one
                    // continues.
                    match step.predecessors(job.sink.state(), &res.unit.id(), ranges) {
                        Ok(found) => pred.extend(found),
                        Err(e) => tracing::warn!(step = %step.name, "cannot look up units to re-run: {e}"),
                    }
                }
                // Keys the old version fed a step and the new one does not (a step it no longer
                // feeds at all has no ranges above).
                for (name, old) in &old_ranges {
                    let Some(step) = chain.keyed.iter().flatten().find(|k| k.name == *name) else { continue };
                    let new: &[KeyRange] = ranges
                        .iter()
                        .find(|(i, _)| chain.keyed[*i].as_ref().is_some_and(|k| k.name == *name))
                        .map_or(&[], |(_, r)| r.as_slice());
                    match step.orphaned(job.sink.state(), &res.unit.id(), old, new) {
                        Ok(found) => pred.extend(found),
                        Err(e) => tracing::warn!(step = %step.name, "cannot look up units to re-run: {e}"),
                    }
                }
                // Units still queued run anyway; each unit is re-run once. The queue's ids are
                // hashed only when there is something to re-run.
                let mut skip: HashSet<String> =
                    if succ.is_empty() { HashSet::new() } else { queue.iter().map(|(u, _)| u.id()).collect() };
                let mut reruns = Vec::new();
                for (step, v) in succ {
                    if !skip.insert(v.unit_id.clone()) {
                        continue;
                    }
                    match committed_source(ctx, job, &v) {
                        Some(u) => reruns.push((u, true)),
                        None => tracing::warn!(
                            file = %v.unit.display_name(), step = %step,
                            "its lookback changed but its source is not part of this run (gone, or not ready); \
                             its output keeps the old lookback until it is re-run"
                        ),
                    }
                }
                for r in reruns.into_iter().rev() {
                    queue.push_front(r);
                }
                for v in pred {
                    if skip.contains(&v.unit_id) || deferred.contains_key(&v.unit_id) {
                        continue;
                    }
                    match committed_source(ctx, job, &v) {
                        Some(u) => {
                            deferred.insert(v.unit_id.clone(), u);
                        }
                        None => tracing::warn!(
                            file = %v.unit.display_name(),
                            "a later file continues its groups but its source is not part of this run (gone, or \
                             not ready); its output keeps them until it is re-run"
                        ),
                    }
                }
            }
            if ctx.tx.blocking_send(res).is_err() {
                return;
            }
        }
        if let Some((carry, source)) = carried {
            let used = std::mem::replace(&mut chain, Chain::new(job));
            carry.put(source, used.inner, used.keyed);
        }
        if ctx.abort.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// The source unit to re-run a committed unit from: this run's discovery of it, or else (a unit
/// committed by an earlier pass of `watch`) its committed identity, when its source says it is
/// still current (a changed unit is re-read by its own discovery, as a new version).
fn committed_source(ctx: &WorkerCtx, job: &Job, v: &KeyedUnit) -> Option<SourceUnit> {
    if let Some(u) = ctx.all.get(&v.unit_id) {
        return Some(u.clone());
    }
    let source = job.source(&v.unit.source)?;
    source.still_current(&v.unit).then(|| v.unit.clone())
}

/// A worker's chain (`sluice_chain::Chain`: instances made lazily and dropped after a trap,
/// rejects split off, calls counted) with the keyed state of its stateful steps, read from and
/// committed to the sink's state store.
struct Chain<'a> {
    job: &'a Job,
    inner: sluice_chain::Chain,
    /// Keyed-state bookkeeping of stateful steps, tied to their instances.
    keyed: Vec<Option<KeyedStep>>,
    /// The id of the unit in flight (excluded from its own lookback).
    unit_id: String,
    /// A step with lookahead learned that later units continue some keys of the unit in flight.
    continued: bool,
    /// The unit in flight is an incremental source's (this one): its rows come in arrival order
    /// ([`KeyedStep::prepare`]).
    stream: Option<String>,
}

impl From<sluice_chain::StepError> for UnitError {
    fn from(e: sluice_chain::StepError) -> Self {
        UnitError::Step { index: e.index, error: e.error }
    }
}

/// Step `i`'s instance, made if needed; a fresh one of a stateful step starts its keyed
/// bookkeeping over.
fn ensure(inner: &mut sluice_chain::Chain, keyed: &mut [Option<KeyedStep>], i: usize) -> Result<(), PluginError> {
    let (h, fresh) = inner.instance(i)?;
    if !fresh {
        return Ok(());
    }
    let spec = match h.state() {
        Ok(spec) => spec,
        Err(e) => {
            inner.drop_instance(i);
            return Err(e);
        }
    };
    match (spec, keyed[i].as_mut()) {
        (Some(_), Some(k)) => k.reset_instance(),
        (Some(spec), None) => keyed[i] = Some(KeyedStep::new(inner.step(i).name.clone(), spec)),
        (None, _) => keyed[i] = None,
    }
    Ok(())
}

fn drop_instance(inner: &mut sluice_chain::Chain, keyed: &mut [Option<KeyedStep>], i: usize) {
    inner.drop_instance(i);
    if let Some(k) = keyed[i].as_mut() {
        k.reset_instance();
    }
}

/// The chain's call of step `i` in a run: for a tracked stateful step, seed new keys from the
/// state store first, and at the end of a unit tell a step with lookahead where later units
/// continue its keys.
struct StepCall<'c> {
    job: &'c Job,
    keyed: &'c mut Vec<Option<KeyedStep>>,
    unit_id: &'c str,
    continued: &'c mut bool,
    stream: Option<&'c str>,
}

impl StepCall<'_> {
    fn call(&mut self, c: &mut sluice_chain::Chain, i: usize, call: Call<'_>) -> Result<Vec<RecordBatch>, UnitError> {
        match call {
            Call::Process(b) => self.process(c, i, b),
            Call::BeforeFinish => self.before_finish(c, i).map(|()| Vec::new()),
        }
    }

    fn process(
        &mut self,
        c: &mut sluice_chain::Chain,
        i: usize,
        b: &RecordBatch,
    ) -> Result<Vec<RecordBatch>, UnitError> {
        ensure(c, self.keyed, i).map_err(|error| UnitError::Step { index: i, error })?;
        let tracked = self.keyed[i].as_ref().is_some_and(|k| k.tracked());
        if !tracked {
            return c
                .call(i, |h| h.process(b), b.num_rows() as u64)
                .map_err(|error| UnitError::Step { index: i, error });
        }
        if !self.keyed[i].as_ref().expect("tracked").refreshed {
            // Ask for the spec again now that the instance sees its input schema.
            let (h, _) = c.instance(i).map_err(|error| UnitError::Step { index: i, error })?;
            let spec = h.output_schema(&b.schema()).and_then(|_| h.state());
            let spec = spec.map_err(|error| UnitError::Step { index: i, error })?;
            let keyed = self.keyed[i].as_mut().expect("tracked");
            if let Some(spec) = spec
                && spec.keys == keyed.spec.keys
                && spec.order_by == keyed.spec.order_by
            {
                keyed.spec = spec;
            }
            keyed.refreshed = true;
        }
        let keyed = self.keyed[i].as_mut().expect("tracked");
        let data_err = |e: KeyedError| match e {
            KeyedError::Data(message) => {
                UnitError::Step { index: i, error: PluginError::Data { message, row: None, column: None } }
            }
            KeyedError::Sink(e) => UnitError::Sink(e),
        };
        let groups = match keyed.prepare(b, self.job.sink.state(), self.unit_id, self.stream).map_err(data_err)? {
            Prepared::Stale { key } => {
                tracing::debug!(step = %keyed.name, ?key, "state does not lead up to this unit; redoing it on a fresh instance");
                return Err(UnitError::Stale { index: i });
            }
            Prepared::Go { seeds, groups } => {
                // One call for every key seeded here (each key's rows stay in order).
                let seeds = match seeds.len() {
                    0 | 1 => seeds,
                    _ => vec![
                        arrow_select::concat::concat_batches(&seeds[0].schema(), &seeds)
                            .map_err(|e| data_err(KeyedError::Data(format!("seeding: {e}"))))?,
                    ],
                };
                for seed in seeds {
                    // The seed only rebuilds state: its output belongs to committed units.
                    if let Err(error) = c.seed(i, &seed) {
                        if error.poisons_instance() {
                            drop_instance(c, self.keyed, i);
                        }
                        return Err(UnitError::Step { index: i, error });
                    }
                }
                groups
            }
        };
        let out = c.call(i, |h| h.process(b), b.num_rows() as u64);
        let out = out.map_err(|error| {
            if error.poisons_instance()
                && let Some(k) = self.keyed[i].as_mut()
            {
                k.reset_instance();
            }
            UnitError::Step { index: i, error }
        })?;
        if let Some(k) = self.keyed[i].as_mut() {
            k.fed(b, groups).map_err(data_err)?;
        }
        Ok(out)
    }

    /// A step with lookahead learns where later units continue its keys (and fails the unit
    /// when a committed unit of one of its keys overlaps it).
    fn before_finish(&mut self, c: &mut sluice_chain::Chain, i: usize) -> Result<(), UnitError> {
        let continuing = match self.keyed[i].as_mut().filter(|k| k.tracked()) {
            Some(k) => k.continuing(self.job.sink.state(), self.unit_id).map_err(|e| match e {
                KeyedError::Data(message) => {
                    UnitError::Step { index: i, error: PluginError::Data { message, row: None, column: None } }
                }
                KeyedError::Sink(e) => UnitError::Sink(e),
            })?,
            None => None,
        };
        if let Some(keys) = continuing {
            *self.continued |= keys.num_rows() > 0;
            c.call(i, |h| h.continuing(&keys).map(|()| Vec::new()), 0)
                .map_err(|error| UnitError::Step { index: i, error })?;
        }
        Ok(())
    }
}

impl<'a> Chain<'a> {
    fn new(job: &'a Job) -> Self {
        let steps = job
            .spec
            .steps
            .iter()
            .zip(&job.plugins)
            .map(|(s, p)| sluice_chain::ChainStep {
                name: s.name.clone(),
                plugin: p.clone(),
                config_json: s.config_json.clone(),
                limits: s.limits,
            })
            .collect();
        Chain {
            job,
            inner: sluice_chain::Chain::new(steps),
            keyed: (0..job.spec.steps.len()).map(|_| None).collect(),
            unit_id: String::new(),
            continued: false,
            stream: None,
        }
    }

    /// Drop the instances of stateful steps (a new group of keys starts).
    fn drop_stateful(&mut self) {
        for i in 0..self.keyed.len() {
            if self.keyed[i].is_some() {
                drop_instance(&mut self.inner, &mut self.keyed, i);
            }
        }
    }

    fn begin_unit(&mut self, unit: &SourceUnit) {
        self.unit_id = unit.id();
        self.inner.clear_rejects();
        self.continued = false;
        let incremental = self.job.source(&unit.source).is_some_and(|s| s.incremental());
        self.stream = incremental.then(|| unit.source.clone());
        for i in 0..self.keyed.len() {
            if self.keyed[i].as_ref().is_some_and(|k| k.unit_scoped()) {
                drop_instance(&mut self.inner, &mut self.keyed, i);
            }
            if let Some(k) = self.keyed[i].as_mut() {
                k.begin_unit(self.stream.as_deref());
            }
        }
    }

    /// Pass `batches` through steps `from..`, returning the chain's output.
    fn run_from(&mut self, from: usize, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, UnitError> {
        let Chain { job, inner, keyed, unit_id, continued, stream } = self;
        let mut call = StepCall { job, keyed, unit_id, continued, stream: stream.as_deref() };
        inner.run_from_with(from, batches, &mut |c, i, b| call.call(c, i, b))
    }

    /// End of a unit: flush every step in order, feeding its output to the steps after it.
    fn finish(&mut self) -> Result<Vec<RecordBatch>, UnitError> {
        let Chain { job, inner, keyed, unit_id, continued, stream } = self;
        let mut call = StepCall { job, keyed, unit_id, continued, stream: stream.as_deref() };
        inner.finish_with(&mut |c, i, b| call.call(c, i, b))
    }

    /// After a failed unit: drop every instance, whose state may hold part of the unit.
    fn reset_after_failure(&mut self) {
        for i in 0..self.keyed.len() {
            drop_instance(&mut self.inner, &mut self.keyed, i);
        }
    }

    fn take_stats(&mut self) -> Vec<StepStats> {
        self.inner.take_stats()
    }
}

fn drain_rejects(
    chain: &mut Chain<'_>,
    unit: &SourceUnit,
    writer: &mut dyn crate::sink::UnitWriter,
    rows_rejected: &mut u64,
) -> Result<(), UnitError> {
    if !chain.inner.has_rejects() {
        return Ok(());
    }
    let rejects = chain.inner.take_rejects();
    *rows_rejected += rejects.len() as u64;
    writer.write_rejects(&rejects_batch(unit, &rejects)).map_err(UnitError::Sink)
}

/// Per stateful step: the key ranges a committed unit covered.
type UnitRanges = Vec<(usize, Vec<KeyRange>)>;

fn process_unit(job: &Job, chain: &mut Chain<'_>, unit: SourceUnit, rerun: bool) -> (UnitResult, UnitRanges) {
    let (mut rows_in, mut rows_rejected) = (0u64, 0u64);
    let mut ranges = Vec::new();
    let mut outcome = process_unit_inner(job, chain, &unit, rerun, &mut rows_in, &mut rows_rejected, &mut ranges);
    if let Err(UnitError::Stale { .. }) = outcome {
        // Redo on fresh instances, seeded from the lake (a fresh instance is never stale). Every
        // step is reset, not only the stateful ones: the first attempt fed them part of this
        // unit, and a step whose memory ends with the file (`dedup` with `scope: file`) would
        // otherwise take the unit's rows for duplicates of themselves and drop them all.
        chain.reset_after_failure();
        (rows_in, rows_rejected) = (0, 0);
        chain.take_stats();
        outcome = process_unit_inner(job, chain, &unit, rerun, &mut rows_in, &mut rows_rejected, &mut ranges);
    }
    if outcome.is_err() {
        chain.reset_after_failure();
        ranges.clear();
    }
    let continued = chain.continued;
    (UnitResult { unit, rerun, rows_in, rows_rejected, continued, outcome, steps: chain.take_stats() }, ranges)
}

fn process_unit_inner(
    job: &Job,
    chain: &mut Chain<'_>,
    unit: &SourceUnit,
    rerun: bool,
    rows_in: &mut u64,
    rows_rejected: &mut u64,
    ranges: &mut UnitRanges,
) -> Result<crate::sink::CommitReport, UnitError> {
    let source = job.source(&unit.source).expect("units come from the job's sources");
    let stream = source.open(unit).map_err(UnitError::Source)?;
    let policy = job.spec.source(&unit.source).map(|s| s.rejects);
    let mut source_rejects = 0u64;
    chain.begin_unit(unit);
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
                    source_rejects += rejects.len() as u64;
                    writer.write_rejects(&rejects_batch(unit, &rejects)).map_err(UnitError::Sink)?;
                    continue;
                }
                SourceItem::ContentHash { hash, bytes } => {
                    writer.content_hash(&hash, bytes);
                    continue;
                }
                // A committed unit read again (its keyed groups continue elsewhere) does not move
                // its source's mark back to where it ended.
                SourceItem::HighWater(mark) => {
                    if !rerun {
                        writer.high_water(&mark);
                    }
                    continue;
                }
            };
            *rows_in += batch.num_rows() as u64;
            for out in chain.run_from(0, vec![batch])? {
                writer.write(&out).map_err(UnitError::Sink)?;
            }
            drain_rejects(chain, unit, &mut *writer, rows_rejected)?;
        }
        for out in chain.finish()? {
            writer.write(&out).map_err(UnitError::Sink)?;
        }
        drain_rejects(chain, unit, &mut *writer, rows_rejected)?;
        // The source's reject limits count the unit's rejects from every stage: rows the reader
        // could not parse and rows steps set aside (the reader alone checked only its own).
        if let Some(policy) = &policy
            && *rows_rejected > source_rejects
        {
            let (rows, by) = (*rows_in + source_rejects, Some("the source and steps"));
            let over = policy
                .over_max_errors(*rows_rejected, by)
                .or_else(|| policy.over_max_error_rate(*rows_rejected, rows, by));
            if let Some(message) = over {
                let steps: Vec<&str> = chain.inner.reject_steps().iter().map(String::as_str).collect();
                let message = format!("{message}; steps that rejected rows: {}", steps.join(", "));
                return Err(UnitError::Source(SourceError::Format { path: unit.display_name(), message }));
            }
        }
        // Keyed state is committed with the data it came from.
        for (index, keyed) in chain.keyed.iter_mut().enumerate() {
            let Some(keyed) = keyed.as_mut().filter(|k| k.tracked()) else { continue };
            let state = keyed.unit_state(job.sink.state(), &unit.id()).map_err(|e| UnitError::Step {
                index,
                error: PluginError::Data { message: e.to_string(), row: None, column: None },
            })?;
            if let Some(state) = state {
                ranges.push((index, state.ranges.clone()));
                writer.write_state(state).map_err(UnitError::Sink)?;
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => {
            writer.input_rows(*rows_in, *rows_rejected);
            if chain.continued {
                writer.continues();
            }
            writer.commit().map_err(UnitError::Sink)
        }
        Err(e) => {
            writer.abort();
            Err(e)
        }
    }
}
