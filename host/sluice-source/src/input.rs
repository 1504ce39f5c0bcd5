//! A unit's bytes: a plain file, a `.gz`/`.zst` file, or one member of a zip archive, streamed
//! and capped in decompressed size and in compression ratio (the zip-bomb guards).
//!
//! Zip archives are read with the `zip` crate's central-directory parser only; a member's bytes
//! are then read straight from the file (seek to the member's data, decompress on the fly), so
//! the reader owns its file and nothing but the central directory is ever held in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use globset::GlobSet;
use sluice_core::error::SourceError;
use sluice_core::source::SourceUnit;
use sluice_core::spec::{RATIO_GRACE_BYTES, SourceCompression, SourceLimits};

use crate::hash::HashedFile;

/// A unit's decompressed bytes.
pub(crate) type Input = Box<dyn Read + Send>;

pub(crate) use crate::io_err;

/// The file a directory source's unit reads: its location is the file's path.
pub(crate) fn file_path(unit: &SourceUnit) -> &Path {
    Path::new(&unit.location)
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
    let path = file_path(unit);
    let shown = unit.display_name();
    let kind = container(path, compression);
    if kind == SourceCompression::Zip {
        return Ok((open_member(unit, limits)?, None));
    }
    let file = HashedFile::open(path)?;
    let raw = BufReader::with_capacity(1 << 20, file.clone());
    let (inner, compressed): (Input, _) = match kind {
        SourceCompression::Gzip => {
            let (raw, n) = Counted::new(raw);
            (Box::new(flate2::bufread::MultiGzDecoder::new(raw)), Some(n))
        }
        SourceCompression::Zstd => {
            let (raw, n) = Counted::new(raw);
            (Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| io_err(path, e))?), Some(n))
        }
        _ => (Box::new(raw), None),
    };
    Ok((Box::new(Capped::new(inner, compressed, limits, shown)), Some(file)))
}

fn open_member(unit: &SourceUnit, limits: &SourceLimits) -> Result<Input, SourceError> {
    let path = file_path(unit);
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
    if method != zip::CompressionMethod::Stored && ratio_exceeded(size, compressed, limits.max_ratio) {
        return Err(format_err(&shown, bomb_message(size, compressed, limits.max_ratio, "declares")));
    }
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    file.seek(SeekFrom::Start(start)).map_err(|e| io_err(path, e))?;
    let raw = BufReader::with_capacity(1 << 20, file).take(compressed);
    let (inner, counter): (Input, _) = match method {
        zip::CompressionMethod::Stored => (Box::new(raw), None),
        zip::CompressionMethod::Deflated => {
            let (raw, n) = Counted::new(raw);
            (Box::new(flate2::bufread::DeflateDecoder::new(raw)), Some(n))
        }
        zip::CompressionMethod::Zstd => {
            let (raw, n) = Counted::new(raw);
            (Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| io_err(path, e))?), Some(n))
        }
        other => return Err(format_err(&shown, format!("unsupported zip compression method {other:?}"))),
    };
    let capped = Capped::new(inner, counter, limits, shown.clone());
    Ok(Box::new(Checked {
        inner: capped,
        crc: flate2::Crc::new(),
        read: 0,
        expected_crc: crc,
        expected_size: size,
        unit: shown,
    }))
}

/// True when `out` decompressed bytes from `compressed` bytes are past the grace size and more
/// than `max_ratio` times the compressed size.
fn ratio_exceeded(out: u64, compressed: u64, max_ratio: u64) -> bool {
    out > RATIO_GRACE_BYTES && out > compressed.saturating_mul(max_ratio)
}

fn bomb_message(out: u64, compressed: u64, max_ratio: u64, verb: &str) -> String {
    format!(
        "decompression bomb: {verb} {out} bytes from {compressed} compressed (ratio {}:1), more than \
         limits.max_ratio = {max_ratio}",
        out / compressed.max(1)
    )
}

/// Counts the bytes a decoder consumes from its compressed input.
struct Counted<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R> Counted<R> {
    fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let n = Arc::new(AtomicU64::new(0));
        (Counted { inner, n: n.clone() }, n)
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.n.fetch_add(amt as u64, Ordering::Relaxed);
        self.inner.consume(amt)
    }
}

/// Fails the read once more than `cap` decompressed bytes come out, or once the bytes out are
/// more than `max_ratio` times the compressed bytes consumed (past [`RATIO_GRACE_BYTES`]).
struct Capped {
    inner: Input,
    left: u64,
    cap: u64,
    /// Compressed bytes consumed so far; `None` for input read as is.
    compressed: Option<Arc<AtomicU64>>,
    out: u64,
    max_ratio: u64,
    unit: String,
}

impl Capped {
    fn new(inner: Input, compressed: Option<Arc<AtomicU64>>, limits: &SourceLimits, unit: String) -> Self {
        let cap = limits.max_unit_bytes;
        Capped { inner, left: cap, cap, compressed, out: 0, max_ratio: limits.max_ratio, unit }
    }
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
        self.out += n as u64;
        if let Some(c) = &self.compressed {
            let c = c.load(Ordering::Relaxed);
            if ratio_exceeded(self.out, c, self.max_ratio) {
                return Err(std::io::Error::other(format!(
                    "{}: {}",
                    self.unit,
                    bomb_message(self.out, c, self.max_ratio, "decompressed")
                )));
            }
        }
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
        let limits = SourceLimits { max_unit_bytes: cap, ..SourceLimits::default() };
        Capped::new(Box::new(data), None, &limits, "a.zip!m.csv".into())
    }

    #[test]
    fn the_size_cap_holds_whatever_a_header_declares() {
        let mut out = Vec::new();
        assert_eq!(capped(b"0123456789", 10).read_to_end(&mut out).unwrap(), 10);
        let err = capped(b"0123456789", 9).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("a.zip!m.csv: decompressed size exceeds max_unit_bytes = 9"), "{err}");
    }

    /// A gzip stream of `n` zeros through the same reader stack as a `.gz` unit.
    fn gzipped_zeros(n: usize, limits: &SourceLimits) -> std::io::Result<u64> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![0u8; 1 << 16];
        for _ in 0..n / block.len() {
            gz.write_all(&block).unwrap();
        }
        let bytes = gz.finish().unwrap();
        let (raw, counter) = Counted::new(std::io::Cursor::new(bytes));
        let mut r =
            Capped::new(Box::new(flate2::bufread::MultiGzDecoder::new(raw)), Some(counter), limits, "z.gz".into());
        std::io::copy(&mut r, &mut std::io::sink())
    }

    #[test]
    fn a_bomb_fails_fast_on_its_compression_ratio() {
        let limits = SourceLimits::default();
        let err = gzipped_zeros(64 << 20, &limits).unwrap_err().to_string();
        assert!(err.starts_with("z.gz: decompression bomb: decompressed "), "{err}");
        assert!(err.contains("more than limits.max_ratio = 100"), "{err}");
        // It stops soon after the grace bytes, not at the end of the stream.
        let out: u64 = err.split(' ').nth(4).unwrap().parse().unwrap();
        assert!(out <= RATIO_GRACE_BYTES + (1 << 20), "{err}");
        // Within the grace size, or with a higher limit, the same data is read.
        assert_eq!(gzipped_zeros(4 << 20, &limits).unwrap(), 4 << 20);
        let lenient = SourceLimits { max_ratio: 2000, ..limits };
        assert_eq!(gzipped_zeros(64 << 20, &lenient).unwrap(), 64 << 20);
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
