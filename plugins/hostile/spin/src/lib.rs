//! `hostile-spin`: loops forever in `process` (tests the host's CPU limit).

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
pub struct Spin {
    trigger: Option<String>,
}

/// Never returns.
pub fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

/// True when this plugin should misbehave on `schema` (see `Config::trigger_column`).
fn triggered(trigger: &Option<String>, schema: &Schema) -> bool {
    trigger.as_ref().is_none_or(|c| schema.index_of(c).is_ok())
}

impl Handler for Spin {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Spin { trigger: config.trigger_column })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        if !triggered(&self.trigger, &batch.schema()) {
            return Ok(vec![batch]);
        }
        spin()
    }
}

sluice_plugin::export_handler!(Spin);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn constructs() {
        assert!(Spin::new(sluice_plugin::parse_config("null").unwrap()).is_ok());
    }
}
