//! Per-store host state: the resource limiter, the WASI context (empty), and the `host` imports
//! (structured logs and counters).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::sluice::plugin::host::{Host, Level};

/// Counters reported by plugins, keyed by (plugin, counter).
pub(crate) type Counters = Arc<Mutex<BTreeMap<(String, String), u64>>>;

/// Caps linear memory and tables. Exceeding the memory cap traps and is remembered, so the
/// host can report a memory-limit error rather than a generic trap.
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes exceeded (wanted {desired})", self.memory_bytes);
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000 && maximum.is_none_or(|m| desired <= m))
    }
}

pub(crate) struct HostState {
    pub(crate) plugin: String,
    pub(crate) limiter: Limiter,
    /// The last panic message a guest reported before trapping.
    pub(crate) panic: Option<String>,
    counters: Counters,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(plugin: &str, memory_bytes: u64, counters: Counters) -> Self {
        HostState {
            plugin: plugin.to_string(),
            limiter: Limiter { memory_bytes: memory_bytes.min(usize::MAX as u64) as usize, exceeded: false },
            panic: None,
            counters,
            // Deny by default: no args, env, preopened dirs, network or stdio.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Guest strings are untrusted: cap what reaches the logs.
fn clip(s: &str) -> &str {
    const MAX: usize = 4096;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        if fields.iter().any(|(k, v)| k == "panic" && v == "true") {
            self.panic = Some(clip(message.strip_prefix("panic: ").unwrap_or(&message)).to_string());
        }
        let fields: Vec<String> = fields.iter().take(32).map(|(k, v)| format!("{}={}", clip(k), clip(v))).collect();
        let fields = fields.join(" ");
        let (plugin, message) = (&self.plugin, clip(&message));
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, fields, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, fields, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, fields, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, fields, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        let mut c = self.counters.lock().expect("counters lock");
        if c.len() < 10_000 || c.contains_key(&(self.plugin.clone(), name.clone())) {
            *c.entry((self.plugin.clone(), clip(&name).to_string())).or_default() += delta;
        }
    }
}

/// The `types` interface has no functions; its trait is empty.
impl crate::bindings::sluice::plugin::types::Host for HostState {}
