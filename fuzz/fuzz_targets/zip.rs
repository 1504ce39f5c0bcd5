//! Fuzz zip listing and member reads: arbitrary bytes as a `.zip` file, must never panic.
#![no_main]

use std::sync::OnceLock;

static DIR: OnceLock<tempdir::Dir> = OnceLock::new();

mod tempdir {
    /// A private scratch directory for this fuzzing process, removed at exit by the OS tmp cleaner.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("sluice-fuzz-zip-{}", std::process::id()));
            std::fs::create_dir_all(&p).expect("scratch dir");
            Dir(p)
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(tempdir::Dir::new);
    sluice_source::fuzzing::zip(&dir.0, data);
});
