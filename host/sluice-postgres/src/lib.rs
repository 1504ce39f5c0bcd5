//! Sluice's Postgres connector (`kind: postgres`).
//!
//! - `config`: the sink's keys, resolved with located errors; the password comes from an
//!   environment variable the pipeline declares, and is never shown or serialized.
//! - `sink`: each unit loads through binary `COPY FROM STDIN` in one transaction with its
//!   record, keyed state, mark and rejects in the state tables (`state`), so a crash leaves a
//!   unit whole or absent, and a re-run loads what is missing exactly once.
//! - `conn`: tokio-postgres driven by a private runtime, called synchronously.
//! - `types`: Arrow ↔ Postgres column types.
//! - `source` (with `source_config`): tables and queries read through binary `COPY ... TO
//!   STDOUT` (`decode`) in one exported snapshot per discovery; incremental by a cursor whose
//!   mark commits with the data, late rows found by their row versions.

mod config;
mod conn;
mod decode;
mod sink;
mod source;
mod source_config;
mod state;
mod types;

use std::sync::Arc;

use arrow_schema::SchemaRef;
use sluice_core::connector::{BuiltSink, Finding, SinkConnector};
use sluice_core::error::SinkError;
use sluice_core::spec::{PipelineSpec, SinkSpec, WriteMode};

pub use config::{PgSinkSpec, PostgresKind, RawPostgresSink};
pub use decode::Unbounded;
pub use sink::{PgSink, UNIT_COLUMN};
pub use source::{PgSource, PostgresSourceConnector};
pub use source_config::{PgSourceSpec, PostgresSourceKind, RawPostgresSource};

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

    /// Log in, writing nothing (whether the table's columns fit the output is checked when a
    /// unit writes).
    fn probe(&self, spec: &SinkSpec) -> Vec<Finding> {
        let Ok(pg) = spec_of(spec) else { return Vec::new() };
        let result = conn::Pg::new(pg.connect_config(), pg.password.clone()).and_then(|c| {
            let client = c.connect()?;
            conn::wait(client.simple_query("SELECT 1")).map_err(|e| c.remote(&e))?;
            Ok(())
        });
        match result {
            Ok(()) => Vec::new(),
            Err(e) => vec![Finding { path: vec!["sink".into(), "url".into()], message: e.to_string(), hint: None }],
        }
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

/// A table's row counts and sums per group, for `sluice lake compare --postgres`: `url` without
/// a password, the password from `password` (the value of the variable the user named).
pub fn group_totals(
    url: &str,
    password: Option<sluice_core::spec::Secret>,
    table: &str,
    by: &[String],
    sums: &[String],
) -> Result<sluice_core::catalog::GroupTotals, SinkError> {
    use std::str::FromStr;
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|e| SinkError::Config(format!("not a Postgres connection URL: {e}")))?;
    if config.get_password().is_some() {
        return Err(SinkError::Config("the URL holds a password: give it through --password-env".into()));
    }
    // The sessions' fixed settings, so that group keys print as the lake's do.
    let config = config::connect_config(url, password.as_ref());
    let pg = conn::Pg::new(config, password)?;
    let client = pg.connect()?;
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    let rel = conn::qualified(schema, name);
    let mut cols: Vec<String> = by.iter().map(|c| format!("coalesce({}::text, 'NULL')", conn::ident(c))).collect();
    cols.push("count(*)::bigint".into());
    cols.extend(sums.iter().map(|c| format!("sum({})::double precision", conn::ident(c))));
    let group = if by.is_empty() {
        String::new()
    } else {
        format!(" GROUP BY {}", (1..=by.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
    };
    let rows = conn::wait(client.query(&format!("SELECT {} FROM {rel}{group}", cols.join(", ")), &[]))
        .map_err(|e| pg.remote(&e))?;
    let mut out = sluice_core::catalog::GroupTotals::default();
    for r in rows {
        let key: Vec<String> = (0..by.len()).map(|i| r.get::<_, String>(i)).collect();
        let n: i64 = r.get(by.len());
        let s: Vec<Option<f64>> = (0..sums.len()).map(|i| r.get(by.len() + 1 + i)).collect();
        out.groups.insert(key, (n, s));
    }
    Ok(out)
}
