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
    /// Units left out of `units` ([`FileLineage::MAX_UNITS`]): a file an upsert merged again
    /// and again lists the newest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub units_omitted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FileLineage {
    /// The most units a file's lineage lists.
    pub const MAX_UNITS: usize = 1000;

    pub fn new(run: &Lineage, units: Vec<UnitLineage>) -> Self {
        FileLineage { v: 1, run: run.clone(), units, units_omitted: 0 }
    }

    /// Add the units of a file merged into this one (after its own, which are newer), keeping
    /// at most [`FileLineage::MAX_UNITS`] and counting the rest.
    pub fn merge(&mut self, older: FileLineage) {
        self.units_omitted += older.units_omitted;
        for u in older.units {
            if self.units.iter().any(|x| x.source == u.source && x.locator == u.locator && x.member == u.member) {
                continue;
            }
            if self.units.len() < Self::MAX_UNITS {
                self.units.push(u);
            } else {
                self.units_omitted += 1;
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("lineage serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize) -> UnitLineage {
        UnitLineage {
            source: "s".into(),
            locator: format!("f{i}"),
            member: None,
            content_hash: None,
            size: 1,
            version: 1,
        }
    }

    #[test]
    fn a_merged_files_units_are_capped_and_the_rest_counted() {
        let run = Lineage {
            sluice: "0".into(),
            pipeline: "p".into(),
            definition: "d".into(),
            output: "o".into(),
            steps: vec![],
        };
        let mut newest = FileLineage::new(&run, vec![unit(0)]);
        let older = FileLineage::new(&run, (0..FileLineage::MAX_UNITS + 5).map(unit).collect());
        newest.merge(older);
        assert_eq!(newest.units.len(), FileLineage::MAX_UNITS);
        assert_eq!(newest.units[0], unit(0), "the newest first, once");
        assert_eq!(newest.units_omitted, 5);
        let json = newest.to_json();
        let back: FileLineage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, newest);
        assert!(!FileLineage::new(&run, vec![unit(1)]).to_json().contains("units_omitted"));
    }
}
