//! Run progress: an indicatif bar on a terminal, periodic plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sluice_core::runner::Progress;
use sluice_core::source::{Source, SourceUnit};

/// What the sources that download their units have done so far, as one line (none when no
/// source downloads).
fn downloads(sources: &[Arc<dyn Source>]) -> Option<String> {
    let (mut objects, mut bytes, mut retries, mut failed, mut any) = (0.0, 0.0, 0.0, 0.0, false);
    for m in sources.iter().flat_map(|s| s.metrics()) {
        match m.name {
            "objects_fetched_total" => objects += m.value,
            "bytes_downloaded_total" => (bytes, any) = (bytes + m.value, true),
            "retries_total" => retries += m.value,
            "fetch_failures_total" => failed += m.value,
            _ => {}
        }
    }
    any.then(|| {
        format!(
            "downloads: {objects} object(s), {:.1} MiB, {retries} retried attempt(s), {failed} failed",
            bytes / 1048576.0
        )
    })
}

/// A second line under the bar for the sources' downloads, refreshed by a thread of its own
/// (joined by `finish`).
struct DownloadLine {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct RunProgress {
    bar: Option<ProgressBar>,
    downloads: Mutex<Option<DownloadLine>>,
    sources: Vec<Arc<dyn Source>>,
    files_total: AtomicU64,
    files_done: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
    quiet: bool,
}

impl RunProgress {
    /// Progress of a run over `sources` (those that download their units get a line of their
    /// own on a terminal).
    pub fn new(quiet: bool, sources: Vec<Arc<dyn Source>>) -> Self {
        let terminal = !quiet && std::io::stderr().is_terminal();
        let multi = MultiProgress::new();
        let bar = terminal.then(|| {
            let b = multi.add(ProgressBar::new(0));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {binary_bytes}/{binary_total_bytes} {msg} ETA {eta}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let downloads = (terminal && downloads(&sources).is_some()).then(|| {
            let line = multi.add(ProgressBar::new_spinner());
            line.set_style(ProgressStyle::with_template("  {msg}").expect("valid template"));
            let stop = Arc::new(AtomicBool::new(false));
            let (l, st, srcs) = (line.clone(), stop.clone(), sources.clone());
            let thread = std::thread::spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    if let Some(msg) = downloads(&srcs) {
                        l.set_message(msg);
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
            DownloadLine { bar: line, stop, thread: Some(thread) }
        });
        RunProgress {
            bar,
            downloads: Mutex::new(downloads),
            sources,
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            quiet,
        }
    }

    pub fn finish(&self) {
        if let Some(mut d) = self.downloads.lock().expect("progress lock").take() {
            d.stop.store(true, Ordering::Relaxed);
            if let Some(t) = d.thread.take() {
                let _ = t.join();
            }
            d.bar.finish_and_clear();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for RunProgress {
    fn planned(&self, units: u64, bytes: u64) {
        self.files_total.store(units, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(bytes);
        }
    }

    fn unit_finished(&self, unit: &SourceUnit, rows: u64, _ok: bool) {
        let done = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        let rows = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let bytes = self.bytes.fetch_add(unit.size, Ordering::Relaxed) + unit.size;
        let total = self.files_total.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let msg = format!("files {done}/{total}, rows {rows} ({:.0} rows/s)", rows as f64 / secs);
        match &self.bar {
            Some(b) => {
                b.set_position(bytes);
                b.set_message(msg);
            }
            None if !self.quiet => {
                let mut last = self.last_line.lock().expect("progress lock");
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    let dl = downloads(&self.sources).map(|d| format!("; {d}")).unwrap_or_default();
                    eprintln!("progress: {msg}, {:.1} MB/s{dl}", bytes as f64 / secs / 1e6);
                }
            }
            None => {}
        }
    }
}

/// The download line's thread is joined however the run ends.
impl Drop for RunProgress {
    fn drop(&mut self) {
        self.finish();
    }
}
