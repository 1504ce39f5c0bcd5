//! Per-store host state: the resource limiter, the WASI context (empty and deterministic), and
//! the `host` imports (structured logs and counters).
//!
//! The sandbox denies by default and gives the same bytes for the same input: no args,
//! environment, preopened directories, network or stdio; clocks that show *virtual* time (the
//! wall clock starts at the Unix epoch, the monotonic clock at 0, and both advance only when the
//! guest sleeps, at once: a sleep never blocks the host thread, so a guest that keeps sleeping
//! spins into its step's timeout); randomness from seeded generators. Clocks and generators start
//! over with every unit ([`HostState::reset_unit`]), so what a unit sees does not depend on the
//! units an instance handled before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

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
    /// The store's virtual time, in nanoseconds.
    time: VirtualTime,
}

impl HostState {
    pub(crate) fn new(plugin: &str, memory_bytes: u64, counters: Counters) -> Self {
        let time = VirtualTime::default();
        HostState {
            plugin: plugin.to_string(),
            limiter: Limiter { memory_bytes: memory_bytes.min(usize::MAX as u64) as usize, exceeded: false },
            panic: None,
            counters,
            wasi: deterministic_wasi(&time),
            table: ResourceTable::new(),
            time,
        }
    }
}

/// Nanoseconds of virtual time, shared by a store's clocks and timers.
pub(crate) type VirtualTime = Arc<AtomicU64>;

/// Deny by default (no args, env, preopened dirs, network or stdio), virtual clocks, and
/// randomness from a fixed sequence.
fn deterministic_wasi(time: &VirtualTime) -> WasiCtx {
    use rand::SeedableRng as _;
    let mut b = WasiCtx::builder();
    b.wall_clock(WallClock(time.clone()))
        .monotonic_clock(MonotonicClock(time.clone()))
        .secure_random(rand::rngs::StdRng::seed_from_u64(0x5EC0_2E00))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(0x1A5E_C02E))
        .insecure_random_seed(0x51u128 << 64 | 0x1CE)
        .max_random_size(1 << 20)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    b.build()
}

struct WallClock(VirtualTime);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

struct MonotonicClock(VirtualTime);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A timer of `wasi:clocks/monotonic-clock`: ready at once, moving virtual time to its instant.
struct Timer {
    time: VirtualTime,
    at: u64,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        self.time.fetch_max(self.at, Ordering::SeqCst);
    }
}

/// `wasi:clocks/monotonic-clock` over virtual time, shadowing wasmtime-wasi's, whose timers
/// sleep for real inside the host call, out of reach of the epoch deadline.
pub(crate) struct VirtualClocks;

impl HasData for VirtualClocks {
    type Data<'a> = VirtualClocksView<'a>;
}

pub(crate) struct VirtualClocksView<'a> {
    time: &'a VirtualTime,
    table: &'a mut ResourceTable,
}

/// The view the linker gives `wasi:clocks/monotonic-clock`.
pub(crate) fn virtual_clocks(s: &mut HostState) -> VirtualClocksView<'_> {
    VirtualClocksView { time: &s.time, table: &mut s.table }
}

impl VirtualClocksView<'_> {
    fn timer(&mut self, at: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let timer = self.table.push(Timer { time: self.time.clone(), at })?;
        subscribe(self.table, timer)
    }
}

impl monotonic_clock::Host for VirtualClocksView<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.time.load(Ordering::SeqCst))
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.timer(when)
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let at = self.time.load(Ordering::SeqCst).saturating_add(duration);
        self.timer(at)
    }
}

impl HostState {
    /// A new unit starts on this instance: virtual time back to zero, generators reseeded.
    pub(crate) fn reset_unit(&mut self) {
        self.time.store(0, Ordering::SeqCst);
        self.wasi = deterministic_wasi(&self.time);
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
