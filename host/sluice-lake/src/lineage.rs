//! Lineage in the lake's files: the record every data and rejects file carries in its Parquet
//! key-value metadata ([`sluice_core::lineage::PARQUET_KEY`]), and reading it back.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use sluice_core::lineage::{FileLineage, PARQUET_KEY};

/// The lineage a Parquet file carries (`None`: written without one, by an older Sluice or
/// another tool).
pub fn read(path: &Path) -> Result<Option<FileLineage>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = SerializedFileReader::new(file).map_err(|e| format!("{}: not a Parquet file: {e}", path.display()))?;
    let kv = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let Some(json) = kv.iter().find(|k| k.key == PARQUET_KEY).and_then(|k| k.value.clone()) else {
        return Ok(None);
    };
    serde_json::from_str(&json).map(Some).map_err(|e| format!("{}: lineage that does not read: {e}", path.display()))
}
