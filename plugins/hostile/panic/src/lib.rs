//! `hostile-panic`: panics in `process` with a recognisable message (tests panic reporting).

use sluice_plugin::prelude::*;

/// No config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Misbehave only on input that has this column; pass other input through unchanged.
    #[serde(default)]
    pub trigger_column: Option<String>,
}

/// The message the panic carries.
pub const MESSAGE: &str = "hostile-panic: deliberate panic in process";

/// The handler.
pub struct Panic {
    trigger: Option<String>,
}

/// True when this plugin should misbehave on `schema` (see `Config::trigger_column`).
fn triggered(trigger: &Option<String>, schema: &Schema) -> bool {
    trigger.as_ref().is_none_or(|c| schema.index_of(c).is_ok())
}

impl Handler for Panic {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Panic { trigger: config.trigger_column })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        if !triggered(&self.trigger, &batch.schema()) {
            return Ok(vec![batch]);
        }
        panic!("{MESSAGE}")
    }
}

sluice_plugin::export_handler!(Panic);

#[cfg(test)]
mod tests {
    //! Native unit tests.

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
