//! A unit's bytes: a plain file, a `.gz`/`.zst` file, or one member of a zip archive, streamed
//! and capped in decompressed size (the zip-bomb guard).
//!
//! Zip archives are read with the `zip` crate's central-directory parser only; a member's bytes
//! are then read straight from the file (seek to the member's data, decompress on the fly), so
//! the reader owns its file and nothing but the central directory is ever held in memory.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use globset::GlobSet;
use sluice_core::error::SourceError;
use sluice_core::source::SourceUnit;
use sluice_core::spec::{SourceCompression, SourceLimits};

use crate::hash::HashedFile;

/// A unit's decompressed bytes.
pub(crate) type Input = Box<dyn Read + Send>;

pub(crate) fn io_err(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::Io { path: path.display().to_string(), source: e }
}

fn format_err(unit: &str, message: impl Into<String>) -> SourceError {
    SourceError::Format { path: unit.to_string(), message: message.into() }
}

/// The container of a file, after resolving `Auto` by extension.
pub(crate) fn container(path: &Path, declared: SourceCompression) -> SourceCompression {
    if declared != SourceCompression::Auto {
        return declared;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if name.ends_with(".gz") || name.ends_with(".gzip") {
        SourceCompression::Gzip
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        SourceCompression::Zstd
    } else if name.ends_with(".zip") {
        SourceCompression::Zip
    } else {
        SourceCompression::None
    }
}

/// One member of a zip archive, as listed in its central directory.
#[derive(Debug, Clone)]
pub(crate) struct ZipMember {
    pub name: String,
    pub size: u64,
    /// The CRC-32 of the member's bytes, from the central directory.
    pub crc32: u32,
}

fn open_archive(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>, SourceError> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| format_err(&path.display().to_string(), format!("not a readable zip archive: {e}")))
}

/// Names a member that is not data: directories, hidden files, macOS resource forks.
fn skip_member(name: &str) -> bool {
    name.ends_with('/')
        || name.starts_with("__MACOSX/")
        || name.rsplit('/').next().is_some_and(|base| base.starts_with('.') || base.is_empty())
}

/// List the data members of an archive that match `members` (every member when empty).
pub(crate) fn list_members(
    path: &Path,
    members: &GlobSet,
    limits: &SourceLimits,
) -> Result<Vec<ZipMember>, SourceError> {
    let archive = open_archive(path)?;
    let shown = path.display().to_string();
    if archive.len() > limits.max_members {
        return Err(format_err(
            &shown,
            format!("archive has {} members, more than max_members = {}", archive.len(), limits.max_members),
        ));
    }
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_data(i).map_err(|e| format_err(&shown, format!("member #{i}: {e}")))?;
        let name = entry.name().map_err(|e| format_err(&shown, format!("member #{i}: {e}")))?.into_owned();
        if skip_member(&name) || (!members.is_empty() && !members.is_match(&name)) {
            continue;
        }
        out.push(ZipMember { name, size: entry.size(), crc32: entry.crc32() });
    }
    Ok(out)
}

/// Open a unit's bytes, decompressed and capped at `limits.max_unit_bytes`. A whole file is
/// read through a [`HashedFile`] (returned too), which hashes its bytes as they are read; a zip
/// member's hash is its CRC, known from the listing.
pub(crate) fn open(
    unit: &SourceUnit,
    compression: SourceCompression,
    limits: &SourceLimits,
) -> Result<(Input, Option<HashedFile>), SourceError> {
    let path = &unit.path;
    let shown = unit.display_name();
    let cap = limits.max_unit_bytes;
    let kind = container(path, compression);
    if kind == SourceCompression::Zip {
        return Ok((open_member(unit, limits)?, None));
    }
    let file = HashedFile::open(path)?;
    let raw = BufReader::with_capacity(1 << 20, file.clone());
    let inner: Input = match kind {
        SourceCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        SourceCompression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| io_err(path, e))?)
        }
        _ => Box::new(raw),
    };
    Ok((Box::new(Capped { inner, left: cap, cap, unit: shown }), Some(file)))
}

fn open_member(unit: &SourceUnit, limits: &SourceLimits) -> Result<Input, SourceError> {
    let path = &unit.path;
    // A unit without a member stands for an archive whose listing failed: report why, again.
    let Some(name) = &unit.member else {
        list_members(path, &GlobSet::empty(), limits)?;
        return Err(format_err(&unit.display_name(), "archive has no readable members"));
    };
    let shown = unit.display_name();
    let mut archive = open_archive(path)?;
    let index = archive.index_for_name(name).ok_or_else(|| format_err(&shown, "member not found in the archive"))?;
    let (start, compressed, size, crc, method, encrypted) = {
        let m =
            archive.by_index_raw(index).map_err(|e| format_err(&shown, format!("cannot locate member data: {e}")))?;
        let start = m.data_start().ok_or_else(|| format_err(&shown, "cannot locate member data"))?;
        (start, m.compressed_size(), m.size(), m.crc32(), m.compression(), m.encrypted())
    };
    drop(archive);
    if encrypted {
        return Err(format_err(&shown, "member is encrypted"));
    }
    if size > limits.max_unit_bytes {
        return Err(format_err(
            &shown,
            format!("member declares {size} bytes, more than max_unit_bytes = {}", limits.max_unit_bytes),
        ));
    }
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    file.seek(SeekFrom::Start(start)).map_err(|e| io_err(path, e))?;
    let raw = BufReader::with_capacity(1 << 20, file).take(compressed);
    let inner: Input = match method {
        zip::CompressionMethod::Stored => Box::new(raw),
        zip::CompressionMethod::Deflated => Box::new(flate2::read::DeflateDecoder::new(raw)),
        zip::CompressionMethod::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| io_err(path, e))?)
        }
        other => return Err(format_err(&shown, format!("unsupported zip compression method {other:?}"))),
    };
    let capped = Capped { inner, left: limits.max_unit_bytes, cap: limits.max_unit_bytes, unit: shown.clone() };
    Ok(Box::new(Checked {
        inner: capped,
        crc: flate2::Crc::new(),
        read: 0,
        expected_crc: crc,
        expected_size: size,
        unit: shown,
    }))
}

/// Fails the read once more than `cap` decompressed bytes come out.
struct Capped {
    inner: Input,
    left: u64,
    cap: u64,
    unit: String,
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for one byte past the cap, to tell "exactly the cap" from "more".
        let want = buf.len().min(self.left.saturating_add(1).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "{}: decompressed size exceeds max_unit_bytes = {}",
                self.unit, self.cap
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Checks a zip member's size and CRC-32 against its central-directory entry at the end.
struct Checked {
    inner: Capped,
    crc: flate2::Crc,
    read: u64,
    expected_crc: u32,
    expected_size: u64,
    unit: String,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.read += n as u64;
        if n == 0 && !buf.is_empty() {
            let (size, crc) = (self.read, self.crc.sum());
            if size != self.expected_size {
                return Err(std::io::Error::other(format!(
                    "{}: member is truncated or corrupt: {size} bytes, expected {}",
                    self.unit, self.expected_size
                )));
            }
            if crc != self.expected_crc {
                return Err(std::io::Error::other(format!("{}: member fails its CRC-32 check", self.unit)));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(data: &'static [u8], cap: u64) -> Capped {
        Capped { inner: Box::new(data), left: cap, cap, unit: "a.zip!m.csv".into() }
    }

    #[test]
    fn the_size_cap_holds_whatever_a_header_declares() {
        let mut out = Vec::new();
        assert_eq!(capped(b"0123456789", 10).read_to_end(&mut out).unwrap(), 10);
        let err = capped(b"0123456789", 9).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("a.zip!m.csv: decompressed size exceeds max_unit_bytes = 9"), "{err}");
    }

    #[test]
    fn a_member_with_the_wrong_crc_or_size_fails_at_its_end() {
        let check = |data: &'static [u8], size: u64, crc: u32| {
            let mut r = Checked {
                inner: capped(data, 100),
                crc: flate2::Crc::new(),
                read: 0,
                expected_crc: crc,
                expected_size: size,
                unit: "a.zip!m.csv".into(),
            };
            r.read_to_end(&mut Vec::new()).map_err(|e| e.to_string())
        };
        let mut c = flate2::Crc::new();
        c.update(b"hello");
        assert_eq!(check(b"hello", 5, c.sum()), Ok(5));
        assert!(check(b"hello", 5, c.sum() ^ 1).unwrap_err().contains("CRC-32"));
        assert!(check(b"hell", 5, c.sum()).unwrap_err().contains("truncated"));
    }
}
