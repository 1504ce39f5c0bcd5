//! Benchmark: plugin load times (cold compile, cached) and the per-call overhead of a pass-through
//! plugin on a 64K-row kline-shaped batch. Run: `cargo bench -p sluice-wasm --bench overhead`.
//! Prints a Markdown table for docs/benchmarks.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use sluice_core::plugin::{Handler, PluginRuntime};
use sluice_core::spec::{Limits, PluginRef};
use sluice_wasm::{RuntimeOptions, WasmRuntime};

fn plugin_path() -> PathBuf {
    let dir = std::env::var_os("SLUICE_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist"));
    dir.join("passthrough.wasm")
}

fn kline_batch(rows: usize) -> RecordBatch {
    let mut fields = vec![Field::new("open_time", DataType::Int64, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|i| i * 1000)))];
    for name in ["open", "high", "low", "close", "volume", "quote_volume", "taker_buy_base", "taker_buy_quote"] {
        fields.push(Field::new(name, DataType::Float64, false));
        cols.push(Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64 * 0.01))));
    }
    fields.push(Field::new("close_time", DataType::Int64, false));
    cols.push(Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|i| i * 1000 + 999))));
    fields.push(Field::new("trades", DataType::Int64, false));
    cols.push(Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|i| i % 50))));
    fields.push(Field::new("symbol", DataType::Utf8, false));
    cols.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n("BTCUSDT", rows))));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_call(h: &mut Box<dyn Handler>, batch: &RecordBatch, iters: usize) -> Duration {
    for _ in 0..3 {
        h.process(batch).unwrap();
    }
    median(
        (0..iters)
            .map(|_| {
                let t = Instant::now();
                let out = h.process(batch).unwrap();
                let d = t.elapsed();
                assert_eq!(out[0].num_rows(), batch.num_rows());
                d
            })
            .collect(),
    )
}

fn main() {
    let bytes: &'static [u8] =
        Box::leak(std::fs::read(plugin_path()).expect("built passthrough plugin").into_boxed_slice());
    let cache = tempfile::tempdir().unwrap();
    let opts = |cache_dir: Option<PathBuf>| RuntimeOptions {
        cache_dir,
        plugin_dir: None,
        builtins: [("passthrough".to_string(), bytes)].into_iter().collect(),
    };
    let name = PluginRef::Named("passthrough".into());

    let t = Instant::now();
    WasmRuntime::new(opts(None)).unwrap().load(&name).unwrap();
    let cold = t.elapsed();

    WasmRuntime::new(opts(Some(cache.path().into()))).unwrap().load(&name).unwrap();
    let cached = median(
        (0..10)
            .map(|_| {
                let rt = WasmRuntime::new(opts(Some(cache.path().into()))).unwrap();
                let t = Instant::now();
                rt.load(&name).unwrap();
                t.elapsed()
            })
            .collect(),
    );

    let rt = WasmRuntime::new(opts(None)).unwrap();
    let plugin = rt.load(&name).unwrap();
    let t = Instant::now();
    let mut h = plugin.instantiate("null", &Limits::default()).unwrap();
    let instantiate = t.elapsed();

    let big = kline_batch(65_536);
    let tiny = kline_batch(1);
    let big_call = per_call(&mut h, &big, 30);
    let tiny_call = per_call(&mut h, &tiny, 200);
    let mb = big.get_array_memory_size() as f64 / 1e6;

    // The host's share: encoding the input and decoding + validating the output.
    let host_side = median(
        (0..30)
            .map(|_| {
                let t = Instant::now();
                let bytes = sluice_wasm::bench_support::encode(&big);
                let n = sluice_wasm::bench_support::decode(bytes);
                assert_eq!(n, big.num_rows());
                t.elapsed()
            })
            .collect(),
    );

    println!("| measurement | value |");
    println!("|---|---|");
    println!("| component size | {:.2} MB |", bytes.len() as f64 / 1e6);
    println!("| cold load (compile, no cache) | {:.1} ms |", cold.as_secs_f64() * 1e3);
    println!("| cached load (median of 10) | {:.2} ms |", cached.as_secs_f64() * 1e3);
    println!("| instantiate + construct handler | {:.2} ms |", instantiate.as_secs_f64() * 1e3);
    println!(
        "| pass-through call, 64K rows x 12 cols ({mb:.1} MB), median | {:.2} ms ({:.0} MB/s) |",
        big_call.as_secs_f64() * 1e3,
        mb / big_call.as_secs_f64()
    );
    println!("| of which host-side IPC encode + decode/validate | {:.2} ms |", host_side.as_secs_f64() * 1e3);
    println!("| pass-through call, 1 row, median (fixed overhead) | {:.1} us |", tiny_call.as_secs_f64() * 1e6);
}
