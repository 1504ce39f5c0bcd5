//! `hostile-panic`: panics in `process` with a recognisable message (tests panic reporting).

use sluice_plugin::prelude::*;

/// No config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The message the panic carries.
pub const MESSAGE: &str = "hostile-panic: deliberate panic in process";

/// The handler.
pub struct Panic;

impl Handler for Panic {
    type Config = Config;

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Panic)
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, _batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        panic!("{MESSAGE}")
    }
}

sluice_plugin::export_handler!(Panic);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    #[should_panic(expected = "hostile-panic: deliberate panic in process")]
    fn panics() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut p = Panic::new(Config::default()).unwrap();
        let _ = p.process(RecordBatch::new_empty(schema));
    }
}
