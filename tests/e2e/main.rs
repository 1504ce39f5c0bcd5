//! End-to-end tests: the real `sluice` binary on real files, real WASM components and real DuckDB.

mod arrival;
mod batch_etl;
mod compact;
mod config;
mod crash;
mod delta;
mod handlers;
mod hostile;
mod json;
mod keyed;
mod lake;
mod limits;
mod lineage;
mod migration;
mod pg_source;
mod postgres;
mod python_readers;
mod readers;
mod redis;
mod run_csv;
mod sources;
mod support;
mod types;
mod watch;
mod windows;
mod wrong;
