//! Debounced catalog publishing: a lone commit is published almost at once; during a burst of
//! commits, publishes are spaced by at least twice the time the last one took (so rebuilding the
//! catalog takes at most about a third of a core, however large the lake), yet a commit is never
//! left unpublished longer than `max_delay` beyond that. A burst does not rebuild the catalog
//! once per file.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_core::catalog::{Catalog, LakeSnapshot};
use sluice_core::error::CatalogError;

use crate::metrics::PipelineMetrics;

/// The lake's committed files, taken just before each publish.
pub type SnapshotFn = Box<dyn Fn() -> Result<LakeSnapshot, CatalogError> + Send>;

/// When the catalog is rebuilt after commits.
#[derive(Debug, Clone, Copy)]
pub struct PublishTiming {
    /// Wait this long after a commit for others (units of one pass commit close together).
    pub quiet: Duration,
    /// At least this long between two publishes.
    pub min_gap: Duration,
    /// The gap is also at least this many times the last publish's duration.
    pub gap_factor: u32,
    /// A commit waits at most this long for the gap (bounds `quiet` in a steady stream of
    /// commits); a publish that is itself slower delays it further.
    pub max_delay: Duration,
}

impl Default for PublishTiming {
    fn default() -> Self {
        PublishTiming {
            quiet: Duration::from_millis(25),
            min_gap: Duration::from_millis(100),
            gap_factor: 2,
            max_delay: Duration::from_millis(500),
        }
    }
}

#[derive(Default)]
struct State {
    /// The first commit not yet published.
    dirty_since: Option<Instant>,
    last_change: Option<Instant>,
    /// When the last publish ended, and how long it took.
    last_publish: Option<(Instant, Duration)>,
    /// Arrival times of the units committed since the last publish, for the latency metric.
    arrivals: Vec<Instant>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// A handle to tell the publisher about commits.
#[derive(Clone)]
pub struct PublishHandle {
    shared: Arc<Shared>,
}

impl PublishHandle {
    /// Something was committed; `arrived` is when its file was first seen, if known.
    pub fn changed(&self, arrived: Option<Instant>) {
        let mut st = self.shared.state.lock().expect("publisher lock");
        let now = Instant::now();
        st.dirty_since.get_or_insert(now);
        st.last_change = Some(now);
        st.arrivals.extend(arrived);
        self.shared.cv.notify_all();
    }
}

/// Publishes one lake's catalog from a thread of its own; `stop` publishes what is pending and
/// joins it.
pub struct Publisher {
    handle: PublishHandle,
    thread: Option<JoinHandle<Result<(), CatalogError>>>,
}

struct Worker {
    catalog: Arc<dyn Catalog>,
    snapshot: SnapshotFn,
    metrics: PipelineMetrics,
}

impl Worker {
    fn publish(&self, arrivals: Vec<Instant>) -> Result<(), CatalogError> {
        let started = Instant::now();
        let snapshot = (self.snapshot)()?;
        let res = self.catalog.publish(&snapshot);
        let done = Instant::now();
        self.metrics.published(done - started, res.is_ok());
        if res.is_ok() {
            for a in arrivals {
                self.metrics.visible_after(done.saturating_duration_since(a));
            }
        }
        res
    }
}

impl Publisher {
    /// Start the thread. The catalog is published once right away, so that it reflects the
    /// ledger even before the first commit.
    pub fn start(
        catalog: Arc<dyn Catalog>,
        snapshot: SnapshotFn,
        timing: PublishTiming,
        metrics: PipelineMetrics,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), cv: Condvar::new() });
        let handle = PublishHandle { shared: shared.clone() };
        handle.changed(None);
        let worker = Worker { catalog, snapshot, metrics };
        let thread =
            std::thread::Builder::new().name("sluice-publish".into()).spawn(move || run(&shared, &worker, timing))?;
        Ok(Publisher { handle, thread: Some(thread) })
    }

    pub fn handle(&self) -> PublishHandle {
        self.handle.clone()
    }

    /// Publish what is pending, stop the thread and join it. Returns the final publish's error.
    pub fn stop(mut self) -> Result<(), CatalogError> {
        {
            let mut st = self.handle.shared.state.lock().expect("publisher lock");
            st.stop = true;
            self.handle.shared.cv.notify_all();
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(res)) => res,
            Some(Err(_)) => Err(CatalogError::Query("the catalog publisher panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shared.state.lock().expect("publisher lock").stop = true;
            self.handle.shared.cv.notify_all();
            let _ = t.join();
        }
    }
}

/// When the pending commits are due, per the timing.
fn due(st: &State, t: &PublishTiming) -> Option<Instant> {
    let since = st.dirty_since?;
    let quiet = st.last_change.unwrap_or(since) + t.quiet;
    let gap = st.last_publish.map_or(quiet, |(end, took)| end + t.min_gap.max(took * t.gap_factor));
    Some(quiet.max(gap).min(since + t.max_delay))
}

fn run(shared: &Shared, worker: &Worker, timing: PublishTiming) -> Result<(), CatalogError> {
    let mut st = shared.state.lock().expect("publisher lock");
    loop {
        if st.stop {
            // The final publish, whether or not anything changed: the catalog is current on exit.
            let arrivals = std::mem::take(&mut st.arrivals);
            drop(st);
            return worker.publish(arrivals);
        }
        let Some(at) = due(&st, &timing) else {
            st = shared.cv.wait(st).expect("publisher lock");
            continue;
        };
        let now = Instant::now();
        if at > now {
            st = shared.cv.wait_timeout(st, at - now).expect("publisher lock").0;
            continue;
        }
        st.dirty_since = None;
        let arrivals = std::mem::take(&mut st.arrivals);
        drop(st);
        if let Err(e) = worker.publish(arrivals) {
            tracing::warn!("publishing the catalog: {e}");
        }
        st = shared.state.lock().expect("publisher lock");
        let end = Instant::now();
        st.last_publish = Some((end, end - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_commit_is_due_after_the_quiet_time_and_a_burst_is_spaced() {
        let t = PublishTiming::default();
        let t0 = Instant::now();
        let mut st = State { dirty_since: Some(t0), last_change: Some(t0), ..Default::default() };
        assert_eq!(due(&st, &t), Some(t0 + t.quiet));
        // Just published: the next one waits for the gap.
        st.last_publish = Some((t0, Duration::from_millis(10)));
        assert_eq!(due(&st, &t), Some(t0 + t.min_gap));
        // A slow publish widens the gap, up to max_delay.
        st.last_publish = Some((t0, Duration::from_millis(150)));
        assert_eq!(due(&st, &t), Some(t0 + Duration::from_millis(300)));
        st.last_publish = Some((t0, Duration::from_secs(1)));
        assert_eq!(due(&st, &t), Some(t0 + t.max_delay));
        // Commits keep coming: never later than max_delay after the first.
        st.last_publish = None;
        st.last_change = Some(t0 + Duration::from_secs(10));
        assert_eq!(due(&st, &t), Some(t0 + t.max_delay));
        st.dirty_since = None;
        assert_eq!(due(&st, &t), None);
    }
}
