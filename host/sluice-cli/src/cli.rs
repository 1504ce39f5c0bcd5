//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Run sandboxed WebAssembly pipelines from files into a Parquet lake")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logging (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Directory searched first for `<name>.wasm` plugins (overrides the embedded standard ones).
    #[arg(long, global = true, env = "SLUICE_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run pipelines once over the files available now.
    Run(RunArgs),
    /// Run pipelines continuously: ingest each file once it is complete, until SIGINT/SIGTERM.
    Watch(WatchArgs),
    /// Check pipelines without side effects.
    Validate(ValidateArgs),
    /// Run SQL against a lake's catalog.
    Query(QueryArgs),
    /// Inspect and check a lake.
    #[command(subcommand)]
    Lake(LakeCommand),
    /// Inspect sources: what a source that fetches its units (`kind: s3`) has listed, fetched,
    /// committed, failed or poisoned.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Print the JSON Schema of the pipeline language (for editor completion).
    Schema,
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Generate a small kline dataset, run the example pipeline on it, and query the lake.
    Demo(DemoArgs),
    /// Benchmark tools (the DuckDB reference job in benches/kline).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline files or directories of them.
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
    /// Reprocess units the lake already holds.
    #[arg(long)]
    pub force: bool,
    /// Re-run the committed units another pipeline definition or plugin made (stale: a step's
    /// component or the pipeline changed since), keyed successors included; a run without it
    /// only reports them.
    #[arg(long)]
    pub rerun_stale: bool,
    /// Worker threads (default: the pipeline's `settings.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write the run summary as JSON to this path.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Do not publish the DuckDB catalog after the run.
    #[arg(long)]
    pub no_catalog: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Pipeline files or directories of them (each pipeline needs a lake of its own).
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
    /// Worker threads per pipeline (default: the pipeline's `settings.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Serve Prometheus metrics (`/metrics`) and a health check (`/healthz`) on this address,
    /// e.g. 127.0.0.1:9464. Off by default.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Do not publish the DuckDB catalog.
    #[arg(long)]
    pub no_catalog: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline files or directories of them.
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
    /// Check only the files themselves: do not load plugins or look at source directories.
    #[arg(long, conflicts_with = "connect")]
    pub no_environment: bool,
    /// Also connect to the sources and the sink that are servers: log in, describe each
    /// source's columns (a type Sluice cannot read is an error naming the column) and check
    /// them through the chain to the sink. Nothing is written.
    #[arg(long)]
    pub connect: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// Datasets, partitions, files and rows, from the ledger.
    Status(LakeArgs),
    /// Check that the ledger, the files on disk and the catalog agree (row counts, per-column
    /// sums); exit 1 on any difference.
    Verify(LakeArgs),
    /// Compare a dataset with a table of a DuckDB file or a Postgres database (a migration's old
    /// store, a load's target): rows and sums per group; exit 1 on any difference, printing where.
    Compare(CompareArgs),
    /// What made a file's rows, or those of every file under a directory (a partition): the
    /// pipeline and its definition's hash, each step's plugin with its component hash, the
    /// Sluice version, and the source units (locator, content hash). JSON lines with `--json`.
    Lineage(LineageArgs),
    /// Delete the replaced files whose retention (`retain_replaced`) has passed, and report what
    /// that freed. May run while a run or `watch` writes the lake.
    Vacuum(VacuumArgs),
    /// Bin-pack each partition's small files into files near `--target-size`, in one atomic
    /// ledger commit; rows keep their order within each unit. May run while `watch` writes the
    /// lake. Replaced files are retained for readers of older snapshots (`vacuum` frees them).
    Compact(CompactArgs),
    /// Publish the catalog again from the ledger (the views over the live files), and say how
    /// long it took. A run or `watch` publishes on its own; this is for a lake changed while
    /// none was running, and for timing.
    Publish(LakeArgs),
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The lake directory (or `--lake`).
    #[arg(value_name = "LAKE", conflicts_with = "lake")]
    pub path: Option<PathBuf>,
    /// The lake directory.
    #[arg(long, default_value = "lake")]
    pub lake: PathBuf,
    /// Only this dataset (default: all).
    #[arg(long)]
    pub dataset: Option<String>,
    /// The size a compacted file aims at; files under half of it are compacted.
    #[arg(long, default_value = "128MiB")]
    pub target_size: String,
    /// Compact a partition only when it has at least this many small files.
    #[arg(long, default_value_t = 2)]
    pub min_files: usize,
    /// How long the replaced files stay for readers of older snapshots.
    #[arg(long, default_value = "10m")]
    pub retain: String,
    /// The report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// The lake directory (or `--lake`).
    #[arg(value_name = "LAKE", conflicts_with = "lake")]
    pub path: Option<PathBuf>,
    /// The lake directory.
    #[arg(long, default_value = "lake")]
    pub lake: PathBuf,
    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LineageArgs {
    /// A Parquet file of the lake, or a directory (a dataset, a partition).
    pub path: PathBuf,
    /// One JSON object per file, as stored.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The lake directory (or `--lake`).
    #[arg(value_name = "LAKE", conflicts_with = "lake")]
    pub path: Option<PathBuf>,
    /// The lake directory.
    #[arg(long, default_value = "lake")]
    pub lake: PathBuf,
    /// The dataset to compare.
    #[arg(long)]
    pub dataset: String,
    /// The DuckDB file holding the other table (opened read-only).
    #[arg(long, required_unless_present = "postgres", conflicts_with = "postgres")]
    pub duckdb: Option<PathBuf>,
    /// Or a Postgres database holding it: `postgresql://user@host:5432/db` (no password).
    #[arg(long)]
    pub postgres: Option<String>,
    /// The environment variable holding the Postgres password.
    #[arg(long, requires = "postgres")]
    pub password_env: Option<String>,
    /// The other table: `schema.table`, or `table` (in `main` for DuckDB, `public` for Postgres).
    #[arg(long)]
    pub table: String,
    /// Columns to group by (comma-separated; default: the whole table as one group).
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// Columns to sum on both sides (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub sum: Vec<String>,
    /// Relative tolerance for sums (float sums differ in their last digits with summation order).
    #[arg(long, default_value_t = 1e-9)]
    pub tolerance: f64,
}

#[derive(Debug, Args)]
pub struct LakeArgs {
    /// The lake directory (or `--lake`).
    #[arg(value_name = "LAKE", conflicts_with = "lake")]
    pub path: Option<PathBuf>,
    /// The lake directory.
    #[arg(long, default_value = "lake")]
    pub lake: PathBuf,
    /// Print JSON instead of a table (status).
    #[arg(long)]
    pub json: bool,
    /// verify: also count as a difference every unit that read rows but wrote and rejected none
    /// (by default a note: a filter may drop a whole file legitimately).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL to run; datasets are views of the catalog.
    pub sql: String,
    /// The lake directory.
    #[arg(long, default_value = "lake")]
    pub lake: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the standard plugins.
    List,
    /// Show a plugin's name, version, contract version, SDK, component hash and config
    /// documentation.
    Inspect {
        /// A standard plugin's name or a path to a .wasm component.
        plugin: String,
    },
    /// Scaffold a plugin (a Rust crate, or a Python app) from the template, with test fixtures.
    New(PluginNewArgs),
    /// Build a plugin directory (a Rust crate or a Python app) into a component.
    Build(PluginBuildArgs),
    /// Run a plugin on fixtures and compare its output with the expected rows (exit 1 on a diff).
    Test(PluginTestArgs),
}

/// A plugin's language, for `plugin new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PluginLang {
    Rust,
    Python,
}

#[derive(Debug, Args)]
pub struct PluginNewArgs {
    /// The plugin's name (lowercase letters, digits, `-`, `_`; a crate name for Rust).
    pub name: String,
    /// The directory to create (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The language to write the plugin in.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: PluginLang,
    /// Rust: build against this `sluice-plugin` SDK crate directory instead of the published
    /// crate (a Sluice checkout's plugins/sluice-plugin, or an unpacked sluice-plugin-*.crate with
    /// sluice-contract-* beside it), through `[patch.crates-io]`. By default a `sluice` built
    /// from a checkout uses that checkout's SDK.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PluginBuildArgs {
    /// The plugin's directory: a Rust crate (Cargo.toml) or a Python app (app.py).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the component (default: DIR/NAME.wasm).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Rust: cargo's target directory (default: DIR/target).
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PluginTestArgs {
    /// A standard plugin's name or a path to a .wasm component.
    pub plugin: String,
    /// The step config, as JSON or YAML text, or `@FILE`.
    #[arg(long, default_value = "null")]
    pub config: String,
    /// Input rows: a .csv (with a header), .jsonl (JSON lines) or .parquet file. Repeatable:
    /// each file is a unit, run through a fresh instance (or, with `--state`, one instance).
    #[arg(long, required = true)]
    pub input: Vec<PathBuf>,
    /// Expected output rows, in the same formats: one file per `--input`, or one file for all
    /// the inputs' output together.
    #[arg(long, required = true)]
    pub expect: Vec<PathBuf>,
    /// Feed the inputs, in order, through one instance, as a keyed step does with the units of a
    /// key in a pipeline (`finish` after each file; state carries over).
    #[arg(long)]
    pub state: bool,
    /// A lookup table for the plugin, as in a step's `tables:`: NAME=FILE (.csv with a header
    /// or .parquet). Repeatable.
    #[arg(long = "table", value_name = "NAME=FILE")]
    pub tables: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to put the generated data and the lake.
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Number of symbols.
    #[arg(long, default_value_t = 3)]
    pub symbols: usize,
    /// Number of days per symbol.
    #[arg(long, default_value_t = 3)]
    pub days: usize,
    /// One-second klines per day (86400 is a full day).
    #[arg(long, default_value_t = 20_000)]
    pub rows_per_day: usize,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write the benchmark's kline workload: one headerless 12-column CSV (or zip) per symbol and
    /// day, with malformed rows, duplicates and microsecond files, plus manifest.json.
    Generate(BenchGenerateArgs),
}

#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    /// The output directory (`<out>/<SYMBOL>/<SYMBOL>-1s-<date>.csv`).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of symbols.
    #[arg(long, default_value_t = 6)]
    pub symbols: usize,
    /// Number of days per symbol (from 2024-01-01).
    #[arg(long, default_value_t = 14)]
    pub days: usize,
    /// One-second klines per day (86400 is a full day).
    #[arg(long, default_value_t = 86_400)]
    pub rows_per_day: usize,
    /// Write each day as a zip archive holding the CSV (as exchanges publish them).
    #[arg(long)]
    pub zip: bool,
    /// The seed of the generator: the same seed writes the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Threads generating files (default: the number of CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Where each unit of a pipeline's sources stands, from the source's own records (an s3
    /// source's manifest in its mirror); makes no request and takes no lock, so it works while
    /// `sluice watch` runs.
    Status(SourceStatusArgs),
}

#[derive(Debug, Args)]
pub struct SourceStatusArgs {
    /// Pipeline files or directories of them.
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only units in these states, comma-separated: listed, fetching, fetched, committed,
    /// failed, poisoned.
    #[arg(long, value_delimiter = ',')]
    pub state: Vec<String>,
    /// Print JSON (one object per source) instead of a table.
    #[arg(long)]
    pub json: bool,
}
