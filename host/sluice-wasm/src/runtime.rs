//! The runtime: one engine, one linker, an epoch ticker, the compile cache, and plugin lookup.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sluice_core::error::PluginError;
use sluice_core::plugin::{Plugin, PluginInfo, PluginRuntime};
use sluice_core::spec::{Limits, PluginRef};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::HandlerPluginPre;
use crate::cache::CompileCache;
use crate::handler::WasmHandler;
use crate::host::{Counters, HostState};
use crate::plugin::{TICK, WasmPlugin};

/// Where plugins come from and where compiled code is cached.
#[derive(Default, Clone)]
pub struct RuntimeOptions {
    /// Directory of compiled-code cache entries; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Directory searched first for `<name>.wasm` when a step names a plugin.
    pub plugin_dir: Option<PathBuf>,
    /// Standard plugins available by name (usually embedded in the binary).
    pub builtins: BTreeMap<String, &'static [u8]>,
}

/// The wasmtime-backed [`PluginRuntime`].
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    cache: CompileCache,
    opts: RuntimeOptions,
    loaded: Mutex<HashMap<PluginRef, Arc<WasmPlugin>>>,
    pub(crate) counters: Counters,
    ticker: Option<Ticker>,
}

/// Advances the engine's epoch every [`TICK`]; joined on drop.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.take();
    }
}

impl WasmRuntime {
    pub fn new(opts: RuntimeOptions) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| PluginError::Internal(format!("wasm engine: {e:#}")))?;
        let mut linker = Linker::<HostState>::new(&engine);
        crate::bindings::HandlerPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Internal(format!("linking host imports: {e:#}")))?;
        // Guests built for WASI get an empty, deterministic context (see `host`), and a monotonic
        // clock over virtual time in place of wasmtime-wasi's real one.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Internal(format!("linking WASI: {e:#}")))?;
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<_, crate::host::VirtualClocks>(
            &mut linker,
            crate::host::virtual_clocks,
        )
        .map_err(|e| PluginError::Internal(format!("linking WASI clocks: {e:#}")))?;
        linker.allow_shadowing(false);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let ticker_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match ticker_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| PluginError::Internal(format!("starting the epoch ticker: {e}")))?;
        let cache = CompileCache::new(&engine, opts.cache_dir.clone());
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                opts,
                loaded: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                ticker: Some(Ticker { stop, thread: Some(thread) }),
            }),
        })
    }

    /// Counters plugins have reported: (plugin, counter) → value.
    pub fn counters(&self) -> BTreeMap<(String, String), u64> {
        self.inner.counters.lock().expect("counters lock").clone()
    }

    fn bytes_for(&self, plugin: &PluginRef) -> Result<(String, Vec<u8>), PluginError> {
        match plugin {
            PluginRef::Path(p) => {
                let bytes = std::fs::read(p).map_err(|e| PluginError::Load(format!("{}: {e}", p.display())))?;
                Ok((plugin_name(p), bytes))
            }
            PluginRef::Named(name) => {
                if let Some(dir) = &self.inner.opts.plugin_dir {
                    let p = dir.join(format!("{name}.wasm"));
                    if p.is_file() {
                        let bytes =
                            std::fs::read(&p).map_err(|e| PluginError::Load(format!("{}: {e}", p.display())))?;
                        return Ok((name.clone(), bytes));
                    }
                }
                match self.inner.opts.builtins.get(name) {
                    Some(b) => Ok((name.clone(), b.to_vec())),
                    None => Err(PluginError::Load(unknown_plugin_message(name, &self.builtin_names()))),
                }
            }
        }
    }

    /// Load from raw component bytes (used by `plugin inspect` and tests).
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Arc<WasmPlugin>, PluginError> {
        let load_err = |e: wasmtime::Error| PluginError::Load(format!("`{name}`: {e:#}"));
        if !bytes.starts_with(b"\0asm") {
            return Err(PluginError::Load(format!("`{name}` is not a WebAssembly file")));
        }
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(PluginError::Load(format!(
                "`{name}` is a core WebAssembly module, not a component: build it with the plugin SDK \
                 (`cargo xtask plugins build`), which links a component"
            )));
        }
        let component = self.inner.cache.component(&self.inner.engine, bytes).map_err(load_err)?;
        let sdk =
            sluice_toolchain::component::read_custom_section_deep(bytes, sluice_toolchain::component::SDK_SECTION)
                .map(|s| String::from_utf8_lossy(s).into_owned());
        let contract = contract_of(&self.inner.engine, &component, name, sdk.as_deref())?;
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            PluginError::Load(format!(
                "`{name}` needs imports this host does not offer (plugins may import only \
                 `sluice:plugin/host` and WASI): {e:#}"
            ))
        })?;
        let pre = HandlerPluginPre::new(pre).map_err(load_err)?;
        let mut plugin = WasmPlugin {
            engine: self.inner.engine.clone(),
            counters: self.inner.counters.clone(),
            _runtime: self.inner.clone(),
            pre,
            info: PluginInfo {
                name: name.to_string(),
                version: String::new(),
                summary: String::new(),
                config_doc: String::new(),
                contract,
                component_hash: String::new(),
                sdk: String::new(),
            },
        };
        let info = WasmHandler::read_info(&plugin, &Limits::default())?;
        let component_hash = format!("sha256:{}", sluice_core::sha256_hex(&[bytes]));
        plugin.info =
            PluginInfo { contract: plugin.info.contract.clone(), component_hash, sdk: sdk.unwrap_or_default(), ..info };
        Ok(Arc::new(plugin))
    }
}

fn plugin_name(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn unknown_plugin_message(name: &str, known: &[String]) -> String {
    use sluice_core::hint::edit_distance;
    let mut msg = format!("no plugin named `{name}`");
    if let Some(best) = known.iter().min_by_key(|k| edit_distance(k, name)).filter(|k| edit_distance(k, name) <= 2) {
        msg.push_str(&format!("; did you mean `{best}`?"));
    }
    msg.push_str(&format!(" (standard plugins: {}; or give a path to a .wasm file)", known.join(", ")));
    msg
}

/// Whether a component built against contract version `built` runs on a host implementing
/// `host` (semver: 0.x.y only with 0.x.*, otherwise the same major version).
fn compatible(built: &str, host: &str) -> bool {
    let (ma, mb) = (built.split('.').collect::<Vec<_>>(), host.split('.').collect::<Vec<_>>());
    if ma.first() == Some(&"0") { ma.get(..2) == mb.get(..2) } else { ma.first() == mb.first() }
}

/// Why a component built against contract `built` does not run here, and what to do about it.
fn incompatible_message(name: &str, built: &str, sdk: Option<&str>) -> String {
    let (pkg, host) = (crate::CONTRACT_PACKAGE, crate::CONTRACT_VERSION);
    let minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    let sdk = sdk.map(|s| format!(", with SDK {s}")).unwrap_or_default();
    let newer = version_key(built) > version_key(host);
    let fix = if newer {
        format!(
            "upgrade sluice to a release that implements {pkg}@{}, or rebuild the plugin with an SDK for {}",
            minor(built),
            minor(host)
        )
    } else {
        format!(
            "rebuild it against the SDK for {h} (Rust: `sluice-plugin = \"{h}\"` in its Cargo.toml; Python: this \
             sluice's embedded SDK) with `sluice plugin build`, or run it on a sluice release that implements \
             {pkg}@{b}",
            h = minor(host),
            b = minor(built)
        )
    };
    format!(
        "`{name}` was built against {pkg}@{built}{sdk}, but this host implements {pkg}@{host}, and 0.x contracts \
         are compatible only within one minor version: {fix}"
    )
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Find the contract version the component exports, and check it is compatible.
fn contract_of(engine: &Engine, component: &Component, name: &str, sdk: Option<&str>) -> Result<String, PluginError> {
    let ty = component.component_type();
    let prefix = format!("{}/handler@", crate::CONTRACT_PACKAGE);
    let export = ty.exports(engine).map(|(n, _)| n.to_string()).find(|n| n.starts_with(&prefix));
    let Some(export) = export else {
        let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        return Err(PluginError::Load(format!(
            "`{name}` does not export `{}/handler`; it exports [{}]",
            crate::CONTRACT_PACKAGE,
            names.join(", ")
        )));
    };
    let version = &export[prefix.len()..];
    if !compatible(version, crate::CONTRACT_VERSION) {
        return Err(PluginError::Load(incompatible_message(name, version, sdk)));
    }
    Ok(format!("{}@{version}", crate::CONTRACT_PACKAGE))
}

impl PluginRuntime for WasmRuntime {
    fn load(&self, plugin: &PluginRef) -> Result<Arc<dyn Plugin>, PluginError> {
        if let Some(p) = self.inner.loaded.lock().expect("plugin map lock").get(plugin) {
            return Ok(p.clone());
        }
        let (name, bytes) = self.bytes_for(plugin)?;
        let loaded = self.load_bytes(&name, &bytes)?;
        self.inner.loaded.lock().expect("plugin map lock").insert(plugin.clone(), loaded.clone());
        Ok(loaded)
    }

    fn builtin_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.opts.builtins.keys().cloned().collect();
        if let Some(dir) = &self.inner.opts.plugin_dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "wasm") {
                    names.push(plugin_name(&p));
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn contract_versions_follow_semver_for_0_x() {
        assert_eq!(crate::CONTRACT_VERSION, "0.5.0");
        assert!(compatible("0.5.0", "0.5.0") && compatible("0.5.2", "0.5.0"));
        // 0.2 components (no `projection`) and 0.1 ones are refused.
        assert!(!compatible("0.4.0", "0.5.0") && !compatible("0.1.0", "0.5.0") && !compatible("0.6.0", "0.5.0"));
        assert!(compatible("1.4.0", "1.0.0") && !compatible("2.0.0", "1.0.0"));
    }

    #[test]
    fn an_incompatible_contract_says_both_versions_and_what_to_do() {
        let m = super::incompatible_message("old", "0.4.0", Some("sluice-plugin 0.4.1"));
        assert!(m.contains("sluice:plugin@0.4.0, with SDK sluice-plugin 0.4.1"), "{m}");
        assert!(m.contains("this host implements sluice:plugin@0.5.0"), "{m}");
        assert!(m.contains("`sluice-plugin = \"0.5\"`") && m.contains("sluice plugin build"), "{m}");
        let m = super::incompatible_message("new", "0.6.0", None);
        assert!(m.contains("upgrade sluice to a release that implements sluice:plugin@0.6"), "{m}");
    }
}
