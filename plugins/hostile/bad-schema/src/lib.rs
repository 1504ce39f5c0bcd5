//! `hostile-bad-schema`: declares output schema = input schema, then returns a
//! batch with a different schema (tests the host's schema check).
//!
//! Implements the raw WIT bindings, since the SDK refuses such batches itself.

use std::sync::Arc;

use sluice_plugin::__private::{
    Guest, GuestInstance, Instance, WitError, WitPluginInfo, WitStateSpec,
};
use sluice_plugin::ipc;
use sluice_plugin::prelude::*;

/// The plugin.
pub struct BadSchema;

/// Its (stateless) instance.
pub struct BadSchemaInstance;

/// The undeclared output: one Utf8 column `bogus` with one row.
pub fn bogus_stream() -> Result<Vec<u8>, Error> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "bogus",
        DataType::Utf8,
        false,
    )]));
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
    fn create(_config: String) -> Result<Instance, WitError> {
        Ok(Instance::new(BadSchemaInstance))
    }

    fn output_schema(&self, input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        Ok(input)
    }

    fn state(&self) -> Option<WitStateSpec> {
        None
    }

    fn process(&self, _input: Vec<u8>) -> Result<Vec<u8>, WitError> {
        Ok(bogus_stream()?)
    }

    fn finish(&self) -> Result<Vec<u8>, WitError> {
        Ok(bogus_stream()?)
    }
}

// Exports only exist on wasm (their names break native linkers).
#[cfg(target_arch = "wasm32")]
sluice_plugin::__private::export!(BadSchema with_types_in sluice_plugin::__private);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bogus_stream_is_valid_ipc() {
        let (schema, batches) = ipc::read_stream(bogus_stream().unwrap()).unwrap();
        assert_eq!(schema.field(0).name(), "bogus");
        assert_eq!(batches.len(), 1);
    }
}
