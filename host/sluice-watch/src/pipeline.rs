//! One pipeline's watch loop: wait for a trigger, list the sources, run a pass over the units
//! that are complete, repeat until a stop is requested; then publish the catalog a last time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::catalog::Catalog;
use sluice_core::runner::{self, Job, Progress, RunError, RunOptions, UnitFilter};
use sluice_core::sink::CommitReport;
use sluice_core::source::SourceUnit;
use sluice_core::summary::RunSummary;

use crate::metrics::PipelineMetrics;
use crate::publish::{PublishHandle, PublishTiming, Publisher, SnapshotFn};
use crate::ready::{Key, Tracker, key};
use crate::trigger::{Trigger, Wake};
use crate::{Metrics, Shutdown, WatchError};

/// A pipeline to watch: its loaded job, and where its commits are published.
pub struct Pipeline {
    pub job: Arc<Job>,
    /// The catalog and how to take the lake's snapshot; `None` publishes nothing.
    pub catalog: Option<(Arc<dyn Catalog>, SnapshotFn)>,
}

#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Workers per pass (default: the pipeline's `settings.workers`).
    pub workers: Option<usize>,
    /// After a filesystem event, wait this long for more before listing the sources (or twice
    /// the last listing's duration, when that is longer).
    pub debounce: Duration,
    pub publish: PublishTiming,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions { workers: None, debounce: Duration::from_millis(50), publish: PublishTiming::default() }
    }
}

/// What a watch did, for the exit summary.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub pipeline: String,
    pub passes: u64,
    pub files_committed: u64,
    pub files_failed: u64,
    pub rows_written: u64,
    pub bytes_written: u64,
}

impl Report {
    fn absorb(&mut self, s: &RunSummary) {
        self.passes += 1;
        self.files_committed += s.files_committed;
        self.files_failed += s.files_failed;
        self.rows_written += s.rows_written;
        self.bytes_written += s.bytes_written;
    }
}

/// How long to wait before listing a source again after it could not be listed.
const RETRY: Duration = Duration::from_secs(1);

/// How often sources watched through events are listed anyway.
const SAFETY_SCAN: Duration = Duration::from_secs(30);

/// Observes a pass's units for the tracker, the metrics, the publisher and the commit log.
struct WatchProgress {
    pipeline: String,
    tracker: Arc<Mutex<Tracker>>,
    metrics: PipelineMetrics,
    publish: Option<PublishHandle>,
}

impl Progress for WatchProgress {
    fn unit_finished(&self, unit: &SourceUnit, _rows: u64, ok: bool) {
        if !ok {
            self.tracker.lock().expect("tracker lock").failed(unit, Instant::now());
            self.metrics.failed();
        }
    }

    fn unit_committed(&self, unit: &SourceUnit, report: &CommitReport) {
        let arrived = self.tracker.lock().expect("tracker lock").committed(unit);
        let latency = arrived.map(|a| a.elapsed());
        self.metrics.committed(report.rows, unit.size, report.bytes, latency);
        if let Some(p) = &self.publish {
            p.changed(arrived);
        }
        tracing::info!(
            target: "sluice::commit",
            pipeline = %self.pipeline,
            source = %unit.source,
            file = %unit.display_name(),
            rows = report.rows,
            bytes = report.bytes,
            files = report.files.len(),
            latency_ms = latency.map(|l| l.as_millis() as u64),
            "committed"
        );
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Watch one pipeline until `shutdown`: a catch-up scan first, then a scan after every relevant
/// event (debounced), stability deadline and poll tick, each followed by a pass over the units
/// that are complete. On stop, the pass in flight finishes and commits, and the catalog is
/// published. A `fail` policy or a sink error ends the watch with an error.
pub async fn watch(
    p: Pipeline,
    opts: WatchOptions,
    metrics: Arc<Metrics>,
    shutdown: Arc<Shutdown>,
) -> Result<Report, WatchError> {
    let job = p.job;
    let name = job.spec.name.clone();
    let pm = metrics.pipeline(&name);
    metrics.sources(&name, &job.sources);
    let wake = Arc::new(Wake::default());
    let mut triggers = Vec::new();
    for source in &job.sources {
        source.follow();
        let Some(spec) = job.spec.source(source.name()) else { continue };
        triggers.push(crate::trigger::start(source.clone(), spec, wake.clone())?);
    }
    // Event-watched sources are listed now and then all the same, for what events can miss (a
    // source directory removed and created again, which ends its watch).
    let poll_every = triggers
        .iter()
        .map(|t| match t {
            Trigger::Poll(d) => *d,
            Trigger::Events(_) => SAFETY_SCAN,
        })
        .min();
    let publisher = match p.catalog {
        Some((catalog, snapshot)) => Some(
            Publisher::start(catalog, snapshot, opts.publish, pm.clone())
                .map_err(|e| WatchError::Internal(format!("starting the catalog publisher: {e}")))?,
        ),
        None => None,
    };
    let tracker = Arc::new(Mutex::new(Tracker::new(&job.spec.sources)));
    let progress = Arc::new(WatchProgress {
        pipeline: name.clone(),
        tracker: tracker.clone(),
        metrics: pm.clone(),
        publish: publisher.as_ref().map(Publisher::handle),
    });
    let looped = watch_loop(&job, &opts, &pm, &tracker, progress, &wake, poll_every, &shutdown).await;
    // No more events; then the last publish, with everything committed.
    drop(triggers);
    let published = match publisher {
        Some(p) => tokio::task::spawn_blocking(move || p.stop())
            .await
            .map_err(|e| WatchError::Internal(format!("catalog publisher: {e}")))?,
        None => Ok(()),
    };
    let report = looped?;
    published.map_err(|error| WatchError::Catalog { pipeline: name, error })?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn watch_loop(
    job: &Arc<Job>,
    opts: &WatchOptions,
    pm: &PipelineMetrics,
    tracker: &Arc<Mutex<Tracker>>,
    progress: Arc<WatchProgress>,
    wake: &Wake,
    poll_every: Option<Duration>,
    shutdown: &Shutdown,
) -> Result<Report, WatchError> {
    let name = job.spec.name.clone();
    let mut report = Report { pipeline: name.clone(), ..Default::default() };
    let mut next_poll = poll_every.map(|d| Instant::now() + d);
    // The first scan is the catch-up: everything the ledger has not committed. A scan also
    // follows every pass at once: files may have arrived meanwhile (poll mode), and failed
    // units now wait on a backoff deadline.
    let mut scan_now = true;
    let mut next: Option<Instant> = None;
    let mut retry_at: Option<Instant> = None;
    let mut last_scan = Duration::ZERO;
    // A stream's handler instances, kept from pass to pass.
    let carry = Arc::new(runner::ChainCarry::default());
    loop {
        if shutdown.is_triggered() {
            break;
        }
        if !scan_now {
            let deadline = [next, next_poll, retry_at].into_iter().flatten().min();
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = wake.wait() => {
                    // Let a burst of events settle, then list once for all of them. A large
                    // directory waits longer, so that listing it takes at most a third of a core
                    // while a file is being written for minutes.
                    let settle = opts.debounce.max(last_scan * 2);
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(settle) => {}
                    }
                    let due = [next, next_poll, retry_at].into_iter().flatten().any(|t| t <= Instant::now());
                    if !wake.take() && !due {
                        continue; // a stale wake-up: its changes were in the last scan
                    }
                }
                _ = sleep_until(deadline) => {}
            }
        }
        scan_now = false;
        wake.take();
        if let (Some(at), Some(every)) = (next_poll, poll_every)
            && at <= Instant::now()
        {
            next_poll = Some(Instant::now() + every);
        }

        // List every source and fold the listings into the tracker: blocking I/O and lookups.
        let (j, t) = (job.clone(), tracker.clone());
        let scan_started = Instant::now();
        let scanned = tokio::task::spawn_blocking(move || scan(&j, &t))
            .await
            .map_err(|e| WatchError::Internal(format!("scan panicked: {e}")))?
            .map_err(|error| WatchError::Sink { pipeline: name.clone(), error })?;
        last_scan = scan_started.elapsed();
        tracing::debug!(pipeline = %name, ready = scanned.ready.len(), new = scanned.new_files,
            took_ms = last_scan.as_millis() as u64,
            waiting_ms = scanned.next.map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64), "scanned");
        pm.seen(scanned.new_files);
        pm.queue_depth(tracker.lock().expect("tracker lock").queued());
        next = scanned.next;
        retry_at = scanned.listing_failed.then(|| Instant::now() + RETRY);
        if scanned.ready.is_empty() {
            continue;
        }

        // A pass over exactly the complete units, each at the version found complete.
        let accept: HashSet<(Key, u64, i64)> = scanned.ready.iter().map(|u| (key(u), u.size, u.version)).collect();
        let filter: UnitFilter = Arc::new(move |u: &SourceUnit| accept.contains(&(key(u), u.size, u.version)));
        let run_opts = RunOptions {
            force: false,
            workers: opts.workers,
            filter: Some(filter),
            rerun_stale: false,
            carry: Some(carry.clone()),
        };
        tracing::debug!(pipeline = %name, units = scanned.ready.len(), "pass");
        scan_now = true;
        match runner::run(job.clone(), run_opts, progress.clone(), shutdown.flag()).await {
            Ok(summary) => {
                report.absorb(&summary);
                pm.pass(&summary);
                pm.queue_depth(tracker.lock().expect("tracker lock").queued());
                if let Some(message) = summary.fatal {
                    return Err(WatchError::Fatal { pipeline: name, message });
                }
                // Housekeeping (compaction) after a pass that committed; its commit is short
                // and concurrent writers are safe, but it runs between passes to stay simple.
                if summary.files_committed > 0 {
                    let j = job.clone();
                    match tokio::task::spawn_blocking(move || j.sink.maintain()).await {
                        Ok(Ok(Some(did))) => tracing::info!(pipeline = %name, "{did}"),
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(pipeline = %name, "housekeeping failed (the next pass retries): {e}")
                        }
                        Err(e) => return Err(WatchError::Internal(format!("housekeeping panicked: {e}"))),
                    }
                }
            }
            // A directory that vanished or cannot be read: try again shortly.
            Err(RunError::Source(e)) => {
                tracing::warn!(pipeline = %name, "{e}; retrying");
                retry_at = Some(Instant::now() + RETRY);
            }
            Err(error) => return Err(WatchError::Run { pipeline: name, error }),
        }
    }
    Ok(report)
}

/// What a scan of all sources found.
struct Scanned {
    ready: Vec<SourceUnit>,
    next: Option<Instant>,
    new_files: u64,
    listing_failed: bool,
}

fn scan(job: &Job, tracker: &Mutex<Tracker>) -> Result<Scanned, sluice_core::error::SinkError> {
    let mut out = Scanned { ready: Vec::new(), next: None, new_files: 0, listing_failed: false };
    for source in &job.sources {
        let high_water = job.sink.state().high_water(source.name())?;
        let units = match source.discover_after(high_water.as_deref()) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(pipeline = %job.spec.name, source = %source.name(), "{e}; retrying");
                out.listing_failed = true;
                continue;
            }
        };
        let now = Instant::now();
        let s = tracker.lock().expect("tracker lock").observe(&**source, &units, &*job.sink, now)?;
        out.ready.extend(s.ready);
        out.new_files += s.new_files;
        out.next = match (out.next, s.next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(out)
}
