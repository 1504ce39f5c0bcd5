//! `cargo xtask`: the project's task runner (see `cargo xtask --help`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::plugins;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Sluice project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build or check the wasm plugin components.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Build every plugin to a component, stamped with its source hash.
    Build {
        /// Output directory (hostile test plugins go to DIR/test); default plugins/dist.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Check that the committed components in plugins/dist match their sources.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain without anyhow's backtrace noise.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = plugins::repo_root();
    match cli.command {
        Command::Plugins { command } => match command {
            PluginsCommand::Build { out } => plugins::build(&root, out.as_deref()),
            PluginsCommand::Check => plugins::check(&root),
        },
    }
}
