//! Guest SDK for Sluice handler plugins.
//!
//! A plugin is a WebAssembly component that turns Arrow record batches into
//! Arrow record batches. Implement [`Handler`] for a type and export it with
//! [`export_handler!`]; the SDK does the rest: config parsing (with dotted key
//! paths in errors), Arrow IPC in both directions, the WIT bindings, and a
//! panic hook that reports the panic message to the host before the trap.
//!
//! ```
//! use sluice_plugin::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config { column: String }
//!
//! pub struct Upper { column: String }
//!
//! impl Handler for Upper {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, Error> { Ok(Upper { column: config.column }) }
//!     fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> { Ok(input.clone()) }
//!     fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> { Ok(vec![batch]) }
//! }
//!
//! sluice_plugin::export_handler!(Upper);
//! ```

pub use arrow_array;
pub use arrow_buffer;
pub use arrow_cast;
pub use arrow_ipc;
pub use arrow_schema;
pub use arrow_select;

mod config;
mod error;
pub mod ipc;
pub mod patch;
pub mod reject;
pub mod tables;

pub use config::parse_config;
pub use reject::{REJECT_COLUMN, Rejects};
pub use tables::{Table, Tables};

/// Compiles the README's example plugin as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExample;
pub use error::Error;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

pub mod prelude {
    //! The items most plugins need: `use sluice_plugin::prelude::*;`.
    pub use crate::arrow_array::{
        self, Array, ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, LargeStringArray,
        RecordBatch, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
        cast::AsArray,
    };
    pub use crate::arrow_schema::{self, DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
    pub use crate::patch::ROW_COLUMN;
    pub use crate::{Error, Handler, Level, REJECT_COLUMN, Rejects, StateSpec, Table, Tables};
}

/// Keyed state a handler declares so that the host routes all rows of a key
/// through one instance, in order, and can seed it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateSpec {
    /// Key columns: state is independent per distinct key (empty: one global state).
    pub keys: Vec<String>,
    /// The column that orders rows within a key.
    pub order_by: String,
    /// Rows of history per key the handler needs to resume exactly.
    pub lookback_rows: u64,
    /// History per key as a span of `order_by`, in that column's own units (ms for an Int64
    /// epoch-ms column, the unit of a timestamp column): the rows within this span before the
    /// first row the handler is given. Both this and `lookback_rows` are kept when both are set.
    pub lookback_span: Option<i64>,
    /// History per key as the open session: the rows after the last gap wider than this between
    /// consecutive values of `order_by` (in its units), however far back. For state a gap
    /// resets, such as sessions. Kept in addition to the others (the host caps it per key).
    pub lookback_gap: Option<i64>,
    /// A unit's output depends on where later units continue its keys: the host tells the
    /// handler through [`Handler::continuing`] before [`Handler::finish`], and re-runs a
    /// committed unit when a later one continues its keys (within `lookback_span`).
    pub lookahead: bool,
}

/// A batch transformer. One value is created per step per worker from the
/// step's config; it sees that worker's batches in order.
pub trait Handler: Sized + 'static {
    /// The step's config, parsed from JSON. Use `#[serde(deny_unknown_fields)]`
    /// so that typos are reported. A step without config is JSON `null`,
    /// accepted by `Option` types and by structs whose fields all default.
    type Config: serde::de::DeserializeOwned;

    /// Documentation of the config, in Markdown.
    const CONFIG_DOC: &'static str = "";

    /// Builds the handler from its config.
    fn new(config: Self::Config) -> Result<Self, Error>;

    /// Builds the handler from its config and the step's lookup tables (`tables:` in the
    /// pipeline). What the host calls; the default refuses tables and calls [`Handler::new`],
    /// so only plugins that use tables override it.
    fn new_with_tables(config: Self::Config, tables: Tables) -> Result<Self, Error> {
        if !tables.is_empty() {
            return Err(Error::config(format!(
                "this plugin takes no lookup tables, but the step gives it {} (`tables:`)",
                tables.names().join(", ")
            )));
        }
        Self::new(config)
    }

    /// The schema output for the given input schema. Called before any batch
    /// with that schema; every batch returned must have exactly this schema.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error>;

    /// Transforms one batch. May return zero, one or several batches.
    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error>;

    /// End of input: return any batches still held.
    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        Ok(vec![])
    }

    /// History that rebuilds state (rows of committed units, before the unit's own rows of a
    /// key this instance has not seen). Update the state as if processing them, and output
    /// nothing for them, now or later. The default processes them and drops the output, which
    /// is right for a handler whose output rows are its input rows.
    fn seed(&mut self, batch: RecordBatch) -> Result<(), Error> {
        self.process(batch).map(drop)
    }

    /// Where the keys of the unit in flight continue (with [`StateSpec::lookahead`]): the key
    /// columns and the ordering column holding the first order value of the later unit that
    /// continues each key. Called once before [`Handler::finish`]; keys not listed end here.
    fn continuing(&mut self, keys: RecordBatch) -> Result<(), Error> {
        let _ = keys;
        Ok(())
    }

    /// Declared keyed state, or `None` for stateless handlers.
    fn state(&self) -> Option<StateSpec> {
        None
    }

    /// The input columns this handler reads, or `None` (the default) to get whole batches.
    ///
    /// When `Some`, the handler works on patches (see [`patch`]): `output_schema` and `process`
    /// see only these columns (those the input has), and each batch `process` returns holds
    /// only the columns it changes or adds, plus [`ROW_COLUMN`](patch::ROW_COLUMN) when it
    /// selects or reorders rows. The host re-attaches every other column, so a step that reads
    /// 2 of 15 columns moves 2 across the boundary instead of 15 twice. Such a handler may not
    /// hold rows across calls (`finish` returns nothing). Asked once per instance.
    fn projection(&self) -> Option<Vec<String>> {
        None
    }
}

/// Log levels of [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Emits a structured log record through the host (attributed by the host to
/// the pipeline, step and file). Natively (in unit tests) it prints to stderr.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        use __private::sluice::plugin::host::{self, Level as L};
        let level = match level {
            Level::Trace => L::Trace,
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        host::log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message} {fields:?}");
}

/// Adds `delta` to the host counter `name`. Natively (in unit tests) a no-op.
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    __private::sluice::plugin::host::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, delta);
}

/// Exports a [`Handler`] type as the plugin's implementation of the
/// `sluice:plugin/handler` interface. Use once per plugin crate, at its root.
/// The plugin's name, version and summary are the crate's `name`, `version`
/// and `description` from its Cargo.toml.
#[macro_export]
macro_rules! export_handler {
    ($ty:ty) => {
        impl $crate::__private::PluginMeta for $ty {
            const NAME: &'static str = env!("CARGO_PKG_NAME");
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            const SUMMARY: &'static str = env!("CARGO_PKG_DESCRIPTION");
        }
        // The SDK this plugin is built with, for `sluice plugin inspect` and the host's
        // contract-version errors: a custom section named `sluice:sdk` (the name
        // `sluice_toolchain::component::SDK_SECTION` reads; a link_section takes a literal only).
        #[doc(hidden)]
        #[cfg(target_arch = "wasm32")]
        #[used]
        #[unsafe(link_section = "sluice:sdk")]
        static __SLUICE_SDK: [u8; $crate::__private::SDK_ID.len()] = $crate::__private::sdk_id();
        #[doc(hidden)]
        #[cfg(target_arch = "wasm32")]
        type __SluiceExport = $crate::__private::Adapter<$ty>;
        // Exports only exist on wasm: their names (`sluice:plugin/handler@0.5.0#info`)
        // are not valid in a native linker's version script.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::export!(__SluiceExport with_types_in $crate::__private);
    };
}

#[doc(hidden)]
pub mod __private {
    //! Implementation details of [`export_handler!`](crate::export_handler): the
    //! generated WIT bindings and the adapter from [`Handler`] to them. Not a
    //! stable API; the hostile test plugins use the raw bindings directly.

    use std::cell::RefCell;
    use std::marker::PhantomData;
    use std::sync::Arc;

    use super::*;

    wit_bindgen::generate!({
        path: "wit",
        world: "handler-plugin",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::__private",
    });

    pub use exports::sluice::plugin::handler::{Guest, GuestInstance, Instance};
    pub use sluice::plugin::types::{
        ConfigError as WitConfigError, DataError as WitDataError, Error as WitError, PluginInfo as WitPluginInfo,
        StateSpec as WitStateSpec,
    };

    /// This SDK's name and version, as recorded in each plugin's `sluice:sdk` section.
    pub const SDK_ID: &str = concat!("sluice-plugin ", env!("CARGO_PKG_VERSION"));

    /// [`SDK_ID`] as an array, for `export_handler!`'s section.
    pub const fn sdk_id() -> [u8; SDK_ID.len()] {
        let mut out = [0u8; SDK_ID.len()];
        let bytes = SDK_ID.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            out[i] = bytes[i];
            i += 1;
        }
        out
    }

    /// Static facts about the plugin crate, implemented by `export_handler!`.
    pub trait PluginMeta {
        const NAME: &'static str;
        const VERSION: &'static str;
        const SUMMARY: &'static str;
    }

    impl From<Error> for WitError {
        fn from(e: Error) -> Self {
            match e {
                Error::Config { message, key } => WitError::Config(WitConfigError { message, key }),
                Error::Data { message, row, column } => WitError::Data(WitDataError { message, row, column }),
                Error::Internal(message) => WitError::Internal(message),
            }
        }
    }

    /// Installs (once) a panic hook that reports the panic to the host log with
    /// level error, message `panic: <payload> at <location>` and field
    /// `panic=true`, before the abort turns into a trap.
    pub fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            #[cfg(target_arch = "wasm32")]
            std::panic::set_hook(Box::new(|info| {
                let payload = info.payload();
                let msg = if let Some(s) = payload.downcast_ref::<&str>() {
                    s
                } else if let Some(s) = payload.downcast_ref::<String>() {
                    s.as_str()
                } else {
                    "Box<dyn Any>"
                };
                let message = match info.location() {
                    Some(l) => format!("panic: {msg} at {}:{}:{}", l.file(), l.line(), l.column()),
                    None => format!("panic: {msg}"),
                };
                log(Level::Error, &message, &[("panic", "true")]);
            }));
        });
    }

    /// The `Guest` implementation for a [`Handler`] type.
    pub struct Adapter<H>(PhantomData<H>);

    impl<H: Handler + PluginMeta> Guest for Adapter<H> {
        type Instance = InstanceAdapter<H>;

        fn info() -> WitPluginInfo {
            install_panic_hook();
            WitPluginInfo {
                name: H::NAME.to_string(),
                version: H::VERSION.to_string(),
                summary: H::SUMMARY.to_string(),
                config_doc: H::CONFIG_DOC.to_string(),
            }
        }
    }

    /// One handler instance plus the SDK's bookkeeping.
    pub struct InstanceAdapter<H> {
        handler: RefCell<H>,
        /// The last (input, output) schema pair, to avoid recomputing the output schema.
        schemas: RefCell<Option<(SchemaRef, SchemaRef)>>,
    }

    impl<H: Handler> InstanceAdapter<H> {
        /// Wraps a handler (also usable natively, to test a handler through the SDK).
        pub fn new(handler: H) -> Self {
            InstanceAdapter { handler: RefCell::new(handler), schemas: RefCell::new(None) }
        }

        /// The output schema for `input`, cached for the last input schema.
        fn output_schema_for(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
            if let Some((i, o)) = &*self.schemas.borrow()
                && (Arc::ptr_eq(i, input) || i == input)
            {
                return Ok(o.clone());
            }
            let out = self.handler.borrow().output_schema(input)?;
            *self.schemas.borrow_mut() = Some((input.clone(), out.clone()));
            Ok(out)
        }

        /// `output-schema`, on IPC bytes.
        pub fn output_schema_ipc(&self, input: Vec<u8>) -> Result<Vec<u8>, Error> {
            let input = ipc::read_schema(input)?;
            let out = self.output_schema_for(&input)?;
            ipc::write_schema(&out)
        }

        /// `process`, on IPC bytes.
        pub fn process_ipc(&self, input: Vec<u8>) -> Result<Vec<u8>, Error> {
            let (schema, batches) = ipc::read_stream(input)?;
            let out_schema = self.output_schema_for(&schema)?;
            let mut out = Vec::new();
            {
                let mut handler = self.handler.borrow_mut();
                for batch in batches {
                    out.extend(handler.process(batch)?);
                }
            }
            check_schemas(&out_schema, &out)?;
            ipc::write_stream(&out_schema, &out)
        }

        /// `finish`, on IPC bytes. The stream's schema is the output schema of
        /// the last input schema seen; if none was seen, that of the first
        /// returned batch, or an empty schema.
        pub fn finish_ipc(&self) -> Result<Vec<u8>, Error> {
            let out = self.handler.borrow_mut().finish()?;
            let schema = match (&*self.schemas.borrow(), out.first()) {
                (Some((_, o)), _) => o.clone(),
                (None, Some(b)) => b.schema(),
                (None, None) => Arc::new(arrow_schema::Schema::empty()),
            };
            check_schemas(&schema, &out)?;
            ipc::write_stream(&schema, &out)
        }

        /// `seed`, on IPC bytes.
        pub fn seed_ipc(&self, input: Vec<u8>) -> Result<(), Error> {
            let (schema, batches) = ipc::read_stream(input)?;
            // The handler has seen (or may check) this schema, as for `process`.
            self.output_schema_for(&schema)?;
            let mut handler = self.handler.borrow_mut();
            for batch in batches {
                handler.seed(batch)?;
            }
            Ok(())
        }

        /// `continuing`, on IPC bytes.
        pub fn continuing_ipc(&self, keys: Vec<u8>) -> Result<(), Error> {
            let (schema, batches) = ipc::read_stream(keys)?;
            let batch = match batches.len() {
                0 => RecordBatch::new_empty(schema),
                1 => batches.into_iter().next().expect("one"),
                _ => arrow_select::concat::concat_batches(&schema, &batches)
                    .map_err(|e| Error::internal(format!("continuing keys: {e}")))?,
            };
            self.handler.borrow_mut().continuing(batch)
        }

        /// `state`.
        pub fn state(&self) -> Option<StateSpec> {
            self.handler.borrow().state()
        }

        /// `projection`.
        pub fn projection(&self) -> Option<Vec<String>> {
            self.handler.borrow().projection()
        }
    }

    /// Every returned batch must carry the declared output schema.
    fn check_schemas(declared: &SchemaRef, batches: &[RecordBatch]) -> Result<(), Error> {
        for b in batches {
            let s = b.schema();
            if !Arc::ptr_eq(&s, declared) && s.fields() != declared.fields() {
                return Err(Error::internal(format!(
                    "handler returned a batch with schema {s} but declared output schema {declared}"
                )));
            }
        }
        Ok(())
    }

    impl<H: Handler> GuestInstance for InstanceAdapter<H> {
        fn create(config: String, tables: Vec<(String, Vec<u8>)>) -> Result<Instance, WitError> {
            install_panic_hook();
            let config = parse_config::<H::Config>(&config)?;
            let tables = Tables::from_ipc(tables)?;
            let handler = H::new_with_tables(config, tables)?;
            Ok(Instance::new(InstanceAdapter::new(handler)))
        }

        fn output_schema(&self, input: Vec<u8>) -> Result<Vec<u8>, WitError> {
            Ok(self.output_schema_ipc(input)?)
        }

        fn state(&self) -> Option<WitStateSpec> {
            InstanceAdapter::state(self).map(|s| WitStateSpec {
                keys: s.keys,
                order_by: s.order_by,
                lookback_rows: s.lookback_rows,
                lookback_span: s.lookback_span,
                lookback_gap: s.lookback_gap,
                lookahead: s.lookahead,
            })
        }

        fn projection(&self) -> Option<Vec<String>> {
            InstanceAdapter::projection(self)
        }

        fn process(&self, input: Vec<u8>) -> Result<Vec<u8>, WitError> {
            Ok(self.process_ipc(input)?)
        }

        fn seed(&self, input: Vec<u8>) -> Result<(), WitError> {
            Ok(self.seed_ipc(input)?)
        }

        fn continuing(&self, keys: Vec<u8>) -> Result<(), WitError> {
            Ok(self.continuing_ipc(keys)?)
        }

        fn finish(&self) -> Result<Vec<u8>, WitError> {
            Ok(self.finish_ipc()?)
        }
    }
}
