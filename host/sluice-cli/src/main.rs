//! The `sluice` command-line tool: run and validate pipelines, query the lake, manage plugins.
//!
//! Exit codes: 0 success, 1 a failure in the data (a unit failed), 2 a usage or config error.

mod cli;
mod commands;
mod context;
mod logging;
mod output;
mod progress;
mod signals;

use std::process::ExitCode;

use clap::Parser;

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

/// Keep large freed blocks in the process: batches and their IPC copies are megabytes each, and
/// glibc's defaults return them to the kernel (mmap/munmap or heap trimming), so the next batch
/// faults its pages in again (about 4% of a kline run's CPU).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // Two rustls crypto providers are compiled in (the Delta sink's object store brings ring and
    // aws-lc-rs): name one, or the first TLS client would panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = cli::Cli::parse();
    logging::init(&args.global, matches!(args.command, cli::Command::Watch(_)));
    match commands::dispatch(args) {
        Ok(code) => ExitCode::from(code),
        Err(Exit { code, error }) => {
            if code == EXIT_CONFIG && error.downcast_ref::<sluice_config::ConfigErrors>().is_some() {
                eprintln!("{error}");
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(code)
        }
    }
}
