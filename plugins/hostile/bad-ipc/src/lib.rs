//! `hostile-bad-ipc`: returns garbage bytes from `process` (tests the host's IPC validation).
//!
//! Implements the raw WIT bindings, since the SDK would only ever write valid IPC.

use sluice_plugin::__private::{Guest, GuestInstance, Instance, WitError, WitPluginInfo, WitStateSpec};

/// The bytes `process` returns.
pub const GARBAGE: &[u8] = b"\xff\xff\xff\xffthis is not an Arrow IPC stream\x00\x01\x02";

/// The plugin.
pub struct BadIpc;

/// Config: `{trigger_column: NAME}` makes the plugin misbehave only on input with that column.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub trigger_column: Option<String>,
}

/// True when the plugin should misbehave on this input stream.
fn triggered(trigger: &Option<String>, input: &[u8]) -> bool {
    match trigger {
        None => true,
        Some(c) => sluice_plugin::ipc::read_stream(input.to_vec())
            .map(|(schema, _)| schema.index_of(c).is_ok())
            .unwrap_or(true),
    }
}

/// Its instance.
pub struct BadIpcInstance {
    trigger: Option<String>,
    /// The last input, so `finish` can answer with its schema when not triggered.
    last_input: std::cell::RefCell<Option<Vec<u8>>>,
    hit: std::cell::Cell<bool>,
}

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
    fn create(config: String, _tables: Vec<(String, Vec<u8>)>) -> Result<Instance, WitError> {
        let config: Config = sluice_plugin::parse_config(&config)?;
        Ok(Instance::new(BadIpcInstance {
            trigger: config.trigger_column,
            last_input: Default::default(),
            hit: Default::default(),
        }))
    }

    fn output_schema(&self, input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        Ok(input)
    }

    fn state(&self) -> Option<WitStateSpec> {
        None
    }

    fn projection(&self) -> Option<Vec<String>> {
        None
    }

    fn process(&self, input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        if !triggered(&self.trigger, &input) {
            *self.last_input.borrow_mut() = Some(input.clone());
            return Ok(input);
        }
        self.hit.set(true);
        Ok(GARBAGE.to_vec())
    }

    fn seed(&self, _input: Vec<u8>) -> Result<(), WitError> {
        Ok(())
    }

    fn continuing(&self, _keys: Vec<u8>) -> Result<(), WitError> {
        Ok(())
    }

    fn finish(&self) -> Result<Vec<u8>, WitError> {
        if !self.hit.get()
            && let Some(last) = self.last_input.borrow().clone()
        {
            // Not triggered: an empty stream with the input's schema, as a well-behaved plugin would.
            let (schema, _) = sluice_plugin::ipc::read_stream(last)?;
            return Ok(sluice_plugin::ipc::write_stream(&schema, &[])?);
        }
        Ok(GARBAGE.to_vec())
    }
}

// Exports only exist on wasm (their names break native linkers).
#[cfg(target_arch = "wasm32")]
sluice_plugin::__private::export!(BadIpc with_types_in sluice_plugin::__private);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn garbage_is_not_ipc() {
        assert!(sluice_plugin::ipc::read_stream(GARBAGE.to_vec()).is_err());
    }
}
