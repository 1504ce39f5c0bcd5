//! `sluice bench generate`: the deterministic kline workload of the DuckDB reference benchmark
//! (`benches/kline/`).
//!
//! N symbols × D days of 1-second klines, one headerless 12-column CSV per symbol and day named
//! `<SYMBOL>-1s-<YYYY-MM-DD>.csv` (or a `.zip` holding it), with realistic dirt: a few malformed
//! rows per file (truncated, a word for a number, an empty field), duplicated rows, and some files whose timestamps are in microseconds. Prices
//! and volumes are integers of ticks printed with 8 decimals, so the generator knows the exact
//! sums the pipeline must reproduce; they are written to `manifest.json` next to the data:
//! rows after cleaning, the sum of `close`, and the sum of the 20-row moving average of `close`
//! both continuous per symbol across files and restarted at each file.
//!
//! Every file comes from its own seed (derived from `--seed`, the symbol and the day), so files
//! are generated in parallel and the output is the same whatever the thread count.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use serde::Serialize;

use super::demo::{Rng, civil_from_days};
use crate::Exit;
use crate::cli::{BenchCommand, BenchGenerateArgs};

/// Symbols, their first price and their price decimals (the tick is 10^-decimals).
const SYMBOLS: &[(&str, i64, u32)] = &[
    ("BTCUSDT", 4_200_000, 2),
    ("ETHUSDT", 230_000, 2),
    ("SOLUSDT", 10_000, 2),
    ("BNBUSDT", 30_000, 2),
    ("XRPUSDT", 6_000, 4),
    ("ADAUSDT", 5_000, 4),
    ("DOGEUSDT", 800, 4),
    ("TRXUSDT", 1_000, 4),
];
/// 2024-01-01T00:00:00Z in ms.
const DAY0_MS: i64 = 1_704_067_200_000;
/// The moving-average window of the reference job.
const WINDOW: usize = 20;

pub fn bench(c: BenchCommand) -> Result<u8, Exit> {
    match c {
        BenchCommand::Generate(a) => generate(&a),
    }
}

/// One file to write.
struct Job {
    sym_index: usize,
    day: usize,
    path: PathBuf,
}

/// What one file holds (after cleaning: malformed rows dropped, duplicates removed).
#[derive(Default, Clone)]
struct FileFacts {
    rows: u64,
    duplicates: u64,
    malformed: u64,
    empty_fields: u64,
    micros: bool,
    bytes: u64,
    /// Sum of `close` in ticks.
    close_ticks: i128,
    /// Sum over rows with a full window *within the file* of the window's sum, in ticks.
    ma_window_ticks: i128,
    /// The first and last `WINDOW - 1` closes, to join windows across files.
    head: Vec<i64>,
    tail: Vec<i64>,
}

#[derive(Serialize)]
struct Manifest {
    generator: &'static str,
    seed: u64,
    symbols: Vec<String>,
    days: usize,
    first_date: String,
    rows_per_day: usize,
    zip: bool,
    files: usize,
    /// Files whose timestamps are in microseconds.
    micros_files: usize,
    /// Bytes of CSV text (uncompressed).
    csv_bytes: u64,
    /// Bytes on disk (the zips when `zip`).
    disk_bytes: u64,
    /// Lines written that do not parse under the explicit schema, or have an empty field (which
    /// the job drops: `not_null: "*"`, SQL's `WHERE ... IS NOT NULL`).
    malformed_rows: u64,
    /// Of those, the lines with one empty field.
    empty_field_rows: u64,
    /// Extra copies of good rows.
    duplicate_rows: u64,
    /// Rows after dropping malformed rows and duplicates.
    rows: u64,
    sum_close: f64,
    /// Sum of ma20 with the window continuous per symbol across files (ordered by time).
    sum_ma20: f64,
    /// Sum of ma20 when the window restarts at each file (null for its first 19 rows).
    sum_ma20_per_file: f64,
    /// Rows with a non-null ma20: continuous, and restarted per file.
    ma20_rows: u64,
    ma20_rows_per_file: u64,
}

fn generate(args: &BenchGenerateArgs) -> Result<u8, Exit> {
    if args.rows_per_day < 1 || args.rows_per_day > 86_400 {
        return Err(Exit::config(anyhow::anyhow!("--rows-per-day must be 1..=86400")));
    }
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut jobs = Vec::new();
    let mut symbols = Vec::new();
    for si in 0..args.symbols {
        let (base, _, _) = SYMBOLS[si % SYMBOLS.len()];
        let symbol = match si / SYMBOLS.len() {
            0 => base.to_string(),
            k => format!("{}{k}USDT", base.trim_end_matches("USDT")),
        };
        let dir = out.join(&symbol);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for day in 0..args.days {
            let date = civil_from_days(DAY0_MS / 86_400_000 + day as i64);
            let ext = if args.zip { "zip" } else { "csv" };
            jobs.push(Job { sym_index: si, day, path: dir.join(format!("{symbol}-1s-{date}.{ext}")) });
        }
        symbols.push(symbol);
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<FileFacts>>> = Mutex::new(vec![None; jobs.len()]);
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    match write_file(job, args) {
                        Ok(f) => results.lock().expect("results lock")[i] = Some(f),
                        Err(e) => {
                            errors.lock().expect("errors lock").push(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().expect("errors lock").pop() {
        return Err(e.into());
    }
    let facts: Vec<FileFacts> =
        results.into_inner().expect("results lock").into_iter().map(|f| f.expect("every job ran")).collect();
    let manifest = summarize(args, symbols, &jobs, &facts);
    let path = out.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).context("manifest")? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "generated {} file(s), {} rows ({} duplicates, {} malformed), {:.1} MB of CSV ({:.1} MB on disk) in {}",
        manifest.files,
        manifest.rows,
        manifest.duplicate_rows,
        manifest.malformed_rows,
        manifest.csv_bytes as f64 / 1e6,
        manifest.disk_bytes as f64 / 1e6,
        out.display()
    );
    Ok(0)
}

/// Totals, and the moving-average sums with windows joined across each symbol's files.
fn summarize(args: &BenchGenerateArgs, symbols: Vec<String>, jobs: &[Job], facts: &[FileFacts]) -> Manifest {
    let mut m = Manifest {
        generator: "sluice bench generate v2",
        seed: args.seed,
        symbols,
        days: args.days,
        first_date: civil_from_days(DAY0_MS / 86_400_000),
        rows_per_day: args.rows_per_day,
        zip: args.zip,
        files: jobs.len(),
        micros_files: 0,
        csv_bytes: 0,
        disk_bytes: 0,
        malformed_rows: 0,
        empty_field_rows: 0,
        duplicate_rows: 0,
        rows: 0,
        sum_close: 0.0,
        sum_ma20: 0.0,
        sum_ma20_per_file: 0.0,
        ma20_rows: 0,
        ma20_rows_per_file: 0,
    };
    // Per symbol (exact in ticks, scaled once at the end).
    let mut by_symbol: Vec<(i128, i128, i128)> = vec![(0, 0, 0); m.symbols.len()];
    let mut tails: Vec<VecDeque<i64>> = vec![VecDeque::new(); m.symbols.len()];
    let mut rows_per_symbol = vec![0u64; m.symbols.len()];
    for (job, f) in jobs.iter().zip(facts) {
        m.micros_files += usize::from(f.micros);
        m.csv_bytes += f.bytes;
        m.disk_bytes += std::fs::metadata(&job.path).map(|x| x.len()).unwrap_or(0);
        m.malformed_rows += f.malformed;
        m.empty_field_rows += f.empty_fields;
        m.duplicate_rows += f.duplicates;
        m.rows += f.rows;
        m.ma20_rows_per_file += f.rows.saturating_sub(WINDOW as u64 - 1);
        let s = &mut by_symbol[job.sym_index];
        s.0 += f.close_ticks;
        s.1 += f.ma_window_ticks;
        s.2 += f.ma_window_ticks;
        // Windows ending in this file's first rows that reach back into earlier files.
        let tail = &mut tails[job.sym_index];
        for i in 0..f.head.len() {
            let from_here = i + 1;
            let need = WINDOW - from_here;
            if tail.len() >= need {
                let earlier: i128 = tail.iter().skip(tail.len() - need).map(|&v| v as i128).sum();
                let here: i128 = f.head[..from_here].iter().map(|&v| v as i128).sum();
                s.2 += earlier + here;
            }
        }
        for &v in if f.rows as usize >= WINDOW - 1 { &f.tail } else { &f.head } {
            tail.push_back(v);
            if tail.len() > WINDOW - 1 {
                tail.pop_front();
            }
        }
        rows_per_symbol[job.sym_index] += f.rows;
    }
    m.ma20_rows = rows_per_symbol.iter().map(|&r| r.saturating_sub(WINDOW as u64 - 1)).sum();
    for (si, (close, per_file, continuous)) in by_symbol.into_iter().enumerate() {
        let scale = 10f64.powi(SYMBOLS[si % SYMBOLS.len()].2 as i32);
        m.sum_close += close as f64 / scale;
        m.sum_ma20_per_file += per_file as f64 / scale / WINDOW as f64;
        m.sum_ma20 += continuous as f64 / scale / WINDOW as f64;
    }
    m
}

/// `v` as decimal digits.
fn push_int(buf: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let (mut n, mut i) = (v.unsigned_abs(), tmp.len());
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// `v × 10^-decimals` printed with 8 decimals, as exchanges do (`42283.58000000`).
fn push_fixed(buf: &mut Vec<u8>, v: i64, decimals: u32) {
    let p = 10i64.pow(decimals);
    push_int(buf, v / p);
    buf.push(b'.');
    let frac = v % p;
    let mut digits = [b'0'; 8];
    let mut f = frac;
    for k in (0..decimals as usize).rev() {
        digits[k] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    buf.extend_from_slice(&digits);
}

/// An integer in `lo..=hi` (`hi >= lo`).
fn between(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + (rng.next() * (hi - lo + 1) as f64) as i64
}

/// One day of klines for one symbol: the CSV text and what it holds.
fn day_text(job: &Job, args: &BenchGenerateArgs) -> (Vec<u8>, FileFacts) {
    let (_, base_price, decimals) = SYMBOLS[job.sym_index % SYMBOLS.len()];
    let seed = args.seed ^ (job.sym_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (job.day as u64) << 40;
    let mut rng = Rng(seed);
    let n = args.rows_per_day;
    // About a quarter of the files carry microsecond timestamps (as exchanges that changed unit).
    let micros = rng.next() < 0.25;
    // The day's first price drifts from the symbol's base price, so every day stands alone.
    let mut price = (base_price as f64 * (0.8 + 0.4 * rng.next())) as i64;
    // Per-second moves of about 5 basis points.
    let step = (price / 2000).max(1);
    let dups = (n / 1000).max(1);
    let malformed = 4usize;
    let mut dup_at: Vec<usize> = (0..dups).map(|_| (rng.next() * n as f64) as usize).collect();
    dup_at.sort_unstable();
    let mut bad_at: Vec<usize> = (0..malformed).map(|_| (rng.next() * n as f64) as usize).collect();
    bad_at.sort_unstable();
    let (mut di, mut bi) = (0, 0);
    let mut buf = Vec::with_capacity(n * 150 + 1024);
    let mut line = Vec::with_capacity(256);
    let mut facts = FileFacts { micros, ..Default::default() };
    let mut ring: VecDeque<i64> = VecDeque::with_capacity(WINDOW);
    let mut ring_sum: i128 = 0;
    let day_ms = DAY0_MS + job.day as i64 * 86_400_000;
    let vol_scale = 100_000; // volumes in 1e-5 units
    for i in 0..n {
        let open_ms = day_ms + i as i64 * 1000;
        let open = price;
        price = (price + between(&mut rng, -step, step)).max(1);
        let close = price;
        let high = open.max(close) + between(&mut rng, 0, step / 2);
        let low = (open.min(close) - between(&mut rng, 0, step / 2)).max(1);
        let volume = between(&mut rng, 0, 20 * vol_scale);
        let trades = between(&mut rng, 0, 200);
        let taker = (volume as f64 * rng.next()) as i64;
        line.clear();
        let (t_open, t_close) =
            if micros { (open_ms * 1000, open_ms * 1000 + 999_999) } else { (open_ms, open_ms + 999) };
        push_int(&mut line, t_open);
        for p in [open, high, low, close] {
            line.push(b',');
            push_fixed(&mut line, p, decimals);
        }
        line.push(b',');
        push_fixed(&mut line, volume, 5);
        line.push(b',');
        push_int(&mut line, t_close);
        line.push(b',');
        // volume (1e-5) × price (1e-decimals): exact in 1e-(5 + decimals) units, at most 8 shown.
        push_quote(&mut line, volume as i128 * close as i128, 5 + decimals);
        line.push(b',');
        push_int(&mut line, trades);
        line.push(b',');
        push_fixed(&mut line, taker, 5);
        line.push(b',');
        push_quote(&mut line, taker as i128 * close as i128, 5 + decimals);
        line.extend_from_slice(b",0\n");
        // Malformed lines go before the row (with its key): a truncated row, a value that is not
        // a number, and a row with one empty field (a different one each time).
        while bi < bad_at.len() && bad_at[bi] == i {
            if bi % 3 == 0 {
                let cut = line.len() / 3;
                buf.extend_from_slice(&line[..cut]);
                buf.push(b'\n');
            } else {
                let mut fields: Vec<&[u8]> = line.trim_ascii_end().split(|&b| b == b',').collect();
                if bi % 3 == 1 {
                    fields[4] = b"n/a";
                } else {
                    fields[1 + i % 10] = b"";
                    facts.empty_fields += 1;
                }
                buf.extend_from_slice(&fields.join(&b',')[..]);
                buf.push(b'\n');
            }
            facts.malformed += 1;
            bi += 1;
        }
        buf.extend_from_slice(&line);
        // A duplicated row: the same line again.
        while di < dup_at.len() && dup_at[di] == i {
            buf.extend_from_slice(&line);
            facts.duplicates += 1;
            di += 1;
        }
        facts.rows += 1;
        facts.close_ticks += close as i128;
        if facts.head.len() < WINDOW - 1 {
            facts.head.push(close);
        }
        ring.push_back(close);
        ring_sum += close as i128;
        if ring.len() > WINDOW {
            ring_sum -= ring.pop_front().expect("non-empty") as i128;
        }
        if ring.len() == WINDOW {
            facts.ma_window_ticks += ring_sum;
        }
    }
    facts.tail = ring.iter().skip(ring.len().saturating_sub(WINDOW - 1)).copied().collect();
    facts.bytes = buf.len() as u64;
    (buf, facts)
}

/// A quote amount given in 10^-scale units, printed with 8 decimals (truncated beyond).
fn push_quote(buf: &mut Vec<u8>, v: i128, scale: u32) {
    let v = if scale > 8 { v / 10i128.pow(scale - 8) } else { v * 10i128.pow(8 - scale) };
    push_fixed(buf, v as i64, 8);
}

fn write_file(job: &Job, args: &BenchGenerateArgs) -> anyhow::Result<FileFacts> {
    let (text, facts) = day_text(job, args);
    let name = job.path.file_name().and_then(|n| n.to_str()).expect("generated names are UTF-8");
    let tmp = job.path.with_file_name(format!(".{name}.partial"));
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    if args.zip {
        let member = format!("{}.csv", name.trim_end_matches(".zip"));
        let mut z = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .last_modified_time(zip::DateTime::default());
        z.start_file(member, opts)?;
        z.write_all(&text)?;
        z.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    } else {
        let mut w = std::io::BufWriter::new(file);
        w.write_all(&text)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, &job.path).with_context(|| format!("renaming into {}", job.path.display()))?;
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_printing() {
        let mut b = Vec::new();
        push_fixed(&mut b, 4_228_358, 2);
        b.push(b' ');
        push_fixed(&mut b, 6_012, 4);
        b.push(b' ');
        push_quote(&mut b, 513_289 * 4_228_358, 7);
        assert_eq!(String::from_utf8(b).unwrap(), "42283.58000000 0.60120000 217036.96494620");
    }
}
