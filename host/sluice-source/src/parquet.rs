//! Parquet input, read through `sluice_lake::ParquetBatches` (parquet lives only in the lake
//! crate). Parquet needs random access, so a compressed or archived Parquet unit is first
//! decompressed into an anonymous temporary file (unlinked at once), never into memory.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::error::SourceError;
use sluice_core::source::{BatchStream, SourceItem, SourceUnit};

use crate::input::{Input, io_err};

fn spill(mut bytes: Input) -> std::io::Result<File> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        ".sluice-spill-{}-{}.parquet",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    let _ = std::fs::remove_file(&path);
    std::io::copy(&mut bytes, &mut f)?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

/// Stream a Parquet unit. `plain` when `bytes` are the file itself (not decompressed).
pub(crate) fn open(
    unit: &SourceUnit,
    bytes: Input,
    plain: bool,
    batch_rows: usize,
) -> Result<BatchStream, SourceError> {
    let shown = unit.display_name();
    let file = if plain {
        drop(bytes);
        File::open(crate::input::file_path(unit)).map_err(|e| io_err(crate::input::file_path(unit), e))?
    } else {
        spill(bytes)
            .map_err(|e| SourceError::Format { path: shown.clone(), message: format!("cannot decompress: {e}") })?
    };
    let batches = sluice_lake::ParquetBatches::open(file, batch_rows)
        .map_err(|message| SourceError::Format { path: shown.clone(), message })?;
    Ok(Box::new(batches.map(move |r| {
        r.map(SourceItem::Batch).map_err(|message| SourceError::Format { path: shown.clone(), message })
    })))
}
