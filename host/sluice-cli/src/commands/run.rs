//! `sluice run`: run pipelines once, publish the catalog, print the summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use sluice_core::catalog::Catalog;
use sluice_core::runner::{self, RunError, RunOptions};
use sluice_core::summary::RunSummary;

use crate::cli::{Global, RunArgs};
use crate::progress::RunProgress;
use crate::{EXIT_DATA, Exit};

pub fn run(args: &RunArgs, g: &Global) -> Result<u8, Exit> {
    let specs = super::load_specs(&args.pipelines)?;
    let summaries = run_specs(&specs, args, g, Arc::new(AtomicBool::new(false)), true)?;
    if let Some(path) = &args.summary_json {
        let json = if summaries.len() == 1 {
            serde_json::to_string_pretty(&summaries[0])
        } else {
            serde_json::to_string_pretty(&summaries)
        }
        .context("serializing the summary")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = summaries.iter().any(|s| s.fatal.is_some() || s.files_failed > 0 || s.catalog_error.is_some());
    Ok(if failed { EXIT_DATA } else { 0 })
}

/// Run each pipeline in turn and print its summary (unless `g.quiet`). Setting `cancel` stops
/// the run as SIGINT does: units in flight commit, no new one starts. With `signals`, SIGINT and
/// SIGTERM set it (the CLI); an embedder that handles its own signals passes `false`.
pub fn run_specs(
    specs: &[sluice_core::spec::PipelineSpec],
    args: &RunArgs,
    g: &Global,
    cancel: Arc<AtomicBool>,
    signals: bool,
) -> Result<Vec<RunSummary>, Exit> {
    let rt = crate::context::runtime(g.plugin_dir.clone())?;
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let mut summaries = Vec::new();
    for spec in specs {
        let (job, publication) = crate::context::job(spec, &rt)?;
        let publication = publication.filter(|_| !args.no_catalog);
        let progress = Arc::new(RunProgress::new(g.quiet, job.sources.clone()));
        let opts = RunOptions {
            force: args.force,
            workers: args.workers,
            filter: marker_filter(&job),
            rerun_stale: args.rerun_stale,
            carry: None,
        };
        // Catalog readers follow the ingest: publish after commits, at most twice a second.
        let publisher = publication.clone().map(|p| {
            let catalog = sluice_catalog::DuckCatalog::for_lake(&p.catalog_dir());
            let mut seen = p.commits();
            let changed: sluice_catalog::ChangedSnapshot = Box::new(move || {
                let n = p.commits();
                (n != seen).then(|| {
                    seen = n;
                    p.snapshot().map_err(|e| e.to_string())
                })
            });
            sluice_catalog::BackgroundPublisher::start(catalog, std::time::Duration::from_millis(500), changed)
        });
        let result = tokio.block_on(async {
            let flag = cancel.clone();
            let watcher = signals
                .then(|| tokio::spawn(crate::signals::watch_signals(move || flag.store(true, Ordering::SeqCst))));
            let r = runner::run(Arc::new(job), opts, progress.clone(), cancel.clone()).await;
            if let Some(w) = watcher {
                w.abort();
                let _ = w.await;
            }
            r
        });
        if let Some(p) = publisher {
            p.stop();
        }
        progress.finish();
        let mut summary = result.map_err(|e| match e {
            RunError::Step { .. } | RunError::Schema(_) => Exit::config(e),
            RunError::Source(_) => Exit::config(e),
            other => Exit::data(other),
        })?;
        if let Some(p) = &publication {
            // A failed publish is reported with the summary (and fails the run), not instead of it.
            let published = p.snapshot().map_err(|e| e.to_string()).and_then(|snapshot| {
                sluice_catalog::DuckCatalog::for_lake(&p.catalog_dir()).publish(&snapshot).map_err(|e| e.to_string())
            });
            if let Err(e) = published {
                if g.quiet {
                    eprintln!("error: publishing the catalog: {e}");
                }
                summary.catalog_error = Some(e);
            }
        }
        if !g.quiet {
            eprintln!("{}", summary.render());
        }
        let stop = summary.fatal.is_some() || cancel.load(Ordering::SeqCst);
        summaries.push(summary);
        if stop {
            break;
        }
    }
    Ok(summaries)
}

/// Sources whose `ready` policy is a marker file: take only the units their source says are
/// complete (the other policies are about timing, which a one-off run does not wait for).
fn marker_filter(job: &runner::Job) -> Option<runner::UnitFilter> {
    use sluice_core::spec::ReadyPolicy;
    let marked: std::collections::HashMap<String, Arc<dyn sluice_core::source::Source>> = job
        .sources
        .iter()
        .filter(|s| job.spec.source(s.name()).is_some_and(|spec| matches!(spec.ready, ReadyPolicy::Marker(_))))
        .map(|s| (s.name().to_string(), s.clone()))
        .collect();
    if marked.is_empty() {
        return None;
    }
    Some(Arc::new(move |unit: &sluice_core::source::SourceUnit| match marked.get(&unit.source) {
        Some(source) if !source.complete(unit) => {
            tracing::info!(file = %unit.display_name(), "no marker yet: not complete, skipped");
            false
        }
        _ => true,
    }))
}
