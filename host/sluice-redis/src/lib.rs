//! Sluice's Redis connector (`kind: redis` sinks): features per key, as a hash, a sorted set or
//! a plain value, with an optional TTL.
//!
//! - `config`: the sink's keys; the password comes from a declared environment variable and is
//!   never shown; `state:` is a sink section of its own (a lake or Postgres), where the run's
//!   state lives.
//! - `sink`: each unit's writes and its marker go in one `MULTI`/`EXEC`, pipelined; then the
//!   state sink commits the unit. A replay after a crash finds the marker and writes nothing.

mod config;
mod sink;

use std::sync::Arc;

use arrow_schema::SchemaRef;
use sluice_core::connector::{BuiltSink, Connectors, Finding, SinkConnector};
use sluice_core::error::SinkError;
use sluice_core::spec::{PipelineSpec, SinkSpec};

pub use config::{Layout, RawRedisSink, RedisKind, RedisSinkSpec, ScoreUpdate};
pub use sink::RedisSink;

/// The runtime half of `kind: redis`. The state sink is built through `state`, the registry
/// of the other sink kinds.
pub struct RedisSinkConnector {
    state: Connectors,
}

impl RedisSinkConnector {
    /// `state`: the sink kinds `state:` may name.
    pub fn new(state: Connectors) -> Self {
        RedisSinkConnector { state }
    }
}

fn spec_of(spec: &SinkSpec) -> Result<&RedisSinkSpec, SinkError> {
    spec.config_as::<RedisSinkSpec>().ok_or_else(|| SinkError::Config("the sink is not of kind `redis`".into()))
}

/// The pipeline as its state sink sees it: the same, with `state:` as its sink.
fn state_pipeline(pipeline: &PipelineSpec, spec: &RedisSinkSpec) -> PipelineSpec {
    let mut p = pipeline.clone();
    p.sink = SinkSpec { config: spec.state.clone(), on_error: pipeline.sink.on_error };
    p
}

impl SinkConnector for RedisSinkConnector {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn check_output(&self, spec: &SinkSpec, output: &SchemaRef) -> Vec<Finding> {
        let Ok(r) = spec_of(spec) else { return Vec::new() };
        let needed = r.columns();
        let names: Vec<&str> = output.fields().iter().map(|f| f.name().as_str()).collect();
        let mut out = Vec::new();
        for (what, c) in needed {
            if output.field_with_name(c).is_err() {
                out.push(Finding {
                    path: vec!["sink".into(), what.into()],
                    message: format!("`{what}` names `{c}`, which is not a column of the pipeline's output"),
                    hint: Some(match sluice_core::hint::closest(c, &names) {
                        Some(m) => format!("did you mean `{m}`?"),
                        None => format!("columns: {}", names.join(", ")),
                    }),
                });
            }
        }
        if let Layout::Zset { score, .. } = &r.layout
            && let Ok(f) = output.field_with_name(score)
            && !f.data_type().is_numeric()
        {
            out.push(Finding {
                path: vec!["sink".into(), "score".into()],
                message: format!("the score column `{score}` is {}, not a number", f.data_type()),
                hint: None,
            });
        }
        out
    }

    fn probe(&self, spec: &SinkSpec) -> Vec<Finding> {
        let Ok(r) = spec_of(spec) else { return Vec::new() };
        let mut out = Vec::new();
        if let Err(e) = sink::ping(r) {
            out.push(Finding { path: vec!["sink".into(), "url".into()], message: e.to_string(), hint: None });
        }
        match self.state.sink(r.state.kind()) {
            Ok(c) => out.extend(c.probe(&SinkSpec { config: r.state.clone(), on_error: spec.on_error })),
            Err(message) => out.push(Finding { path: vec!["sink".into(), "state".into()], message, hint: None }),
        }
        out
    }

    fn target(&self, spec: &SinkSpec) -> String {
        spec_of(spec).map(|r| format!("redis://{}/{}", r.endpoint(), r.prefix)).unwrap_or_default()
    }

    fn build(&self, pipeline: &PipelineSpec) -> Result<BuiltSink, SinkError> {
        let spec = spec_of(&pipeline.sink)?;
        let state = self.state.build_sink(&state_pipeline(pipeline, spec))?;
        let publication = state.publication.clone();
        let sink = RedisSink::open(spec, state)?;
        Ok(BuiltSink { sink: Arc::new(sink), publication })
    }
}
