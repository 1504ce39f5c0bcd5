//! End-to-end tests: the real `sluice` binary on real files, real WASM components and real DuckDB.

mod config;
mod hostile;
mod run_csv;
mod sources;
mod support;
