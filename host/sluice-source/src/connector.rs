//! `kind: directory`, the runtime half: checks for `validate` and the [`DirSource`] a run reads.

use std::sync::Arc;

use sluice_core::connector::{Finding, SourceConnector};
use sluice_core::error::SourceError;
use sluice_core::source::Source;
use sluice_core::spec::{DirSpec, FormatSpec, Settings, SourceSpec};

use crate::DirSource;

/// The directory source kind.
pub struct DirectoryConnector;

fn dir(spec: &SourceSpec) -> Option<&DirSpec> {
    spec.config_as::<DirSpec>()
}

impl SourceConnector for DirectoryConnector {
    fn kind(&self) -> &'static str {
        "directory"
    }

    fn check(&self, spec: &SourceSpec) -> Vec<Finding> {
        match dir(spec) {
            Some(d) if !d.path.is_dir() => vec![Finding {
                path: vec!["sources".into(), spec.name.clone(), "path".into()],
                message: format!("source `{}`: directory {} does not exist", spec.name, d.path.display()),
                hint: Some("a source path is relative to the pipeline file".into()),
            }],
            _ => Vec::new(),
        }
    }

    fn build(&self, spec: &SourceSpec, settings: &Settings) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(DirSource::new(spec, settings.batch_rows)?))
    }

    fn unchecked_schema(&self, spec: &SourceSpec) -> String {
        let source = &spec.name;
        let how = match dir(spec).map(|d| &d.format) {
            Some(FormatSpec::Csv(_)) => {
                format!("declare `columns` under `sources.{source}.format.csv` to check them here")
            }
            Some(FormatSpec::Jsonl(_)) => {
                format!("declare `columns` under `sources.{source}.format.jsonl` to check them here")
            }
            Some(FormatSpec::Json(_)) => {
                format!("declare `columns` under `sources.{source}.format.json` to check them here")
            }
            Some(FormatSpec::Parquet) | None => {
                "a Parquet source's schema is its files', read only when the run starts".to_string()
            }
        };
        format!(
            "the schema is unchecked: source `{source}` declares no `columns`, so its columns are only known when \
             the run reads its files, and the steps' column references and the sink's `partition_by` could not be \
             checked; {how}"
        )
    }
}
