//! `hostile-explode`: returns its input repeated many times (tests the output size limit).

use sluice_plugin::prelude::*;

/// Config: `{"times": N}` (default 10,000).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How many copies of each input batch to return.
    pub times: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { times: 10_000 }
    }
}

/// The handler.
pub struct Explode {
    times: usize,
}

impl Handler for Explode {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Explode {
            times: config.times,
        })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        Ok(vec![batch; self.times])
    }
}

sluice_plugin::export_handler!(Explode);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn repeats() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1])) as ArrayRef],
        )
        .unwrap();
        let mut e = Explode::new(sluice_plugin::parse_config("null").unwrap()).unwrap();
        assert_eq!(e.process(b).unwrap().len(), 10_000);
    }
}
