//! `hostile-spin`: loops forever in `process` (tests the host's CPU limit).

use sluice_plugin::prelude::*;

/// No config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The handler.
pub struct Spin;

/// Never returns.
pub fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

impl Handler for Spin {
    type Config = Config;

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Spin)
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, _batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        spin()
    }
}

sluice_plugin::export_handler!(Spin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructs() {
        assert!(Spin::new(sluice_plugin::parse_config("null").unwrap()).is_ok());
    }
}
