//! The Python route: `componentize-py` bundles CPython, the Python SDK and the plugin's
//! `app.py` into a component targeting the WIT contract.
//!
//! The contract and the SDK are embedded in this crate (so in the `sluice` binary): a Python
//! plugin author needs `sluice` and `pip install componentize-py`, nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{BuildError, Built, finish};

/// The WIT contract, as the host implements it.
pub const WIT: &str = include_str!("../../../wit/sluice.wit");

/// The Python SDK's files: (path under the Python path, contents).
pub const SDK_FILES: &[(&str, &str)] = &[
    ("sluice_plugin/__init__.py", include_str!("../../../plugins/python/sluice_plugin/__init__.py")),
    ("sluice_plugin/ipc.py", include_str!("../../../plugins/python/sluice_plugin/ipc.py")),
    ("sluice_plugin/_glue.py", include_str!("../../../plugins/python/sluice_plugin/_glue.py")),
    // componentize-py looks up the resource `instance` of the exported interface `handler` in a
    // top-level module named `handler`: the SDK's glue.
    ("handler.py", include_str!("../../../plugins/python/handler.py")),
];

/// The componentize-py release the SDK's glue is written and tested against.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The Python SDK's version (`__version__` in `sluice_plugin/__init__.py`).
pub fn sdk_version() -> &'static str {
    SDK_FILES[0]
        .1
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches('"').trim_matches('\''))
        .unwrap_or("unknown")
}

/// Writes the WIT package and the SDK under `dir`: `dir/wit/sluice.wit` and `dir/sdk/...`.
/// Returns (wit dir, sdk dir).
pub fn write_sdk(dir: &Path) -> Result<(PathBuf, PathBuf), BuildError> {
    let wit = dir.join("wit");
    std::fs::create_dir_all(&wit).map_err(BuildError::io(&wit))?;
    let wit_file = wit.join("sluice.wit");
    std::fs::write(&wit_file, WIT).map_err(BuildError::io(&wit_file))?;
    let sdk = dir.join("sdk");
    for (rel, text) in SDK_FILES {
        let path = sdk.join(rel);
        let parent = path.parent().expect("SDK paths have a parent");
        std::fs::create_dir_all(parent).map_err(BuildError::io(parent))?;
        std::fs::write(&path, text).map_err(BuildError::io(&path))?;
    }
    Ok((wit, sdk))
}

/// The componentize-py to run: `$SLUICE_COMPONENTIZE_PY`, else `componentize-py` on the PATH.
fn componentize_py() -> Result<(PathBuf, String), BuildError> {
    let exe = std::env::var_os("SLUICE_COMPONENTIZE_PY").map(PathBuf::from).unwrap_or_else(|| "componentize-py".into());
    let missing = |why: String| {
        BuildError::NoToolchain(format!(
            "{why}. Python plugins are built by componentize-py, from PyPI: \
             `pip install componentize-py=={COMPONENTIZE_PY}` (into a virtualenv is fine), then put it on the \
             PATH or set SLUICE_COMPONENTIZE_PY to its path"
        ))
    };
    let out = Command::new(&exe)
        .arg("--version")
        .output()
        .map_err(|e| missing(format!("cannot run `{}` ({e})", exe.display())))?;
    if !out.status.success() {
        return Err(missing(format!("`{} --version` failed ({})", exe.display(), out.status)));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((exe, version))
}

/// Runs componentize-py `exe` on the app module `app.py` in `app_dir`, with the WIT package in
/// `wit` and the SDK in `sdk` (as [`write_sdk`] lays them out), writing the raw component to
/// `out`.
pub fn componentize(exe: &Path, wit: &Path, sdk: &Path, app_dir: &Path, out: &Path) -> Result<(), BuildError> {
    let status = Command::new(exe)
        .arg("-d")
        .arg(wit)
        // The SDK first, so that a stray copy of `sluice_plugin` or `handler.py` in the
        // plugin's directory does not shadow the one this sluice implements the contract with.
        .args(["-w", "handler-plugin", "componentize", "-p"])
        .arg(sdk)
        .arg("-p")
        .arg(app_dir)
        .arg("app")
        .arg("-o")
        .arg(out)
        // No bytecode caches in the author's directory.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .map_err(|e| BuildError::Failed {
            dir: app_dir.to_path_buf(),
            what: format!("running {}: {e}", exe.display()),
        })?;
    if !status.success() {
        return Err(BuildError::Failed { dir: app_dir.to_path_buf(), what: format!("componentize-py {status}") });
    }
    Ok(())
}

/// Builds the Python plugin at `dir` (its `app.py` and any modules beside it) into a component
/// at `out` (default `DIR/NAME.wasm`, NAME being the directory's name).
pub fn build(dir: &Path, out: Option<&Path>) -> Result<Built, BuildError> {
    let dir_abs = dir.canonicalize().map_err(BuildError::io(dir))?;
    let name = dir_abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BuildError::NotAPlugin(format!("{} has no name", dir.display())))?;
    let (exe, version) = componentize_py()?;
    let tmp = tempfile::tempdir().map_err(BuildError::io(Path::new("a temporary directory")))?;
    let (wit, sdk) = write_sdk(tmp.path())?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dir.join(format!("{name}.wasm")));
    let raw = tmp.path().join("plugin.wasm");
    let start = Instant::now();
    componentize(&exe, &wit, &sdk, &dir_abs, &raw)?;
    let route = format!("{version} ({})", exe.display());
    finish(&raw, &format!("sluice-plugin-py {}", sdk_version()), out, name, route, start)
}
