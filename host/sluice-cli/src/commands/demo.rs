//! `sluice demo`: generate a small kline dataset, run the example pipeline, query the lake.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sluice_core::catalog::Catalog;

use crate::Exit;
use crate::cli::{DemoArgs, Global, OutputFormat, RunArgs};

/// The example pipeline, embedded so the demo runs from any directory.
const PIPELINE: &str = include_str!("../../../../pipelines/klines.yaml");

const SYMBOLS: &[&str] = &["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "TRXUSDT"];

/// A small deterministic generator (SplitMix64), so every demo makes the same data.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Write one headerless 12-column kline CSV per symbol and day. Returns the files written.
pub fn generate(data: &Path, symbols: usize, days: usize, rows_per_day: usize) -> anyhow::Result<usize> {
    let root = data.join("spot/daily/klines");
    let day0_ms: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    let mut files = 0;
    for (si, sym) in SYMBOLS.iter().cycle().take(symbols).enumerate() {
        let sym = if si < SYMBOLS.len() { sym.to_string() } else { format!("{sym}{si}") };
        let dir = root.join(&sym);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut rng = Rng(si as u64 + 1);
        let mut price = 100.0 * (si as f64 + 1.0);
        for d in 0..days {
            let day_ms = day0_ms + d as i64 * 86_400_000;
            let date = civil_from_days(day_ms / 86_400_000);
            let path = dir.join(format!("{sym}-1s-{date}.csv"));
            if path.exists() {
                continue;
            }
            let tmp = dir.join(format!(".{sym}-1s-{date}.csv.partial"));
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
            );
            for i in 0..rows_per_day as i64 {
                let open_time = day_ms + i * 1000;
                let open = price;
                price *= 1.0 + (rng.next() - 0.5) * 0.002;
                let (hi, lo) =
                    (open.max(price) * (1.0 + rng.next() * 0.0005), open.min(price) * (1.0 - rng.next() * 0.0005));
                let volume = rng.next() * 10.0;
                let trades = (rng.next() * 50.0) as i64;
                writeln!(
                    w,
                    "{open_time},{open:.4},{hi:.4},{lo:.4},{price:.4},{volume:.6},{},{:.6},{trades},{:.6},{:.6},0",
                    open_time + 999,
                    volume * price,
                    volume / 2.0,
                    volume * price / 2.0
                )?;
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
            files += 1;
        }
    }
    Ok(files)
}

/// `YYYY-MM-DD` for days since the epoch.
pub(crate) fn civil_from_days(z: i64) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn demo(args: &DemoArgs, g: &Global) -> Result<u8, Exit> {
    let dir = absolute(&args.dir)?;
    let data = dir.join("data");
    let lake = dir.join("lake");
    let written = generate(&data, args.symbols, args.days, args.rows_per_day)?;
    eprintln!(
        "demo: {} symbol(s) x {} day(s) of 1s klines in {} ({written} new file(s))",
        args.symbols,
        args.days,
        data.display()
    );
    let pipeline_file = dir.join("klines.yaml");
    std::fs::write(&pipeline_file, PIPELINE).with_context(|| format!("writing {}", pipeline_file.display()))?;
    let (data_s, lake_s) = (data.display().to_string(), lake.display().to_string());
    let env = move |k: &str| match k {
        "DATA_DIR" => Some(data_s.clone()),
        "LAKE_DIR" => Some(lake_s.clone()),
        _ => None,
    };
    let specs = sluice_config::parse_str(PIPELINE, &pipeline_file, &env).map_err(Exit::config)?;
    let run_args = RunArgs {
        pipelines: vec![pipeline_file],
        force: false,
        rerun_stale: false,
        workers: None,
        summary_json: None,
        no_catalog: false,
    };
    let summaries = super::run::run_specs(&specs, &run_args, g, Default::default(), true)?;
    let catalog = sluice_catalog::DuckCatalog::for_lake(&lake);
    let sql = "SELECT symbol, count(*) AS rows, count(DISTINCT date) AS days, min(date) AS first_day, \
               max(date) AS last_day, round(avg(close), 4) AS avg_close, round(avg(ma20), 4) AS avg_ma20 \
               FROM klines GROUP BY symbol ORDER BY symbol";
    let batches = catalog.query(sql).map_err(Exit::data)?;
    println!("\nThe lake, through DuckDB ({}):", catalog.path().display());
    crate::output::print_batches(&batches, OutputFormat::Table)?;
    println!("\nTry: sluice query --lake {} \"SELECT * FROM klines LIMIT 5\"", lake.display());
    let failed = summaries.iter().any(|s| s.fatal.is_some() || s.files_failed > 0 || s.catalog_error.is_some());
    Ok(if failed { crate::EXIT_DATA } else { 0 })
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}
