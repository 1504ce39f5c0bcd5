//! The `kind: s3` source: list the bucket, fetch the units the run wants into the mirror ahead
//! of the workers (bounded concurrency, a bounded number waiting), and read each fetched file
//! as a directory source would.
//!
//! A unit is one object: its locator is the key relative to the prefix's directory, its
//! fingerprint the listed size and `etag:<ETag>` (with the ETag of its `.CHECKSUM`, see
//! [`fingerprint`]), so an unchanged object is never fetched or read again, and a changed one
//! (new ETag) replaces its earlier output.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use futures_util::{FutureExt, StreamExt};
use sluice_core::error::SourceError;
use sluice_core::source::{BatchStream, Settled, Source, SourceItem, SourceMetric, SourceUnit, UnitStatus};
use sluice_core::spec::{FileOrder, SourceSpec};
use sluice_source::DirSource;

use crate::client::{Client, Object};
use crate::config::{ChecksumPolicy, S3Spec};
use crate::fetch::{FetchError, Fetcher, Job, valid_key};
use crate::manifest::{Entry, Manifest};
use crate::metrics::Metrics;
use crate::policy::{Gate, TokenBucket, jitter_rng};
use crate::walk::Walker;

/// What one full listing found.
struct Listing {
    at: Instant,
    /// Every key under the prefix.
    keys: HashSet<String>,
    units: Vec<SourceUnit>,
    /// The object of each selected unit, by locator.
    jobs: HashMap<String, Job>,
    /// Listed by directory: the directories listed (a key elsewhere was not looked for).
    walked: Option<HashSet<String>>,
}

impl Listing {
    /// Whether this listing looked where `key` would be.
    fn covers(&self, key: &str, prefix: &str) -> bool {
        let Some(walked) = &self.walked else { return true };
        let dir = key.rfind('/').map_or("", |i| &key[..=i]);
        walked.contains(dir) || key.strip_prefix(prefix).is_some_and(|rest| !rest.contains('/'))
    }
}

/// The download queue shared by the source (its callers' threads) and the download tasks.
#[derive(Default)]
struct Queue {
    /// Wanted and not started, in the order the workers will want them.
    waiting: VecDeque<Job>,
    /// Jobs (by [`Job::id`]: key and ETag) a caller of `open` waits for: started before the
    /// others, beyond `ahead`.
    urgent: HashSet<String>,
    running: HashSet<String>,
    /// Finished and not yet taken by `open`.
    done: HashMap<String, Result<PathBuf, FetchError>>,
    closed: bool,
}

impl Queue {
    /// The next job to start: an urgent one, else the first while fewer than `ahead` objects
    /// are downloading or downloaded and unread.
    fn pick(&mut self, ahead: usize) -> Option<Job> {
        let i = match self.waiting.iter().position(|j| self.urgent.contains(&j.id())) {
            Some(i) => i,
            None if self.running.len() + self.done.values().filter(|r| r.is_ok()).count() < ahead => 0,
            None => return None,
        };
        let job = self.waiting.remove(i)?;
        self.running.insert(job.id());
        Some(job)
    }
}

struct Sched {
    queue: Mutex<Queue>,
    /// Wakes callers of `open` when a download finishes.
    finished: Condvar,
    /// Wakes download tasks when there is work (or room for it).
    work: tokio::sync::Notify,
}

/// What a source starts on first use: the mirror's lock and manifest, the download tasks.
struct Live {
    fetcher: Arc<Fetcher>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _lock: std::fs::File,
}

pub struct S3Source {
    name: String,
    s3: Arc<S3Spec>,
    dir: Arc<DirSource>,
    metrics: Arc<Metrics>,
    /// Taken on drop (see `Drop`).
    rt: Option<tokio::runtime::Runtime>,
    /// Started on first use; a start that failed (a mirror locked by another process) is
    /// tried again by the next use.
    live: Mutex<Option<Arc<Live>>>,
    /// Held while listing, so that callers who find the listing old list once between them.
    list_lock: Mutex<()>,
    sched: Arc<Sched>,
    listing: Mutex<Option<Arc<Listing>>>,
    /// Keys already warned about (not valid mirror paths), so each is warned once.
    warned: Mutex<HashSet<String>>,
    /// The globs, segment by segment, when the bucket is listed by directory.
    walker: Option<Arc<Walker>>,
    /// Set by [`Source::cancel`]: callers of `open` stop waiting for downloads.
    cancelled: std::sync::atomic::AtomicBool,
}

impl S3Source {
    /// The source; no I/O until it is first used.
    pub fn new(spec: &SourceSpec, s3: Arc<S3Spec>, batch_rows: usize) -> Result<Self, SourceError> {
        let files = SourceSpec { config: Arc::new(s3.files.clone()), ..spec.clone() };
        let dir = Arc::new(DirSource::new(&files, batch_rows)?);
        let walker = match s3.by_directory {
            true => Some(Arc::new(
                Walker::new(&s3.files.include)
                    .map_err(|message| SourceError::Config { source_name: spec.name.clone(), message })?,
            )),
            false => None,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-s3")
            .enable_all()
            .build()
            .map_err(|e| SourceError::Config {
                source_name: spec.name.clone(),
                message: format!("cannot start the S3 source's runtime: {e}"),
            })?;
        Ok(S3Source {
            name: spec.name.clone(),
            s3,
            dir,
            metrics: Arc::default(),
            rt: Some(rt),
            live: Mutex::new(None),
            list_lock: Mutex::new(()),
            sched: Arc::new(Sched {
                queue: Mutex::default(),
                finished: Condvar::new(),
                work: tokio::sync::Notify::new(),
            }),
            listing: Mutex::new(None),
            warned: Mutex::default(),
            cancelled: Default::default(),
            walker,
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("until dropped")
    }

    fn remote(&self, message: impl Into<String>) -> SourceError {
        SourceError::Remote { server: format!("s3 {}", self.s3.server()), message: self.s3.redact(&message.into()) }
    }

    fn manifest_dir(&self) -> PathBuf {
        self.s3.mirror.join(".sluice")
    }

    /// Run `fut` on the source's runtime and wait for it, from any thread.
    fn block_on<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T, SourceError> {
        let task = self.rt().spawn(fut);
        futures_executor::block_on(task).map_err(|e| self.remote(format!("task failed: {e}")))
    }

    /// The mirror's lock and manifest and the download tasks, started on first use.
    fn live(&self) -> Result<Arc<Live>, SourceError> {
        let mut g = self.live.lock().expect("live lock");
        if let Some(l) = g.as_ref() {
            return Ok(l.clone());
        }
        let l =
            Arc::new(self.start().map_err(|message| SourceError::Config { source_name: self.name.clone(), message })?);
        *g = Some(l.clone());
        Ok(l)
    }

    fn start(&self) -> Result<Live, String> {
        let dir = self.manifest_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("mirror {}: {e}", dir.display()))?;
        let lock_path = dir.join("mirror.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            return Err(format!(
                "mirror {} is in use by another running pipeline (two sources may not share a mirror)",
                self.s3.mirror.display()
            ));
        }
        let manifest = Arc::new(Manifest::open(&dir).map_err(|e| format!("manifest in {}: {e}", dir.display()))?);
        let client = Client::new(self.s3.clone())?;
        let d = &self.s3.download;
        let fetcher = Arc::new(Fetcher {
            client,
            spec: self.s3.clone(),
            manifest,
            gate: Gate::default(),
            requests: TokenBucket::new(d.requests_per_second),
            bytes: TokenBucket::new(d.bytes_per_second as f64),
            metrics: self.metrics.clone(),
        });
        let tasks = (0..d.concurrency)
            .map(|_| self.rt().spawn(download_loop(self.sched.clone(), fetcher.clone(), d.ahead)))
            .collect();
        Ok(Live { fetcher, tasks, _lock: lock })
    }

    /// The latest listing while it is younger than `list.interval`.
    fn recent_listing(&self) -> Option<Arc<Listing>> {
        self.listing.lock().expect("listing lock").as_ref().filter(|l| l.at.elapsed() < self.s3.list_interval).cloned()
    }

    /// The latest listing, listing again when it is older than `list.interval`.
    fn listing(&self) -> Result<Arc<Listing>, SourceError> {
        if let Some(l) = self.recent_listing() {
            return Ok(l);
        }
        let _listing = self.list_lock.lock().expect("list lock");
        // Another caller may have listed while this one waited.
        if let Some(l) = self.recent_listing() {
            return Ok(l);
        }
        let fetcher = self.live()?.fetcher.clone();
        let started = Instant::now();
        let (objects, walked) = self
            .block_on(list_all(fetcher.clone(), self.walker.clone()))
            .and_then(|r| r.map_err(|m| self.remote(m)))?;
        self.metrics.list_ms.store(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
        let listing = Arc::new(Listing { walked, ..self.select(objects, &fetcher.manifest) });
        self.metrics.objects_listed.store(listing.units.len() as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(source = %self.name, objects = listing.keys.len(), selected = listing.units.len(),
            ms = started.elapsed().as_millis() as u64, "listed");
        *self.listing.lock().expect("listing lock") = Some(listing.clone());
        Ok(listing)
    }

    /// The units of a listing: keys under the prefix that the globs and `fields` select, that
    /// can be mirror files, and that have a checksum file where one is required.
    fn select(&self, objects: Vec<Object>, manifest: &Manifest) -> Listing {
        let base = self.s3.base();
        let keys: HashSet<String> = objects.iter().map(|o| o.key.clone()).collect();
        let checksums: HashMap<String, String> =
            objects.iter().filter(|o| o.key.ends_with(".CHECKSUM")).map(|o| (o.key.clone(), o.etag.clone())).collect();
        let mut units = Vec::new();
        let mut jobs = HashMap::new();
        for o in objects {
            if !o.key.starts_with(&self.s3.prefix) || o.key.ends_with('/') || o.key.ends_with(".CHECKSUM") {
                continue;
            }
            let locator = o.key[base.len()..].to_string();
            if !self.dir.selects(&locator) || self.walker.as_ref().is_some_and(|w| !w.selects(&locator)) {
                continue;
            }
            if !valid_key(&o.key) {
                if self.warned.lock().expect("warned lock").insert(o.key.clone()) {
                    tracing::warn!(source = %self.name, key = %o.key,
                        "this key cannot be a file in the mirror (an empty, `.` or `..` segment, or a `.partial` name); skipped");
                }
                continue;
            }
            let ck = format!("{}.CHECKSUM", o.key);
            let checksum_key = (self.s3.checksum != ChecksumPolicy::Off && keys.contains(&ck)).then_some(ck);
            if self.s3.checksum == ChecksumPolicy::Required && checksum_key.is_none() {
                if self.warned.lock().expect("warned lock").insert(o.key.clone()) {
                    tracing::warn!(source = %self.name, key = %o.key,
                        "no `.CHECKSUM` file is listed beside it and `checksum: required`; skipped");
                }
                continue;
            }
            if manifest.get(&o.key).is_none_or(|e| e.etag != o.etag || e.size != o.size) {
                let _ = manifest.record(Entry::new(&o.key, "listed", &o.etag, o.size));
            }
            units.push(SourceUnit {
                source: self.name.clone(),
                locator: locator.clone(),
                member: None,
                location: self.s3.url_of(&o.key),
                size: o.size,
                version: o.last_modified_ns,
                content_hash: fingerprint(&o.etag, checksum_key.as_ref().and_then(|ck| checksums.get(ck))),
            });
            jobs.insert(locator, Job { object: o, checksum_key });
        }
        match self.s3.files.order {
            FileOrder::Name => units.sort_by(|a, b| a.locator.cmp(&b.locator)),
            FileOrder::SizeDesc => units.sort_by(|a, b| b.size.cmp(&a.size).then(a.locator.cmp(&b.locator))),
        }
        Listing { at: Instant::now(), keys, units, jobs, walked: None }
    }

    /// The job that fetches `unit`: from the listing, or from the unit's own fingerprint.
    fn job_for(&self, unit: &SourceUnit) -> Job {
        if let Some(l) = self.listing.lock().expect("listing lock").as_ref()
            && let Some(j) = l.jobs.get(&unit.locator)
            && etag_of(unit) == j.object.etag
        {
            return j.clone();
        }
        let key = self.s3.key_of(&unit.locator);
        let checked = unit.content_hash.as_deref().is_some_and(|h| h.contains(CHECKSUM_MARK));
        let checksum_key = checked.then(|| format!("{key}.CHECKSUM"));
        Job {
            object: Object { key, size: unit.size, etag: etag_of(unit).to_string(), last_modified_ns: unit.version },
            checksum_key,
        }
    }

    /// Wait until `unit`'s object is in the mirror (fetching it now if it was not queued).
    fn fetched(&self, unit: &SourceUnit) -> Result<PathBuf, SourceError> {
        self.live()?;
        let job = self.job_for(unit);
        let id = job.id();
        let sched = &self.sched;
        let mut q = sched.queue.lock().expect("queue lock");
        loop {
            if let Some(r) = q.done.remove(&id) {
                q.urgent.remove(&id);
                drop(q);
                sched.work.notify_waiters();
                // Bytes that are not the object's count against it; a server or network that
                // failed says nothing about it.
                return r.map_err(|e| match e.data {
                    true => SourceError::Format { path: unit.location.clone(), message: e.message },
                    false => self.remote(format!("{}: {}", unit.location, e.message)),
                });
            }
            if self.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
                q.urgent.remove(&id);
                return Err(
                    self.remote(format!("the run is stopping; {} was not fetched", self.s3.url_of(&job.object.key)))
                );
            }
            if !q.running.contains(&id) && !q.urgent.contains(&id) {
                if !q.waiting.iter().any(|j| j.id() == id) {
                    q.waiting.push_front(job.clone());
                }
                q.urgent.insert(id.clone());
                sched.work.notify_waiters();
            }
            q = sched.finished.wait_timeout(q, Duration::from_millis(200)).expect("queue lock").0;
            // A task may have been woken before it waited: nudge it again.
            sched.work.notify_waiters();
        }
    }

    /// The manifest entry of `unit`'s key moved to `state` (made from the unit if it has none).
    fn set_state(&self, unit: &SourceUnit, state: &str) {
        let Ok(live) = self.live() else { return };
        let key = self.s3.key_of(&unit.locator);
        let m = &live.fetcher.manifest;
        let etag = etag_of(unit);
        let r = match m.get(&key) {
            Some(e) if e.etag == etag => m.set_state(&key, state),
            _ => m.record(Entry::new(&key, state, etag, unit.size)),
        };
        if let Err(e) = r {
            tracing::warn!(source = %self.name, "manifest {}: {e}", m.path().display());
        }
    }
}

/// What a unit's fingerprint holds besides the ETag when a checksum file is listed beside it:
/// a new checksum file (a corrected one) makes a new fingerprint, so a unit poisoned by a
/// stale checksum is tried again once it is fixed.
const CHECKSUM_MARK: &str = ";checksum:";

/// A unit's content hash: `etag:<ETag>`, with `;checksum:<its ETag>` when a checksum file is
/// listed beside it. An object without an ETag has none (its LastModified decides).
fn fingerprint(etag: &str, checksum_etag: Option<&String>) -> Option<String> {
    match (etag.is_empty(), checksum_etag) {
        (true, _) => None,
        (false, None) => Some(format!("etag:{etag}")),
        (false, Some(c)) => Some(format!("etag:{etag}{CHECKSUM_MARK}{c}")),
    }
}

/// The object's ETag in a unit's fingerprint.
fn etag_of(unit: &SourceUnit) -> &str {
    let h = unit.content_hash.as_deref().and_then(|h| h.strip_prefix("etag:")).unwrap_or_default();
    h.split(CHECKSUM_MARK).next().unwrap_or_default()
}

/// Every object under the prefix, page by page, each page retried as downloads are; with a
/// walker, directory by directory where its globs can match (with the directories listed). A
/// listing that fails on any page fails whole: a partial listing would look like deleted
/// objects.
async fn list_all(
    f: Arc<Fetcher>,
    walker: Option<Arc<Walker>>,
) -> Result<(Vec<Object>, Option<HashSet<String>>), String> {
    let Some(walker) = walker else {
        return Ok((list_prefix(&f, &f.spec.prefix, false).await?.0, None));
    };
    let base = f.spec.base().to_string();
    let mut out = Vec::new();
    let mut walked = HashSet::new();
    let mut frontier = vec![f.spec.prefix.clone()];
    while !frontier.is_empty() {
        let level: Vec<Result<(String, Level), String>> =
            futures_util::stream::iter(std::mem::take(&mut frontier).into_iter().map(|p| {
                let f = f.clone();
                async move { list_prefix(&f, &p, true).await.map(|r| (p, r)) }
            }))
            .buffer_unordered(f.spec.download.concurrency)
            .collect()
            .await;
        for r in level {
            let (prefix, (objects, dirs)) = r?;
            walked.insert(prefix);
            out.extend(objects);
            frontier
                .extend(dirs.into_iter().filter(|d| d.strip_prefix(&base).is_some_and(|rel| walker.may_contain(rel))));
        }
    }
    Ok((out, Some(walked)))
}

/// One directory level of a listing: its objects, and its subdirectories.
type Level = (Vec<Object>, Vec<String>);

/// Every page of the listing of `prefix` (`delimited`: one directory level).
async fn list_prefix(f: &Fetcher, prefix: &str, delimited: bool) -> Result<Level, String> {
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    let mut token: Option<String> = None;
    let mut seen = HashSet::new();
    let mut rng = jitter_rng("list");
    loop {
        let page = f
            .retrying(
                &mut rng,
                || f.client.list_page(prefix, delimited, token.as_deref(), f.spec.page_size),
                |attempt, error, wait| {
                    tracing::warn!(
                        prefix,
                        attempt,
                        error,
                        retry_in_ms = wait.as_millis() as u64,
                        "listing failed; retrying"
                    );
                },
            )
            .await
            .map_err(|(attempts, last)| format!("listing failed after {attempts} attempt(s): {last}"))?;
        out.extend(page.objects);
        dirs.extend(page.prefixes);
        match page.next {
            Some(t) if !seen.insert(t.clone()) => return Err(format!("the listing repeats continuation token {t}")),
            Some(t) => token = Some(t),
            None => return Ok((out, dirs)),
        }
    }
}

/// One download task: takes jobs off the queue until the source is dropped.
async fn download_loop(sched: Arc<Sched>, fetcher: Arc<Fetcher>, ahead: usize) {
    loop {
        let notified = sched.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let job = {
            let mut q = sched.queue.lock().expect("queue lock");
            if q.closed {
                return;
            }
            let job = q.pick(ahead);
            fetcher.metrics.queued.store(q.waiting.len() as u64, std::sync::atomic::Ordering::Relaxed);
            job
        };
        let Some(job) = job else {
            notified.await;
            continue;
        };
        Metrics::add(&fetcher.metrics.in_flight, 1);
        // A panic must not leave the key running forever, with a worker waiting for it.
        let result = std::panic::AssertUnwindSafe(fetcher.fetch(&job))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(FetchError { message: "the download panicked".into(), data: false }));
        fetcher.metrics.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut q = sched.queue.lock().expect("queue lock");
            q.running.remove(&job.id());
            q.done.insert(job.id(), result);
        }
        sched.finished.notify_all();
    }
}

impl Drop for S3Source {
    /// Downloads in flight are abandoned (their `.partial` files resume next time). The source
    /// may be dropped on an async task, where a runtime cannot block to shut down.
    fn drop(&mut self) {
        self.sched.queue.lock().map(|mut q| q.closed = true).ok();
        if let Ok(g) = self.live.lock()
            && let Some(live) = g.as_ref()
        {
            for t in &live.tasks {
                t.abort();
            }
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Source for S3Source {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> Option<SchemaRef> {
        self.dir.schema()
    }

    /// One request: a one-key listing (the endpoint, the bucket and the credentials work).
    fn describe(&self) -> Result<Option<SchemaRef>, SourceError> {
        let client = Client::new(self.s3.clone()).map_err(|m| self.remote(m))?;
        let prefix = self.s3.prefix.clone();
        self.block_on(async move { client.list_page(&prefix, false, None, 1).await.map(|_| ()) })?
            .map_err(|f| self.remote(format!("listing failed: {}", f.message())))?;
        Ok(self.schema())
    }

    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
        Ok(self.listing()?.units.clone())
    }

    fn unit_fields(&self, unit: &SourceUnit) -> Vec<(String, String)> {
        self.dir.unit_fields(unit)
    }

    fn nothing_found(&self) -> Option<String> {
        Some(format!(
            "source `{}`: no object under s3://{}/{} matches the source's globs and `fields`",
            self.name, self.s3.bucket, self.s3.prefix
        ))
    }

    fn prefetch(&self, units: &[SourceUnit]) {
        if units.is_empty() && self.live.lock().expect("live lock").is_none() {
            return;
        }
        if self.live().is_err() {
            return;
        }
        self.cancelled.store(false, std::sync::atomic::Ordering::SeqCst);
        let jobs: Vec<Job> = units.iter().map(|u| self.job_for(u)).collect();
        let wanted: HashSet<String> = jobs.iter().map(Job::id).collect();
        let mut q = self.sched.queue.lock().expect("queue lock");
        // Results of an earlier call that this one does not want, and failures (tried again
        // when wanted), are dropped; a fetched file stays in the mirror and is not fetched again.
        q.done.retain(|k, r| wanted.contains(k) && r.is_ok());
        let (running, done) = (q.running.clone(), q.done.keys().cloned().collect::<HashSet<_>>());
        q.waiting = jobs.iter().filter(|j| !running.contains(&j.id()) && !done.contains(&j.id())).cloned().collect();
        q.urgent.retain(|k| wanted.contains(k));
        drop(q);
        self.sched.work.notify_waiters();
    }

    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let path = self.fetched(unit)?;
        let parts = self.dir.file_units(&path, &unit.locator)?;
        let dir = self.dir.clone();
        // Each member of an archive in turn, opened when the one before it is done; the
        // readers' content hashes are of the mirror file, not the unit's fingerprint (the ETag).
        let items = parts.into_iter().flat_map(move |part| -> BatchStream {
            match dir.open(&part) {
                Ok(s) => s,
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        });
        Ok(Box::new(items.filter(|i| !matches!(i, Ok(SourceItem::ContentHash { .. })))))
    }

    /// The key is no longer in the bucket (by the latest listing, every key under the prefix).
    /// A key still there that the source no longer selects (another glob) is not gone: its
    /// output stays, as a directory source keeps the output of files it no longer selects.
    fn is_gone(&self, unit: &SourceUnit, _present: &[SourceUnit]) -> bool {
        let key = self.s3.key_of(&unit.locator);
        self.listing
            .lock()
            .expect("listing lock")
            .as_ref()
            .is_some_and(|l| l.covers(&key, &self.s3.prefix) && !l.keys.contains(&key))
    }

    /// The key is listed with the same ETag and size (by the latest listing).
    fn still_current(&self, unit: &SourceUnit) -> bool {
        let Ok(l) = self.listing() else { return false };
        l.units.iter().any(|u| u.same_unit(unit) && u.content_hash == unit.content_hash && u.size == unit.size)
    }

    fn settled(&self, unit: &SourceUnit, outcome: Settled) {
        match outcome {
            Settled::Committed | Settled::Unchanged => {
                self.set_state(unit, "committed");
                if !self.s3.keep_mirror {
                    let key = self.s3.key_of(&unit.locator);
                    for p in [self.s3.mirror.join(&key), self.s3.mirror.join(format!("{key}.CHECKSUM"))] {
                        match std::fs::remove_file(&p) {
                            Ok(()) => {
                                tracing::debug!(file = %p.display(), "removed from the mirror (keep_mirror: false)")
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => tracing::warn!(file = %p.display(), "cannot remove from the mirror: {e}"),
                        }
                    }
                }
            }
            Settled::Failed => self.set_state(unit, "failed"),
            Settled::Poisoned => self.set_state(unit, "poisoned"),
        }
    }

    fn cancel(&self) {
        self.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        self.sched.finished.notify_all();
    }

    fn metrics(&self) -> Vec<SourceMetric> {
        self.metrics.snapshot()
    }

    fn status(&self) -> Result<Option<Vec<UnitStatus>>, SourceError> {
        let dir = self.manifest_dir();
        let rows = crate::manifest::status(&dir)
            .map_err(|e| SourceError::Io { path: dir.display().to_string(), source: e })?;
        Ok(Some(rows))
    }
}
