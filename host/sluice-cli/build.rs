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

    // The SDK version `sluice plugin new` writes into a Rust plugin's Cargo.toml: the
    // sluice-plugin crate this sluice was built beside.
    let sdk = manifest.join("../../plugins/sluice-plugin/Cargo.toml");
    println!("cargo:rerun-if-changed={}", sdk.display());
    let text = std::fs::read_to_string(&sdk).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("plugins/sluice-plugin/Cargo.toml has its own `version = \"...\"`");
    println!("cargo:rustc-env=SLUICE_PLUGIN_SDK_VERSION={version}");
}
