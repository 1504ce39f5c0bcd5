//! The chain: batches through every step in order, each step's instance made on first use, its
//! reject column split off, its calls counted.
//!
//! [`Chain::process`] and [`Chain::finish`] are the whole story for an embedder (a Spark or
//! Ray task runs a partition through them). The runner, which adds keyed state from a sink's
//! state store, drives the same loops with its own per-step call ([`Chain::run_from_with`],
//! [`Chain::finish_with`]), so there is one notion of what a chain does.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::error::PluginError;
use crate::plugin::{Handler, Plugin, next_schema};
use crate::reject::{Reject, split_rejects};
use crate::spec::Limits;
use crate::stats::{StepStats, thread_cpu_ns};

/// One step: a loaded plugin (bound to its lookup tables) and how to configure its instances.
#[derive(Clone)]
pub struct ChainStep {
    pub name: String,
    pub plugin: Arc<dyn Plugin>,
    /// The step's config as JSON text (`null` when absent).
    pub config_json: String,
    pub limits: Limits,
}

/// What a chain asks of the function that runs its steps.
pub enum Call<'b> {
    /// Process this batch through the step.
    Process(&'b RecordBatch),
    /// The step is about to be flushed at the end of the input (nothing to return).
    BeforeFinish,
}

/// A step's failure, with the step's position, and for bad data at a row, that row's values of
/// the step's state keys (`key`, empty when the step keeps no keyed state).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("step {} `{name}`: {error}{}", index + 1, render_key(key))]
pub struct StepError {
    pub index: usize,
    pub name: String,
    pub error: PluginError,
    pub key: Vec<(String, String)>,
}

/// `; key k=v, ...` for a non-empty key (how errors end), else nothing.
pub fn render_key(key: &[(String, String)]) -> String {
    if key.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("; key {}", parts.join(", "))
}

/// The values of `keys` at `row` of `batch`, as text; none when a key column is missing.
fn key_at(batch: &RecordBatch, keys: &[String], row: usize) -> Vec<(String, String)> {
    let opts = arrow_cast::display::FormatOptions::default().with_null("null");
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(col) = batch.column_by_name(k) else { return Vec::new() };
        if row >= col.len() {
            return Vec::new();
        }
        let Ok(f) = arrow_cast::display::ArrayFormatter::try_new(col.as_ref(), &opts) else { return Vec::new() };
        out.push((k.clone(), f.value(row).to_string()));
    }
    out
}

/// A chain of handler instances for one thread. Instances are made on first use and dropped
/// after an error that poisons them; rows steps set aside wait in [`Chain::take_rejects`].
pub struct Chain {
    steps: Vec<ChainStep>,
    handlers: Vec<Option<Box<dyn Handler>>>,
    stats: Vec<StepStats>,
    rejects: Vec<Reject>,
    /// The steps that set rows aside since [`Chain::clear_rejects`].
    reject_steps: Vec<String>,
}

impl Chain {
    pub fn new(steps: Vec<ChainStep>) -> Self {
        let n = steps.len();
        Chain {
            stats: steps.iter().map(|s| StepStats { name: s.name.clone(), ..Default::default() }).collect(),
            handlers: (0..n).map(|_| None).collect(),
            steps,
            rejects: Vec::new(),
            reject_steps: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn step(&self, i: usize) -> &ChainStep {
        &self.steps[i]
    }

    fn err(&self, index: usize, error: PluginError) -> StepError {
        StepError { index, name: self.steps[index].name.clone(), error, key: Vec::new() }
    }

    /// Step `i`'s failure on `batch`: for bad data at a row, with that row's state keys (asked of
    /// the step's instance, which bad data does not poison).
    fn err_on(&mut self, i: usize, error: PluginError, batch: &RecordBatch) -> StepError {
        let mut e = self.err(i, error);
        if let PluginError::Data { row: Some(r), .. } = &e.error {
            let row = *r as usize;
            if let Some(Ok(Some(state))) = self.handlers[i].as_mut().map(|h| h.state()) {
                e.key = key_at(batch, &state.keys, row);
            }
        }
        e
    }

    /// The schema after every step for `input`, as the next step (or a sink) sees it: each
    /// step's declared output without the reject column. Asked of fresh instances, so it has no
    /// effect on this chain's.
    pub fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, StepError> {
        let mut schema = input.clone();
        for (i, step) in self.steps.iter().enumerate() {
            let mut h = step.plugin.instantiate(&step.config_json, &step.limits).map_err(|e| self.err(i, e))?;
            schema = next_schema(&mut *h, &schema).map_err(|e| self.err(i, e))?;
        }
        Ok(schema)
    }

    /// Step `i`'s instance, made now if there is none; `true` when it was.
    pub fn instance(&mut self, i: usize) -> Result<(&mut Box<dyn Handler>, bool), PluginError> {
        let fresh = self.handlers[i].is_none();
        if fresh {
            let step = &self.steps[i];
            self.handlers[i] = Some(step.plugin.instantiate(&step.config_json, &step.limits)?);
        }
        Ok((self.handlers[i].as_mut().expect("made above"), fresh))
    }

    pub fn has_instance(&self, i: usize) -> bool {
        self.handlers[i].is_some()
    }

    /// Drop step `i`'s instance (its state); the next call makes a fresh one.
    pub fn drop_instance(&mut self, i: usize) {
        self.handlers[i] = None;
    }

    /// Drop every instance.
    pub fn reset(&mut self) {
        for h in &mut self.handlers {
            *h = None;
        }
    }

    /// Call step `i`'s instance (made if needed) with `f`: counted in the step's stats, its
    /// reject column split off into [`Chain::take_rejects`], and the instance dropped after an
    /// error that poisons it.
    pub fn call(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Box<dyn Handler>) -> Result<Vec<RecordBatch>, PluginError>,
        rows_in: u64,
    ) -> Result<Vec<RecordBatch>, PluginError> {
        let (started, cpu) = (Instant::now(), thread_cpu_ns());
        let res = self.instance(i).and_then(|(h, _)| f(h));
        let st = &mut self.stats[i];
        st.calls += 1;
        st.rows_in += rows_in;
        st.plugin_ns += started.elapsed().as_nanos() as u64;
        st.plugin_cpu_ns += thread_cpu_ns().saturating_sub(cpu);
        match res {
            Ok(out) => {
                let mut kept = Vec::with_capacity(out.len());
                for b in out {
                    let (b, rejects) = split_rejects(&b, &self.steps[i].name).map_err(PluginError::BadOutput)?;
                    let name = &self.steps[i].name;
                    if !rejects.is_empty() && !self.reject_steps.contains(name) {
                        self.reject_steps.push(name.clone());
                    }
                    self.rejects.extend(rejects);
                    kept.push(b);
                }
                self.stats[i].rows_out += kept.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                Ok(kept)
            }
            Err(error) => {
                self.stats[i].errors += 1;
                if error.poisons_instance() {
                    self.drop_instance(i);
                }
                Err(error)
            }
        }
    }

    /// Seed step `i`'s instance with rows whose output belongs elsewhere (keyed state from
    /// earlier units): counted as plugin time, no output.
    pub fn seed(&mut self, i: usize, batch: &RecordBatch) -> Result<(), PluginError> {
        let started = Instant::now();
        let res = self.instance(i).and_then(|(h, _)| h.seed(batch));
        self.stats[i].plugin_ns += started.elapsed().as_nanos() as u64;
        if let Err(e) = &res
            && e.poisons_instance()
        {
            self.drop_instance(i);
        }
        res
    }

    /// `batches` through steps `from..`, each batch through step `i` by `step`.
    pub fn run_from_with<E>(
        &mut self,
        from: usize,
        mut batches: Vec<RecordBatch>,
        step: &mut impl FnMut(&mut Chain, usize, Call<'_>) -> Result<Vec<RecordBatch>, E>,
    ) -> Result<Vec<RecordBatch>, E> {
        for i in from..self.steps.len() {
            let mut out = Vec::with_capacity(batches.len());
            for b in &batches {
                if b.num_rows() == 0 {
                    continue;
                }
                out.extend(step(self, i, Call::Process(b))?);
            }
            batches = out;
        }
        Ok(batches)
    }

    /// The end of the input: each step that has an instance, in order, is told
    /// ([`Call::BeforeFinish`]: a runner tells a step where later input continues its keys)
    /// and flushed, its held rows fed through the steps after it by `step`.
    pub fn finish_with<E: From<StepError>>(
        &mut self,
        step: &mut impl FnMut(&mut Chain, usize, Call<'_>) -> Result<Vec<RecordBatch>, E>,
    ) -> Result<Vec<RecordBatch>, E> {
        let mut out = Vec::new();
        for i in 0..self.steps.len() {
            if !self.has_instance(i) {
                continue;
            }
            step(self, i, Call::BeforeFinish)?;
            let flushed = self.call(i, |h| h.finish(), 0).map_err(|e| E::from(self.err(i, e)))?;
            out.extend(self.run_from_with(i + 1, flushed, step)?);
        }
        Ok(out)
    }

    /// One batch through every step.
    pub fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, StepError> {
        self.run_from_with(0, vec![batch], &mut plain)
    }

    /// The end of the input: every step flushed, in order.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>, StepError> {
        self.finish_with(&mut plain)
    }

    /// Step `i`'s failure as a [`StepError`].
    pub fn step_error(&self, i: usize, error: PluginError) -> StepError {
        self.err(i, error)
    }

    /// Rows steps set aside since the last call, each with its step's name.
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        std::mem::take(&mut self.rejects)
    }

    /// Whether rows wait in [`Chain::take_rejects`].
    pub fn has_rejects(&self) -> bool {
        !self.rejects.is_empty()
    }

    /// The steps that set rows aside since [`Chain::clear_rejects`].
    pub fn reject_steps(&self) -> &[String] {
        &self.reject_steps
    }

    /// Forget waiting rejects and which steps made them (a new unit starts).
    pub fn clear_rejects(&mut self) {
        self.rejects.clear();
        self.reject_steps.clear();
    }

    /// Each step's counters since the last call.
    pub fn take_stats(&mut self) -> Vec<StepStats> {
        self.stats
            .iter_mut()
            .map(|s| std::mem::replace(s, StepStats { name: s.name.clone(), ..Default::default() }))
            .collect()
    }
}

/// A plain call of step `i`.
fn plain(chain: &mut Chain, i: usize, call: Call<'_>) -> Result<Vec<RecordBatch>, StepError> {
    match call {
        Call::Process(b) => match chain.call(i, |h| h.process(b), b.num_rows() as u64) {
            Ok(out) => Ok(out),
            Err(e) => Err(chain.err_on(i, e, b)),
        },
        Call::BeforeFinish => Ok(Vec::new()),
    }
}
