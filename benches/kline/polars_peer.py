"""The Polars side of the kline reference job: the same steps as klines.yaml and duckdb.sql.

Usage: polars_peer.py DATA_DIR OUT_DIR [--zip] [--threads N]

Polars reads the day files with the explicit schema (`ignore_errors` makes a value that does not
parse NULL, and a short row's missing fields are NULL), drops every row with a NULL (so the
malformed rows and the rows with an empty field go, as Sluice's rejects and DuckDB's `WHERE ... IS
NOT NULL`), converts µs to ms, takes symbol and date from the file name, keeps one row per
(symbol, open_time), adds the 20-row moving average of close per symbol (NULL until the window is
full) and writes Parquet partitioned by symbol and date with zstd. With --zip the archives are
first extracted (peer_input.py, as for DuckDB); that time is part of the run.
"""

import os
import sys
import time

# The thread pool is sized when polars is imported.
if "--threads" in sys.argv:
    os.environ["POLARS_MAX_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import polars as pl  # noqa: E402

from peer_input import csv_glob, parse_args  # noqa: E402

SCHEMA = {
    "open_time": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
    "volume": pl.Float64, "close_time": pl.Int64, "quote_volume": pl.Float64, "trades": pl.Int64,
    "taker_buy_base": pl.Float64, "taker_buy_quote": pl.Float64, "ignore": pl.String,
}
NAME = r"([A-Za-z0-9]+)-1s-(\d{4}-\d{2}-\d{2})\.csv$"


def job(source: str) -> pl.LazyFrame:
    # missing_columns="insert": a file whose first line is a truncated row would otherwise fail the
    # whole scan ("column names specified in schema not found"); its short rows get NULLs.
    lf = pl.scan_csv(source, has_header=False, schema=SCHEMA, ignore_errors=True, include_file_paths="path",
                     truncate_ragged_lines=True, missing_columns="insert")
    ms = [pl.when(pl.col(c) > 100_000_000_000_000).then(pl.col(c) // 1000).otherwise(pl.col(c)).alias(c)
          for c in ("open_time", "close_time")]
    return (
        lf.drop_nulls(subset=list(SCHEMA))
        .with_columns(*ms,
                      symbol=pl.col("path").str.extract(NAME, 1),
                      date=pl.col("path").str.extract(NAME, 2).str.to_date())
        .drop("path")
        .unique(subset=["symbol", "open_time"], keep="any")
        .sort(["symbol", "open_time"])
        .with_columns(ma20=pl.col("close").rolling_mean(window_size=20).over("symbol"))
    )


def main() -> int:
    a = parse_args()
    t0 = time.perf_counter()
    with csv_glob(a) as source:
        t1 = time.perf_counter()
        df = job(source).collect()
        t2 = time.perf_counter()
        df.write_parquet(a.out, compression="zstd", partition_by=["symbol", "date"])
        t3 = time.perf_counter()
    print(f"peer: extract {t1 - t0:.2f} s, query {t2 - t1:.2f} s, write {t3 - t2:.2f} s, {df.height} rows",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
