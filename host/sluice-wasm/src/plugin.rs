//! A compiled, linked plugin, and the tick its calls' deadlines are counted in. Below both the
//! runtime, which makes plugins, and the handler, which instantiates them.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::plugin::PluginInfo;
use wasmtime::Engine;

use crate::bindings::HandlerPluginPre;
use crate::host::{Counters, HostState};

/// How often the epoch advances; deadlines are measured in these ticks.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// A compiled, linked plugin. Its `Plugin` implementation (instances) is in `handler`.
pub struct WasmPlugin {
    pub(crate) engine: Engine,
    pub(crate) counters: Counters,
    pub(crate) pre: HandlerPluginPre<HostState>,
    pub(crate) info: PluginInfo,
    /// The runtime that made the plugin, kept alive with it: its epoch ticker is what ends a
    /// call that runs past its deadline.
    pub(crate) _runtime: Arc<dyn Any + Send + Sync>,
}
