//! The run summary: what a run did, printed at the end and written with `--summary-json`.

use serde::Serialize;

pub use sluice_chain::stats::{StepStats, thread_cpu_ns};

/// A unit that did not commit.
#[derive(Debug, Clone, Serialize)]
pub struct UnitFailure {
    pub file: String,
    pub step: Option<String>,
    /// What was done about it: `failed`, `skipped`, `dead_lettered`.
    pub action: String,
    pub error: String,
}

/// What one committed unit read and wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitCounts {
    pub file: String,
    pub rows_in: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// A re-run of a committed unit (its lookback changed).
    pub rerun: bool,
    /// Some of its rows are in groups a later unit outputs (see `UnitWriter::continues`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub pipeline: String,
    /// Units discovered.
    pub files_seen: u64,
    /// Units committed by this run.
    pub files_committed: u64,
    /// Committed units re-run because an earlier unit of their keys arrived after them (keyed
    /// state: their lookback changed), or a later one continues their groups.
    pub files_rerun: u64,
    /// Units skipped because the lake already holds them unchanged.
    pub files_unchanged: u64,
    /// Of those, units another pipeline definition or plugin made (stale): re-run them with
    /// `sluice run --rerun-stale`.
    pub files_stale: u64,
    /// Units that failed (any policy).
    pub files_failed: u64,
    /// Units not attempted because they failed `retries` times unchanged (listed in `failures`).
    pub files_poisoned: u64,
    /// Committed units whose source file is gone and whose outputs this run removed
    /// (`on_source_deleted: delete`).
    pub files_deleted: u64,
    pub failures: Vec<UnitFailure>,
    /// Every unit committed or re-run by this run, in commit order, with its row counts.
    pub units: Vec<UnitCounts>,
    /// What the user should know about the run (a source whose globs matched no file).
    pub warnings: Vec<String>,
    /// Where this run's rejected rows are and how to read them, when it rejected any.
    pub rejects_at: Option<String>,
    /// Rows read from sources.
    pub rows_in: u64,
    /// Rows committed to the sink.
    pub rows_written: u64,
    /// Rows set aside in `_rejects` by committed units.
    pub rows_rejected: u64,
    /// Bytes of input read.
    pub bytes_in: u64,
    /// Bytes of output committed.
    pub bytes_written: u64,
    /// Files the sink wrote for committed units (data, rejects and state).
    pub sink_files: u64,
    /// Durability syncs (fsync, fdatasync, syncfs) the sink made for committed units: the cost
    /// per unit of atomic, durable commits.
    pub sink_syncs: u64,
    pub steps: Vec<StepStats>,
    pub duration_ms: u64,
    pub rows_per_sec: f64,
    pub input_mb_per_sec: f64,
    /// Set when the run stopped early because of a `fail` policy or a fatal error.
    pub fatal: Option<String>,
    /// Set when the run was interrupted by a signal.
    pub interrupted: bool,
    /// Set when the catalog could not be published after the run: the lake holds the commits,
    /// `sluice query` sees the previous catalog (if any) until a later publish succeeds.
    pub catalog_error: Option<String>,
}

impl RunSummary {
    pub fn finish(&mut self, elapsed: std::time::Duration) {
        self.duration_ms = elapsed.as_millis() as u64;
        let secs = elapsed.as_secs_f64().max(1e-9);
        self.rows_per_sec = self.rows_in as f64 / secs;
        self.input_mb_per_sec = self.bytes_in as f64 / secs / 1e6;
    }

    /// Human-readable multi-line summary.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = write!(
            s,
            "pipeline {}: {} file(s) seen, {} committed, {} unchanged, {} failed",
            self.pipeline, self.files_seen, self.files_committed, self.files_unchanged, self.files_failed
        );
        if self.files_deleted > 0 {
            let _ = write!(s, ", {} deleted at the source and removed", self.files_deleted);
        }
        s.push('\n');
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        if self.files_rerun > 0 {
            let _ = writeln!(
                s,
                "  {} committed file(s) re-run: earlier data of their keys arrived after them, or later data \
                 continues their groups",
                self.files_rerun
            );
        }
        let _ = writeln!(
            s,
            "  rows: {} in, {} written, {} rejected; bytes: {} in, {} written",
            self.rows_in, self.rows_written, self.rows_rejected, self.bytes_in, self.bytes_written
        );
        if let Some(at) = &self.rejects_at {
            let _ = writeln!(s, "  rejected rows: {at}");
        }
        // Rows that went in and nowhere: legitimate for a filter, a lost file otherwise.
        let empty: Vec<&UnitCounts> = self
            .units
            .iter()
            .filter(|u| u.rows_in > 0 && u.rows_written == 0 && u.rows_rejected == 0 && !u.continued)
            .collect();
        if !empty.is_empty() {
            let names: Vec<String> = empty.iter().take(5).map(|u| format!("{} ({} in)", u.file, u.rows_in)).collect();
            let more = if empty.len() > 5 { format!(" and {} more", empty.len() - 5) } else { String::new() };
            let _ = writeln!(
                s,
                "  {} file(s) read rows but wrote and rejected none (the steps dropped them all): {}{more}",
                empty.len(),
                names.join(", ")
            );
        }
        for st in &self.steps {
            let _ = writeln!(
                s,
                "  step {:<16} rows {} -> {}, {} call(s), {:.1} ms in plugin, {} error(s)",
                st.name,
                st.rows_in,
                st.rows_out,
                st.calls,
                st.plugin_ns as f64 / 1e6,
                st.errors
            );
        }
        for f in &self.failures {
            // Errors often start with the file already (`path: message`): say it once.
            let error = f.error.strip_prefix(&format!("{}: ", f.file)).unwrap_or(&f.error);
            let _ = writeln!(
                s,
                "  {}: {}{}: {}",
                f.action,
                f.file,
                f.step.as_deref().map(|st| format!(" (step `{st}`)")).unwrap_or_default(),
                error
            );
        }
        let _ = write!(
            s,
            "  took {:.2}s: {:.0} rows/s, {:.1} MB/s",
            self.duration_ms as f64 / 1e3,
            self.rows_per_sec,
            self.input_mb_per_sec
        );
        if let Some(f) = &self.fatal {
            let _ = write!(s, "\n  run stopped: {f}");
        }
        if self.interrupted {
            let _ = write!(s, "\n  run interrupted: units in flight were finished and committed");
        }
        if let Some(e) = &self.catalog_error {
            let _ = write!(
                s,
                "\n  catalog not published: {e}\n  (the commits above are in the lake; `sluice query` sees them once a later run publishes)"
            );
        }
        s
    }
}
