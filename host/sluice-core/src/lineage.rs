//! Lineage: what made a file's rows. Every file a sink writes records the pipeline (its name and
//! the hash of its resolved definition), each step's plugin (name, version, component hash), the
//! Sluice version, and the source units its rows came from (locator and content hash).

use serde::{Deserialize, Serialize};

use crate::source::SourceUnit;

/// The key of the lineage in a Parquet file's key-value metadata.
pub const PARQUET_KEY: &str = "sluice.lineage";

/// What made a run's output, apart from the units: the same for every file of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lineage {
    /// The Sluice version that wrote the file.
    pub sluice: String,
    pub pipeline: String,
    /// `PipelineSpec::definition_hash`.
    pub definition: String,
    /// `PipelineSpec::output_hash`: the definition without its run settings.
    #[serde(default)]
    pub output: String,
    pub steps: Vec<StepLineage>,
}

impl Lineage {
    /// What decides whether a committed unit is stale: the pipeline's definition and every
    /// step's component ([`digest`]).
    pub fn digest(&self) -> String {
        let components: Vec<&str> = self.steps.iter().map(|s| s.component_hash.as_str()).collect();
        digest(&self.output, &components)
    }
}

/// A digest of a pipeline's output hash (`PipelineSpec::output_hash`) and its steps' component hashes, in step order: a
/// committed unit whose digest differs from the run's was made by another definition or another
/// plugin (it is *stale*). The Sluice version is not part of it.
pub fn digest(definition: &str, components: &[&str]) -> String {
    let mut parts: Vec<&[u8]> = vec![definition.as_bytes()];
    parts.extend(components.iter().map(|c| c.as_bytes()));
    crate::sha256_hex(&parts)[..16].to_string()
}

/// One step of the chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepLineage {
    /// The step's name in the pipeline.
    pub name: String,
    pub plugin: String,
    pub version: String,
    /// `sha256:<hex>` of the component's bytes.
    pub component_hash: String,
}

/// One source unit whose rows are in a file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnitLineage {
    pub source: String,
    pub locator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    pub size: u64,
    pub version: i64,
}

impl From<&SourceUnit> for UnitLineage {
    fn from(u: &SourceUnit) -> Self {
        UnitLineage {
            source: u.source.clone(),
            locator: u.locator.clone(),
            member: u.member.clone(),
            content_hash: u.content_hash.clone(),
            size: u.size,
            version: u.version,
        }
    }
}

/// A file's lineage record, as stored under [`PARQUET_KEY`] (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileLineage {
    /// The record's format version.
    pub v: u32,
    #[serde(flatten)]
    pub run: Lineage,
    pub units: Vec<UnitLineage>,
}

impl FileLineage {
    pub fn new(run: &Lineage, units: Vec<UnitLineage>) -> Self {
        FileLineage { v: 1, run: run.clone(), units }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("lineage serializes")
    }
}
