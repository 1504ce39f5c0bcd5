//! The plugin traits: a runtime loads plugins, a plugin makes handler instances.
//!
//! `sluice-wasm` implements these over wasmtime; tests may implement them natively.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::Serialize;

use crate::error::PluginError;
use crate::spec::{Limits, PluginRef};

/// Static facts about a plugin.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub summary: String,
    pub config_doc: String,
    /// The contract the component was built against, e.g. `sluice:plugin@0.3.0`.
    pub contract: String,
    /// `sha256:<hex>` of the component's bytes (empty for plugins that are not components):
    /// what lineage records, so that a changed plugin is told from the one that wrote a file.
    #[serde(default)]
    pub component_hash: String,
    /// The SDK the component was built with (its `sluice:sdk` section, e.g. `sluice-plugin
    /// 0.5.0`; empty when not recorded). Not part of lineage: the component hash covers it.
    #[serde(skip)]
    pub sdk: String,
}

pub use sluice_contract::{REJECT_COLUMN, without_reject_column};

/// What the step after `handler` (or the sink) sees for `input`: the handler's output schema
/// without [`REJECT_COLUMN`]. `run` and `validate` both flow schemas through this.
pub fn next_schema(handler: &mut dyn Handler, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
    Ok(without_reject_column(&handler.output_schema(input)?))
}

/// Keyed state a handler keeps across batches and files.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct StateSpec {
    pub keys: Vec<String>,
    pub order_by: String,
    /// The last rows per key the handler needs to resume exactly.
    pub lookback_rows: u64,
    /// History per key as a span of `order_by`, in that column's own units: the rows within
    /// this span before the first row a fresh instance is given. Kept in addition to the last
    /// `lookback_rows` rows.
    pub lookback_span: Option<i64>,
    /// History per key as the open session: the rows after the last gap wider than this between
    /// consecutive values of `order_by`, in its units. Kept in addition to the others.
    pub lookback_gap: Option<i64>,
    /// A unit's output depends on where later units continue its keys (groups across files):
    /// the runner calls [`Handler::continuing`] before [`Handler::finish`], and re-runs a
    /// committed unit when a unit that continues its keys within `lookback_span` is committed
    /// after it.
    pub lookahead: bool,
}

impl StateSpec {
    /// The span, when one is set and positive.
    pub fn span(&self) -> Option<i64> {
        self.lookback_span.filter(|&s| s > 0)
    }

    /// The session gap, when one is set and positive.
    pub fn gap(&self) -> Option<i64> {
        self.lookback_gap.filter(|&g| g > 0)
    }

    /// Whether the handler needs any history.
    pub fn needs_history(&self) -> bool {
        self.lookback_rows > 0 || self.span().is_some() || self.gap().is_some()
    }
}

/// A lookup table a step passes to its handler's constructor (the step's `tables:`), read by
/// the host when the job is built.
#[derive(Debug, Clone)]
pub struct LookupTable {
    /// The name under the step's `tables:`.
    pub name: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Loads plugins. Implementations cache compiled code; loading is cheap after the first time.
pub trait PluginRuntime: Send + Sync {
    fn load(&self, plugin: &PluginRef) -> Result<Arc<dyn Plugin>, PluginError>;
    /// Names of the standard plugins available by name.
    fn builtin_names(&self) -> Vec<String>;
}

/// A loaded plugin: makes configured handler instances.
pub trait Plugin: Send + Sync {
    fn info(&self) -> &PluginInfo;
    /// Construct a handler from its step's config (JSON text), with the given limits.
    fn instantiate(&self, config_json: &str, limits: &Limits) -> Result<Box<dyn Handler>, PluginError> {
        self.instantiate_with_tables(config_json, &[], limits)
    }
    /// Construct a handler from its step's config and lookup tables, with the given limits.
    fn instantiate_with_tables(
        &self,
        config_json: &str,
        tables: &[Arc<LookupTable>],
        limits: &Limits,
    ) -> Result<Box<dyn Handler>, PluginError>;
}

/// A plugin bound to a step's lookup tables: every instance it makes is given them. The job
/// wraps the plugin of each step that lists `tables:`, so the runner needs no notion of tables.
pub struct WithTables {
    pub plugin: Arc<dyn Plugin>,
    pub tables: Vec<Arc<LookupTable>>,
}

impl WithTables {
    /// `plugin` itself when there are no tables, else the plugin bound to them.
    pub fn bind(plugin: Arc<dyn Plugin>, tables: Vec<Arc<LookupTable>>) -> Arc<dyn Plugin> {
        if tables.is_empty() { plugin } else { Arc::new(WithTables { plugin, tables }) }
    }
}

impl Plugin for WithTables {
    fn info(&self) -> &PluginInfo {
        self.plugin.info()
    }

    fn instantiate_with_tables(
        &self,
        config_json: &str,
        tables: &[Arc<LookupTable>],
        limits: &Limits,
    ) -> Result<Box<dyn Handler>, PluginError> {
        let mut all = self.tables.clone();
        all.extend(tables.iter().cloned());
        self.plugin.instantiate_with_tables(config_json, &all, limits)
    }
}

/// One configured handler instance. Not shared between threads; one per step per worker.
pub trait Handler: Send {
    /// The schema this handler produces for `input`.
    fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError>;
    /// Keyed state the handler declares, if any.
    fn state(&mut self) -> Result<Option<StateSpec>, PluginError>;
    /// The input columns the handler reads, when it works on patches (see
    /// [`projection`](crate::projection)); `None` when it takes whole batches.
    fn projection(&mut self) -> Result<Option<Vec<String>>, PluginError> {
        Ok(None)
    }
    /// Transform one batch. Output batches have the declared output schema.
    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError>;
    /// History rows that rebuild state (from committed units, before a unit's own rows of a
    /// key): the handler outputs nothing for them, now or later. The default processes them
    /// and drops the output.
    fn seed(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        self.process(batch).map(drop)
    }
    /// Where the keys of the unit in flight continue (for a [`StateSpec::lookahead`] handler):
    /// key columns and the ordering column holding the first order value of the later unit.
    fn continuing(&mut self, keys: &RecordBatch) -> Result<(), PluginError> {
        let _ = keys;
        Ok(())
    }
    /// End of input: batches still held.
    fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError>;
}
