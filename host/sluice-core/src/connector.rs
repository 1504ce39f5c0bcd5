//! Kinds of source and sink: how a validated spec becomes a running [`Source`] or [`Sink`].
//!
//! A connector kind comes in two halves, registered by name:
//! - its language, in `sluice-config` (`SourceKind` / `SinkKind`): the JSON Schema of its keys
//!   and the resolver that turns them into a validated config ([`SourceConfig`] /
//!   [`SinkConfig`]) with located errors;
//! - its runtime, here ([`SourceConnector`] / [`SinkConnector`]): checks of the environment
//!   that have no side effects (`sluice validate`), and `build`.
//!
//! The runner, `watch` and `validate` see only [`Connectors`] and the traits, so a new kind is a
//! crate that implements both halves and a line that registers them.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::SchemaRef;

use crate::catalog::LakeSnapshot;
use crate::error::{SinkError, SourceError};
use crate::sink::Sink;
use crate::source::Source;
use crate::spec::{PipelineSpec, Settings, SinkSpec, SourceSpec};

pub use crate::spec::{SinkConfig, SourceConfig};

/// What a connector found wrong in the environment, at a path under the pipeline's root
/// (`["sources", "s", "path"]`), for `validate` to locate in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// The runtime half of a source kind.
pub trait SourceConnector: Send + Sync {
    /// The kind's name, as in [`SourceConfig::kind`].
    fn kind(&self) -> &'static str;
    /// Checks of the environment that have no side effects and open no connection (a
    /// directory exists). `validate` reports them; a run meets the same problems in `build`.
    fn check(&self, _spec: &SourceSpec) -> Vec<Finding> {
        Vec::new()
    }
    /// The source, ready to discover.
    fn build(&self, spec: &SourceSpec, settings: &Settings) -> Result<Arc<dyn Source>, SourceError>;
    /// For a built source without a schema known before reading data: what that leaves
    /// unchecked and how to declare it.
    fn unchecked_schema(&self, spec: &SourceSpec) -> String {
        format!(
            "the schema is unchecked: source `{}` declares no columns; they are known when the run reads it",
            spec.name
        )
    }
}

/// What readers of a sink's output are shown: the sink's committed data files, which a catalog
/// publishes as views. Optional per sink.
pub trait Publication: Send + Sync {
    /// The directory the catalog file lives in.
    fn catalog_dir(&self) -> PathBuf;
    /// Commits so far in this process: a cheap way to tell whether to publish again.
    fn commits(&self) -> u64;
    /// Everything committed so far.
    fn snapshot(&self) -> Result<LakeSnapshot, SinkError>;
}

/// A sink, built: the writer with its state store, and what it publishes, if anything.
pub struct BuiltSink {
    pub sink: Arc<dyn Sink>,
    pub publication: Option<Arc<dyn Publication>>,
}

/// The runtime half of a sink kind.
pub trait SinkConnector: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Checks of the pipeline's output schema against the sink's settings (partition columns
    /// exist), at paths under the pipeline's root.
    fn check_output(&self, _spec: &SinkSpec, _output: &SchemaRef) -> Vec<Finding> {
        Vec::new()
    }
    /// Connect to the sink's server, if it has one, without writing (`validate --connect`):
    /// what fails is a finding.
    fn probe(&self, _spec: &SinkSpec) -> Vec<Finding> {
        Vec::new()
    }
    /// What the sink writes to, as one name per target (a lake directory, a table): `watch`
    /// refuses two pipelines with one target, which would be two writers.
    fn target(&self, spec: &SinkSpec) -> String;
    /// Open the sink for `pipeline` (whose `sink` is of this kind).
    fn build(&self, pipeline: &PipelineSpec) -> Result<BuiltSink, SinkError>;
}

/// The registry of connector runtimes, by kind name.
#[derive(Default, Clone)]
pub struct Connectors {
    sources: Vec<Arc<dyn SourceConnector>>,
    sinks: Vec<Arc<dyn SinkConnector>>,
}

/// A kind no connector is registered for: the config resolved it, so the registries disagree.
fn unknown(what: &str, kind: &str, known: Vec<&str>) -> String {
    format!("no {what} connector of kind `{kind}` is registered (known: {})", known.join(", "))
}

impl Connectors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_source(mut self, c: impl SourceConnector + 'static) -> Self {
        self.sources.push(Arc::new(c));
        self
    }

    pub fn with_sink(mut self, c: impl SinkConnector + 'static) -> Self {
        self.sinks.push(Arc::new(c));
        self
    }

    pub fn source(&self, kind: &str) -> Result<&dyn SourceConnector, String> {
        self.sources
            .iter()
            .find(|c| c.kind() == kind)
            .map(|c| c.as_ref())
            .ok_or_else(|| unknown("source", kind, self.sources.iter().map(|c| c.kind()).collect()))
    }

    pub fn sink(&self, kind: &str) -> Result<&dyn SinkConnector, String> {
        self.sinks
            .iter()
            .find(|c| c.kind() == kind)
            .map(|c| c.as_ref())
            .ok_or_else(|| unknown("sink", kind, self.sinks.iter().map(|c| c.kind()).collect()))
    }

    /// Every source of `pipeline`, built.
    pub fn build_sources(&self, pipeline: &PipelineSpec) -> Result<Vec<Arc<dyn Source>>, SourceError> {
        pipeline
            .sources
            .iter()
            .map(|s| {
                let c = self
                    .source(s.kind())
                    .map_err(|message| SourceError::Config { source_name: s.name.clone(), message })?;
                c.build(s, &pipeline.settings)
            })
            .collect()
    }

    /// `pipeline`'s sink, built.
    pub fn build_sink(&self, pipeline: &PipelineSpec) -> Result<BuiltSink, SinkError> {
        self.sink(pipeline.sink.kind()).map_err(SinkError::Config)?.build(pipeline)
    }

    /// What `validate` learns of the sources without side effects: each source's findings, or
    /// the built source; and notes about schemas only known when the run reads data.
    pub fn check_sources(&self, pipeline: &PipelineSpec) -> SourceCheck {
        let mut out = SourceCheck::default();
        for s in &pipeline.sources {
            let c = match self.source(s.kind()) {
                Ok(c) => c,
                Err(message) => {
                    out.findings.push(Finding { path: vec!["sources".into(), s.name.clone()], message, hint: None });
                    continue;
                }
            };
            let found = c.check(s);
            if !found.is_empty() {
                out.findings.extend(found);
                continue;
            }
            match c.build(s, &pipeline.settings) {
                Ok(src) => {
                    if src.schema().is_none() {
                        out.unchecked.push(c.unchecked_schema(s));
                    }
                    out.sources.push(src);
                }
                Err(e) => out.findings.push(Finding {
                    path: vec!["sources".into(), s.name.clone()],
                    message: e.to_string(),
                    hint: None,
                }),
            }
        }
        out
    }

    /// The sink's findings about the pipeline's output schema.
    /// [`SinkConnector::probe`] of the pipeline's sink.
    pub fn probe_sink(&self, pipeline: &PipelineSpec) -> Vec<Finding> {
        match self.sink(pipeline.sink.kind()) {
            Ok(c) => c.probe(&pipeline.sink),
            Err(message) => vec![Finding { path: vec!["sink".into()], message, hint: None }],
        }
    }

    pub fn check_output(&self, pipeline: &PipelineSpec, output: &SchemaRef) -> Vec<Finding> {
        match self.sink(pipeline.sink.kind()) {
            Ok(c) => c.check_output(&pipeline.sink, output),
            Err(message) => vec![Finding { path: vec!["sink".into()], message, hint: None }],
        }
    }
}

/// What [`Connectors::check_sources`] found.
#[derive(Default)]
pub struct SourceCheck {
    pub sources: Vec<Arc<dyn Source>>,
    pub findings: Vec<Finding>,
    pub unchecked: Vec<String>,
}
