//! CSV reader throughput: generates a kline-shaped CSV (12 columns, default 100 MB) and streams it
//! through `DirSource` into Arrow batches, printing MB/s. Also with a `.gz` and a `.zip` copy.
//!
//! `cargo run --release -p sluice-source --example csv_throughput -- [MB] [dir]`

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use arrow_schema::DataType;
use sluice_core::source::{Source, SourceItem};
use sluice_core::spec::{
    CsvSpec, DirSpec, FileOrder, FormatSpec, RejectPolicy, SourceCompression, SourceLimits, SourceSpec,
};
use sluice_source::DirSource;

fn generate(path: &Path, mb: usize) -> u64 {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut bytes, mut i) = (0u64, 0i64);
    while bytes < (mb as u64) << 20 {
        let t = 1_735_689_600_000i64 + i * 1000;
        let p = 42_000.0 + (i % 1000) as f64 * 0.01;
        let line = format!(
            "{t},{p:.2},{:.2},{:.2},{p:.2},{:.5},{},{:.4},{},{:.5},{:.4},0\n",
            p + 1.5,
            p - 1.5,
            (i % 97) as f64 * 0.013,
            t + 999,
            (i % 89) as f64 * 13.7,
            i % 50,
            (i % 31) as f64 * 0.007,
            (i % 43) as f64 * 7.1
        );
        w.write_all(line.as_bytes()).unwrap();
        bytes += line.len() as u64;
        i += 1;
    }
    w.flush().unwrap();
    bytes
}

fn spec(dir: &Path, glob: &str) -> SourceSpec {
    let names = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades"];
    let mut columns: Vec<(String, DataType)> = names
        .iter()
        .map(|n| {
            (n.to_string(), if n.ends_with("time") || *n == "trades" { DataType::Int64 } else { DataType::Float64 })
        })
        .collect();
    columns.push(("taker_buy_base".into(), DataType::Float64));
    columns.push(("taker_buy_quote".into(), DataType::Float64));
    columns.push(("ignore".into(), DataType::Int64));
    SourceSpec {
        name: "bench".into(),
        config: std::sync::Arc::new(DirSpec {
            path: dir.to_path_buf(),
            include: vec![glob.into()],
            exclude: vec![],
            fields: None,
            format: FormatSpec::Csv(CsvSpec { header: false, columns: Some(columns), ..Default::default() }),
            order: FileOrder::Name,
            compression: SourceCompression::Auto,
            members: vec![],
            limits: SourceLimits::default(),
        }),
        rejects: RejectPolicy::default(),
        retries: 3,
        ready: Default::default(),
        watch: Default::default(),
    }
}

fn measure(dir: &Path, glob: &str, raw_bytes: u64, label: &str) {
    let src = DirSource::new(&spec(dir, glob), 65_536).unwrap();
    let started = Instant::now();
    let mut rows = 0u64;
    for unit in src.discover().unwrap() {
        for item in src.open(&unit).unwrap() {
            match item.unwrap() {
                SourceItem::Batch(b) => rows += b.num_rows() as u64,
                SourceItem::Rejects(r) => panic!("unexpected rejects: {r:?}"),
                SourceItem::ContentHash { .. } | SourceItem::HighWater(_) => {}
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<6} {rows} rows, {:.1} MB (uncompressed) in {secs:.2}s: {:.0} MB/s, {:.2} M rows/s",
        raw_bytes as f64 / 1e6,
        raw_bytes as f64 / 1e6 / secs,
        rows as f64 / 1e6 / secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mb: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(100);
    let dir =
        args.get(2).map(std::path::PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("sluice-csv-bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("klines.csv");
    let bytes = generate(&csv, mb);
    measure(&dir, "klines.csv", bytes, "csv");
    let data = std::fs::read(&csv).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).unwrap();
    std::fs::write(dir.join("klines.csv.gz"), gz.finish().unwrap()).unwrap();
    measure(&dir, "klines.csv.gz", bytes, "gzip");
    std::fs::write(dir.join("klines.csv.zst"), zstd::encode_all(&data[..], 3).unwrap()).unwrap();
    measure(&dir, "klines.csv.zst", bytes, "zstd");
    println!("file: {}", csv.display());
}
