//! The names and clock every part of the lake agrees on: the bookkeeping directory, the
//! rejects dataset, the suffix of files still being written, and commit timestamps. The lowest
//! module of the crate: it uses no other.

/// The lake's bookkeeping directory, which no dataset glob reaches.
pub const LEDGER_DIR: &str = "_sluice";

/// The dead-letter dataset of rejected rows: `<lake>/_rejects/dataset=<d>/source=<s>/part-*.parquet`.
pub const REJECTS_DIR: &str = "_rejects";

/// The suffix of a data file while it is written; never visible to readers.
pub(crate) const INPROGRESS: &str = ".inprogress";

/// Milliseconds since the epoch (0 before it): commit and retention times.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
