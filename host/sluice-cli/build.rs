//! Embeds the committed standard plugins (`plugins/dist/*.wasm`) into the binary, so running
//! Sluice needs no wasm toolchain and a release binary is self-contained.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let dist = manifest.join("../../plugins/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut entries = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dist) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "wasm") {
                println!("cargo:rerun-if-changed={}", p.display());
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                entries.push((name, p.canonicalize().unwrap()));
            }
        }
    }
    entries.sort();
    let mut code = String::from(
        "/// Standard plugins embedded at build time: (name, component bytes).\npub const BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in entries {
        code.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("builtins.rs");
    std::fs::write(out, code).unwrap();
}
