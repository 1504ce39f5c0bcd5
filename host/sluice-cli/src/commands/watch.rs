//! `sluice watch`: run pipelines continuously (the `sluice-watch` crate), with the signals, the
//! catalog and the optional metrics endpoint wired in.

use std::sync::Arc;

use anyhow::Context as _;
use sluice_core::catalog::Catalog;
use sluice_core::error::CatalogError;
use sluice_core::runner;
use sluice_watch::{Endpoint, Metrics, Pipeline, Report, Shutdown, SnapshotFn, WatchError, WatchOptions};

use crate::Exit;
use crate::cli::{Global, WatchArgs};

pub fn watch(args: &WatchArgs, g: &Global) -> Result<u8, Exit> {
    let specs = super::load_specs(&args.pipelines)?;
    // A sink's target admits one writer, and a watch keeps each sink open for its whole life.
    let connectors = crate::context::connectors();
    let mut lakes: Vec<(String, &str)> = Vec::new();
    for spec in &specs {
        let key = connectors.sink(spec.sink.kind()).map_err(|e| Exit::config(anyhow::anyhow!(e)))?.target(&spec.sink);
        if let Some((_, other)) = lakes.iter().find(|(k, _)| *k == key) {
            return Err(Exit::config(anyhow::anyhow!(
                "pipelines `{other}` and `{}` write to the same lake {}: `sluice watch` keeps a lake open \
                 (one writer) for its whole run, so each watched pipeline needs a lake of its own. Give \
                 `{}` another `sink.lake` (a `sluice query --lake` per lake reads each), or ingest these \
                 pipelines with `sluice run` (for example every minute from cron), which opens the lake for \
                 one pipeline at a time",
                spec.name,
                key,
                spec.name
            )));
        }
        lakes.push((key, &spec.name));
    }

    let rt = crate::context::runtime(g.plugin_dir.clone())?;
    let mut pipelines = Vec::new();
    for spec in &specs {
        let (job, publication) = crate::context::job(spec, &rt)?;
        // Problems of the pipeline itself are found now, not at the first file: a chain that
        // does not fit, partition columns that do not exist, a source directory that is missing.
        if let Some(schema) = runner::chain_schema(&job.spec, &job.sources, &job.plugins).map_err(Exit::config)? {
            job.sink.check_schema(&schema).map_err(Exit::config)?;
        }
        for s in &job.sources {
            for root in s.watch_roots() {
                if !root.is_dir() {
                    return Err(Exit::config(anyhow::anyhow!(
                        "{}: source `{}`: directory {} does not exist",
                        spec.origin.display(),
                        s.name(),
                        root.display()
                    )));
                }
            }
        }
        let catalog = publication.filter(|_| !args.no_catalog).map(|p| {
            let catalog: Arc<dyn Catalog> = Arc::new(sluice_catalog::DuckCatalog::for_lake(&p.catalog_dir()));
            let root = p.catalog_dir().display().to_string();
            let snapshot: SnapshotFn = Box::new(move || {
                p.snapshot().map_err(|e| CatalogError::Publish { path: root.clone(), message: e.to_string() })
            });
            (catalog, snapshot)
        });
        pipelines.push(Pipeline { job: Arc::new(job), catalog });
    }

    let metrics = Metrics::new();
    let shutdown = Shutdown::new();
    let endpoint = match args.listen {
        Some(addr) => Some(Endpoint::start(addr, metrics.clone(), shutdown.clone()).map_err(Exit::config)?),
        None => None,
    };
    let opts = WatchOptions { workers: args.workers, ..Default::default() };
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let results: Vec<Result<Report, WatchError>> = tokio.block_on(async {
        let s = shutdown.clone();
        let signals = tokio::spawn(crate::signals::watch_signals(move || s.trigger()));
        let mut set = tokio::task::JoinSet::new();
        for p in pipelines {
            set.spawn(sluice_watch::watch(p, opts, metrics.clone(), shutdown.clone()));
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            let r = joined.unwrap_or_else(|e| Err(WatchError::Internal(format!("a watch panicked: {e}"))));
            if r.is_err() {
                // One pipeline stopping on an error stops the others, gracefully.
                shutdown.trigger();
            }
            results.push(r);
        }
        signals.abort();
        let _ = signals.await;
        results
    });
    if let Some(e) = endpoint {
        e.stop();
    }

    let mut first_error = None;
    for r in results {
        match r {
            Ok(report) if !g.quiet => eprintln!(
                "pipeline {}: {} file(s) committed, {} failed, {} rows written ({} bytes) in {} pass(es)",
                report.pipeline,
                report.files_committed,
                report.files_failed,
                report.rows_written,
                report.bytes_written,
                report.passes
            ),
            Ok(_) => {}
            Err(e) => match first_error {
                None => first_error = Some(e),
                Some(_) => eprintln!("error: {e}"),
            },
        }
    }
    match first_error {
        None => Ok(0),
        Some(e @ (WatchError::Events { .. } | WatchError::Listen { .. })) => Err(Exit::config(e)),
        Some(e) => Err(Exit::data(e)),
    }
}
