//! Error types shared across crates: plugin failures, and where in a run they happened.
//!
//! Three families are kept apart, because the host treats them differently:
//! user errors (bad config, bad data), plugin errors (traps, limits, bad output) and internal bugs.

pub use sluice_chain::error::{Blame, PluginError};

/// Where an error happened during a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Location {
    pub pipeline: String,
    pub step: Option<usize>,
    pub step_name: Option<String>,
    pub plugin: Option<String>,
    pub file: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pipeline `{}`", self.pipeline)?;
        if let (Some(i), Some(name)) = (self.step, &self.step_name) {
            write!(f, ", step {} `{}`", i + 1, name)?;
        }
        if let Some(p) = &self.plugin {
            write!(f, " (plugin `{p}`)")?;
        }
        if let Some(file) = &self.file {
            write!(f, ", file {file}")?;
        }
        Ok(())
    }
}

/// A source failed to list or read data.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Row { path: String, line: u64, message: String },
    #[error("source `{source_name}`: {message}")]
    Config { source_name: String, message: String },
    /// A remote server failed or could not be reached (refused, dropped, authentication).
    #[error("{server}: {message}")]
    Remote { server: String, message: String },
}

/// A sink failed to write or commit.
///
/// Two kinds: [`SinkError::Schema`] is a data error of one unit (its columns or values do not
/// fit the dataset: a schema the policy rejects, a partition value that cannot be a directory),
/// which follows the sink's `on_error` like a step's data error; every other variant is an I/O
/// or internal failure of the sink itself and stops the run.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("dataset `{dataset}`: {message}")]
    Schema { dataset: String, message: String },
    #[error("{0}")]
    Encode(String),
    #[error("lake {path} is locked by another writer: {holder}")]
    Locked { path: String, holder: String },
    #[error("ledger {path}: {message}")]
    Ledger { path: String, message: String },
    /// The sink cannot be opened as configured (no connector of its kind, bad settings).
    #[error("{0}")]
    Config(String),
    /// A remote server failed or could not be reached (refused, dropped, authentication).
    #[error("{server}: {message}")]
    Remote { server: String, message: String },
    /// A remote target refused the unit's rows (a constraint, a value out of range): a data
    /// error of the unit, which follows `sink.on_error`.
    #[error("{target} refused the unit's rows: {message}")]
    Rows { target: String, message: String },
}

impl SinkError {
    /// True for a unit's data error (see the type's docs); false for I/O and internal errors.
    pub fn is_data(&self) -> bool {
        matches!(self, SinkError::Schema { .. } | SinkError::Rows { .. })
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        SinkError::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// A catalog failed to publish or query.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {message}")]
    Publish { path: String, message: String },
    #[error("query failed: {0}")]
    Query(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}
