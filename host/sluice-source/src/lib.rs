//! Sluice's file sources: discover files under a directory by glob (zip archives expand to one
//! unit per member), decompress `.gz`/`.zst`/`.zip` on the fly, and stream CSV, JSON lines or
//! Parquet as Arrow record batches, with rows that do not parse set aside as rejects and columns
//! taken from parts of the file name.

mod connector;
mod csv;
mod dir;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
mod infer;
mod input;
mod json;
mod jsonl;
mod messages;
mod parquet;
mod records;
mod table;

pub use connector::DirectoryConnector;
pub use dir::DirSource;
pub use messages::{Decoded, MessageFormat};

/// An I/O error reading `path`, naming it.
pub(crate) fn io_err(path: &std::path::Path, e: std::io::Error) -> sluice_core::error::SourceError {
    sluice_core::error::SourceError::Io { path: path.display().to_string(), source: e }
}
pub use table::{check_table_file, read_table, read_tables};

/// Every batch and reject of a unit's items, or its first error (for tests of the readers).
#[cfg(test)]
pub(crate) fn drain(
    items: impl Iterator<Item = Result<sluice_core::source::SourceItem, sluice_core::error::SourceError>>,
) -> Result<(Vec<arrow_array::RecordBatch>, Vec<sluice_core::source::Reject>), sluice_core::error::SourceError> {
    use sluice_core::source::SourceItem;
    let (mut batches, mut rejects) = (Vec::new(), Vec::new());
    for item in items {
        match item? {
            SourceItem::Batch(b) => batches.push(b),
            SourceItem::Rejects(r) => rejects.extend(r),
            SourceItem::ContentHash { .. } | SourceItem::HighWater(_) => {}
        }
    }
    Ok((batches, rejects))
}
