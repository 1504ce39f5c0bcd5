//! One module per subcommand.

mod bench;
mod demo;
mod lake;
mod plugin;
mod query;
pub mod run;
mod schema;
mod source;
pub mod validate;
mod watch;

use crate::Exit;
use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> Result<u8, Exit> {
    let g = &cli.global;
    match cli.command {
        Command::Run(a) => run::run(&a, g),
        Command::Watch(a) => watch::watch(&a, g),
        Command::Validate(a) => validate::validate(&a, g),
        Command::Query(a) => query::query(&a),
        Command::Lake(c) => lake::lake(c),
        Command::Source(c) => source::source(c),
        Command::Schema => schema::schema(),
        Command::Plugin(p) => plugin::plugin(p, g),
        Command::Demo(a) => demo::demo(&a, g),
        Command::Bench(c) => bench::bench(c),
    }
}

/// Load pipeline specs from files and directories; config errors exit 2.
pub fn load_specs(paths: &[std::path::PathBuf]) -> Result<Vec<sluice_core::spec::PipelineSpec>, Exit> {
    load_specs_with(paths, &|k| std::env::var(k).ok())
}

/// [`load_specs`] with the environment `env`.
pub fn load_specs_with(
    paths: &[std::path::PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<sluice_core::spec::PipelineSpec>, Exit> {
    let mut specs = Vec::new();
    let mut errs = Vec::new();
    let kinds = crate::context::kinds();
    for p in paths {
        match sluice_config::load_path_located_with(p, env, &kinds) {
            Ok(s) => specs.extend(s.into_iter().map(|l| l.spec)),
            Err(e) => errs.extend(e.0),
        }
    }
    if errs.is_empty() { Ok(specs) } else { Err(Exit::config(sluice_config::ConfigErrors(errs))) }
}

/// The lake directory a `--lake` argument names: a Delta table written by Sluice (`_delta_log`
/// beside `_sluice`) keeps its lake, ledger and catalog in `<table>/_sluice`.
pub fn lake_dir(path: &std::path::Path) -> std::path::PathBuf {
    let inner = path.join(sluice_delta::STATE_DIR);
    if path.join("_delta_log").is_dir() && inner.join(sluice_lake::LEDGER_DIR).is_dir() {
        inner
    } else {
        path.to_path_buf()
    }
}
