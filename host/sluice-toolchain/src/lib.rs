//! Building Sluice handler plugins into WebAssembly components.
//!
//! One place for the build routes, so that a plugin author's `sluice plugin build` and the
//! project's `cargo xtask plugins build` compile the same way:
//! - Rust ([`rust`]): (a) rustup's `wasm32-unknown-unknown` target linked by
//!   `wasm-component-ld`, (b) rustup's `wasm32-wasip2`, or (c) Debian's `rustc-web` with
//!   `-Zbuild-std`, whichever this machine has, in that order.
//! - Python ([`python`]): `componentize-py` (from PyPI) over the WIT contract and the Python
//!   SDK, both embedded in this crate.
//!
//! It also reads and writes the components' custom sections ([`component`]): the source hash
//! the standard plugins are stamped with and the SDK a component was built with.

pub mod component;
pub mod python;
pub mod rust;

use std::path::{Path, PathBuf};

/// Why a plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No toolchain for this kind of plugin here; the message says what to install.
    #[error("{0}")]
    NoToolchain(String),
    /// The plugin directory is not a plugin (no Cargo.toml or app.py, no package name, ...).
    #[error("{0}")]
    NotAPlugin(String),
    /// The compiler (cargo or componentize-py) failed; its output went to stderr.
    #[error("building {dir} failed: {what}")]
    Failed { dir: PathBuf, what: String },
    /// The build produced something that is not a component.
    #[error("{0} is not a WebAssembly component (a core module? check the linker)")]
    NotAComponent(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl BuildError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
        move |source| BuildError::Io { path: path.to_path_buf(), source }
    }
}

/// The language a plugin directory is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A crate (`Cargo.toml`) depending on the `sluice-plugin` SDK.
    Rust,
    /// An `app.py` using the `sluice_plugin` Python SDK.
    Python,
}

impl Language {
    /// What `dir` holds: `Cargo.toml` is Rust, `app.py` is Python.
    pub fn of(dir: &Path) -> Result<Language, BuildError> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Language::Rust)
        } else if dir.join("app.py").is_file() {
            Ok(Language::Python)
        } else {
            Err(BuildError::NotAPlugin(format!(
                "{} holds neither a Cargo.toml (a Rust plugin) nor an app.py (a Python plugin); \
                 `sluice plugin new NAME [--lang python]` scaffolds one",
                dir.display()
            )))
        }
    }
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The plugin's name (the crate's package name, or the Python plugin's directory name).
    pub name: String,
    /// Where the component was written.
    pub path: PathBuf,
    pub bytes: usize,
    /// The route, in one line.
    pub route: String,
    pub seconds: f64,
}

/// The last step of every route: read the component a compiler wrote at `artifact`, check it is
/// one, record `sdk` in its `sluice:sdk` section unless the SDK recorded itself (the Rust SDK
/// does, in the core module), and write it to `out`.
pub(crate) fn finish(
    artifact: &Path,
    sdk: &str,
    out: PathBuf,
    name: String,
    route: String,
    start: std::time::Instant,
) -> Result<Built, BuildError> {
    use component::{SDK_SECTION, append_custom_section, has_custom_section, is_component};
    let mut bytes = std::fs::read(artifact).map_err(BuildError::io(artifact))?;
    if !is_component(&bytes) {
        return Err(BuildError::NotAComponent(artifact.to_path_buf()));
    }
    if !has_custom_section(&bytes, SDK_SECTION) {
        append_custom_section(&mut bytes, SDK_SECTION, sdk.as_bytes());
    }
    write_atomic(&out, &bytes)?;
    Ok(Built { name, path: out, bytes: bytes.len(), route, seconds: start.elapsed().as_secs_f64() })
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(BuildError::io(&dir))?;
    let tmp = dir.join(format!(
        ".{}.{}.inprogress",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(BuildError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(BuildError::io(path))?;
    Ok(())
}
