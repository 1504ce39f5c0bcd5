//! What a chain's steps are configured with: which plugin, and the limits of its calls.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// How a step's plugin is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum PluginRef {
    /// A standard plugin, by name.
    Named(String),
    /// A component file.
    Path(PathBuf),
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Named(n) => f.write_str(n),
            PluginRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Resource limits of one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub timeout: Duration,
    /// Linear memory cap of one instance.
    pub memory_bytes: u64,
    /// Cap on the IPC bytes one call may return.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(5), memory_bytes: 512 << 20, output_bytes: 256 << 20 }
    }
}
