//! One sandboxed handler instance: its own Store, limits enforced on every call, output validated.

use std::cell::RefCell;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_schema::{Schema, SchemaRef};
use sluice_core::error::PluginError;
use sluice_core::plugin::{Handler, LookupTable, PluginInfo, StateSpec};
use sluice_core::spec::Limits;
use wasmtime::component::ResourceAny;
use wasmtime::{Store, Trap};

use crate::bindings::HandlerPlugin;
use crate::bindings::exports::sluice::plugin::handler::GuestInstance;
use crate::bindings::sluice::plugin::types::Error as WitError;
use crate::host::HostState;
use crate::ipc;
use crate::plugin::{TICK, WasmPlugin};

thread_local! {
    /// The last single-batch output a guest returned on this thread, with the IPC stream it was
    /// decoded from (the batch's arrays point into it).
    static LAST_OUTPUT: RefCell<Option<(RecordBatch, Buffer)>> = const { RefCell::new(None) };
}

/// The IPC stream of `batch` when it is exactly the last guest output on this thread: the next
/// step of a chain then gets the bytes the previous guest wrote (already decoded and validated
/// by [`WasmHandler::accept`]) instead of an encoding of its own, which saves a copy of the batch
/// per step. Identity is by array pointers, so any other batch is encoded as usual.
fn forwarded(batch: &RecordBatch) -> Option<Buffer> {
    LAST_OUTPUT.with(|last| {
        let mut last = last.borrow_mut();
        let (prev, _) = last.as_ref()?;
        let same = prev.num_rows() == batch.num_rows()
            && prev.num_columns() == batch.num_columns()
            && (Arc::ptr_eq(prev.schema_ref(), batch.schema_ref()) || prev.schema_ref() == batch.schema_ref())
            && prev.columns().iter().zip(batch.columns()).all(|(a, b)| Arc::ptr_eq(a, b));
        if same { last.take().map(|(_, stream)| stream) } else { None }
    })
}

pub(crate) struct WasmHandler {
    store: Store<HostState>,
    bindings: HandlerPlugin,
    resource: Option<ResourceAny>,
    limits: Limits,
    poisoned: bool,
    /// The last input schema seen and the output schema the guest declared for it.
    declared: Option<(SchemaRef, SchemaRef)>,
}

fn from_wit(e: WitError) -> PluginError {
    match e {
        WitError::Config(c) => PluginError::Config { message: c.message, key: c.key },
        WitError::Data(d) => PluginError::Data { message: d.message, row: d.row, column: d.column },
        WitError::Internal(m) => PluginError::Internal(m),
    }
}

fn new_store(plugin: &WasmPlugin, limits: &Limits) -> Result<(Store<HostState>, HandlerPlugin), PluginError> {
    let state = HostState::new(&plugin.info.name, limits.memory_bytes, plugin.counters.clone());
    let mut store = Store::new(&plugin.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(limits));
    let bindings = plugin.pre.instantiate(&mut store).map_err(|e| classify(&store, limits, e))?;
    Ok((store, bindings))
}

fn deadline_ticks(limits: &Limits) -> u64 {
    (limits.timeout.as_millis() as u64).div_ceil(TICK.as_millis() as u64).max(1) + 1
}

/// Turn a wasmtime error (a trap, a limit) into a typed plugin error.
fn classify(store: &Store<HostState>, limits: &Limits, err: wasmtime::Error) -> PluginError {
    let st = store.data();
    if st.limiter.exceeded {
        return PluginError::MemoryLimit { limit: limits.memory_bytes };
    }
    if let Some(msg) = &st.panic {
        return PluginError::Panic(msg.clone());
    }
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return PluginError::Timeout(limits.timeout);
    }
    PluginError::Trap(format!("{err:#}"))
}

impl WasmHandler {
    /// Instantiate once to read the plugin's static info.
    pub(crate) fn read_info(plugin: &WasmPlugin, limits: &Limits) -> Result<PluginInfo, PluginError> {
        let (mut store, bindings) = new_store(plugin, limits)?;
        let info = bindings.sluice_plugin_handler().call_info(&mut store).map_err(|e| classify(&store, limits, e))?;
        Ok(PluginInfo {
            name: info.name,
            version: info.version,
            summary: info.summary,
            config_doc: info.config_doc,
            contract: String::new(),
            component_hash: String::new(),
            sdk: String::new(),
        })
    }

    pub(crate) fn create(
        plugin: &WasmPlugin,
        config_json: &str,
        tables: &[std::sync::Arc<LookupTable>],
        limits: &Limits,
    ) -> Result<Self, PluginError> {
        let tables = tables
            .iter()
            .map(|t| {
                let batches: Vec<&RecordBatch> = t.batches.iter().collect();
                Ok((t.name.clone(), ipc::encode(&t.schema, &batches)?))
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        let tables: Vec<(&str, &[u8])> = tables.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        let (mut store, bindings) = new_store(plugin, limits)?;
        let created = bindings
            .sluice_plugin_handler()
            .instance()
            .call_create(&mut store, config_json, &tables)
            .map_err(|e| classify(&store, limits, e))?;
        let resource = created.map_err(from_wit)?;
        Ok(WasmHandler { store, bindings, resource: Some(resource), limits: *limits, poisoned: false, declared: None })
    }

    /// Call into the guest with a fresh deadline; traps poison the instance.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>, GuestInstance<'_>, ResourceAny) -> wasmtime::Result<Result<R, WitError>>,
    ) -> Result<R, PluginError> {
        if self.poisoned {
            return Err(PluginError::Poisoned);
        }
        let resource = self.resource.expect("a live instance has its resource");
        self.store.set_epoch_deadline(deadline_ticks(&self.limits));
        let guest = self.bindings.sluice_plugin_handler().instance();
        match f(&mut self.store, guest, resource) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(from_wit(e)),
            Err(trap) => {
                self.poisoned = true;
                Err(classify(&self.store, &self.limits, trap))
            }
        }
    }

    /// Check a guest's IPC output: size cap, decodes, matches the declared schema. A single
    /// output batch is remembered with its stream for [`forwarded`].
    fn accept(&mut self, bytes: Vec<u8>, expected: &Schema) -> Result<Vec<RecordBatch>, PluginError> {
        let res = ipc::accept(bytes, expected, self.limits.output_bytes).map(|(batches, stream)| {
            if let [batch] = batches.as_slice() {
                LAST_OUTPUT.with(|last| *last.borrow_mut() = Some((batch.clone(), stream)));
            }
            batches
        });
        if res.is_err() {
            self.poisoned = true;
        }
        res
    }

    fn declared_for(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        if let Some((i, o)) = &self.declared
            && (Arc::ptr_eq(i, input) || ipc::same_shape(i, input))
        {
            return Ok(o.clone());
        }
        let out = self.output_schema(input)?;
        self.declared = Some((input.clone(), out.clone()));
        Ok(out)
    }
}

impl Handler for WasmHandler {
    fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        let bytes = ipc::encode(input, &[])?;
        let out = self.call(|store, g, r| g.call_output_schema(store, r, &bytes))?;
        ipc::declared_schema(out).inspect_err(|_| self.poisoned = true)
    }

    fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
        let spec = self.call(|store, g, r| g.call_state(store, r).map(Ok))?;
        Ok(spec.map(|s| StateSpec {
            keys: s.keys,
            order_by: s.order_by,
            lookback_rows: s.lookback_rows,
            lookback_span: s.lookback_span,
            lookback_gap: s.lookback_gap,
            lookahead: s.lookahead,
        }))
    }

    fn projection(&mut self) -> Result<Option<Vec<String>>, PluginError> {
        self.call(|store, g, r| g.call_projection(store, r).map(Ok))
    }

    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
        let schema = batch.schema();
        let expected = self.declared_for(&schema)?;
        let input = match forwarded(batch) {
            Some(stream) => stream,
            None => Buffer::from(ipc::encode(&schema, &[batch])?),
        };
        let out = self.call(|store, g, r| g.call_process(store, r, input.as_slice()))?;
        self.accept(out, &expected)
    }

    fn seed(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        let schema = batch.schema();
        self.declared_for(&schema)?;
        let input = ipc::encode(&schema, &[batch])?;
        self.call(|store, g, r| g.call_seed(store, r, input.as_slice()))
    }

    fn continuing(&mut self, keys: &RecordBatch) -> Result<(), PluginError> {
        let input = ipc::encode(&keys.schema(), &[keys])?;
        self.call(|store, g, r| g.call_continuing(store, r, input.as_slice()))
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError> {
        let Some((_, expected)) = self.declared.clone() else {
            // Never saw data: nothing can be held.
            return Ok(Vec::new());
        };
        let out = self.call(|store, g, r| g.call_finish(store, r))?;
        // The unit ends: the next one sees the sandbox's clocks and generators from the start.
        self.store.data_mut().reset_unit();
        self.accept(out, &expected)
    }
}

impl Drop for WasmHandler {
    fn drop(&mut self) {
        if let Some(r) = self.resource.take()
            && !self.poisoned
        {
            self.store.set_epoch_deadline(deadline_ticks(&self.limits));
            let _ = r.resource_drop(&mut self.store);
        }
    }
}

impl sluice_core::plugin::Plugin for WasmPlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn instantiate_with_tables(
        &self,
        config_json: &str,
        tables: &[Arc<LookupTable>],
        limits: &Limits,
    ) -> Result<Box<dyn Handler>, PluginError> {
        // A handler that declares the columns it reads is sent only those, and its patches are
        // merged back by the chain.
        sluice_core::projection::wrap(Box::new(WasmHandler::create(self, config_json, tables, limits)?))
    }
}
