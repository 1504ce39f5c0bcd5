//! `sluice._sluice`: the native half of the `sluice` Python package (the Python half is in
//! `python/sluice/`).
//!
//! - [`NativeChain`] is `sluice_chain::Chain` for Arrow data from Python: batches come in and go
//!   out through the Arrow C interfaces (no copy), and WASM runs with the GIL released.
//! - [`run`] and [`validate`] call the CLI's own code (`sluice_cli::api`).
//! - Errors are raised as the classes of `sluice.errors`, with the step, the key and the row as
//!   attributes.
//!
//! One plugin runtime per process and plugin directory: compiled components are cached in memory
//! and on disk (the CLI's cache), so a Spark task does not compile again. A process forked from
//! one that had a runtime (Spark's Python daemon, multiprocessing) makes its own: the epoch
//! ticker that enforces deadlines is a thread, and threads do not survive `fork`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::ffi_stream::ArrowArrayStreamReader;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use arrow_schema::Schema;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use sluice_chain::plugin::{PluginRuntime, WithTables};
use sluice_chain::{ChainStep, PluginError, StepError};
use sluice_wasm::WasmRuntime;

/// Runtimes of this process, by plugin directory.
type Runtimes = Vec<(Option<PathBuf>, u32, Arc<WasmRuntime>)>;
static RUNTIMES: Mutex<Runtimes> = Mutex::new(Vec::new());

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's runtime for `plugin_dir`, made on first use.
fn runtime(plugin_dir: Option<PathBuf>) -> PyResult<Arc<WasmRuntime>> {
    let pid = std::process::id();
    let mut all = locked(&RUNTIMES);
    // A runtime inherited over fork has no ticker thread: never use it, and never drop it (its
    // drop would wait for that thread).
    let (mine, inherited): (Runtimes, Runtimes) = std::mem::take(&mut *all).into_iter().partition(|r| r.1 == pid);
    for r in inherited {
        std::mem::forget(r);
    }
    *all = mine;
    if let Some((_, _, rt)) = all.iter().find(|r| r.0 == plugin_dir) {
        return Ok(rt.clone());
    }
    let rt = Arc::new(
        sluice_cli::context::runtime(plugin_dir.clone())
            .map_err(|e| PyRuntimeError::new_err(format!("starting the plugin runtime: {:#}", e.error)))?,
    );
    all.push((plugin_dir, pid, rt.clone()));
    Ok(rt)
}

/// An exception of `sluice.errors` (`class`), with `message` and attributes.
fn raise(
    py: Python<'_>,
    class: &str,
    message: String,
    attrs: impl FnOnce(&Bound<'_, PyDict>) -> PyResult<()>,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("sluice.errors")?.getattr(class)?;
        let kwargs = PyDict::new(py);
        attrs(&kwargs)?;
        Ok(PyErr::from_value(cls.call((message,), Some(&kwargs))?))
    })();
    made.unwrap_or_else(|e| e)
}

fn kind(e: &PluginError) -> &'static str {
    match e {
        PluginError::Config { .. } => "config",
        PluginError::Data { .. } => "data",
        PluginError::Internal(_) => "internal",
        PluginError::Timeout(_) => "timeout",
        PluginError::MemoryLimit { .. } => "memory_limit",
        PluginError::Panic(_) => "panic",
        PluginError::Trap(_) => "trap",
        PluginError::BadOutput(_) => "bad_output",
        PluginError::OutputTooLarge { .. } => "output_too_large",
        PluginError::Load(_) => "load",
        PluginError::Poisoned => "poisoned",
    }
}

fn step_error(py: Python<'_>, e: &StepError, plugin: &str) -> PyErr {
    let message = format!(
        "step {} `{}` (plugin `{plugin}`): {}{}",
        e.index + 1,
        e.name,
        e.error,
        sluice_chain::render_key(&e.key)
    );
    raise(py, "StepError", message, |kw| {
        kw.set_item("step", &e.name)?;
        kw.set_item("step_index", e.index + 1)?;
        kw.set_item("plugin", plugin)?;
        kw.set_item("kind", kind(&e.error))?;
        kw.set_item("blame", format!("{:?}", e.error.blame()).to_lowercase())?;
        let (row, column) = match &e.error {
            PluginError::Data { row, column, .. } => (*row, column.clone()),
            PluginError::Config { key, .. } => (None, key.clone()),
            _ => (None, None),
        };
        kw.set_item("row", row)?;
        kw.set_item("column", column)?;
        let key = PyDict::new(kw.py());
        for (k, v) in &e.key {
            key.set_item(k, v)?;
        }
        kw.set_item("key", key)
    })
}

fn config_error_dict<'py>(py: Python<'py>, e: &sluice_config::ConfigError) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("file", e.file.display().to_string())?;
    d.set_item("line", e.line)?;
    d.set_item("column", e.column)?;
    d.set_item("message", &e.message)?;
    d.set_item("hint", &e.hint)?;
    Ok(d)
}

fn config_errors(py: Python<'_>, errs: &sluice_config::ConfigErrors) -> PyErr {
    raise(py, "ConfigError", errs.to_string(), |kw| {
        let list = PyList::empty(kw.py());
        for e in &errs.0 {
            list.append(config_error_dict(kw.py(), e)?)?;
        }
        kw.set_item("errors", list)
    })
}

/// The CLI's error (with its exit code) as a Python exception: 2 is a `ConfigError`.
fn exit_error(py: Python<'_>, exit: sluice_cli::Exit) -> PyErr {
    if let Some(errs) = exit.error.downcast_ref::<sluice_config::ConfigErrors>() {
        return config_errors(py, errs);
    }
    let class = if exit.code == sluice_cli::EXIT_CONFIG { "ConfigError" } else { "SluiceError" };
    raise(py, class, format!("{:#}", exit.error), |_| Ok(()))
}

/// Arrow data from Python, a batch at a time: anything with `__arrow_c_stream__` (a pyarrow
/// Table or RecordBatchReader, a Polars DataFrame) or `__arrow_c_array__` (a pyarrow RecordBatch).
enum Input {
    Stream(ArrowArrayStreamReader),
    One(Option<RecordBatch>),
}

impl Input {
    fn next(&mut self) -> PyResult<Option<RecordBatch>> {
        match self {
            Input::Stream(r) => {
                r.next().transpose().map_err(|e| PyValueError::new_err(format!("reading the input: {e}")))
            }
            Input::One(b) => Ok(b.take()),
        }
    }
}

fn input_of(data: &Bound<'_, PyAny>) -> PyResult<Input> {
    if data.hasattr("__arrow_c_stream__")? {
        return Ok(Input::Stream(ArrowArrayStreamReader::from_pyarrow_bound(data)?));
    }
    if data.hasattr("__arrow_c_array__")? {
        return Ok(Input::One(Some(RecordBatch::from_pyarrow_bound(data)?)));
    }
    Err(PyTypeError::new_err(format!(
        "expected Arrow data (an object with __arrow_c_stream__ or __arrow_c_array__: a pyarrow RecordBatch or Table, a Polars DataFrame), got {}",
        data.get_type().name()?
    )))
}

fn to_py(py: Python<'_>, batches: Vec<RecordBatch>) -> PyResult<Vec<Py<PyAny>>> {
    batches.iter().map(|b| b.to_pyarrow(py).map(Bound::unbind)).collect()
}

/// A step's keyed state: its keys and the column that orders each key's rows.
type KeyedState = (Vec<String>, String);

/// The handler chain of a pipeline's steps, for one thread of batches at a time.
#[pyclass(frozen, module = "sluice._sluice")]
struct NativeChain {
    inner: Mutex<sluice_chain::Chain>,
    /// Each step's plugin: (name, version, contract, component hash).
    plugins: Vec<(String, String, String, String)>,
    /// The number in the file of the first step kept (errors count steps as the file does).
    first: usize,
    /// The process that made it.
    pid: u32,
}

impl NativeChain {
    /// A chain made before a `fork` holds the parent's plugins, whose runtime has no deadline
    /// ticker in this process: refuse it rather than let a spinning guest hang the child.
    fn same_process(&self, py: Python<'_>) -> PyResult<()> {
        if self.pid == std::process::id() {
            return Ok(());
        }
        Err(raise(
            py,
            "SluiceError",
            "this chain was made in another process (before a fork): make a new one here, or unpickle a copy".into(),
            |_| Ok(()),
        ))
    }

    /// `f` on the chain with the GIL released, for calls that cannot fail.
    fn detached<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut sluice_chain::Chain) -> T + Send) -> T {
        py.detach(|| f(&mut locked(&self.inner)))
    }

    fn plugin(&self, e: &StepError) -> &str {
        self.plugins.get(e.index).map_or("?", |p| p.0.as_str())
    }

    /// `f` on the chain with the GIL released; a step's failure raised as a `StepError`.
    fn with_chain<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut sluice_chain::Chain) -> Result<T, StepError> + Send,
    ) -> PyResult<T> {
        self.same_process(py)?;
        let r = py.detach(|| f(&mut locked(&self.inner)));
        r.map_err(|e| {
            let plugin = self.plugin(&e).to_string();
            step_error(py, &StepError { index: e.index + self.first, ..e }, &plugin)
        })
    }
}

#[pymethods]
impl NativeChain {
    /// Steps from `text` (a pipeline document, or a map with `steps:`) that came from `file`
    /// (paths resolve relative to its directory). Plugins load (compiled, or from the cache) and
    /// each step's config goes through its plugin's constructor now. `start..end` keeps those
    /// steps only (a stage of a Spark job), numbered as in the file.
    #[new]
    #[pyo3(signature = (text, file, plugin_dir=None, start=0, end=None))]
    fn new(
        py: Python<'_>,
        text: &str,
        file: PathBuf,
        plugin_dir: Option<PathBuf>,
        start: usize,
        end: Option<usize>,
    ) -> PyResult<Self> {
        let mut specs =
            sluice_config::parse_steps(text, &file, &|k| std::env::var(k).ok()).map_err(|e| config_errors(py, &e))?;
        let end = end.unwrap_or(specs.len()).min(specs.len());
        if start > end {
            return Err(PyValueError::new_err(format!("steps {start}..{end}: start is past the end")));
        }
        specs.truncate(end);
        let specs = specs.split_off(start);
        let rt = py.detach(|| runtime(plugin_dir))?;
        let mut steps = Vec::with_capacity(specs.len());
        let mut plugins = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let loaded = py.detach(|| {
                let p = rt.load(&spec.plugin)?;
                let tables = sluice_source::read_tables(&spec.tables).map_err(PluginError::Load)?;
                Ok::<_, PluginError>(WithTables::bind(p, tables))
            });
            let plugin = loaded.map_err(|error| {
                let e = StepError { index: start + i, name: spec.name.clone(), error, key: Vec::new() };
                step_error(py, &e, &spec.plugin.to_string())
            })?;
            let info = plugin.info();
            plugins.push((info.name.clone(), info.version.clone(), info.contract.clone(), info.component_hash.clone()));
            steps.push(ChainStep {
                name: spec.name.clone(),
                plugin,
                config_json: spec.config_json.clone(),
                limits: spec.limits,
            });
        }
        let chain = NativeChain {
            inner: Mutex::new(sluice_chain::Chain::new(steps)),
            plugins,
            first: start,
            pid: std::process::id(),
        };
        // Every step's config through its constructor, now rather than at the first batch.
        chain.with_chain(py, |c| {
            for i in 0..c.len() {
                let made = c.instance(i).map(|_| ());
                made.map_err(|e| c.step_error(i, e))?;
            }
            Ok(())
        })?;
        Ok(chain)
    }

    /// Arrow data through every step: the output batches (pyarrow), possibly none.
    /// A stream is read a batch at a time (with the GIL) and each batch processed (without it).
    fn process(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Vec<Py<PyAny>>> {
        let mut input = input_of(data)?;
        let mut out = Vec::new();
        while let Some(b) = input.next()? {
            if b.num_rows() > 0 {
                out.extend(to_py(py, self.with_chain(py, |c| c.process(b))?)?);
            }
        }
        Ok(out)
    }

    /// The end of the input: rows steps still hold (groups, sessions), through the steps after.
    /// Instances keep their keyed state.
    fn finish(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let out = self.with_chain(py, |c| c.finish())?;
        to_py(py, out)
    }

    /// The schema after every step for input of `schema` (a pyarrow Schema), asked of fresh
    /// instances.
    fn output_schema(&self, py: Python<'_>, schema: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let input = Arc::new(Schema::from_pyarrow_bound(schema)?);
        let out = self.with_chain(py, |c| c.output_schema(&input))?;
        Ok(out.as_ref().to_pyarrow(py)?.unbind())
    }

    /// Each step's keyed state: `None`, or `(keys, order_by)`.
    fn states(&self, py: Python<'_>) -> PyResult<Vec<Option<KeyedState>>> {
        self.with_chain(py, |c| {
            (0..c.len())
                .map(|i| {
                    let state = c.instance(i).and_then(|(h, _)| h.state());
                    let s = state.map_err(|e| c.step_error(i, e))?;
                    Ok(s.map(|s| (s.keys, s.order_by)))
                })
                .collect()
        })
    }

    /// Rows steps set aside since the last call: dicts of `step`, `reason`, `row` (the row as text).
    fn take_rejects(&self, py: Python<'_>) -> PyResult<Vec<Py<PyDict>>> {
        let rejects = self.detached(py, |c| c.take_rejects());
        rejects
            .into_iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("step", r.step)?;
                d.set_item("reason", r.reason)?;
                d.set_item("row", r.raw)?;
                Ok(d.unbind())
            })
            .collect()
    }

    /// Each step's counters since the last call.
    fn take_stats(&self, py: Python<'_>) -> PyResult<Vec<Py<PyDict>>> {
        let stats = self.detached(py, |c| c.take_stats());
        stats
            .into_iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("step", s.name)?;
                d.set_item("rows_in", s.rows_in)?;
                d.set_item("rows_out", s.rows_out)?;
                d.set_item("calls", s.calls)?;
                d.set_item("plugin_ns", s.plugin_ns)?;
                d.set_item("plugin_cpu_ns", s.plugin_cpu_ns)?;
                d.set_item("errors", s.errors)?;
                Ok(d.unbind())
            })
            .collect()
    }

    /// Each step: `{name, plugin, version, contract, component_hash}`.
    fn steps(&self, py: Python<'_>) -> PyResult<Vec<Py<PyDict>>> {
        let names: Vec<String> = self.detached(py, |c| (0..c.len()).map(|i| c.step(i).name.clone()).collect());
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (plugin, version, contract, hash) = &self.plugins[i];
                let d = PyDict::new(py);
                d.set_item("name", name)?;
                d.set_item("plugin", plugin)?;
                d.set_item("version", version)?;
                d.set_item("contract", contract)?;
                d.set_item("component_hash", hash)?;
                Ok(d.unbind())
            })
            .collect()
    }

    /// Drop every instance, and with them all keyed state.
    fn reset(&self, py: Python<'_>) {
        self.detached(py, |c| c.reset());
    }
}

/// Run pipelines once, as `sluice run` does; the summaries as JSON text. Ctrl-C stops the run as
/// SIGINT stops the CLI's (units in flight commit), then raises `KeyboardInterrupt`.
#[pyfunction]
#[pyo3(signature = (pipelines, force=false, rerun_stale=false, workers=None, catalog=true, plugin_dir=None, verbose=false))]
#[allow(clippy::too_many_arguments)]
fn run(
    py: Python<'_>,
    pipelines: Vec<PathBuf>,
    force: bool,
    rerun_stale: bool,
    workers: Option<usize>,
    catalog: bool,
    plugin_dir: Option<PathBuf>,
    verbose: bool,
) -> PyResult<String> {
    let req = sluice_cli::api::RunRequest {
        pipelines,
        force,
        rerun_stale,
        workers,
        no_catalog: !catalog,
        plugin_dir,
        verbose,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<()>();
    let flag = cancel.clone();
    let handle = std::thread::Builder::new()
        .name("sluice-run".into())
        .spawn(move || {
            let r = sluice_cli::api::run(&req, flag);
            drop(tx);
            r
        })
        .map_err(|e| PyRuntimeError::new_err(format!("starting the run: {e}")))?;
    let mut interrupted = None;
    let mut rx = rx;
    loop {
        let (back, got) = py.detach(move || {
            let got = rx.recv_timeout(Duration::from_millis(100));
            (rx, got)
        });
        rx = back;
        if got != Err(mpsc::RecvTimeoutError::Timeout) {
            break;
        }
        if let Err(e) = py.check_signals() {
            cancel.store(true, Ordering::SeqCst);
            interrupted = Some(e);
            break;
        }
    }
    let result = py.detach(|| handle.join());
    if let Some(e) = interrupted {
        return Err(e);
    }
    let summaries = result
        .map_err(|_| PyRuntimeError::new_err("internal error: the run panicked"))?
        .map_err(|e| exit_error(py, e))?;
    serde_json::to_string(&summaries).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Check pipelines as `sluice validate` does: `{ok, pipelines: [{name, origin, warnings}],
/// errors: [{file, line, column, message, hint}]}`.
#[pyfunction]
#[pyo3(signature = (pipelines, connect=false, environment=true, plugin_dir=None))]
fn validate(
    py: Python<'_>,
    pipelines: Vec<PathBuf>,
    connect: bool,
    environment: bool,
    plugin_dir: Option<PathBuf>,
) -> PyResult<Py<PyDict>> {
    let report = py
        .detach(|| sluice_cli::api::validate(&pipelines, connect, environment, plugin_dir))
        .map_err(|e| exit_error(py, e))?;
    let d = PyDict::new(py);
    d.set_item("ok", report.errors.is_empty())?;
    let passed = PyList::empty(py);
    for p in &report.passed {
        let e = PyDict::new(py);
        e.set_item("name", &p.name)?;
        e.set_item("origin", p.origin.display().to_string())?;
        e.set_item("warnings", &p.warnings)?;
        passed.append(e)?;
    }
    d.set_item("pipelines", passed)?;
    let errors = PyList::empty(py);
    for e in &report.errors {
        errors.append(config_error_dict(py, e)?)?;
    }
    d.set_item("errors", errors)?;
    Ok(d.unbind())
}

/// Counters plugins reported in this process: `{"plugin.counter": value}`.
#[pyfunction]
fn counters() -> std::collections::BTreeMap<String, u64> {
    let pid = std::process::id();
    let mut out = std::collections::BTreeMap::new();
    for (_, p, rt) in locked(&RUNTIMES).iter() {
        if *p == pid {
            for ((plugin, counter), v) in rt.counters() {
                // Plugins name their counters `<plugin>.<what>` already.
                let name =
                    if counter.starts_with(&format!("{plugin}.")) { counter } else { format!("{plugin}.{counter}") };
                *out.entry(name).or_default() += v;
            }
        }
    }
    out
}

/// The standard plugins' names (and those in `plugin_dir`).
#[pyfunction]
#[pyo3(signature = (plugin_dir=None))]
fn plugins(plugin_dir: Option<PathBuf>) -> PyResult<Vec<String>> {
    Ok(runtime(plugin_dir)?.builtin_names())
}

#[pymodule]
fn _sluice(m: &Bound<'_, PyModule>) -> PyResult<()> {
    sluice_cli::init_process();
    // Logs on stderr only when asked: `SLUICE_LOG=info` (an env-filter).
    if let Ok(filter) = std::env::var("SLUICE_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<NativeChain>()?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(counters, m)?)?;
    m.add_function(wrap_pyfunction!(plugins, m)?)?;
    Ok(())
}
