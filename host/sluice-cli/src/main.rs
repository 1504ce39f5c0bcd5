//! The `sluice` command-line tool: run and validate pipelines, query the lake, manage plugins.
//!
//! Exit codes: 0 success, 1 a failure in the data (a unit failed), 2 a usage or config error.

use std::process::ExitCode;

use clap::Parser;
use sluice_cli::{EXIT_CONFIG, Exit, cli, commands, logging};

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
    sluice_cli::init_process();
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
