//! Plugin failures as the host sees them, and whose fault they are.

use std::time::Duration;

/// Whose fault an error is. Decides the exit code and the wording of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    /// The pipeline author's config, or the input data.
    User,
    /// The plugin misbehaved: trapped, exceeded a limit, or returned invalid output.
    Plugin,
    /// A bug in Sluice itself.
    Internal,
}

/// A failure of a plugin call, as seen by the host.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PluginError {
    #[error("invalid config{}: {message}", key.as_deref().map(|k| format!(" at key `{k}`")).unwrap_or_default())]
    Config { message: String, key: Option<String> },
    #[error("bad data{}{}: {message}",
        row.map(|r| format!(" at row {r}")).unwrap_or_default(),
        column.as_deref().map(|c| format!(" in column `{c}`")).unwrap_or_default())]
    Data { message: String, row: Option<u64>, column: Option<String> },
    #[error("plugin reported an internal error: {0}")]
    Internal(String),
    #[error("plugin call exceeded its deadline of {0:?}")]
    Timeout(Duration),
    #[error("plugin exceeded its memory limit of {limit} bytes")]
    MemoryLimit { limit: u64 },
    #[error("plugin panicked: {0}")]
    Panic(String),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin returned invalid output: {0}")]
    BadOutput(String),
    #[error("plugin output of {size} bytes exceeds the cap of {limit} bytes")]
    OutputTooLarge { size: u64, limit: u64 },
    #[error("cannot load plugin: {0}")]
    Load(String),
    #[error("plugin instance is unusable after an earlier trap")]
    Poisoned,
}

impl PluginError {
    pub fn blame(&self) -> Blame {
        match self {
            PluginError::Config { .. } | PluginError::Data { .. } | PluginError::Load(_) => Blame::User,
            PluginError::Poisoned => Blame::Internal,
            _ => Blame::Plugin,
        }
    }

    /// After this error the instance must be discarded (it trapped or misbehaved).
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, PluginError::Config { .. } | PluginError::Data { .. })
    }
}
