//! `kind: lake`, the runtime half: the output checks `validate` makes, the one-writer target
//! `watch` guards, and the [`Lake`] a run writes (with the snapshot its catalog publishes).

use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use sluice_core::catalog::LakeSnapshot;
use sluice_core::connector::{BuiltSink, Finding, Publication, SinkConnector};
use sluice_core::error::SinkError;
use sluice_core::spec::{LakeSpec, PipelineSpec, SinkSpec};

use crate::Lake;

/// The lake sink kind.
pub struct LakeConnector;

fn lake(spec: &SinkSpec) -> Result<&LakeSpec, SinkError> {
    spec.config_as::<LakeSpec>()
        .ok_or_else(|| SinkError::Config(format!("a lake cannot open a sink of kind `{}`", spec.kind())))
}

impl SinkConnector for LakeConnector {
    fn kind(&self) -> &'static str {
        "lake"
    }

    /// Every `partition_by` column is in the pipeline's output.
    fn check_output(&self, spec: &SinkSpec, output: &SchemaRef) -> Vec<Finding> {
        let Ok(l) = lake(spec) else { return Vec::new() };
        let cols: Vec<&str> = output.fields().iter().map(|f| f.name().as_str()).collect();
        l.partition_by
            .iter()
            .enumerate()
            .filter(|(_, col)| output.index_of(col).is_err())
            .map(|(i, col)| Finding {
                path: vec!["sink".into(), "partition_by".into(), i.to_string()],
                message: format!("sink: partition column `{col}` is not in the pipeline's output"),
                hint: Some(match sluice_core::hint::closest(col, &cols) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("the output columns are: {}", cols.join(", ")),
                }),
            })
            .collect()
    }

    /// The lake directory (resolved when it exists): it admits one writer.
    fn target(&self, spec: &SinkSpec) -> String {
        match lake(spec) {
            Ok(l) => l.lake.canonicalize().unwrap_or_else(|_| l.lake.clone()).display().to_string(),
            Err(_) => String::new(),
        }
    }

    fn build(&self, pipeline: &PipelineSpec) -> Result<BuiltSink, SinkError> {
        let l = lake(&pipeline.sink)?;
        let opened = Arc::new(Lake::open(l).map_err(|e| match e {
            e @ SinkError::Locked { .. } => e,
            e => SinkError::Config(format!("opening the lake {}: {e}", l.lake.display())),
        })?);
        // Failures count against this definition: fixing the pipeline retries poisoned files.
        opened.set_definition(pipeline.definition_hash());
        Ok(BuiltSink { sink: opened.clone(), publication: Some(opened) })
    }
}

impl Publication for Lake {
    fn catalog_dir(&self) -> PathBuf {
        self.root().to_path_buf()
    }
    fn commits(&self) -> u64 {
        Lake::commits(self)
    }
    fn snapshot(&self) -> Result<LakeSnapshot, SinkError> {
        Lake::snapshot(self)
    }
}
