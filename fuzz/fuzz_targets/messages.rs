//! Fuzz the stream message readers (a Kafka record per row, JSON or CSV): arbitrary messages
//! must never panic, and each becomes a row or a reject exactly once.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_source::fuzzing::messages(data));
