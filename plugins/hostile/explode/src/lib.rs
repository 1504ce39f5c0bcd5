//! `hostile-explode`: returns its input repeated many times (tests the output size limit).

use sluice_plugin::prelude::*;

/// Config: `{"times": N}` (default 10,000).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How many copies of each input batch to return.
    pub times: usize,
    /// Misbehave only on input that has this column; pass other input through unchanged.
    pub trigger_column: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { times: 10_000, trigger_column: None }
    }
}

/// The handler.
pub struct Explode {
    times: usize,
    trigger: Option<String>,
}

/// True when this plugin should misbehave on `schema` (see `Config::trigger_column`).
fn triggered(trigger: &Option<String>, schema: &Schema) -> bool {
    trigger.as_ref().is_none_or(|c| schema.index_of(c).is_ok())
}

impl Handler for Explode {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Explode { times: config.times, trigger: config.trigger_column })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        if !triggered(&self.trigger, &batch.schema()) {
            return Ok(vec![batch]);
        }
        Ok(vec![batch; self.times])
    }
}

sluice_plugin::export_handler!(Explode);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;
    use std::sync::Arc;

    #[test]
    fn repeats() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1])) as ArrayRef]).unwrap();
        let mut e = Explode::new(sluice_plugin::parse_config("null").unwrap()).unwrap();
        assert_eq!(e.process(b).unwrap().len(), 10_000);
    }
}
