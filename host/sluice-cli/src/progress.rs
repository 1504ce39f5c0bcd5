//! Run progress: an indicatif bar on a terminal, periodic plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sluice_core::runner::Progress;
use sluice_core::source::SourceUnit;

pub struct RunProgress {
    bar: Option<ProgressBar>,
    files_total: AtomicU64,
    files_done: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
    quiet: bool,
}

impl RunProgress {
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {binary_bytes}/{binary_total_bytes} {msg} ETA {eta}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        RunProgress {
            bar,
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
                    eprintln!("progress: {msg}, {:.1} MB/s", bytes as f64 / secs / 1e6);
                }
            }
            None => {}
        }
    }
}
