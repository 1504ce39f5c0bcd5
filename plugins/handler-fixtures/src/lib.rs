//! The data-driven handler cases of `tests/handlers/<case>/`, generated from the
//! native (rlib) builds of the standard handlers.
//!
//! Each case directory holds `pipeline.yaml` (a CSV source, one handler step,
//! small batches so that state crosses batch boundaries), `in/input.csv`,
//! `check.sql` (what the e2e test asks `sluice query`) and `expected.csv`: the
//! output of the native handler on the same batches. The e2e test
//! `handlers::wasm_matches_native_fixtures` runs the WASM build through the
//! CLI and compares. `cargo test -p handler-fixtures` fails when the committed
//! files differ from what the native code produces now; regenerate them with
//! `SLUICE_BLESS=1 cargo test -p handler-fixtures`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_plugin::arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMillisecondType};
use sluice_plugin::prelude::*;
use sluice_plugin::{Handler, parse_config};

/// Rows per batch, in the pipeline (`settings.batch_rows`) and natively.
pub const BATCH_ROWS: usize = 7;

/// One generated case.
pub struct Case {
    pub name: &'static str,
    pub plugin: &'static str,
    pub config: String,
    pub input: RecordBatch,
    /// Lookup tables (the step's `tables:`), written as `ref/<name>.csv`.
    pub tables: Vec<(&'static str, RecordBatch)>,
    /// The rows the host keeps: the handler's output without the rows it rejected (and
    /// without the reject column).
    pub output: Vec<RecordBatch>,
    /// Rows the handler set aside through the reject column.
    pub rejected: usize,
    /// Columns the check selects, and the ORDER BY.
    pub select: Vec<String>,
    pub order_by: &'static str,
}

/// The input columns (CSV types in the pipeline).
const COLUMNS: [(&str, &str); 8] = [
    ("seq", "int64"),
    ("symbol", "utf8"),
    ("open_time", "int64"),
    ("open", "float64"),
    ("high", "float64"),
    ("low", "float64"),
    ("close", "float64"),
    ("volume", "float64"),
];

/// Deterministic klines-like input: 3 symbols, 1-second bars over ~3 minutes,
/// interleaved; every 17th close is null. `unit_mix` writes open_time in
/// s/ms/µs/ns by turns; `dups` repeats every 5th row (same symbol and time).
pub fn klines(rows: usize, unit_mix: bool, dups: bool) -> RecordBatch {
    klines_with(rows, unit_mix, dups, false, false)
}

/// [`klines`], plus: `gappy` inserts a one-minute pause after every 7 seconds; `dirty` pads
/// every 4th symbol with spaces, a tab and a control character.
pub fn klines_with(rows: usize, unit_mix: bool, dups: bool, gappy: bool, dirty: bool) -> RecordBatch {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 10_000) as f64 / 10_000.0
    };
    let syms = ["BTCUSDT", "ETHUSDT", "XRPUSDT"];
    let mut price = [100.0f64, 50.0, 0.5];
    let (mut seq, mut sym, mut t, mut o, mut h, mut l, mut c, mut v) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let base_ms: i64 = 1_700_000_000_000;
    let mut i = 0usize;
    while seq.len() < rows {
        let s = i % 3;
        let sec = (i / 3) as i64;
        let open = (price[s] * 100.0).round() / 100.0;
        let close = ((open * (1.0 + (rnd() - 0.5) * 0.02)) * 100.0).round() / 100.0;
        price[s] = close;
        let hi = ((open.max(close) * (1.0 + rnd() * 0.005)) * 100.0).round() / 100.0;
        let lo = ((open.min(close) * (1.0 - rnd() * 0.005)) * 100.0).round() / 100.0;
        let ms = base_ms + sec * 1000 + if gappy { (sec / 7) * 60_000 } else { 0 };
        let time = if unit_mix {
            match i % 4 {
                0 => ms / 1000,
                1 => ms,
                2 => ms * 1000 + 123,
                _ => ms * 1_000_000 + 456_789,
            }
        } else {
            ms
        };
        let copies = if dups && i.is_multiple_of(5) { 2 } else { 1 };
        for _ in 0..copies {
            seq.push(seq.len() as i64);
            sym.push(if dirty && i % 4 == 1 { format!("  {}\t\u{7} ", syms[s]) } else { syms[s].to_string() });
            t.push(time);
            o.push(Some(open));
            h.push(Some(hi));
            l.push(Some(lo));
            c.push(if i % 17 == 16 { None } else { Some(close) });
            v.push(Some((rnd() * 1000.0).round() / 100.0));
        }
        i += 1;
    }
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|(n, t)| {
            let dt = match *t {
                "int64" => DataType::Int64,
                "utf8" => DataType::Utf8,
                _ => DataType::Float64,
            };
            Field::new(*n, dt, true)
        })
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        vec![
            Arc::new(Int64Array::from(seq)),
            Arc::new(StringArray::from(sym)),
            Arc::new(Int64Array::from(t)),
            Arc::new(Float64Array::from(o)),
            Arc::new(Float64Array::from(h)),
            Arc::new(Float64Array::from(l)),
            Arc::new(Float64Array::from(c)),
            Arc::new(Float64Array::from(v)),
        ],
    )
    .unwrap()
}

/// `input` with holes: `open` null on every 13th row, `volume` on every 11th, `symbol` on every
/// 19th (besides `close` on every 17th).
pub fn with_holes(input: RecordBatch) -> RecordBatch {
    let mut cols = input.columns().to_vec();
    for (name, every, at) in [("open", 13, 5), ("volume", 11, 3), ("symbol", 19, 7)] {
        let i = input.schema().index_of(name).unwrap();
        let hole: BooleanArray = (0..input.num_rows()).map(|r| Some(r % every == at)).collect();
        cols[i] = sluice_plugin::arrow_select::nullif::nullif(&cols[i], &hole).unwrap();
    }
    RecordBatch::try_new(input.schema(), cols).unwrap()
}

/// Runs handler `H` natively over `input` in batches of [`BATCH_ROWS`], then finishes.
pub fn run_native<H: Handler>(config: &str, input: &RecordBatch) -> Vec<RecordBatch> {
    run_native_with::<H>(config, &[], input)
}

/// [`run_native`] with lookup tables.
pub fn run_native_with<H: Handler>(
    config: &str,
    tables: &[(&str, RecordBatch)],
    input: &RecordBatch,
) -> Vec<RecordBatch> {
    let tables = Tables::new(tables.iter().map(|(n, b)| Table::new(*n, b.schema(), vec![b.clone()])).collect());
    let config = parse_config(config).unwrap_or_else(|e| panic!("{e}"));
    let mut h = H::new_with_tables(config, tables).unwrap_or_else(|e| panic!("{e}"));
    // As the host does: a projecting handler gets its columns and returns patches.
    let schema = sluice_plugin::patch::output_schema(&h, &input.schema()).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let mut start = 0;
    while start < input.num_rows() {
        let len = BATCH_ROWS.min(input.num_rows() - start);
        out.extend(sluice_plugin::patch::process(&mut h, &input.slice(start, len)).unwrap_or_else(|e| panic!("{e}")));
        start += len;
    }
    out.extend(h.finish().unwrap_or_else(|e| panic!("{e}")));
    for b in &out {
        assert_eq!(b.schema().fields(), schema.fields(), "declared schema");
    }
    out
}

fn case<H: Handler>(
    name: &'static str,
    plugin: &'static str,
    config: &str,
    input: RecordBatch,
    order_by: &'static str,
) -> Case {
    case_with::<H>(name, plugin, config, vec![], input, order_by)
}

/// What the host does with a handler's output: rows with a reject reason go to `_rejects`,
/// the reject column is dropped. Returns the kept rows and the number rejected.
pub fn apply_rejects(out: Vec<RecordBatch>) -> (Vec<RecordBatch>, usize) {
    let mut rejected = 0;
    let mut kept = Vec::new();
    for b in out {
        let Ok(i) = b.schema().index_of(REJECT_COLUMN) else {
            kept.push(b);
            continue;
        };
        let reasons = b.column(i).clone();
        rejected += reasons.len() - reasons.null_count();
        let keep = BooleanArray::from((0..b.num_rows()).map(|r| reasons.is_null(r)).collect::<Vec<_>>());
        let mut b = sluice_plugin::arrow_select::filter::filter_record_batch(&b, &keep).unwrap();
        b.remove_column(i);
        kept.push(b);
    }
    (kept, rejected)
}

fn case_with<H: Handler>(
    name: &'static str,
    plugin: &'static str,
    config: &str,
    tables: Vec<(&'static str, RecordBatch)>,
    input: RecordBatch,
    order_by: &'static str,
) -> Case {
    let (output, rejected) = apply_rejects(run_native_with::<H>(config, &tables, &input));
    let select = match output.first() {
        Some(b) => b
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                // Compared as text and epoch numbers, whatever the query engine prints.
                DataType::Date32 => format!("CAST({0} AS VARCHAR) AS {0}", f.name()),
                DataType::Timestamp(TimeUnit::Millisecond, None) => format!("epoch_ms({0}) AS {0}", f.name()),
                DataType::Timestamp(TimeUnit::Microsecond, None) => format!("epoch_us({0}) AS {0}", f.name()),
                _ => f.name().clone(),
            })
            .collect(),
        None => vec![],
    };
    Case { name, plugin, config: config.to_string(), input, tables, output, rejected, select, order_by }
}

/// `YYYY-MM-DD` of days since 1970-01-01 (proleptic Gregorian).
fn civil(days: i32) -> String {
    let z = days as i64 + 719_468;
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

/// Symbol reference data for `enrich`: two of the three klines symbols, plus one absent there.
pub fn symbols_table() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("tick_size", DataType::Float64, true),
        Field::new("rank", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["BTCUSDT", "SOLUSDT", "ETHUSDT"])),
            Arc::new(StringArray::from(vec!["Bitcoin", "Solana", "Ether"])),
            Arc::new(Float64Array::from(vec![0.01, 0.001, 0.05])),
            Arc::new(Int64Array::from(vec![1, 5, 2])),
        ],
    )
    .unwrap()
}

/// Raw text columns for `clean`'s type mapping: numbers, booleans, dates and times, some of
/// them malformed in every way the mapping must catch.
pub fn raw_text(rows: usize) -> RecordBatch {
    let (mut seq, mut qty, mut price, mut flag, mut day, mut ts) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..rows {
        seq.push(i as i64);
        qty.push(match i % 11 {
            3 => Some("x7".to_string()),
            7 => Some("2.5".to_string()),
            9 => None,
            _ => Some(format!("{}", (i * 13) % 97)),
        });
        price.push(match i % 7 {
            5 => Some("n/a".to_string()),
            _ => Some(format!("{}.{}", i % 50, i % 10)),
        });
        flag.push(Some(["true", "false", "yes", "0", "maybe"][i % 5].to_string()).filter(|_| i % 13 != 12));
        day.push(match i % 17 {
            4 => "31/02/2024".to_string(),
            _ => format!("{:02}/{:02}/2024", 1 + i % 28, 1 + i % 12),
        });
        ts.push(match i % 19 {
            6 => "soon".to_string(),
            _ => format!("2024-03-{:02}T{:02}:{:02}:{:02}Z", 1 + i % 28, i % 24, (i * 7) % 60, (i * 11) % 60),
        });
    }
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, true),
            text("qty"),
            text("price"),
            text("flag"),
            text("day"),
            text("ts"),
        ])),
        vec![
            Arc::new(Int64Array::from(seq)),
            Arc::new(StringArray::from(qty)),
            Arc::new(StringArray::from(price)),
            Arc::new(StringArray::from(flag)),
            Arc::new(StringArray::from(day)),
            Arc::new(StringArray::from(ts)),
        ],
    )
    .unwrap()
}

/// Events over most of a year for three users: a timestamp every ~9.7 hours (crossing month,
/// quarter and daylight-saving boundaries in Europe/Berlin and America/New_York), its date, an
/// integer amount, a price, and a day/month text with some values that do not parse.
pub fn events(rows: usize) -> RecordBatch {
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
    let users = ["ann", "bob", "cy"];
    let (mut seq, mut user, mut ts, mut day, mut amount, mut price, mut text) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..rows {
        let t = start + chrono::Duration::minutes(i as i64 * 583);
        seq.push(i as i64);
        user.push(users[(i * 7 / 3) % 3]);
        ts.push(t.and_utc().timestamp_millis());
        day.push((t.date() - start.date()).num_days() as i32 + 19_723);
        amount.push(((i * 37) % 101) as i64 - 20);
        price.push(Some(((i * 53) % 997) as f64 / 10.0).filter(|_| i % 23 != 4));
        text.push(match i % 9 {
            4 => "soon".to_string(),
            _ => t.format("%d/%m/%Y %H:%M").to_string(),
        });
    }
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, true),
            Field::new("uid", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("day", DataType::Date32, true),
            Field::new("amount", DataType::Int64, true),
            Field::new("price", DataType::Float64, true),
            Field::new("text", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(seq)),
            Arc::new(StringArray::from(user)),
            Arc::new(sluice_plugin::arrow_array::TimestampMillisecondArray::from(ts)),
            Arc::new(sluice_plugin::arrow_array::Date32Array::from(day)),
            Arc::new(Int64Array::from(amount)),
            Arc::new(Float64Array::from(price)),
            Arc::new(StringArray::from(text)),
        ],
    )
    .unwrap()
}

/// Every case.
pub fn cases() -> Vec<Case> {
    vec![
        case::<normalize_time::NormalizeTime>(
            "normalize_time",
            "normalize_time",
            r#"{"columns": ["open_time"], "to": "ms"}"#,
            klines(90, true, false),
            "seq",
        ),
        case::<dedup::Dedup>(
            "dedup",
            "dedup",
            r#"{"keys": ["symbol", "open_time"], "keep": "first"}"#,
            klines(90, false, true),
            "seq",
        ),
        case::<filter::Filter>(
            "filter",
            "filter",
            r#"{"where": "close > 100 and symbol in ('BTCUSDT', 'ETHUSDT') or close is null or lower(symbol) = 'xrpusdt' and volume >= 5"}"#,
            klines(120, false, false),
            "seq",
        ),
        case::<derive::Derive>(
            "derive",
            "derive",
            r#"{"columns": {"mid": "(high + low) / 2", "sym": "lower(symbol)", "range_bp": "round((high - low) / low * 10000, 3)", "up": "close > open", "tag": "concat(symbol, ':', seq % 3)", "t_s": "open_time / 1000 - 1700000000"}}"#,
            klines(60, false, false),
            "seq",
        ),
        case::<indicators::Indicators>(
            "indicators",
            "indicators",
            r#"{"keys": ["symbol"], "order_by": "open_time", "indicators": [
                {"kind": "sma", "column": "close", "window": 5, "as": "sma5"},
                {"kind": "ema", "column": "close", "window": 5, "as": "ema5"},
                {"kind": "rolling_min", "column": "low", "window": 4, "as": "min4"},
                {"kind": "rolling_max", "column": "high", "window": 4, "as": "max4"},
                {"kind": "rolling_std", "column": "close", "window": 6, "as": "std6"},
                {"kind": "rsi", "column": "close", "window": 6, "as": "rsi6"},
                {"kind": "bollinger", "column": "close", "window": 5, "as": "bb", "k": 2},
                {"kind": "returns", "column": "close", "as": "ret1"},
                {"kind": "log_returns", "column": "close", "window": 3, "as": "lret3"}]}"#,
            klines(150, false, false),
            "seq",
        ),
        case::<aggregate::Aggregate>(
            "aggregate",
            "aggregate",
            r#"{"keys": ["symbol"], "time": "open_time", "every": "20s", "aggs": [
                {"fn": "count", "as": "n"}, {"fn": "sum", "column": "volume"}, {"fn": "mean", "column": "close"},
                {"fn": "min", "column": "low"}, {"fn": "max", "column": "high"}, {"fn": "first", "column": "open"},
                {"fn": "last", "column": "close"}, {"fn": "count_distinct", "column": "close"}, {"fn": "count", "column": "close", "as": "n_close"}]}"#,
            klines(150, false, false),
            "symbol, open_time",
        ),
        case::<sessionize::Sessionize>(
            "sessionize",
            "sessionize",
            r#"{"keys": ["symbol"], "time": "open_time", "gap": "30s"}"#,
            klines_with(120, false, false, true, false),
            "seq",
        ),
        case::<sessionize::Sessionize>(
            "sessionize_sessions",
            "sessionize",
            r#"{"keys": ["symbol"], "time": "open_time", "gap": "30s", "output": "sessions"}"#,
            klines_with(120, false, false, true, false),
            "symbol, session_start",
        ),
        case::<normalize::Normalize>(
            "normalize",
            "normalize",
            r#"{"columns": ["close", "volume"], "method": "zscore", "window": 6, "keys": ["symbol"], "order_by": "open_time", "suffix": "_z"}"#,
            klines(90, false, false),
            "seq",
        ),
        case::<clean::Clean>(
            "clean_types",
            "clean",
            r#"{"types": {"qty": "int64", "price": {"type": "float64", "on_fail": "null"}, "flag": "bool",
                "day": {"type": "date", "format": "%d/%m/%Y"}, "ts": {"type": "timestamp", "unit": "ms"}},
                "on_fail": "reject", "nulls": {"price": {"default": -1}}}"#,
            raw_text(120),
            "seq",
        ),
        case_with::<enrich::Enrich>(
            "enrich",
            "enrich",
            r#"{"on": ["symbol"], "columns": ["name", "tick_size"], "rename": {"name": "symbol_name"}}"#,
            vec![("symbols", symbols_table())],
            klines(60, false, false),
            "seq",
        ),
        case_with::<enrich::Enrich>(
            "enrich_inner",
            "enrich",
            r#"{"table": "symbols", "on": [{"symbol": "symbol"}], "how": "inner"}"#,
            vec![("symbols", symbols_table())],
            klines(60, false, false),
            "seq",
        ),
        case::<indicators::Indicators>(
            "indicators_time",
            "indicators",
            r#"{"keys": ["symbol"], "order_by": "open_time", "unit": "ms", "indicators": [
                {"kind": "sma", "column": "close", "window": "4s", "as": "sma4s"},
                {"kind": "rolling_min", "column": "low", "window": "3s", "as": "min3s"},
                {"kind": "rolling_max", "column": "high", "window": "3s", "as": "max3s"},
                {"kind": "rolling_std", "column": "close", "window": "5s", "as": "std5s"},
                {"kind": "bollinger", "column": "close", "window": "4s", "as": "bb", "k": 2},
                {"kind": "sma", "column": "close", "window": 3, "as": "sma3"}]}"#,
            klines_with(150, false, false, true, false),
            "seq",
        ),
        case::<clean::Clean>(
            "clean",
            "clean",
            r#"{"nulls": {"close": "drop", "volume": {"default": 0}}, "strings": {"columns": ["symbol"]}}"#,
            klines_with(90, false, false, false, true),
            "seq",
        ),
        case::<indicators::Indicators>(
            "indicators_min_periods",
            "indicators",
            r#"{"keys": ["symbol"], "order_by": "open_time", "indicators": [
                {"kind": "sma", "column": "close", "window": 20, "min_periods": 1, "as": "ma20"},
                {"kind": "sma", "column": "close", "window": 5, "min_periods": 3, "as": "sma5"},
                {"kind": "ema", "column": "close", "window": 5, "min_periods": 1, "as": "ema5"},
                {"kind": "rolling_min", "column": "low", "window": 4, "min_periods": 1, "as": "min4"},
                {"kind": "rolling_max", "column": "high", "window": 4, "min_periods": 2, "as": "max4"},
                {"kind": "rolling_std", "column": "close", "window": 6, "min_periods": 1, "as": "std6"},
                {"kind": "bollinger", "column": "close", "window": 5, "min_periods": 1, "as": "bb", "k": 2},
                {"kind": "sma", "column": "close", "window": "4s", "min_periods": 3, "as": "sma4s"}]}"#,
            klines(150, false, false),
            "seq",
        ),
        case::<clean::Clean>(
            "clean_any_null",
            "clean",
            r#"{"nulls": {"*": "drop"}}"#,
            with_holes(klines(120, false, false)),
            "seq",
        ),
        case::<clean::Clean>(
            "clean_null_rejects",
            "clean",
            r#"{"nulls": {"*": "reject", "volume": {"default": 0}, "open": "drop"}}"#,
            with_holes(klines(120, false, false)),
            "seq",
        ),
        case::<resample::Resample>(
            "resample",
            "resample",
            r#"{"keys": ["symbol"], "time": "open_time", "every": "1m"}"#,
            klines(600, false, false),
            "symbol, open_time",
        ),
        case::<derive::Derive>(
            "derive_dates",
            "derive",
            r#"{"columns": {"y": "year(ts)", "m": "month(ts)", "wd": "weekday(ts)", "h_ny": "hour(ts, 'America/New_York')",
                "month_start": "date_trunc('month', ts)", "week_berlin": "date_trunc('week', ts, 'Europe/Berlin')",
                "quarter_start": "date_trunc('quarter', day)", "tokyo_day": "date(ts, 'Asia/Tokyo')",
                "days_in": "date_diff('day', date '2024-01-01', day)", "months_in": "date_diff('month', timestamp '2024-01-01', ts, 'Europe/Berlin')",
                "label": "strftime(ts, '%Y-%m %a %H:%M')", "parsed": "try_strptime(text, '%d/%m/%Y %H:%M')",
                "next_month": "ts + interval '1 month'", "due": "day + 30", "ms": "epoch_ms(ts)", "back": "to_timestamp(epoch(ts))"}}"#,
            events(200),
            "seq",
        ),
        case::<filter::Filter>(
            "filter_dates",
            "filter",
            r#"{"where": "ts >= '2024-02-15' and weekday(ts) <= 5 and hour(ts, 'Europe/Berlin') >= 9 and day < date '2024-05-01' + interval '1 month'"}"#,
            events(400),
            "seq",
        ),
        case::<aggregate::Aggregate>(
            "aggregate_calendar",
            "aggregate",
            r#"{"keys": ["uid"], "time": "ts", "every": "month", "tz": "Europe/Berlin", "aggs": [
                {"fn": "count", "as": "n"}, {"fn": "sum", "column": "amount"}, {"fn": "mean", "column": "price"},
                {"fn": "first", "column": "price"}, {"fn": "count_distinct", "column": "amount"}]}"#,
            events(400),
            "uid, ts",
        ),
        case::<aggregate::Aggregate>(
            "aggregate_weeks",
            "aggregate",
            r#"{"time": "day", "every": "week", "aggs": [{"fn": "count", "as": "n"}, {"fn": "sum", "column": "amount"}]}"#,
            events(300),
            "day",
        ),
    ]
}

fn cell(a: &dyn Array, row: usize, out: &mut String) {
    if a.is_null(row) {
        return;
    }
    let _ = match a.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            write!(
                out,
                "{}",
                a.as_primitive::<sluice_plugin::arrow_array::types::TimestampMicrosecondType>().value(row)
            )
        }
        DataType::Int64 => write!(out, "{}", a.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => write!(out, "{}", a.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => write!(out, "{}", a.as_string::<i32>().value(row)),
        DataType::Boolean => write!(out, "{}", a.as_boolean().value(row)),
        DataType::Date32 => write!(out, "{}", civil(a.as_primitive::<Date32Type>().value(row))),
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            write!(out, "{}", a.as_primitive::<TimestampMillisecondType>().value(row))
        }
        t => panic!("fixture cell of type {t}"),
    };
}

/// CSV text of batches (header plus rows); `order` sorts the rows by the
/// given columns (Int64 or Utf8) first.
pub fn csv(batches: &[RecordBatch], order: &[&str]) -> String {
    let mut rows: Vec<(Vec<String>, String)> = Vec::new();
    let mut header = String::new();
    for b in batches {
        if header.is_empty() {
            header = b.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(",");
        }
        for r in 0..b.num_rows() {
            let mut line = String::new();
            for (i, c) in b.columns().iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                cell(c.as_ref(), r, &mut line);
            }
            let key = order
                .iter()
                .map(|n| {
                    let c = b.column_by_name(n).unwrap();
                    match c.data_type() {
                        DataType::Int64 => {
                            format!("{:020}", c.as_primitive::<Int64Type>().value(r) as i128 + (1i128 << 63))
                        }
                        _ => {
                            let mut s = String::new();
                            cell(c.as_ref(), r, &mut s);
                            s
                        }
                    }
                })
                .collect();
            rows.push((key, line));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = header;
    out.push('\n');
    for (_, l) in rows {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

impl Case {
    /// The files of the case directory: (relative path, contents).
    pub fn files(&self) -> Vec<(String, String)> {
        let columns = self
            .input
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Int64 => "int64",
                    DataType::Float64 => "float64",
                    DataType::Utf8 => "utf8",
                    DataType::Date32 => "date32",
                    DataType::Timestamp(TimeUnit::Millisecond, None) => "timestamp_ms",
                    t => panic!("fixture input column of type {t}"),
                };
                format!("{}: {t}", f.name())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let config = self.config.split_whitespace().collect::<Vec<_>>().join(" ");
        let tables = match self.tables.as_slice() {
            [] => String::new(),
            t => format!(
                "    tables: {{{}}}\n",
                t.iter().map(|(n, _)| format!("{n}: ref/{n}.csv")).collect::<Vec<_>>().join(", ")
            ),
        };
        let pipeline = format!(
            "# Generated by `SLUICE_BLESS=1 cargo test -p handler-fixtures` (plugins/handler-fixtures).\n\
             pipeline: {name}\n\
             sources:\n  input:\n    path: in\n    glob: \"*.csv\"\n    format:\n      csv:\n        header: true\n        null: [\"\"]\n        columns: {{{columns}}}\n\
             steps:\n  - plugin: {plugin}\n{tables}    config: {config}\n\
             sink: {{lake: lake, dataset: {name}}}\n\
             settings: {{batch_rows: {BATCH_ROWS}, workers: 1}}\n",
            name = self.name,
            plugin = self.plugin,
        );
        let order: Vec<&str> = self.order_by.split(',').map(str::trim).collect();
        let check = format!("SELECT {} FROM {} ORDER BY {}\n", self.select.join(", "), self.name, self.order_by);
        let mut files = vec![
            ("pipeline.yaml".into(), pipeline),
            ("in/input.csv".into(), csv(std::slice::from_ref(&iso_times(&self.input)), &[])),
            ("check.sql".into(), check),
            ("expected.csv".into(), csv(&self.output, &order)),
        ];
        for (n, t) in &self.tables {
            files.push((format!("ref/{n}.csv"), csv(std::slice::from_ref(t), &[])));
        }
        files
    }
}

/// `batch` with its millisecond timestamps as ISO text (`2024-01-31T23:30:00.000`), as a CSV
/// source writes them.
fn iso_times(batch: &RecordBatch) -> RecordBatch {
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.data_type() == &DataType::Timestamp(TimeUnit::Millisecond, None) {
            let t = c.as_primitive::<TimestampMillisecondType>();
            let text: StringArray = t
                .iter()
                .map(|v| {
                    v.map(|v| {
                        chrono::DateTime::from_timestamp_millis(v)
                            .unwrap()
                            .naive_utc()
                            .format("%Y-%m-%dT%H:%M:%S%.3f")
                            .to_string()
                    })
                })
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(text));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

/// `tests/handlers` of the repository.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/handlers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_fixtures_match_the_native_handlers() {
        let bless = std::env::var_os("SLUICE_BLESS").is_some();
        let mut stale = Vec::new();
        for case in cases() {
            assert!(!case.output.is_empty(), "{}: no output", case.name);
            for (rel, text) in case.files() {
                let path = fixtures_dir().join(case.name).join(&rel);
                if bless {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &text).unwrap();
                } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                    stale.push(path.display().to_string());
                }
            }
        }
        assert!(stale.is_empty(), "stale fixtures (run SLUICE_BLESS=1 cargo test -p handler-fixtures): {stale:?}");
    }

    #[test]
    fn cases_exercise_what_they_claim() {
        let cs = cases();
        let rows = |c: &Case| c.output.iter().map(|b| b.num_rows()).sum::<usize>();
        let by = |n: &str| cs.iter().find(|c| c.name == n).unwrap();
        // dedup keeps exactly the distinct (symbol, open_time) pairs; filter drops some but not all.
        let d = &by("dedup").input;
        let (sym, t) = (d.column(1).as_string::<i32>(), d.column(2).as_primitive::<Int64Type>());
        let distinct: std::collections::HashSet<_> = (0..d.num_rows()).map(|i| (sym.value(i), t.value(i))).collect();
        assert!(distinct.len() < d.num_rows());
        assert_eq!(rows(by("dedup")), distinct.len());
        assert!(rows(by("filter")) > 10 && rows(by("filter")) < 110);
        // resample: 600 bars = 200 seconds per symbol -> 4 one-minute bars each.
        assert_eq!(rows(by("resample")), 12);
        // aggregate: 50 seconds per symbol in 20 s buckets -> 3 (or 4 if misaligned) per symbol.
        assert!(rows(by("aggregate")) >= 9);
        // clean_types rejects some rows and keeps most; enrich keeps every row, inner only the
        // two symbols the table knows.
        let ct = by("clean_types");
        assert!(ct.rejected > 10 && rows(ct) > 40 && rows(ct) + ct.rejected == 120, "{}", ct.rejected);
        assert_eq!(rows(by("enrich")), 60);
        assert_eq!(rows(by("enrich_inner")), 40);
        // min_periods 1: a 20-row mean on every row with a close, partial for the first 19 rows
        // of each symbol.
        let nulls = |case: &str, col: &str| -> usize {
            by(case).output.iter().map(|b| b.column_by_name(col).unwrap().null_count()).sum()
        };
        assert_eq!(nulls("indicators_min_periods", "ma20"), nulls("indicators_min_periods", "close"));
        assert!(nulls("indicators", "sma5") > nulls("indicators_min_periods", "sma5"));
        // Any null: drops the rows with a hole in any of four columns, keeps the others.
        let (close, open, volume, symbol) =
            (|i: usize| i % 17 == 16, |i: usize| i % 13 == 5, |i: usize| i % 11 == 3, |i: usize| i % 19 == 7);
        let count = |f: &dyn Fn(usize) -> bool| (0..120).filter(|&i| f(i)).count();
        assert_eq!(rows(by("clean_any_null")), count(&|i| !(close(i) || open(i) || volume(i) || symbol(i))));
        // Rejects: rows with a null close or symbol (even when `open`, dropped, is null too); the
        // volume is filled.
        let cr = by("clean_null_rejects");
        assert_eq!(cr.rejected, count(&|i| close(i) || symbol(i)));
        assert_eq!(rows(cr), count(&|i| !(close(i) || symbol(i) || open(i))));
        assert_eq!(cr.output.iter().map(|b| b.column_by_name("volume").unwrap().null_count()).sum::<usize>(), 0);
        // Dates: 400 events every 583 minutes span Jan..Jun 2024: 6 months for each of 3 users;
        // the filter keeps some rows but not all; weeks of 300 events (~121 days) are 18.
        assert_eq!(rows(by("aggregate_calendar")), 18);
        assert_eq!(rows(by("aggregate_weeks")), 18);
        let f = rows(by("filter_dates"));
        assert!(f > 50 && f < 300, "{f}");
        assert_eq!(rows(by("derive_dates")), 200);
        let parsed =
            by("derive_dates").output.iter().map(|b| b.column_by_name("parsed").unwrap().null_count()).sum::<usize>();
        assert_eq!(parsed, (0..200).filter(|i| i % 9 == 4).count());
    }
}

#[cfg(test)]
mod bench {
    //! `cargo test --release -p handler-fixtures -- --ignored --nocapture throughput`:
    //! native rows per second of each case's handler on 300K klines rows in 64K-row batches.

    use super::*;

    fn time<H: Handler>(config: &str, input: &RecordBatch) -> f64 {
        let mut h = H::new(parse_config(config).unwrap()).unwrap();
        let start = std::time::Instant::now();
        let mut off = 0;
        while off < input.num_rows() {
            let len = 65_536.min(input.num_rows() - off);
            std::hint::black_box(sluice_plugin::patch::process(&mut h, &input.slice(off, len)).unwrap());
            off += len;
        }
        std::hint::black_box(h.finish().unwrap());
        input.num_rows() as f64 / start.elapsed().as_secs_f64()
    }

    #[test]
    #[ignore]
    fn throughput() {
        let rows = 300_000;
        let plain = klines(rows, false, false);
        let mixed = klines(rows, true, false);
        for c in cases() {
            // Cases with their own input or tables are not timed on klines.
            if matches!(c.name, "clean_types" | "clean_any_null" | "clean_null_rejects" | "enrich" | "enrich_inner") {
                continue;
            }
            let input = if c.name == "normalize_time" { &mixed } else { &plain };
            let r = match c.plugin {
                "normalize_time" => time::<normalize_time::NormalizeTime>(&c.config, input),
                "dedup" => time::<dedup::Dedup>(&c.config, input),
                "filter" => time::<filter::Filter>(&c.config, input),
                "derive" => time::<derive::Derive>(&c.config, input),
                "indicators" => time::<indicators::Indicators>(&c.config, input),
                "aggregate" => time::<aggregate::Aggregate>(&c.config, input),
                "resample" => time::<resample::Resample>(&c.config, input),
                "sessionize" => time::<sessionize::Sessionize>(&c.config, input),
                "normalize" => time::<normalize::Normalize>(&c.config, input),
                _ => time::<clean::Clean>(&c.config, input),
            };
            println!("{:<20} {:>8.1} M rows/s", c.name, r / 1e6);
        }
    }
}
