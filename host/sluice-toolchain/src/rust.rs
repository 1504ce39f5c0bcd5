//! The Rust routes: cargo builds a plugin crate for a wasm target and links a component.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{BuildError, Built, finish};

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

/// Runs a probe in `dir` (so that a `rust-toolchain.toml` there picks the toolchain, as it
/// will for the build), returning its stdout when it succeeds.
fn capture(dir: &Path, cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).current_dir(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The directory holding `wasm-component-ld` and `gcc-ld/wasm-ld`: the rustup
/// toolchain's, else Debian's rustc's, for the host's target triple.
fn component_linker_dir(dir: &Path) -> Option<PathBuf> {
    let host = capture(dir, "rustc", &["-vV"])
        .and_then(|v| v.lines().find_map(|l| l.strip_prefix("host: ").map(|h| h.trim().to_string())))
        .unwrap_or_else(|| "x86_64-unknown-linux-gnu".into());
    let mut candidates = Vec::new();
    if let Some(sysroot) = capture(dir, "rustc", &["--print", "sysroot"]) {
        candidates.push(PathBuf::from(sysroot.trim()));
    }
    candidates.push(PathBuf::from("/usr"));
    candidates
        .into_iter()
        .map(|s| s.join("lib/rustlib").join(&host).join("bin"))
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
/// wasm32-wasip2, (c) Debian's rustc-web with `-Zbuild-std`, for building in `dir`. When none
/// is there, the error says what to install.
pub fn choose_route(dir: &Path) -> Result<Route, BuildError> {
    let installed = capture(dir, "rustup", &["target", "list", "--installed"]).unwrap_or_default();
    let has = |t: &str| installed.lines().any(|l| l.trim() == t);
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let linker = component_linker_dir(dir);
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
    let have = if has("wasm32-unknown-unknown") {
        " (rustup's wasm32-unknown-unknown target is installed, but no wasm-component-ld was found beside \
         the toolchain: update rustup's stable toolchain, which ships it)"
    } else {
        ""
    };
    Err(BuildError::NoToolchain(format!(
        "no way to build a Rust plugin into a wasm component here{have}. Install one of:\n  \
         - `rustup target add wasm32-unknown-unknown` (preferred; rustup's stable toolchain ships \
         wasm-component-ld)\n  \
         - `rustup target add wasm32-wasip2`\n  \
         - Debian packages rustc-web rust-web-src libstd-rust-web-dev cargo-web \
         (plus wasm-component-ld from a rustup stable toolchain)"
    )))
}

impl Route {
    /// `cargo build --release --target T` in `dir` into `target_dir`, with this route's
    /// environment (linker, flags) for the child only: an outer RUSTFLAGS or CARGO_TARGET_DIR
    /// would not apply to the wasm target anyway.
    pub fn cargo_build(&self, dir: &Path, target_dir: &Path) -> Command {
        let mut cmd = Command::new(&self.cargo);
        cmd.current_dir(dir)
            .args(["build", "--release", "--target", self.target])
            .args(&self.extra_args)
            .arg("--target-dir")
            .arg(target_dir);
        cmd.env_remove("RUSTFLAGS").env_remove("CARGO_TARGET_DIR");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if self.rustflags.is_empty() {
            cmd.env_remove("CARGO_ENCODED_RUSTFLAGS");
        } else {
            cmd.env("CARGO_ENCODED_RUSTFLAGS", self.rustflags.join("\x1f"));
        }
        cmd
    }

    /// Where cargo puts the library `name`'s component under `target_dir`.
    pub fn artifact(&self, target_dir: &Path, name: &str) -> PathBuf {
        target_dir.join(self.target).join("release").join(format!("{}.wasm", name.replace('-', "_")))
    }
}

/// The `name` key of a manifest table (`[package]`, `[lib]`), by a plain scan.
fn table_name(text: &str, table: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line.split('#').next().map(str::trim) == Some(table);
        } else if inside
            && let Some(v) = line.strip_prefix("name").map(str::trim_start).and_then(|r| r.strip_prefix('='))
        {
            let v = v.split('#').next().unwrap_or("").trim().trim_matches(['"', '\'']);
            return Some(v.to_string()).filter(|v| !v.is_empty());
        }
    }
    None
}

/// The `[package] name` of the crate at `dir`, and the file stem of its library artifact (the
/// `[lib] name`, else the package name with `-` as `_`).
pub fn package_name(dir: &Path) -> Result<(String, String), BuildError> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(BuildError::io(&manifest))?;
    let name = table_name(&text, "[package]")
        .ok_or_else(|| BuildError::NotAPlugin(format!("{}: no [package] name", manifest.display())))?;
    let lib = table_name(&text, "[lib]").unwrap_or_else(|| name.replace('-', "_"));
    Ok((name, lib))
}

/// Builds the plugin crate at `dir` into a component at `out` (default `DIR/NAME.wasm`), with
/// cargo's target directory `target_dir` (default `DIR/target`).
pub fn build_crate(dir: &Path, out: Option<&Path>, target_dir: Option<&Path>) -> Result<Built, BuildError> {
    // Cargo runs in `dir`: relative paths are made absolute against ours first.
    let dir = &std::path::absolute(dir).map_err(BuildError::io(dir))?;
    let (name, lib) = package_name(dir)?;
    let route = choose_route(dir)?;
    let target_dir = match target_dir {
        Some(t) => std::path::absolute(t).map_err(BuildError::io(t))?,
        None => dir.join("target"),
    };
    let start = Instant::now();
    let mut cmd = route.cargo_build(dir, &target_dir);
    let status = cmd.status().map_err(|e| BuildError::Failed {
        dir: dir.to_path_buf(),
        what: format!("running {}: {e}", route.cargo.display()),
    })?;
    if !status.success() {
        return Err(BuildError::Failed { dir: dir.to_path_buf(), what: format!("cargo {status}") });
    }
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dir.join(format!("{name}.wasm")));
    // A crate on a current SDK has its section in the core module already; only one built on an
    // SDK older than the stamp gets this.
    finish(&route.artifact(&target_dir, &lib), "sluice-plugin (unknown version)", out, name, route.description, start)
}

#[cfg(test)]
mod tests {
    use super::table_name;

    #[test]
    fn manifest_names_are_read_with_either_quotes_and_comments() {
        let text = "[package] # the crate\nname = 'my-plug' # its name\nversion = \"0.1.0\"\n[lib]\nname = \"plug\"\n";
        assert_eq!(table_name(text, "[package]").as_deref(), Some("my-plug"));
        assert_eq!(table_name(text, "[lib]").as_deref(), Some("plug"));
        assert_eq!(table_name("[dependencies]\nname = \"x\"\n", "[package]"), None);
    }
}
