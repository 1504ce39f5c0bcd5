//! `passthrough`: returns its input unchanged (measures per-call overhead).

use sluice_plugin::prelude::*;

/// No config: `null` or `{}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The handler.
pub struct Passthrough;

impl Handler for Passthrough {
    type Config = Config;
    const CONFIG_DOC: &'static str = "No config. Returns every batch unchanged.";

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Passthrough)
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        Ok(vec![batch])
    }
}

sluice_plugin::export_handler!(Passthrough);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;
    use sluice_plugin::{ipc, parse_config};
    use std::sync::Arc;

    #[test]
    fn returns_input_through_ipc() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef]).unwrap();
        let h = Passthrough::new(parse_config("null").unwrap()).unwrap();
        let a = sluice_plugin::__private::InstanceAdapter::new(h);
        let out = a.process_ipc(ipc::write_stream(&schema, &[batch.clone(), batch.clone()]).unwrap()).unwrap();
        let (s, batches) = ipc::read_stream(out).unwrap();
        assert_eq!(s, schema);
        assert_eq!(batches, vec![batch.clone(), batch]);
    }

    #[test]
    fn rejects_unknown_config() {
        assert!(parse_config::<Config>(r#"{"x":1}"#).is_err());
    }
}
