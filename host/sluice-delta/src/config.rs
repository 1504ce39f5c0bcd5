//! `kind: delta` sinks: their keys (a lake sink's, with `table` for `lake`) and validated settings.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sluice_config::{Section, SinkKind};
use sluice_core::connector::SinkConfig;
use sluice_core::spec::LakeSpec;

/// Where Sluice keeps its ledger, keyed state, rejects, catalog and data files inside the table
/// directory: an underscore directory, which Delta readers and vacuums (delta-rs, Spark) skip.
pub const STATE_DIR: &str = "_sluice";

/// A `kind: delta` sink, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct DeltaSpec {
    /// The table directory (holding `_delta_log`).
    pub table: PathBuf,
    /// The `txn` application id: `sluice:<pipeline>:<dataset>` unless set.
    pub app_id: Option<String>,
    /// The lake inside the table (`<table>/_sluice`) that writes the files and keeps the state:
    /// its keys are the lake sink's.
    pub lake: LakeSpec,
}

impl SinkConfig for DeltaSpec {
    fn kind(&self) -> &'static str {
        "delta"
    }
    fn definition(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The language half of `kind: delta`.
pub struct DeltaKind;

impl SinkKind for DeltaKind {
    fn name(&self) -> &'static str {
        "delta"
    }

    /// A lake sink's keys, with `table` (the Delta table's directory) for `lake`, `dataset`
    /// optional (the catalog's view name; default the directory's name), and `app_id`.
    fn schema(&self) -> Value {
        let mut schema = sluice_config::lake_sink_schema();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("lake");
            props.insert(
                "table".into(),
                serde_json::json!({"type": "string", "description": "The Delta table's directory, relative to the pipeline file. May use `${VAR}`. Created with the first commit."}),
            );
            props.insert(
                "app_id".into(),
                serde_json::json!({"type": ["string", "null"], "description": "The application id of the `txn` action each commit carries (default `sluice:<pipeline>:<dataset>`)."}),
            );
            if let Some(d) = props.get_mut("dataset").and_then(Value::as_object_mut) {
                d.insert(
                    "description".into(),
                    "The name of the catalog's view of the table (default: the table directory's name).".into(),
                );
            }
        }
        if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
            req.retain(|r| r != "lake" && r != "dataset");
            req.push("table".into());
        }
        schema
    }

    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SinkConfig>> {
        let Value::Object(mut keys) = keys else { return None };
        let table_raw = keys.remove("table").and_then(|v| v.as_str().map(str::to_string))?;
        let app_id = keys.remove("app_id").and_then(|v| v.as_str().map(str::to_string));
        let table = cx.path(&["table"], &table_raw);
        if !keys.contains_key("dataset") {
            let name: String = table
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .collect();
            let name = name.trim_start_matches('_').to_string();
            keys.insert("dataset".into(), Value::String(if name.is_empty() { "table".into() } else { name }));
        }
        keys.insert("lake".into(), Value::String(format!("{}/{STATE_DIR}", table_raw.trim_end_matches('/'))));
        let lake = cx.lake_keys(Value::Object(keys))?;
        Some(Arc::new(DeltaSpec { table, app_id, lake }))
    }
}
