//! `cargo xtask plugins build|check`: building the wasm plugins and checking
//! that the committed components in `plugins/dist` match their sources. The build route is
//! `sluice_toolchain::rust`'s, the one `sluice plugin build` takes for an author's plugin.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use sluice_toolchain::component::{SOURCE_HASH_SECTION, append_custom_section, is_component, read_custom_section};
use sluice_toolchain::rust::choose_route;
use sluice_toolchain::write_atomic;

/// Whether a plugin ships to users or only serves the host's tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written to `dist/<name>.wasm`.
    Standard,
    /// A hostile test plugin, written to `dist/test/<name>.wasm`.
    Test,
}

/// One plugin crate of the `plugins` workspace.
#[derive(Debug, Clone, Copy)]
pub struct Plugin {
    /// Crate (package) name; also the file stem of its component.
    pub name: &'static str,
    /// Crate directory, relative to `plugins/`.
    pub dir: &'static str,
    pub kind: Kind,
}

/// Every plugin, in build order.
pub const PLUGINS: &[Plugin] = &[
    Plugin { name: "select", dir: "select", kind: Kind::Standard },
    Plugin { name: "cast", dir: "cast", kind: Kind::Standard },
    Plugin { name: "sma", dir: "sma", kind: Kind::Standard },
    Plugin { name: "passthrough", dir: "passthrough", kind: Kind::Standard },
    // The standard handlers share `handlers/kit`: their hash covers the whole `handlers/` tree.
    Plugin { name: "normalize_time", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "dedup", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "filter", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "derive", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "indicators", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "aggregate", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "resample", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "sessionize", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "normalize", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "clean", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "enrich", dir: "handlers", kind: Kind::Standard },
    Plugin { name: "hostile-spin", dir: "hostile/spin", kind: Kind::Test },
    Plugin { name: "hostile-hog", dir: "hostile/hog", kind: Kind::Test },
    Plugin { name: "hostile-panic", dir: "hostile/panic", kind: Kind::Test },
    Plugin { name: "hostile-bad-ipc", dir: "hostile/bad-ipc", kind: Kind::Test },
    Plugin { name: "hostile-bad-schema", dir: "hostile/bad-schema", kind: Kind::Test },
    Plugin { name: "hostile-explode", dir: "hostile/explode", kind: Kind::Test },
    Plugin { name: "hostile-bad-patch", dir: "hostile/bad-patch", kind: Kind::Test },
    Plugin { name: "hostile-sleep", dir: "hostile/sleep", kind: Kind::Test },
    Plugin { name: "hostile-probe", dir: "hostile/probe", kind: Kind::Test },
];

impl Plugin {
    /// Where this plugin's component goes under a dist directory.
    pub fn output_path(&self, dist: &Path) -> PathBuf {
        match self.kind {
            Kind::Standard => dist.join(format!("{}.wasm", self.name)),
            Kind::Test => dist.join("test").join(format!("{}.wasm", self.name)),
        }
    }
}

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent directory").to_path_buf()
}

/// The committed dist directory, `plugins/dist`.
pub fn default_dist(root: &Path) -> PathBuf {
    root.join("plugins").join("dist")
}

/// Adds every file under `dir` (skipping `target/` and `dist/`) to `files`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<()> {
    if dir.is_file() {
        let rel = dir.strip_prefix(root)?;
        let rel: Vec<_> = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect();
        files.push((rel.join("/"), dir.to_path_buf()));
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default();
        if path.is_dir() && (name == "target" || name == "dist") {
            continue;
        }
        collect(root, &path, files)?;
    }
    Ok(())
}

/// The deterministic SHA-256 (hex) of a plugin's inputs: `wit/**`, `sluice-contract/**`,
/// `plugins/Cargo.toml`, `plugins/Cargo.lock`, `plugins/sluice-plugin/**` and
/// the plugin's own crate directory, as sorted (relative path, contents) pairs.
pub fn source_hash(root: &Path, plugin: &Plugin) -> Result<String> {
    let plugins = root.join("plugins");
    let mut files = Vec::new();
    for input in [
        root.join("wit"),
        root.join("sluice-contract"),
        plugins.join("Cargo.toml"),
        plugins.join("Cargo.lock"),
        plugins.join("sluice-plugin"),
        plugins.join(plugin.dir),
    ] {
        if !input.exists() {
            bail!("{} does not exist", input.display());
        }
        collect(root, &input, &mut files)?;
    }
    files.sort();
    files.dedup();
    let mut h = Sha256::new();
    for (rel, path) in &files {
        let contents = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update((contents.len() as u64).to_le_bytes());
        h.update(&contents);
    }
    Ok(hex::encode(h.finalize()))
}

/// The source hash recorded in a component, if any.
pub fn recorded_hash(component: &[u8]) -> Option<String> {
    read_custom_section(component, SOURCE_HASH_SECTION).and_then(|p| std::str::from_utf8(p).ok()).map(str::to_string)
}

/// Compares every plugin's source hash with the one recorded in its component
/// under `dist`. Returns the problems found (empty: all fresh).
pub fn stale_plugins(root: &Path, dist: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for p in PLUGINS {
        let path = p.output_path(dist);
        let want = source_hash(root, p)?;
        match fs::read(&path) {
            Err(_) => problems.push(format!("{}: {} is missing", p.name, path.display())),
            Ok(bytes) => match recorded_hash(&bytes) {
                None => problems.push(format!("{}: {} has no {SOURCE_HASH_SECTION} section", p.name, path.display())),
                Some(got) if got != want => problems.push(format!(
                    "{}: {} is stale (built from sources {}, sources are now {})",
                    p.name,
                    path.display(),
                    &got[..got.len().min(12)],
                    &want[..12]
                )),
                Some(_) => {}
            },
        }
    }
    Ok(problems)
}

/// `cargo xtask plugins check`.
pub fn check(root: &Path) -> Result<()> {
    let dist = default_dist(root);
    let problems = stale_plugins(root, &dist)?;
    if problems.is_empty() {
        println!("plugins check: all {} components in {} are fresh", PLUGINS.len(), dist.display());
        return Ok(());
    }
    bail!(
        "stale plugin components:\n  {}\nrun `cargo xtask plugins build` and commit plugins/dist",
        problems.join("\n  ")
    )
}

/// The cargo target directory for wasm builds, outside the work tree.
pub fn wasm_target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("wasm");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache/sluice/target/wasm")
}

/// `cargo xtask plugins build [--out DIR]`.
pub fn build(root: &Path, out: Option<&Path>) -> Result<()> {
    let plugins_dir = root.join("plugins");
    let route = choose_route(&plugins_dir)?;
    println!("plugins build: route {}", route.description);
    let target_dir = wasm_target_dir();
    let mut cmd = route.cargo_build(&plugins_dir, &target_dir);
    cmd.arg("--locked");
    for p in PLUGINS {
        cmd.args(["-p", p.name]);
    }
    let start = Instant::now();
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("building the plugins failed ({status})");
    }
    println!("plugins build: compiled in {:.1}s", start.elapsed().as_secs_f64());

    let dist = out.map(Path::to_path_buf).unwrap_or_else(|| default_dist(root));
    for p in PLUGINS {
        let artifact = route.artifact(&target_dir, p.name);
        let mut bytes = fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
        if !is_component(&bytes) {
            bail!("{} is not a component (core module? check the linker)", artifact.display());
        }
        let hash = source_hash(root, p)?;
        append_custom_section(&mut bytes, SOURCE_HASH_SECTION, hash.as_bytes());
        let dest = p.output_path(&dist);
        write_atomic(&dest, &bytes)?;
        println!("  {:<20} {:>9} bytes  {}", p.name, bytes.len(), dest.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Native unit tests.

    use super::*;

    #[test]
    fn hash_is_deterministic_and_distinct() {
        let root = repo_root();
        let a = source_hash(&root, &PLUGINS[0]).unwrap();
        assert_eq!(a, source_hash(&root, &PLUGINS[0]).unwrap());
        assert_ne!(a, source_hash(&root, &PLUGINS[1]).unwrap());
        assert_eq!(a.len(), 64);
    }

    /// Fails when a committed component in plugins/dist is older than its sources.
    #[test]
    fn committed_plugin_components_are_fresh() {
        let root = repo_root();
        let problems = stale_plugins(&root, &default_dist(&root)).unwrap();
        assert!(
            problems.is_empty(),
            "stale plugin components (run `cargo xtask plugins build`):\n{}",
            problems.join("\n")
        );
    }
}
