//! `run` and `validate` for embedders (the Python package): the CLI's own code paths, with the
//! arguments as values, nothing printed unless asked, and no signal handlers (the embedder stops
//! a run through the cancel flag, as SIGINT does for the CLI).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sluice_core::summary::RunSummary;

use crate::Exit;
use crate::cli::{Global, LogFormat, RunArgs, ValidateArgs};
pub use crate::commands::validate::{Passed, Report as ValidateReport};

/// What `sluice run` takes.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub pipelines: Vec<PathBuf>,
    pub force: bool,
    pub rerun_stale: bool,
    pub workers: Option<usize>,
    pub no_catalog: bool,
    pub plugin_dir: Option<PathBuf>,
    /// Print each summary on stderr, as the CLI does.
    pub verbose: bool,
}

fn global(plugin_dir: Option<PathBuf>, quiet: bool) -> Global {
    Global { log_format: LogFormat::Text, verbose: 0, quiet, plugin_dir }
}

/// Run the pipelines in `req.pipelines` once, as `sluice run` does; `cancel` stops the run (units
/// in flight commit). Config errors are `Exit` with code 2, as the CLI's.
pub fn run(req: &RunRequest, cancel: Arc<AtomicBool>) -> Result<Vec<RunSummary>, Exit> {
    let specs = crate::commands::load_specs(&req.pipelines)?;
    let args = RunArgs {
        pipelines: req.pipelines.clone(),
        force: req.force,
        rerun_stale: req.rerun_stale,
        workers: req.workers,
        summary_json: None,
        no_catalog: req.no_catalog,
    };
    crate::commands::run::run_specs(&specs, &args, &global(req.plugin_dir.clone(), !req.verbose), cancel, false)
}

/// Check pipelines as `sluice validate` does (`connect`: servers too; `environment: false`: the
/// files only).
pub fn validate(
    pipelines: &[PathBuf],
    connect: bool,
    environment: bool,
    plugin_dir: Option<PathBuf>,
) -> Result<ValidateReport, Exit> {
    let args = ValidateArgs { pipelines: pipelines.to_vec(), no_environment: !environment, connect };
    crate::commands::validate::report(&args, &global(plugin_dir, true))
}
