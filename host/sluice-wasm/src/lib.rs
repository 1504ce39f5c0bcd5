//! Sluice's sandboxed WebAssembly plugin runtime, built on wasmtime's component model.
//!
//! One shared [`wasmtime::Engine`] compiles each plugin once (with an on-disk cache of compiled
//! code); every handler instance gets its own `Store` with an epoch deadline per call, a memory
//! cap, and an output size cap. Guest output is untrusted: its IPC must decode and its schema must
//! match the schema the guest declared. A trapped instance is poisoned and never called again.

#[cfg(feature = "runtime")]
mod cache;
#[cfg(feature = "runtime")]
mod handler;
#[cfg(feature = "runtime")]
mod host;
mod ipc;
#[cfg(feature = "runtime")]
mod plugin;
#[cfg(feature = "runtime")]
mod runtime;

#[cfg(feature = "runtime")]
pub use runtime::{RuntimeOptions, WasmRuntime};

#[doc(hidden)]
pub mod fuzzing;

#[doc(hidden)]
pub mod bench_support {
    //! Internals exposed for benchmarks only.
    use arrow_array::RecordBatch;

    pub fn encode(batch: &RecordBatch) -> Vec<u8> {
        crate::ipc::encode(&batch.schema(), &[batch]).expect("encodes")
    }

    /// Decode and validate; returns the row count.
    pub fn decode(bytes: Vec<u8>) -> usize {
        crate::ipc::decode(bytes).expect("decodes").1.iter().map(|b| b.num_rows()).sum()
    }
}

/// The contract this host implements; components must target a compatible version.
pub const CONTRACT_PACKAGE: &str = "sluice:plugin";
/// The contract version this host was built with (see `wit/sluice.wit`).
pub const CONTRACT_VERSION: &str = "0.5.0";

#[cfg(feature = "runtime")]
mod bindings {
    //! Host-side bindings generated from `wit/sluice.wit`.
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "handler-plugin",
        // Export parameters borrow (`&[u8]`), so a batch's IPC bytes can be passed from any
        // buffer without first copying them into a Vec.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}
