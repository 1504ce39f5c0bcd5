//! Sluice's S3 listing source (`kind: s3`): list a bucket under a prefix, fetch the objects a
//! run wants into a local mirror (`.partial`, fsync, checks, rename) with bounded concurrency,
//! retries with backoff and jitter, `Retry-After` and rate limits, and read each one as the
//! directory source reads files. A manifest in the mirror records each object's state for
//! `sluice source status`.

mod client;
pub mod config;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod manifest;
mod metrics;
mod policy;
mod source;
mod walk;

use std::sync::Arc;

use sluice_core::connector::{Finding, SourceConnector};
use sluice_core::error::SourceError;
use sluice_core::source::Source;
use sluice_core::spec::{Settings, SourceSpec};

pub use config::{S3Kind, S3Spec};
pub use source::S3Source;

/// The runtime half of `kind: s3`.
pub struct S3Connector;

fn s3(spec: &SourceSpec) -> Result<Arc<S3Spec>, SourceError> {
    spec.config_as::<S3Spec>().cloned().map(Arc::new).ok_or_else(|| SourceError::Config {
        source_name: spec.name.clone(),
        message: format!("an s3 source cannot read a source of kind `{}`", spec.kind()),
    })
}

impl SourceConnector for S3Connector {
    fn kind(&self) -> &'static str {
        "s3"
    }

    /// No request is made: `validate --connect` lists one key ([`Source::describe`]).
    fn check(&self, spec: &SourceSpec) -> Vec<Finding> {
        match s3(spec) {
            Ok(s) if s.mirror.exists() && !s.mirror.is_dir() => vec![Finding {
                path: vec!["sources".into(), spec.name.clone(), "mirror".into()],
                message: format!("source `{}`: mirror {} is not a directory", spec.name, s.mirror.display()),
                hint: Some("the mirror is created if it does not exist".into()),
            }],
            _ => Vec::new(),
        }
    }

    fn build(&self, spec: &SourceSpec, settings: &Settings) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(S3Source::new(spec, s3(spec)?, settings.batch_rows)?))
    }

    fn unchecked_schema(&self, spec: &SourceSpec) -> String {
        format!(
            "the schema is unchecked: source `{0}` declares no `columns`, so its columns are only known when the run \
             reads its objects; declare `columns` under `sources.{0}.format.<format>` to check them here",
            spec.name
        )
    }
}
