//! `sluice watch`: run pipelines continuously, ingesting each file once it is complete.
//!
//! Per pipeline, a loop waits for a trigger (filesystem events, debounced; the end of a file's
//! stability window; a poll tick), lists the sources, asks the readiness [`Tracker`] which
//! uncommitted units are complete, and runs one `runner::run` pass over exactly those. The lake
//! stays open (and its writer lock held) for the whole process; the ledger makes ingestion
//! exactly-once across restarts. Commits are published to the catalog through a debounced
//! [`Publisher`], and counted in [`Metrics`], which [`Endpoint`] serves over HTTP.
//!
//! Everything this crate starts is joined: the publisher and HTTP threads by `stop`, the
//! pipeline loops by their callers. (The inotify reader thread belongs to `notify` and ends when
//! its watcher is dropped.)

mod http;
mod metrics;
mod pipeline;
mod publish;
mod ready;
mod trigger;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use http::Endpoint;
pub use metrics::{Metrics, PipelineMetrics};
pub use pipeline::{Pipeline, Report, WatchOptions, watch};
pub use publish::{PublishTiming, Publisher, SnapshotFn};
pub use ready::Tracker;
pub use trigger::network_filesystem;

/// Why a watch stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A pass could not run: a bad chain, a schema the sink refuses, a sink failure.
    #[error("pipeline `{pipeline}`: {error}")]
    Run { pipeline: String, error: sluice_core::runner::RunError },
    /// A `fail` policy stopped the pipeline.
    #[error("pipeline `{pipeline}` stopped: {message}")]
    Fatal { pipeline: String, message: String },
    /// Filesystem events could not be set up for a directory (`watch.mode: events`).
    #[error("watching {path}: {message}")]
    Events { path: String, message: String },
    /// The metrics endpoint could not listen.
    #[error("metrics endpoint {addr}: {message}")]
    Listen { addr: String, message: String },
    /// The sink failed outside a pass (ledger lookups).
    #[error("pipeline `{pipeline}`: {error}")]
    Sink { pipeline: String, error: sluice_core::error::SinkError },
    /// Publishing the catalog failed when stopping.
    #[error("pipeline `{pipeline}`: publishing the catalog: {error}")]
    Catalog { pipeline: String, error: sluice_core::error::CatalogError },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The process-wide stop request: set by the first SIGINT/SIGTERM (or a fatal error), read by
/// the runner between units (its cancel flag) and awaited by the watch loops.
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: tokio::sync::watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { flag: Arc::new(AtomicBool::new(false)), tx: tokio::sync::watch::Sender::new(false) }
    }
}

impl Shutdown {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Stop taking new files; passes in flight finish and commit their units.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag `runner::run` checks between units.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Resolves once `trigger` was called (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
