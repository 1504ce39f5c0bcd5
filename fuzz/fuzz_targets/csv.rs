//! Fuzz the CSV reader: arbitrary bytes, inferred and explicit schemas, must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_source::fuzzing::csv(data));
