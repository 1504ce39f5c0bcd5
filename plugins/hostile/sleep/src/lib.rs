//! `hostile-sleep`: sleeps in `process`, an hour at a time, forever: each sleep is a blocking
//! host call (a `wasi:clocks/monotonic-clock` timer and `wasi:io/poll`), which the epoch deadline
//! alone cannot stop. The host must still fail the step within its timeout.

use sluice_plugin::prelude::*;

/// No config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Misbehave only on input that has this column; pass other input through unchanged.
    #[serde(default)]
    pub trigger_column: Option<String>,
}

/// The handler.
pub struct Sleep {
    trigger: Option<String>,
}

impl Handler for Sleep {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Sleep { trigger: config.trigger_column })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        if self.trigger.as_ref().is_some_and(|c| batch.schema().index_of(c).is_err()) {
            return Ok(vec![batch]);
        }
        loop {
            wasip2::clocks::monotonic_clock::subscribe_duration(3_600_000_000_000).block();
        }
    }
}

sluice_plugin::export_handler!(Sleep);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn constructs() {
        assert!(Sleep::new(sluice_plugin::parse_config("null").unwrap()).is_ok());
    }
}
