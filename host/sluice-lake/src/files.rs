//! Where a committed file lives, and where readers that glob the hive layout see it.
//!
//! The ledger names every data file by a unique, immutable name, `<dataset>/<partition>/part-
//! <unit>-<fingerprint>-<seq>[-g<N>].parquet` (relative names). Its bytes are *stored* under
//! `<lake>/_sluice/files/<name>`, which the catalog's views read: a stored file never changes and
//! stays until its retention is over, so a reader holding an older catalog snapshot always finds
//! the files it names.
//!
//! The hive layout that glob readers list (`<lake>/<dataset>/**/*.parquet`) holds a hard link to
//! each live file under the same name. Names are never reused for other bytes, so a reader that
//! opens a path twice (a footer first, row groups later, as Polars and pyarrow do) always reads
//! one file. When a commit replaces files, the replaced names are unlinked from the hive layout
//! first, then the new files are linked in: a glob read never sees both versions of a unit. A
//! read that lists a name and opens it after its unlink gets "not found" and should retry; the
//! catalog is the view that never changes under a reader.

use std::path::{Path, PathBuf};

use sluice_core::error::SinkError;

use crate::layout::LEDGER_DIR;

/// The directory of stored files, under the lake root.
pub const FILES_DIR: &str = "files";

/// The stored root, `<lake>/_sluice/files`.
pub fn stored_root(root: &Path) -> PathBuf {
    root.join(LEDGER_DIR).join(FILES_DIR)
}

/// Where the file the ledger names `rel` is stored.
pub fn stored(root: &Path, rel: &str) -> PathBuf {
    stored_root(root).join(rel)
}

/// Where the file the ledger names `rel` is visible to glob readers: the same name under the
/// lake root.
pub fn visible(root: &Path, rel: &str) -> PathBuf {
    root.join(rel)
}

/// Make `stored` visible at `visible`: a hard link under a hidden temporary name renamed into
/// place (over a link to the same bytes, when a replay keeps a name).
pub fn expose(stored: &Path, visible: &Path) -> Result<(), SinkError> {
    let dir = visible.parent().expect("visible files live in directories");
    std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
    let name = visible.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.link{}", crate::layout::INPROGRESS));
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(stored, &tmp).map_err(|e| SinkError::io(&tmp, e))?;
    std::fs::rename(&tmp, visible).map_err(|e| SinkError::io(visible, e))
}

/// Whether two paths are the same file (hard links of one inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        a.exists() && b.exists()
    }
}

/// Every file under `dir` (recursively), with its name relative to `base`; nothing when `dir`
/// does not exist.
pub(crate) fn files_in(dir: &Path, base: &Path) -> Result<Vec<(PathBuf, String)>, SinkError> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = if dir.is_dir() { vec![dir.to_path_buf()] } else { Vec::new() };
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| SinkError::io(&dir, e))? {
            let entry = entry.map_err(|e| SinkError::io(&dir, e))?;
            let path = entry.path();
            if entry.file_type().map_err(|e| SinkError::io(&path, e))?.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(base).expect("under the base").to_string_lossy().replace('\\', "/");
                out.push((path, rel));
            }
        }
    }
    Ok(out)
}

/// After a ledger append that made `added` live and `removed` dead: unlink the replaced files
/// from the hive layout, then link the new ones in, so that a glob read never sees both
/// versions of the same rows. The ledger is already the truth, so a failure is logged and
/// repaired by the writer's next open. With `fsync_dirs`, the directories changed are fsynced;
/// returns how many.
pub(crate) fn show(root: &Path, added: &[String], removed: &[String], fsync_dirs: bool) -> u64 {
    let mut dirs = std::collections::HashSet::new();
    for f in removed.iter().filter(|f| !added.contains(f)) {
        let visible = visible(root, f);
        match std::fs::remove_file(&visible) {
            Ok(()) => {
                dirs.extend(visible.parent().map(Path::to_path_buf));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %visible.display(), "cannot hide a replaced file: {e}"),
        }
    }
    for f in added {
        let visible = visible(root, f);
        if let Err(e) = expose(&stored(root, f), &visible) {
            tracing::warn!("cannot show a committed file in the hive layout (the next open retries): {e}");
        }
        dirs.extend(visible.parent().map(Path::to_path_buf));
    }
    if !fsync_dirs {
        return 0;
    }
    let n = dirs.len() as u64;
    for d in dirs {
        if let Err(e) = std::fs::File::open(&d).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %d.display(), "{e}");
        }
    }
    n
}
