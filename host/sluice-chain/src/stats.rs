//! Per-step counters and the thread CPU clock they read.

use serde::Serialize;

/// Per-step counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepStats {
    pub name: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub calls: u64,
    /// Time spent inside the plugin, in nanoseconds (wall time: includes waiting for a core).
    pub plugin_ns: u64,
    /// CPU time of the calling thread inside the plugin (guest code and the host's IPC encoding
    /// and decoding around it), in nanoseconds.
    pub plugin_cpu_ns: u64,
    pub errors: u64,
}

impl StepStats {
    pub fn merge(&mut self, other: &StepStats) {
        self.rows_in += other.rows_in;
        self.rows_out += other.rows_out;
        self.calls += other.calls;
        self.plugin_ns += other.plugin_ns;
        self.plugin_cpu_ns += other.plugin_cpu_ns;
        self.errors += other.errors;
    }
}

/// CPU time consumed so far by the calling thread, in nanoseconds (0 where unsupported).
pub fn thread_cpu_ns() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        }
    }
    0
}
