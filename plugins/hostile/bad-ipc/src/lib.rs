//! `hostile-bad-ipc`: returns garbage bytes from `process` (tests the host's IPC validation).
//!
//! Implements the raw WIT bindings, since the SDK would only ever write valid IPC.

use sluice_plugin::__private::{
    Guest, GuestInstance, Instance, WitError, WitPluginInfo, WitStateSpec,
};

/// The bytes `process` returns.
pub const GARBAGE: &[u8] = b"\xff\xff\xff\xffthis is not an Arrow IPC stream\x00\x01\x02";

/// The plugin.
pub struct BadIpc;

/// Its (stateless) instance.
pub struct BadIpcInstance;

impl Guest for BadIpc {
    type Instance = BadIpcInstance;

    fn info() -> WitPluginInfo {
        WitPluginInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: env!("CARGO_PKG_DESCRIPTION").into(),
            config_doc: String::new(),
        }
    }
}

impl GuestInstance for BadIpcInstance {
    fn create(_config: String) -> Result<Instance, WitError> {
        Ok(Instance::new(BadIpcInstance))
    }

    fn output_schema(&self, input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        Ok(input)
    }

    fn state(&self) -> Option<WitStateSpec> {
        None
    }

    fn process(&self, _input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        Ok(GARBAGE.to_vec())
    }

    fn finish(&self) -> Result<Vec<u8>, WitError> {
        Ok(GARBAGE.to_vec())
    }
}

// Exports only exist on wasm (their names break native linkers).
#[cfg(target_arch = "wasm32")]
sluice_plugin::__private::export!(BadIpc with_types_in sluice_plugin::__private);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_ipc() {
        assert!(sluice_plugin::ipc::read_stream(GARBAGE.to_vec()).is_err());
    }
}
