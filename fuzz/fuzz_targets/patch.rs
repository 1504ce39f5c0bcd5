//! Fuzz the merge of a projecting handler's patches: arbitrary bytes as the guest's patch output
//! (with or without `_sluice_row`), checked and merged into an input batch, must never panic.
#![no_main]

mod guest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| guest::run(|| {
    let _ = sluice_wasm::fuzzing::patch(data);
}));
