//! Fuzz the host's checks of guest output: arbitrary bytes as the IPC stream a guest returns,
//! decoded and matched against a declared schema, must never panic (errors are expected).
#![no_main]

mod guest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| guest::run(|| {
    let _ = sluice_wasm::fuzzing::guest_output(data);
}));
