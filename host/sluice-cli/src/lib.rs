//! The `sluice` command-line tool as a library: the binary (`main.rs`) parses arguments and
//! dispatches here, and the Python package calls [`api`] to run and validate pipelines with the
//! very same code.
//!
//! Exit codes: 0 success, 1 a failure in the data (a unit failed), 2 a usage or config error.

pub mod api;
pub mod cli;
pub mod commands;
pub mod context;
pub mod logging;
mod output;
mod progress;
mod signals;

/// Exit code for a failure in the data.
pub const EXIT_DATA: u8 = 1;
/// Exit code for a usage or config error.
pub const EXIT_CONFIG: u8 = 2;

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Exit {
    pub fn config(error: impl Into<anyhow::Error>) -> Self {
        Exit { code: EXIT_CONFIG, error: error.into() }
    }
    pub fn data(error: impl Into<anyhow::Error>) -> Self {
        Exit { code: EXIT_DATA, error: error.into() }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Self {
        Exit { code: EXIT_DATA, error: e.into() }
    }
}

/// What every process that runs pipelines sets up first: two rustls crypto providers are
/// compiled in (the Delta sink's object store brings ring and aws-lc-rs), so name one, or the
/// first TLS client would panic.
pub fn init_process() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
