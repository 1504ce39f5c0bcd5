//! The source traits: discover units of work, then stream each as record batches.
//!
//! A *unit* is the atomic unit of ingestion and commit: a file, or one member of an archive.
//! The trait is shaped so that non-file sources (an HTTP listing with a manifest, a Postgres
//! extract) fit: `discover` lists units with fingerprints, `open` streams one unit.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::error::SourceError;

/// Identity and fingerprint of one unit of input.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceUnit {
    /// The source's name in the pipeline.
    pub source: String,
    /// Where the bytes live.
    pub path: PathBuf,
    /// Path relative to the source root, with `/` separators: the stable identity.
    pub rel_path: String,
    /// The archive member, for archives.
    pub member: Option<String>,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl SourceUnit {
    /// A stable id for this unit's identity (not its content).
    pub fn id(&self) -> String {
        let member = self.member.as_deref().unwrap_or("");
        crate::sha256_hex(&[self.source.as_bytes(), self.rel_path.as_bytes(), member.as_bytes()])
    }

    /// How the unit is named in messages: `path` or `path!member`.
    pub fn display_name(&self) -> String {
        match &self.member {
            Some(m) => format!("{}!{}", self.path.display(), m),
            None => self.path.display().to_string(),
        }
    }
}

/// A stream of batches from one unit. Row-level problems are reported as `Err` items and the
/// stream goes on; a fatal problem ends it.
pub type BatchStream = Box<dyn Iterator<Item = Result<RecordBatch, SourceError>> + Send>;

/// A source of units.
pub trait Source: Send + Sync {
    fn name(&self) -> &str;
    /// The schema every unit yields, when known without reading data (explicit schema).
    fn schema(&self) -> Option<SchemaRef>;
    /// List the units available now, in processing order.
    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError>;
    /// Stream the batches of one unit.
    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError>;
}
