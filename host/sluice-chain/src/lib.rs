//! The handler chain, embeddable: a synchronous library with no tokio, no sources and no sinks
//! in its dependencies, shared by the CLI's runner and `validate`, and meant for any host that
//! has Arrow batches and wants them through a pipeline's steps (a Spark or Ray task).
//!
//! - [`plugin`]: the traits a plugin runtime implements (`sluice-wasm` for WebAssembly
//!   components), and what a handler declares (its schema, keyed state, projection).
//! - [`projection`]: a projecting handler is given its columns and returns patches, merged by
//!   the rules of `sluice-contract`.
//! - [`chain`]: batches through every step, reject columns split off, calls counted.

pub mod chain;
pub mod error;
pub mod plugin;
pub mod projection;
pub mod reject;
pub mod spec;
pub mod stats;

pub use chain::{Call, Chain, ChainStep, StepError, render_key};
pub use error::{Blame, PluginError};
pub use reject::Reject;
/// The reject column's name (`sluice_contract::REJECT_COLUMN`).
pub use sluice_contract::REJECT_COLUMN as REJECT;
