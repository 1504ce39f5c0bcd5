//! Inputs built to exhaust memory: a CSV line of 200 MB, and gzip and zip bombs of 1 GiB of
//! `0`s in about 1 MB. Each is set aside (a reject with its line) or fails its own unit with a
//! message naming the file, while the other files commit. Also: CSV schema inference keeps
//! ZIP codes with leading zeros as text, through the lake.

use std::io::Write;
use std::path::Path;

use crate::support::*;

const MB: usize = 1 << 20;

/// Write `head`, then `n` bytes of `fill`, with no newline at the end.
fn write_long(path: &Path, head: &[u8], fill: u8, n: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(head).unwrap();
    let block = vec![fill; MB];
    for _ in 0..n / MB {
        f.write_all(&block).unwrap();
    }
    f.write_all(&block[..n % MB]).unwrap();
    f.flush().unwrap();
}

/// A raw deflate stream of `mib` MiB of ASCII `0`, built in a few milliseconds: one block of
/// 1 MiB, ended by a full flush (byte-aligned, no references before it), repeated, then an
/// empty final block. Also the CRC-32 of the decompressed bytes.
fn deflated_zeros(mib: usize) -> (Vec<u8>, u32) {
    let chunk = vec![b'0'; MB];
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut block = Vec::with_capacity(MB);
    c.compress_vec(&chunk, &mut block, flate2::FlushCompress::Full).unwrap();
    assert_eq!(c.total_in(), MB as u64, "one call compresses the whole chunk");
    let mut out = Vec::with_capacity(block.len() * mib + 2);
    for _ in 0..mib {
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0x03, 0x00]);
    let mut one = flate2::Crc::new();
    one.update(&chunk);
    let mut crc = flate2::Crc::new();
    for _ in 0..mib {
        crc.combine(&one);
    }
    (out, crc.sum())
}

/// A gzip file of `mib` MiB of `0`.
fn gzip_zeros(mib: usize) -> Vec<u8> {
    let (deflate, crc) = deflated_zeros(mib);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend_from_slice(&deflate);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&((mib as u64 * MB as u64) as u32).to_le_bytes());
    out
}

/// A zip archive with one deflated member `name` of `mib` MiB of `0` (under 4 GiB: no zip64).
fn zip_zeros(name: &str, mib: usize) -> Vec<u8> {
    let (deflate, crc) = deflated_zeros(mib);
    let size = (mib * MB) as u32;
    let compressed = deflate.len() as u32;
    let name = name.as_bytes();
    let mut out = Vec::new();
    // Local file header.
    out.extend_from_slice(&0x04034b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]); // version, flags, deflate, time, date
    for v in [crc, compressed, size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&deflate);
    // Central directory.
    let cd_start = out.len() as u32;
    out.extend_from_slice(&0x02014b50u32.to_le_bytes());
    out.extend_from_slice(&[20, 3, 20, 0, 0, 0, 8, 0, 0, 0, 0x21, 0]); // made by, needed, flags, deflate, time, date
    for v in [crc, compressed, size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 12]); // extra, comment, disk, internal attributes, external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name);
    let cd_len = out.len() as u32 - cd_start;
    out.extend_from_slice(&0x06054b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn pipeline(root: &Path, limits: &str) {
    let yaml = format!(
        r#"
pipeline: limits
sources:
  nums:
    path: in
    {limits}
    format: {{csv: {{header: true, columns: {{a: int64, b: utf8}}}}}}
steps: []
sink: {{lake: lake, dataset: nums}}
"#
    );
    write(&root.join("limits.yaml"), &yaml);
}

/// `file => error` for each failed unit of a run.
fn failures(s: &serde_json::Value) -> Vec<String> {
    s["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} => {}", f["file"].as_str().unwrap(), f["error"].as_str().unwrap()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn a_200_mb_line_is_a_reject_with_its_line_and_the_other_files_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a_good.csv"), "a,b\n1,x\n2,y\n");
    // Two rows, then a 200 MB field on line 4 with no newline at the end.
    write_long(&root.join("in/b_long.csv"), b"a,b\n3,z\n4,w\n5,", b'y', 200_000_000);
    // One 200 MB line: the header, since the format has one.
    write_long(&root.join("in/c_single.csv"), b"", b'y', 200_000_000);
    write(&root.join("in/d_after.csv"), "a,b\n6,v\n");
    pipeline(root, "");
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("limits.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "the single-line file fails");
    let s = summary(&sj);
    assert_eq!((s["files_committed"].as_u64(), s["files_failed"].as_u64()), (Some(3), Some(1)), "{s}");
    assert_eq!((s["rows_written"].as_u64(), s["rows_rejected"].as_u64()), (Some(5), Some(1)), "{s}");
    let errors = failures(&s);
    assert!(
        errors[0].contains("c_single.csv")
            && errors[0]
                .contains("line 1: header record of 200000000 bytes is longer than limits.max_record_bytes = 8388608"),
        "{errors:?}"
    );
    let lake = root.join("lake");
    let rows = query(&lake, "SELECT a FROM nums ORDER BY a");
    assert_eq!(rows.iter().map(|r| r["a"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 6]);
    let rej = query(
        &lake,
        &format!("SELECT file, line, raw, reason FROM read_parquet('{}/_rejects/**/*.parquet')", lake.display()),
    );
    assert_eq!(rej.len(), 1, "{rej:?}");
    assert!(rej[0]["file"].as_str().unwrap().ends_with("b_long.csv"), "{rej:?}");
    assert_eq!(rej[0]["line"], 4);
    // The record's size as read (with its delimiter), and only its first bytes kept.
    assert_eq!(rej[0]["reason"], "record of 200000002 bytes is longer than limits.max_record_bytes = 8388608");
    let raw = rej[0]["raw"].as_str().unwrap();
    assert!(raw.starts_with("5,yyyy") && raw.ends_with('…') && raw.len() < 300, "{raw}");
}

#[test]
fn the_rejects_policy_decides_whether_a_long_record_fails_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/good.csv"), "a,b\n1,x\n");
    write_long(&root.join("in/long.csv"), b"a,b\n2,y\n3,", b'y', 2000);
    pipeline(root, "limits: {max_record_bytes: 1KiB}\n    rejects: {max_errors: 0}");
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("limits.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&sj);
    assert_eq!((s["files_committed"].as_u64(), s["rows_written"].as_u64()), (Some(1), Some(1)), "{s}");
    let errors = failures(&s);
    assert!(
        errors[0].contains("long.csv")
            && errors[0].contains("more than max_errors = 0")
            && errors[0].contains("line 3: record of 2002 bytes is longer than limits.max_record_bytes = 1024"),
        "{errors:?}"
    );
}

#[test]
fn gzip_and_zip_bombs_of_a_gib_fail_fast_naming_the_file_and_the_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("in/a_good.csv"), "a,b\n1,x\n");
    let gz = gzip_zeros(1024);
    let zip = zip_zeros("zeros.csv", 1024);
    assert!(gz.len() < 2 * MB && zip.len() < 2 * MB, "{} and {} bytes", gz.len(), zip.len());
    std::fs::write(root.join("in/b_bomb.csv.gz"), &gz).unwrap();
    std::fs::write(root.join("in/c_bomb.zip"), &zip).unwrap();
    write(&root.join("in/d_good.csv"), "a,b\n2,y\n");
    pipeline(root, "");
    let sj = root.join("summary.json");
    let started = std::time::Instant::now();
    let out = run(&["run", root.join("limits.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&sj);
    assert_eq!((s["files_committed"].as_u64(), s["rows_written"].as_u64()), (Some(2), Some(2)), "{s}");
    let errors = failures(&s);
    assert_eq!(errors.len(), 2, "{errors:?}");
    // The gzip file is caught while it streams, the zip member by its declared sizes.
    assert!(
        errors[0].contains("b_bomb.csv.gz")
            && errors[0].contains("decompression bomb: decompressed ")
            && errors[0].contains(":1), more than limits.max_ratio = 100"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("c_bomb.zip!zeros.csv")
            && errors[1].contains("decompression bomb: declares 1073741824 bytes from ")
            && errors[1].contains("more than limits.max_ratio = 100"),
        "{errors:?}"
    );
    eprintln!("bombs refused in {:?}", started.elapsed());
}

#[test]
fn a_gib_line_in_a_zip_allowed_by_its_ratio_is_read_through_as_one_reject() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Header and a row, then 1 GiB of `0` on line 3: a member of `a,b\n1,x\n2,` would not be a
    // repeated block, so the long line is its own member after a good one.
    write(&root.join("in/a_good.csv"), "a,b\n1,x\n");
    std::fs::write(root.join("in/b_zeros.zip"), zip_zeros("zeros.csv", 1024)).unwrap();
    std::fs::write(root.join("in/c_zeros.csv.gz"), gzip_zeros(1024)).unwrap();
    pipeline(root, "limits: {max_ratio: 100000}");
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("limits.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&sj);
    assert_eq!(s["files_committed"], 1, "{s}");
    let errors = failures(&s);
    assert_eq!(errors.len(), 2, "{errors:?}");
    // The 1 GiB line is the header of each: read through to the end (so the CRC and size are
    // checked), never held.
    for (e, name) in errors.iter().zip(["b_zeros.zip!zeros.csv", "c_zeros.csv.gz"]) {
        assert!(
            e.contains(name)
                && e.contains("line 1: header record of 1073741824 bytes is longer than limits.max_record_bytes"),
            "{errors:?}"
        );
    }
}

#[test]
fn inferred_zip_codes_keep_their_leading_zeros_in_the_lake() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        &root.join("in/places.csv"),
        "zip,n,big,x,day\n00501,1,12345678901234567890123,1e5,2024-01-05\n08123,2,1,2,05/01/2024\n10001,3,2,NaN,2024-01-06\n",
    );
    let yaml = r#"
pipeline: places
sources:
  places: {path: in, format: {csv: {header: true}}}
steps: []
sink: {lake: lake, dataset: places}
"#;
    write(&root.join("places.yaml"), yaml);
    let sj = root.join("summary.json");
    let out = run(&["run", root.join("places.yaml").to_str().unwrap(), "--summary-json", sj.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&sj);
    assert_eq!((s["rows_written"].as_u64(), s["rows_rejected"].as_u64()), (Some(3), Some(0)), "{s}");
    let lake = root.join("lake");
    let rows = query(&lake, "SELECT zip, n, big, x::VARCHAR AS x, day FROM places ORDER BY n");
    let zips: Vec<&str> = rows.iter().map(|r| r["zip"].as_str().unwrap()).collect();
    assert_eq!(zips, ["00501", "08123", "10001"]);
    assert_eq!(rows[0]["big"], "12345678901234567890123");
    let xs: Vec<&str> = rows.iter().map(|r| r["x"].as_str().unwrap()).collect();
    assert_eq!(xs, ["100000.0", "2.0", "nan"]);
    assert_eq!(rows[1]["day"], "05/01/2024");
    let types = query(
        &lake,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'places' ORDER BY ordinal_position",
    );
    let types: Vec<String> = types
        .iter()
        .map(|r| format!("{} {}", r["column_name"].as_str().unwrap(), r["data_type"].as_str().unwrap()))
        .collect();
    assert_eq!(types[..5], ["zip VARCHAR", "n BIGINT", "big VARCHAR", "x DOUBLE", "day VARCHAR"]);
}
