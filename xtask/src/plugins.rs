//! `cargo xtask plugins build|check`: building the wasm plugins and checking
//! that the committed components in `plugins/dist` match their sources.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::component::{SOURCE_HASH_SECTION, append_custom_section, is_component, read_custom_section};

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

/// How the wasm components get built on this machine.
#[derive(Debug, Clone)]
pub struct Route {
    /// One-line description, printed.
    pub description: String,
    pub target: &'static str,
    cargo: PathBuf,
    /// Extra arguments after `build --release --target T`.
    extra_args: Vec<String>,
    /// Environment for the cargo child only.
    env: Vec<(String, OsString)>,
    /// Flags for the target's code (empty for wasip2, which links components natively).
    rustflags: Vec<String>,
}

fn capture(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The directory holding `wasm-component-ld` and `gcc-ld/wasm-ld`: the rustup
/// toolchain's, else Debian's rustc's.
fn component_linker_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(sysroot) = capture("rustc", &["--print", "sysroot"]) {
        candidates.push(PathBuf::from(sysroot.trim()));
    }
    candidates.push(PathBuf::from("/usr"));
    candidates
        .into_iter()
        .map(|s| s.join("lib/rustlib/x86_64-unknown-linux-gnu/bin"))
        .find(|bin| bin.join("wasm-component-ld").is_file() && bin.join("gcc-ld").join("wasm-ld").is_file())
}

fn component_link(bin: &Path) -> (Vec<(String, OsString)>, Vec<String>) {
    let env = vec![(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER".to_string(),
        bin.join("wasm-component-ld").into_os_string(),
    )];
    let flags = vec![
        format!("-Clink-arg=--wasm-ld-path={}", bin.join("gcc-ld").join("wasm-ld").display()),
        "-Clink-arg=--wasi-adapter=none".to_string(),
    ];
    (env, flags)
}

/// Picks the build route: (a) rustup's wasm32-unknown-unknown, (b) rustup's
/// wasm32-wasip2, (c) Debian's rustc-web with `-Zbuild-std`.
pub fn choose_route() -> Result<Route> {
    let installed = capture("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    let has = |t: &str| installed.lines().any(|l| l.trim() == t);
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let linker = component_linker_dir();
    if has("wasm32-unknown-unknown")
        && let Some(bin) = &linker
    {
        let (env, rustflags) = component_link(bin);
        return Ok(Route {
            description: format!(
                "(a) rustup target wasm32-unknown-unknown, linked by {}",
                bin.join("wasm-component-ld").display()
            ),
            target: "wasm32-unknown-unknown",
            cargo,
            extra_args: vec![],
            env,
            rustflags,
        });
    }
    if has("wasm32-wasip2") {
        return Ok(Route {
            description: "(b) rustup target wasm32-wasip2 (links components natively)".into(),
            target: "wasm32-wasip2",
            cargo,
            extra_args: vec![],
            env: vec![],
            rustflags: vec![],
        });
    }
    let debian_cargo = Path::new("/usr/bin/cargo");
    let debian_rustc = Path::new("/usr/bin/rustc");
    let std_src = Path::new("/usr/lib/rustlib/src/rust/library/std");
    if debian_cargo.is_file()
        && debian_rustc.is_file()
        && std_src.is_dir()
        && let Some(bin) = &linker
    {
        let (mut env, rustflags) = component_link(bin);
        env.push(("RUSTC".into(), debian_rustc.into()));
        env.push(("RUSTC_BOOTSTRAP".into(), "1".into()));
        return Ok(Route {
            description: format!(
                "(c) Debian rustc-web /usr/bin/cargo -Zbuild-std, linked by {}",
                bin.join("wasm-component-ld").display()
            ),
            target: "wasm32-unknown-unknown",
            cargo: debian_cargo.into(),
            extra_args: vec!["-Zbuild-std=std,panic_abort".into()],
            env,
            rustflags,
        });
    }
    bail!(
        "no way to build wasm components here. Install one of:\n  \
         - `rustup target add wasm32-unknown-unknown` (preferred)\n  \
         - `rustup target add wasm32-wasip2`\n  \
         - Debian packages rustc-web rust-web-src libstd-rust-web-dev cargo-web \
         (plus wasm-component-ld, shipped with rustup's stable toolchain)"
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

/// Writes `bytes` to `path` atomically (temporary file, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("output has no parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.inprogress",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

impl Route {
    /// Give a child cargo this route's environment (linker, flags), for the child only; an outer
    /// RUSTFLAGS or CARGO_TARGET_DIR would not apply to the wasm target anyway.
    fn apply_env(&self, cmd: &mut Command) {
        cmd.env_remove("RUSTFLAGS").env_remove("CARGO_TARGET_DIR");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if self.rustflags.is_empty() {
            cmd.env_remove("CARGO_ENCODED_RUSTFLAGS");
        } else {
            cmd.env("CARGO_ENCODED_RUSTFLAGS", self.rustflags.join("\x1f"));
        }
    }
}

/// `cargo xtask plugins build [--out DIR]`.
pub fn build(root: &Path, out: Option<&Path>) -> Result<()> {
    let route = choose_route()?;
    println!("plugins build: route {}", route.description);
    let target_dir = wasm_target_dir();
    let plugins_dir = root.join("plugins");
    let mut cmd = Command::new(&route.cargo);
    cmd.current_dir(&plugins_dir)
        .args(["build", "--release", "--locked", "--target", route.target])
        .args(&route.extra_args)
        .arg("--target-dir")
        .arg(&target_dir);
    for p in PLUGINS {
        cmd.args(["-p", p.name]);
    }
    route.apply_env(&mut cmd);
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("running {}", route.cargo.display()))?;
    if !status.success() {
        bail!("building the plugins failed ({status})");
    }
    println!("plugins build: compiled in {:.1}s", start.elapsed().as_secs_f64());

    let dist = out.map(Path::to_path_buf).unwrap_or_else(|| default_dist(root));
    let release = target_dir.join(route.target).join("release");
    for p in PLUGINS {
        let artifact = release.join(format!("{}.wasm", p.name.replace('-', "_")));
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

/// The `[package] name` of the crate at `dir` (a plain scan of its Cargo.toml).
fn package_name(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(v) = line.strip_prefix("name").map(str::trim_start).and_then(|r| r.strip_prefix('='))
        {
            return Ok(v.trim().trim_matches('"').to_string());
        }
    }
    bail!("{}: no [package] name", manifest.display())
}

/// `cargo xtask plugins build-crate DIR --out FILE`: builds one out-of-tree plugin crate (for
/// example what `sluice plugin new` scaffolds) into a component, by the same route as the
/// standard plugins. The wasm target directory is shared, so dependencies compiled for the
/// standard plugins are reused.
pub fn build_crate(dir: &Path, out: &Path) -> Result<()> {
    let route = choose_route()?;
    let name = package_name(dir)?;
    let target_dir = wasm_target_dir();
    let mut cmd = Command::new(&route.cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", route.target])
        .args(&route.extra_args)
        .arg("--target-dir")
        .arg(&target_dir);
    route.apply_env(&mut cmd);
    let start = Instant::now();
    let status = cmd.status().with_context(|| format!("running {}", route.cargo.display()))?;
    if !status.success() {
        bail!("building {} failed ({status})", dir.display());
    }
    let artifact = target_dir.join(route.target).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
    if !is_component(&bytes) {
        bail!("{} is not a component (core module? check the linker)", artifact.display());
    }
    write_atomic(out, &bytes)?;
    println!(
        "plugins build-crate: {name} ({} bytes) -> {} in {:.1}s via route {}",
        bytes.len(),
        out.display(),
        start.elapsed().as_secs_f64(),
        route.description
    );
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
