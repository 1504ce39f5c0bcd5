//! `hostile-hog`: allocates and touches memory without bound in `process` (tests the memory limit).

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
pub struct Hog {
    trigger: Option<String>,
    held: Vec<Vec<u8>>,
}

/// Allocates `chunks` chunks of 16 MiB, writing every page so the memory is really used.
pub fn hog(held: &mut Vec<Vec<u8>>, chunks: usize) {
    const CHUNK: usize = 16 << 20;
    for _ in 0..chunks {
        let mut v = vec![0u8; CHUNK];
        for i in (0..CHUNK).step_by(4096) {
            v[i] = (i % 251) as u8 + 1;
        }
        held.push(std::hint::black_box(v));
    }
}

/// True when this plugin should misbehave on `schema` (see `Config::trigger_column`).
fn triggered(trigger: &Option<String>, schema: &Schema) -> bool {
    trigger.as_ref().is_none_or(|c| schema.index_of(c).is_ok())
}

impl Handler for Hog {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        Ok(Hog { trigger: config.trigger_column, held: Vec::new() })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(input.clone())
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        if !triggered(&self.trigger, &batch.schema()) {
            return Ok(vec![batch]);
        }
        hog(&mut self.held, usize::MAX);
        unreachable!("memory is not unbounded")
    }
}

sluice_plugin::export_handler!(Hog);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn allocates() {
        let mut held = Vec::new();
        hog(&mut held, 2);
        assert_eq!(held.len(), 2);
    }
}
