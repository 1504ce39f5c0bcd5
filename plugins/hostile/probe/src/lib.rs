//! `hostile-probe`: outputs, for each input batch, one row saying what the guest can see of the
//! host through WASI: the wall clock, the monotonic clock across a one-second sleep, random
//! numbers (secure, insecure, and the insecure seed), environment variables, arguments and
//! preopened directories. A deterministic sandbox shows the same row in every run.

use std::sync::Arc;

use sluice_plugin::prelude::*;

/// No config.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The handler.
pub struct Probe;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("wall_ns", DataType::Int64, true),
        Field::new("monotonic_slept_ns", DataType::Int64, true),
        Field::new("random", DataType::Utf8, false),
        Field::new("distinct_of_2048", DataType::Int64, false),
        Field::new("env", DataType::Int64, false),
        Field::new("args", DataType::Int64, false),
        Field::new("dirs", DataType::Utf8, false),
    ]))
}

impl Handler for Probe {
    type Config = Config;

    fn new(_config: Config) -> Result<Self, Error> {
        Ok(Probe)
    }

    fn output_schema(&self, _input: &SchemaRef) -> Result<SchemaRef, Error> {
        Ok(schema())
    }

    fn process(&mut self, _batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        use wasip2::clocks::{monotonic_clock, wall_clock};
        let now = wall_clock::now();
        let wall = now.seconds as i64 * 1_000_000_000 + i64::from(now.nanoseconds);
        let start = monotonic_clock::now();
        monotonic_clock::subscribe_duration(1_000_000_000).block();
        let slept = monotonic_clock::now() as i64 - start as i64;
        let random = [
            wasip2::random::random::get_random_u64(),
            wasip2::random::insecure::get_insecure_random_u64(),
            wasip2::random::insecure_seed::insecure_seed().0,
        ]
        .iter()
        .map(|v| format!("{v:016x}"))
        .collect::<Vec<_>>();
        // 16 KiB of random bytes: a generator that cycles a short table repeats within them.
        let mut draws: Vec<u64> = (0..2048).map(|_| wasip2::random::random::get_random_u64()).collect();
        draws.sort_unstable();
        draws.dedup();
        let dirs = wasip2::filesystem::preopens::get_directories()
            .iter()
            .map(|(_, name)| name.clone())
            .collect::<Vec<_>>()
            .join(",");
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![Some(wall)])),
                Arc::new(Int64Array::from(vec![Some(slept)])),
                Arc::new(StringArray::from(vec![random.join(" ")])),
                Arc::new(Int64Array::from(vec![draws.len() as i64])),
                Arc::new(Int64Array::from(vec![wasip2::cli::environment::get_environment().len() as i64])),
                Arc::new(Int64Array::from(vec![wasip2::cli::environment::get_arguments().len() as i64])),
                Arc::new(StringArray::from(vec![dirs])),
            ],
        )?;
        Ok(vec![batch])
    }
}

sluice_plugin::export_handler!(Probe);

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn constructs() {
        assert!(Probe::new(sluice_plugin::parse_config("null").unwrap()).is_ok());
    }
}
