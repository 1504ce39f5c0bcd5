//! Fuzz the pipeline YAML: arbitrary bytes through parse, structural check and resolution, must
//! never panic (errors are expected).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sluice_config::fuzzing::pipeline(data);
});
