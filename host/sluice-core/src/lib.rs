//! Sluice's core: the validated pipeline model, the traits that every heavy dependency hides
//! behind (plugins, sources, sinks, catalogs), and the runner that connects them.
//!
//! The core knows nothing of wasmtime, parquet, duckdb or YAML: those live in their own crates
//! and implement the traits defined here.

pub mod catalog;
pub mod connector;
pub mod error;
pub mod hint;
mod keyed;
pub mod lineage;
pub mod runner;

/// The handler chain and the plugin traits live in `sluice-chain`, which embedders use alone.
pub use sluice_chain::{plugin, projection};
pub mod sink;
pub mod source;
pub mod spec;
pub mod summary;

pub use arrow_array::RecordBatch;
pub use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// Test hook shared by every sink's crash tests: `SLUICE_TEST_FAULT=<point>` exits the process
/// (code 99) at that point, as a crash would.
pub fn fault_point(point: &str) {
    if std::env::var("SLUICE_TEST_FAULT").is_ok_and(|v| v == point) {
        eprintln!("SLUICE_TEST_FAULT: exiting at {point}");
        std::process::exit(99);
    }
}

/// Stable lowercase hex SHA-256 of some bytes; used for unit ids and file names.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}
