//! The names and clock every part of the lake agrees on: the bookkeeping directory, the
//! rejects dataset, the suffix of files still being written, and commit timestamps. The lowest
//! module of the crate: it uses no other.

/// The lake's bookkeeping directory, which no dataset glob reaches.
pub const LEDGER_DIR: &str = "_sluice";

/// The dead-letter dataset of rejected rows: `<lake>/_rejects/dataset=<d>/source=<s>/part-*.parquet`.
pub const REJECTS_DIR: &str = "_rejects";

/// The suffix of a data file while it is written; never visible to readers.
pub(crate) const INPROGRESS: &str = ".inprogress";

/// The lake at `root`, canonical, or a config error when it has no bookkeeping directory (for
/// commands that work on an existing lake: vacuum, compact).
pub(crate) fn existing_lake(root: &std::path::Path) -> Result<std::path::PathBuf, sluice_core::error::SinkError> {
    use sluice_core::error::SinkError;
    let root = root.canonicalize().map_err(|e| SinkError::io(root, e))?;
    if !root.join(LEDGER_DIR).is_dir() {
        return Err(SinkError::Config(format!("{} is not a lake (no {LEDGER_DIR} directory)", root.display())));
    }
    Ok(root)
}

/// Milliseconds since the epoch (0 before it): commit and retention times.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
