//! `hostile-bad-schema`: declares output schema = input schema, then returns a
//! batch with a different schema (tests the host's schema check).
//!
//! Implements the raw WIT bindings, since the SDK refuses such batches itself.

use std::sync::Arc;

use sluice_plugin::__private::{Guest, GuestInstance, Instance, WitError, WitPluginInfo, WitStateSpec};
use sluice_plugin::ipc;
use sluice_plugin::prelude::*;

/// The plugin.
pub struct BadSchema;

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
pub struct BadSchemaInstance {
    trigger: Option<String>,
    /// The last input, so `finish` can answer with its schema when not triggered.
    last_input: std::cell::RefCell<Option<Vec<u8>>>,
    hit: std::cell::Cell<bool>,
}

/// The undeclared output: one Utf8 column `bogus` with one row.
pub fn bogus_stream() -> Result<Vec<u8>, Error> {
    let schema = Arc::new(Schema::new(vec![Field::new("bogus", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["not the declared schema"])) as ArrayRef],
    )?;
    ipc::write_stream(&schema, &[batch])
}

impl Guest for BadSchema {
    type Instance = BadSchemaInstance;

    fn info() -> WitPluginInfo {
        WitPluginInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: env!("CARGO_PKG_DESCRIPTION").into(),
            config_doc: String::new(),
        }
    }
}

impl GuestInstance for BadSchemaInstance {
    fn create(config: String, _tables: Vec<(String, Vec<u8>)>) -> Result<Instance, WitError> {
        let config: Config = sluice_plugin::parse_config(&config)?;
        Ok(Instance::new(BadSchemaInstance {
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
        Ok(bogus_stream()?)
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
        Ok(bogus_stream()?)
    }
}

// Exports only exist on wasm (their names break native linkers).
#[cfg(target_arch = "wasm32")]
sluice_plugin::__private::export!(BadSchema with_types_in sluice_plugin::__private);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn bogus_stream_is_valid_ipc() {
        let (schema, batches) = ipc::read_stream(bogus_stream().unwrap()).unwrap();
        assert_eq!(schema.field(0).name(), "bogus");
        assert_eq!(batches.len(), 1);
    }
}
