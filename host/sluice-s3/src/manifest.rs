//! The mirror's manifest: what was listed, fetched, committed, failed or poisoned, per key, as
//! an append-only JSON-lines file folded on read (`<mirror>/.sluice/manifest.jsonl`).
//!
//! The manifest is the source's own record for `sluice source status` and for resuming a
//! download (the ETag a `.partial` file was started with). It is not the truth about commits:
//! the sink's state store is, and every run reconciles the manifest with it
//! ([`sluice_core::source::Source::settled`]).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sluice_core::source::UnitStatus;

/// One state transition of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub state: String,
    pub etag: String,
    pub size: u64,
    /// Failed attempts at fetching this version, since it was last fetched.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The sha256 of the fetched file, when it was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `<mirror>/<key>` holds this version, complete and checked (it may since have been
    /// removed: `keep_mirror: false`). Kept through later states (committed, a failure in a
    /// step), so that a unit retried for another reason is not fetched again.
    #[serde(default)]
    pub mirrored: bool,
    pub at_ms: i64,
}

impl Entry {
    /// A key's version in `state`, with no attempts, error or hash yet, stamped now.
    pub fn new(key: &str, state: &str, etag: &str, size: u64) -> Entry {
        Entry {
            key: key.into(),
            state: state.into(),
            etag: etag.into(),
            size,
            attempts: 0,
            error: None,
            sha256: None,
            mirrored: false,
            at_ms: now_ms(),
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The manifest of one mirror.
pub struct Manifest {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: Option<File>,
    latest: BTreeMap<String, Entry>,
    lines: usize,
}

/// Every key's latest entry in the manifest at `path`; a torn last line is ignored.
pub fn fold(path: &Path) -> std::io::Result<(BTreeMap<String, Entry>, usize)> {
    let mut latest = BTreeMap::new();
    let mut lines = 0;
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((latest, 0)),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(f).lines() {
        let line = line?;
        lines += 1;
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            latest.insert(e.key.clone(), e);
        }
    }
    Ok((latest, lines))
}

impl Manifest {
    /// Open the manifest under `dir` (`<mirror>/.sluice`), rewriting it first when it holds many
    /// more lines than keys.
    pub fn open(dir: &Path) -> std::io::Result<Manifest> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("manifest.jsonl");
        let (latest, lines) = fold(&path)?;
        let m = Manifest { path, inner: Mutex::new(Inner { file: None, latest, lines }) };
        if lines > 2 * m.inner.lock().expect("manifest lock").latest.len() + 1000 {
            m.compact()?;
        }
        Ok(m)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrite the file with one line per key (temporary file, fsync, rename).
    fn compact(&self) -> std::io::Result<()> {
        let mut g = self.inner.lock().expect("manifest lock");
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut f = File::create(&tmp)?;
        for e in g.latest.values() {
            serde_json::to_writer(&mut f, e)?;
            f.write_all(b"\n")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        g.lines = g.latest.len();
        g.file = None;
        Ok(())
    }

    /// The latest entry of `key`.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.inner.lock().expect("manifest lock").latest.get(key).cloned()
    }

    /// Record `entry` as its key's state (a line is appended only when something changed).
    pub fn record(&self, entry: Entry) -> std::io::Result<()> {
        let mut g = self.inner.lock().expect("manifest lock");
        if let Some(old) = g.latest.get(&entry.key)
            && (Entry { at_ms: 0, ..old.clone() }) == (Entry { at_ms: 0, ..entry.clone() })
        {
            return Ok(());
        }
        if g.file.is_none() {
            g.file = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        }
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        g.file.as_mut().expect("opened").write_all(&line)?;
        g.lines += 1;
        g.latest.insert(entry.key.clone(), entry);
        Ok(())
    }

    /// Move `key` to `state`, keeping what else its entry says (no entry: nothing to do).
    pub fn set_state(&self, key: &str, state: &str) -> std::io::Result<()> {
        let Some(e) = self.get(key) else { return Ok(()) };
        if e.state == state {
            return Ok(());
        }
        let error = if state == "committed" { None } else { e.error.clone() };
        self.record(Entry { state: state.into(), error, at_ms: now_ms(), ..e })
    }
}

/// The manifest at `dir` as status rows.
pub fn status(dir: &Path) -> std::io::Result<Vec<UnitStatus>> {
    let (latest, _) = fold(&dir.join("manifest.jsonl"))?;
    Ok(latest
        .into_values()
        .map(|e| UnitStatus {
            key: e.key,
            state: e.state,
            size: e.size,
            version: e.etag,
            attempts: e.attempts,
            error: e.error,
            at_ms: e.at_ms,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, state: &str) -> Entry {
        Entry { at_ms: 5, ..Entry::new(key, state, "e", 1) }
    }

    #[test]
    fn the_latest_line_of_a_key_wins_and_a_torn_tail_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Manifest::open(tmp.path()).unwrap();
        m.record(entry("a", "listed")).unwrap();
        m.record(entry("a", "fetched")).unwrap();
        m.record(entry("a", "fetched")).unwrap();
        m.record(entry("b", "listed")).unwrap();
        m.set_state("a", "committed").unwrap();
        drop(m);
        let path = tmp.path().join("manifest.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "an unchanged state is not written again");
        text.push_str("{\"key\":\"a\",\"sta");
        std::fs::write(&path, text).unwrap();
        let rows = status(tmp.path()).unwrap();
        let states: Vec<(&str, &str)> = rows.iter().map(|r| (r.key.as_str(), r.state.as_str())).collect();
        assert_eq!(states, [("a", "committed"), ("b", "listed")]);
    }

    #[test]
    fn a_long_manifest_is_compacted_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let m = Manifest::open(tmp.path()).unwrap();
        for i in 0..1200 {
            m.record(Entry { attempts: i, ..entry("a", "failed") }).unwrap();
        }
        drop(m);
        let m = Manifest::open(tmp.path()).unwrap();
        assert_eq!(m.get("a").unwrap().attempts, 1199);
        assert_eq!(std::fs::read_to_string(m.path()).unwrap().lines().count(), 1);
    }
}
