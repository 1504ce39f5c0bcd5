//! Content hashes of units, so a re-run can tell a touched file (new mtime, same bytes) from a
//! changed one: xxh3-128 of a file's bytes as stored (compressed files are hashed compressed),
//! written `xxh3:<32 hex digits>`. A zip member's hash is its CRC-32 from the archive's
//! directory (`crc32:<8 hex digits>`), known without reading it.
//!
//! A unit's file is hashed while it is read ([`HashedFile`]), so processing costs no second
//! read; only a file whose size is unchanged but whose mtime moved is hashed on its own, before
//! the run decides whether to process it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sluice_core::error::SourceError;
use twox_hash::XxHash3_128;

use crate::io_err;

fn digest(h: &XxHash3_128) -> String {
    format!("xxh3:{:032x}", h.finish_128())
}

/// A zip member's content hash, from its CRC-32.
pub(crate) fn crc32_hash(crc: u32) -> String {
    format!("crc32:{crc:08x}")
}

struct State {
    file: File,
    path: PathBuf,
    hasher: XxHash3_128,
    bytes: u64,
}

/// A file whose bytes are hashed as they are read. Clones share the file and the hash, so the
/// source can finish the hash once the format reader is done with its clone.
#[derive(Clone)]
pub(crate) struct HashedFile {
    state: Arc<Mutex<State>>,
}

impl HashedFile {
    pub(crate) fn open(path: &Path) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let state = State { file, path: path.to_path_buf(), hasher: XxHash3_128::new(), bytes: 0 };
        Ok(HashedFile { state: Arc::new(Mutex::new(state)) })
    }

    /// Hash whatever the reader left unread (usually nothing; all of it for Parquet, which is
    /// read by random access) and return the hash and the file's length.
    pub(crate) fn finish(&self) -> Result<(String, u64), SourceError> {
        let mut s = self.state.lock().expect("hash lock");
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = s.file.read(&mut buf).map_err(|e| io_err(&s.path, e))?;
            if n == 0 {
                return Ok((digest(&s.hasher), s.bytes));
            }
            s.hasher.write(&buf[..n]);
            s.bytes += n as u64;
        }
    }
}

impl Read for HashedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut s = self.state.lock().expect("hash lock");
        let n = s.file.read(buf)?;
        s.hasher.write(&buf[..n]);
        s.bytes += n as u64;
        Ok(n)
    }
}

/// Hash a whole file now.
pub(crate) fn hash_file(path: &Path) -> Result<String, SourceError> {
    HashedFile::open(path)?.finish().map(|(hash, _)| hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_while_reading_equals_hashing_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.csv");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let whole = hash_file(&p).unwrap();
        assert!(whole.starts_with("xxh3:") && whole.len() == 5 + 32, "{whole}");
        // A reader that stops early: finish() hashes the rest.
        let h = HashedFile::open(&p).unwrap();
        let mut part = vec![0u8; 1000];
        h.clone().read_exact(&mut part).unwrap();
        assert_eq!(h.finish().unwrap(), (whole.clone(), data.len() as u64));
        // One byte changed, same size: another hash.
        let mut other = data.clone();
        other[1_500_000] ^= 1;
        std::fs::write(&p, &other).unwrap();
        assert_ne!(hash_file(&p).unwrap(), whole);
        assert_eq!(crc32_hash(0xdead), "crc32:0000dead");
    }

    /// Hash throughput over a file in the page cache: `cargo test -p sluice-source --release
    /// hash_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn hash_throughput() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("big.bin");
        let data: Vec<u8> = (0..(512u64 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        hash_file(&p).unwrap();
        let t = std::time::Instant::now();
        let n = 4;
        for _ in 0..n {
            hash_file(&p).unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for _ in 0..n {
            let mut f = File::open(&p).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            while f.read(&mut buf).unwrap() > 0 {}
        }
        let read_secs = t.elapsed().as_secs_f64();
        let mb = (n * data.len()) as f64 / 1e6;
        eprintln!("xxh3-128 over a cached file: {:.0} MB/s; reading it alone: {:.0} MB/s", mb / secs, mb / read_secs);
    }
}
