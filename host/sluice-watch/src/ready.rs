//! Readiness: which discovered units are complete under their source's `ready` policy and not
//! yet committed, and when to look again at those that are not.
//!
//! The tracker sees each source's listing at every scan and remembers, per unit, the fingerprint
//! (size, mtime) and since when it has been observed unchanged. `stable_for` compares two
//! observations at least the window apart (never the file's mtime against the clock, which a
//! network server may skew); `marker` looks for the marker file; `renamed` takes any file under a
//! final name. Committed units are dropped from it, so its memory follows the backlog.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_core::error::SinkError;
use sluice_core::sink::Sink;
use sluice_core::source::{Source, SourceUnit};
use sluice_core::spec::{ReadyPolicy, SourceSpec};

/// A unit's identity: source, path relative to the source, archive member.
pub(crate) type Key = (String, String, Option<String>);

pub(crate) fn key(u: &SourceUnit) -> Key {
    (u.source.clone(), u.locator.clone(), u.member.clone())
}

/// The longest wait between attempts at a unit that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Entry {
    size: u64,
    version: i64,
    /// When this unit was first seen uncommitted (kept across rewrites until it commits).
    arrived: Instant,
    /// When the current fingerprint was first observed.
    since: Instant,
    /// Failed attempts in this process at the current fingerprint (for the backoff).
    attempts: u32,
    hold_until: Option<Instant>,
    /// Failed `retries` times with this fingerprint (per the lake): skipped until it changes.
    poisoned: bool,
}

/// What one scan of a source found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Complete, uncommitted units to ingest now.
    pub ready: Vec<SourceUnit>,
    /// The earliest moment a waiting unit may become ready (end of a stability window or of a
    /// failure backoff); `None` when nothing waits on the clock.
    pub next: Option<Instant>,
    /// Files seen for the first time, or again after they were committed (rewritten).
    pub new_files: u64,
}

struct Policy {
    ready: ReadyPolicy,
    retries: u32,
}

/// Per-pipeline readiness state.
pub struct Tracker {
    policies: HashMap<String, Policy>,
    entries: HashMap<Key, Entry>,
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Tracker {
    pub fn new(sources: &[SourceSpec]) -> Self {
        let policies =
            sources.iter().map(|s| (s.name.clone(), Policy { ready: s.ready.clone(), retries: s.retries })).collect();
        Tracker { policies, entries: HashMap::new() }
    }

    /// Fold in a complete listing of `source` made at `now`. Units the sink holds unchanged are
    /// forgotten; units that vanished from the listing too.
    pub fn observe(
        &mut self,
        source: &dyn Source,
        units: &[SourceUnit],
        sink: &dyn Sink,
        now: Instant,
    ) -> Result<Scan, SinkError> {
        let Some(policy) = self.policies.get(source.name()) else { return Ok(Scan::default()) };
        let mut scan = Scan::default();
        let mut listed = std::collections::HashSet::with_capacity(units.len());
        for unit in units {
            let k = key(unit);
            if sink.state().is_committed(unit)? {
                self.entries.remove(&k);
                continue;
            }
            listed.insert(k.clone());
            let e = self.entries.entry(k).or_insert_with(|| {
                scan.new_files += 1;
                Entry {
                    size: unit.size,
                    version: unit.version,
                    arrived: now,
                    since: now,
                    attempts: 0,
                    hold_until: None,
                    poisoned: false,
                }
            });
            if (e.size, e.version) != (unit.size, unit.version) {
                // Still being written, or written again: the window starts over.
                (e.size, e.version, e.since) = (unit.size, unit.version, now);
                e.attempts = 0;
                e.hold_until = None;
                e.poisoned = false;
            }
            if e.poisoned {
                continue;
            }
            if sink.state().failures(unit)? >= policy.retries {
                e.poisoned = true;
                tracing::warn!(file = %unit.display_name(), retries = policy.retries,
                    "failed too many times; skipped until the file changes");
                continue;
            }
            if let Some(t) = e.hold_until {
                if t > now {
                    scan.next = earliest(scan.next, t);
                    continue;
                }
                e.hold_until = None;
            }
            let ready = match &policy.ready {
                ReadyPolicy::StableFor(window) => {
                    let at = e.since + *window;
                    if at > now {
                        scan.next = earliest(scan.next, at);
                    }
                    at <= now
                }
                ReadyPolicy::Marker(_) => source.complete(unit),
                ReadyPolicy::Renamed => true,
            };
            if ready {
                scan.ready.push(unit.clone());
            }
        }
        self.entries.retain(|k, _| k.0 != source.name() || listed.contains(k));
        Ok(scan)
    }

    /// A unit committed: forget it. Returns when it was first seen.
    pub fn committed(&mut self, unit: &SourceUnit) -> Option<Instant> {
        self.entries.remove(&key(unit)).map(|e| e.arrived)
    }

    /// A unit failed: hold it back for a growing while (1 s, 2 s, 4 s, ... at most a minute);
    /// the lake counts the attempts that poison it.
    pub fn failed(&mut self, unit: &SourceUnit, now: Instant) {
        if let Some(e) = self.entries.get_mut(&key(unit))
            && (e.size, e.version) == (unit.size, unit.version)
        {
            e.attempts += 1;
            let backoff = Duration::from_secs(1u64 << (e.attempts - 1).min(6)).min(MAX_BACKOFF);
            e.hold_until = Some(now + backoff);
        }
    }

    /// Units seen and not committed, except the poisoned: the queue depth.
    pub fn queued(&self) -> usize {
        self.entries.values().filter(|e| !e.poisoned).count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sluice_core::sink::{DeadLetter, StateStore, UnitWriter};
    use sluice_core::spec::{DirSpec, ReadyPolicy};

    use super::*;

    /// A sink that knows committed fingerprints and failure counts.
    #[derive(Default)]
    struct FakeSink {
        committed: Mutex<Vec<(String, u64, i64)>>,
        failures: Mutex<HashMap<String, u32>>,
        lookups: std::sync::atomic::AtomicU64,
    }

    impl Sink for FakeSink {
        fn check_schema(&self, _: &sluice_core::SchemaRef) -> Result<(), SinkError> {
            Ok(())
        }
        fn begin(&self, _: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError> {
            unimplemented!()
        }
        fn state(&self) -> &dyn StateStore {
            self
        }
    }

    impl StateStore for FakeSink {
        fn is_committed(&self, u: &SourceUnit) -> Result<bool, SinkError> {
            self.lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(self.committed.lock().unwrap().contains(&(u.locator.clone(), u.size, u.version)))
        }
        fn dead_letter(&self, _: &DeadLetter) -> Result<(), SinkError> {
            Ok(())
        }
        fn failures(&self, u: &SourceUnit) -> Result<u32, SinkError> {
            Ok(self.failures.lock().unwrap().get(&u.locator).copied().unwrap_or(0))
        }
    }

    /// Source `s`, whose units are complete or not.
    struct Src(bool);

    impl Source for Src {
        fn name(&self) -> &str {
            "s"
        }
        fn schema(&self) -> Option<sluice_core::SchemaRef> {
            None
        }
        fn discover(&self) -> Result<Vec<SourceUnit>, sluice_core::error::SourceError> {
            Ok(Vec::new())
        }
        fn open(&self, _: &SourceUnit) -> Result<sluice_core::source::BatchStream, sluice_core::error::SourceError> {
            unimplemented!()
        }
        fn complete(&self, _: &SourceUnit) -> bool {
            self.0
        }
    }

    fn spec(ready: ReadyPolicy) -> SourceSpec {
        SourceSpec {
            name: "s".into(),
            config: std::sync::Arc::new(DirSpec {
                path: "/in".into(),
                include: vec![],
                exclude: vec![],
                fields: None,
                format: sluice_core::spec::FormatSpec::Parquet,
                order: Default::default(),
                compression: Default::default(),
                members: vec![],
                limits: Default::default(),
            }),
            rejects: Default::default(),
            retries: 2,
            ready,
            watch: Default::default(),
        }
    }

    fn unit(dir: &std::path::Path, name: &str, size: u64, version: i64) -> SourceUnit {
        SourceUnit {
            source: "s".into(),
            location: dir.join(name).display().to_string(),
            locator: name.into(),
            member: None,
            size,
            version,
            content_hash: None,
        }
    }

    fn names(scan: &Scan) -> Vec<&str> {
        scan.ready.iter().map(|u| u.locator.as_str()).collect()
    }

    #[test]
    fn stable_for_needs_an_unchanged_fingerprint_for_the_whole_window() {
        let window = Duration::from_millis(500);
        let mut t = Tracker::new(&[spec(ReadyPolicy::StableFor(window))]);
        let sink = FakeSink::default();
        let dir = std::path::Path::new("/in");
        let t0 = Instant::now();
        let s = t.observe(&Src(true), &[unit(dir, "a", 10, 1)], &sink, t0).unwrap();
        assert!(s.ready.is_empty());
        assert_eq!(s.next, Some(t0 + window));
        assert_eq!(s.new_files, 1);
        // Still growing 400 ms later: the window restarts.
        let t1 = t0 + Duration::from_millis(400);
        let s = t.observe(&Src(true), &[unit(dir, "a", 20, 2)], &sink, t1).unwrap();
        assert!(s.ready.is_empty());
        assert_eq!(s.next, Some(t1 + window));
        // Not yet: 499 ms after the last change.
        let s = t.observe(&Src(true), &[unit(dir, "a", 20, 2)], &sink, t1 + Duration::from_millis(499)).unwrap();
        assert!(s.ready.is_empty());
        let s = t.observe(&Src(true), &[unit(dir, "a", 20, 2)], &sink, t1 + window).unwrap();
        assert_eq!(names(&s), ["a"]);
        assert_eq!(s.next, None);
        assert_eq!(t.queued(), 1);
        // Committed: forgotten, and not offered again.
        sink.committed.lock().unwrap().push(("a".into(), 20, 2));
        assert_eq!(t.committed(&unit(dir, "a", 20, 2)), Some(t0));
        let s = t.observe(&Src(true), &[unit(dir, "a", 20, 2)], &sink, t1 + window * 2).unwrap();
        assert!(s.ready.is_empty() && s.next.is_none());
        assert_eq!(t.queued(), 0);
        // Rewritten after ingestion: a new version, stable again after the window.
        let t2 = t1 + window * 3;
        let s = t.observe(&Src(true), &[unit(dir, "a", 30, 3)], &sink, t2).unwrap();
        assert!(s.ready.is_empty());
        assert_eq!(s.new_files, 1);
        let s = t.observe(&Src(true), &[unit(dir, "a", 30, 3)], &sink, t2 + window).unwrap();
        assert_eq!(names(&s), ["a"]);
    }

    #[test]
    fn failures_back_off_then_poison_until_the_file_changes() {
        let mut t = Tracker::new(&[spec(ReadyPolicy::Renamed)]);
        let sink = FakeSink::default();
        let dir = std::path::Path::new("/in");
        let t0 = Instant::now();
        let a = unit(dir, "a", 10, 1);
        assert_eq!(names(&t.observe(&Src(true), std::slice::from_ref(&a), &sink, t0).unwrap()), ["a"]);
        t.failed(&a, t0);
        sink.failures.lock().unwrap().insert("a".into(), 1);
        let s = t.observe(&Src(true), std::slice::from_ref(&a), &sink, t0 + Duration::from_millis(10)).unwrap();
        assert!(s.ready.is_empty());
        assert_eq!(s.next, Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(names(&t.observe(&Src(true), std::slice::from_ref(&a), &sink, t1).unwrap()), ["a"]);
        // The lake's count reaches `retries`: poisoned, not counted in the queue.
        sink.failures.lock().unwrap().insert("a".into(), 2);
        let s = t.observe(&Src(true), std::slice::from_ref(&a), &sink, t1 + Duration::from_secs(5)).unwrap();
        assert!(s.ready.is_empty() && s.next.is_none());
        assert_eq!(t.queued(), 0);
        // A changed file starts over.
        sink.failures.lock().unwrap().clear();
        let b = unit(dir, "a", 11, 2);
        let s = t.observe(&Src(true), std::slice::from_ref(&b), &sink, t1 + Duration::from_secs(6)).unwrap();
        assert_eq!(names(&s), ["a"]);
    }

    #[test]
    fn a_marker_policy_takes_what_the_source_says_is_complete() {
        let mut t = Tracker::new(&[spec(ReadyPolicy::Marker(sluice_core::spec::Marker::parse("_SUCCESS").unwrap()))]);
        let sink = FakeSink::default();
        let a = unit(std::path::Path::new("/in"), "a.csv", 1, 1);
        let now = Instant::now();
        assert!(t.observe(&Src(false), std::slice::from_ref(&a), &sink, now).unwrap().ready.is_empty());
        assert_eq!(names(&t.observe(&Src(true), std::slice::from_ref(&a), &sink, now).unwrap()), ["a.csv"]);
    }

    #[test]
    fn vanished_files_are_forgotten() {
        let mut t = Tracker::new(&[spec(ReadyPolicy::default())]);
        let sink = FakeSink::default();
        let dir = std::path::Path::new("/in");
        let now = Instant::now();
        t.observe(&Src(true), &[unit(dir, "a", 1, 1), unit(dir, "b", 1, 1)], &sink, now).unwrap();
        assert_eq!(t.queued(), 2);
        t.observe(&Src(true), &[unit(dir, "b", 1, 1)], &sink, now).unwrap();
        assert_eq!(t.queued(), 1);
    }

    #[test]
    fn a_scan_of_many_files_looks_each_up_once() {
        let mut t = Tracker::new(&[spec(ReadyPolicy::default())]);
        let sink = FakeSink::default();
        let dir = std::path::Path::new("/in");
        let units: Vec<SourceUnit> = (0..20_000).map(|i| unit(dir, &format!("f{i:05}.csv"), 10, 1)).collect();
        let t0 = Instant::now();
        t.observe(&Src(true), &units, &sink, t0).unwrap();
        let s = t.observe(&Src(true), &units, &sink, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(s.ready.len(), 20_000);
        assert_eq!(sink.lookups.load(std::sync::atomic::Ordering::Relaxed), 40_000);
        assert_eq!(t.queued(), 20_000);
    }
}
