//! Structured logging on stderr through tracing: text or JSON, `-q`/`-v` levels, `RUST_LOG` wins.

use tracing_subscriber::EnvFilter;

use crate::cli::{Global, LogFormat};

/// `service`: a long-running command (`watch`), which logs each commit by default (as
/// `sluice::commit` records, instead of the runner's own per-unit lines).
pub fn init(g: &Global, service: bool) {
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 if service => "info,sluice_core::runner=warn",
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match g.log_format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
