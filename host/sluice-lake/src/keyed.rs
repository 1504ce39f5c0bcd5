//! Keyed-state tails: each stateful step's last input rows per key, kept per unit under
//! `_sluice/state/<dataset>/` as Arrow IPC files and named by the ledger record that commits them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use sluice_core::error::SinkError;

use crate::layout::LEDGER_DIR;

/// The directory of a dataset's tails.
pub(crate) fn tails_dir(root: &Path, dataset: &str) -> PathBuf {
    root.join(LEDGER_DIR).join("state").join(dataset)
}

/// A tails file written and fsynced under a temporary name, renamed into place at commit.
pub(crate) struct StagedTails {
    pub(crate) tmp: PathBuf,
    pub(crate) final_path: PathBuf,
}

/// Write `tails` of `step` for a unit. The name is a digest of the content, so a replay writes
/// the same name and a changed tail never overwrites a live one.
pub(crate) fn stage(
    root: &Path,
    dataset: &str,
    unit_id: &str,
    step: &str,
    tails: &RecordBatch,
    sync: bool,
) -> Result<StagedTails, SinkError> {
    let mut bytes = Vec::new();
    {
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut bytes, &tails.schema())
            .map_err(|e| SinkError::Encode(format!("state tails of step `{step}`: {e}")))?;
        w.write(tails).map_err(|e| SinkError::Encode(format!("state tails of step `{step}`: {e}")))?;
        w.finish().map_err(|e| SinkError::Encode(format!("state tails of step `{step}`: {e}")))?;
    }
    let digest = sluice_core::sha256_hex(&[step.as_bytes(), &bytes]);
    let dir = tails_dir(root, dataset);
    std::fs::create_dir_all(&dir).map_err(|e| SinkError::io(&dir, e))?;
    let name = format!("{}-{}.arrow", &unit_id[..16], &digest[..16]);
    let final_path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.inprogress"));
    let mut f = File::create(&tmp).map_err(|e| SinkError::io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| SinkError::io(&tmp, e))?;
    if sync {
        f.sync_all().map_err(|e| SinkError::io(&tmp, e))?;
    }
    Ok(StagedTails { tmp, final_path })
}

/// Read a tails file.
pub(crate) fn read(path: &Path) -> Result<Option<RecordBatch>, SinkError> {
    let f = File::open(path).map_err(|e| SinkError::io(path, e))?;
    let reader = arrow_ipc::reader::FileReader::try_new(f, None)
        .map_err(|e| SinkError::Ledger { path: path.display().to_string(), message: e.to_string() })?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| SinkError::Ledger { path: path.display().to_string(), message: e.to_string() })?);
    }
    match batches.first() {
        None => Ok(None),
        Some(first) => arrow_select::concat::concat_batches(&first.schema(), &batches)
            .map(Some)
            .map_err(|e| SinkError::Ledger { path: path.display().to_string(), message: e.to_string() }),
    }
}
