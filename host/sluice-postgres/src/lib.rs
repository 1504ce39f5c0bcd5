//! Sluice's Postgres connector (`kind: postgres`).
//!
//! - `config`: the sink's keys, resolved with located errors; the password comes from an
//!   environment variable the pipeline declares, and is never shown or serialized.
//! - `sink`: each unit loads through binary `COPY FROM STDIN` in one transaction with its
//!   record, keyed state, mark and rejects in the state tables (`state`), so a crash leaves a
//!   unit whole or absent, and a re-run loads what is missing exactly once.
//! - `conn`: tokio-postgres driven by a private runtime, called synchronously.
//! - `types`: Arrow ↔ Postgres column types.

mod config;
mod conn;
mod sink;
mod state;
mod types;

use std::sync::Arc;

use arrow_schema::SchemaRef;
use sluice_core::connector::{BuiltSink, Finding, SinkConnector};
use sluice_core::error::SinkError;
use sluice_core::spec::{PipelineSpec, SinkSpec, WriteMode};

pub use config::{PgSinkSpec, PostgresKind, RawPostgresSink};
pub use sink::{PgSink, UNIT_COLUMN};

/// The runtime half of `kind: postgres` sinks.
pub struct PostgresSinkConnector;

fn spec_of(spec: &SinkSpec) -> Result<&PgSinkSpec, SinkError> {
    spec.config_as::<PgSinkSpec>().ok_or_else(|| SinkError::Config("the sink is not of kind `postgres`".into()))
}

impl SinkConnector for PostgresSinkConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// Without a connection: the mode's columns exist, and every column has a Postgres type.
    fn check_output(&self, spec: &SinkSpec, output: &SchemaRef) -> Vec<Finding> {
        let Ok(pg) = spec_of(spec) else { return Vec::new() };
        let mut out = Vec::new();
        let (what, needed) = match pg.mode {
            WriteMode::Upsert => ("key", &pg.key),
            WriteMode::ReplacePartition => ("partition_by", &pg.partition_by),
            WriteMode::Append => ("", &Vec::new()),
        };
        let names: Vec<&str> = output.fields().iter().map(|f| f.name().as_str()).collect();
        for k in needed {
            if output.field_with_name(k).is_err() {
                out.push(Finding {
                    path: vec!["sink".into(), what.into()],
                    message: format!("`{what}` names `{k}`, which is not a column of the pipeline's output"),
                    hint: Some(match sluice_core::hint::closest(k, &names) {
                        Some(c) => format!("did you mean `{c}`?"),
                        None => format!("columns: {}", names.join(", ")),
                    }),
                });
            }
        }
        for f in output.fields() {
            if f.name() == UNIT_COLUMN {
                continue;
            }
            if types::ddl_type(f.data_type()).is_none() {
                out.push(Finding {
                    path: vec!["sink".into()],
                    message: format!(
                        "column `{}` is {}, which has no Postgres column type Sluice writes",
                        f.name(),
                        f.data_type()
                    ),
                    hint: Some("cast or drop it in a step (e.g. `select`)".into()),
                });
            }
            if f.name().len() > 63 {
                out.push(Finding {
                    path: vec!["sink".into()],
                    message: format!("column `{}` is longer than Postgres's 63-byte names", f.name()),
                    hint: Some("rename it in a step".into()),
                });
            }
        }
        out
    }

    fn target(&self, spec: &SinkSpec) -> String {
        spec_of(spec).map(PgSinkSpec::target).unwrap_or_default()
    }

    fn build(&self, pipeline: &PipelineSpec) -> Result<BuiltSink, SinkError> {
        let spec = spec_of(&pipeline.sink)?;
        let sink = sink::Inner::open(spec, pipeline.definition_hash())?;
        Ok(BuiltSink { sink: Arc::new(sink), publication: None })
    }
}
