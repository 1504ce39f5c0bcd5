"""Agreement of the two outputs of the kline reference job, and with the generator's manifest.

Usage: verify.py SLUICE_DATASET_DIR PEER_OUT_DIR MANIFEST_JSON [PEER_NAME]; prints JSON (see
bench.py). PEER_NAME (default duckdb) labels the checks.
"""

import json
import sys

import duckdb


def facts(con, path: str) -> dict:
    q = f"""SELECT count(*), sum(close), sum(ma20), count(ma20), count(DISTINCT (symbol, open_time)),
                   count(DISTINCT symbol), count(DISTINCT date), max(open_time) < 100000000000000
            FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true)"""
    n, sc, sm, nm, distinct, syms, dates, ms = con.execute(q).fetchone()
    return {"rows": n, "sum_close": sc, "sum_ma20": sm, "ma20_rows": nm, "distinct_keys": distinct,
            "symbols": syms, "dates": dates, "all_ms": ms}


def close(x: float, y: float, rel: float = 1e-9) -> bool:
    return x is not None and y is not None and abs(x - y) <= rel * max(1.0, abs(x), abs(y))


def verify(sluice_out: str, duck_out: str, manifest: dict, peer: str = "duckdb") -> dict:
    con = duckdb.connect()
    s, d = facts(con, sluice_out), facts(con, duck_out)
    # Row by row: which ma20 differ, and are they the first 19 rows of a file (window restarted)?
    q = f"""
        WITH s AS (SELECT symbol, open_time, date, close, ma20,
                          row_number() OVER (PARTITION BY symbol, date ORDER BY open_time) AS pos
                   FROM read_parquet('{sluice_out}/**/*.parquet', hive_partitioning = true)),
             d AS (SELECT symbol, open_time, close, ma20
                   FROM read_parquet('{duck_out}/**/*.parquet', hive_partitioning = true))
        SELECT count(*) FILTER (WHERE s.open_time IS NULL OR d.open_time IS NULL),
               count(*) FILTER (WHERE s.close IS DISTINCT FROM d.close),
               count(*) FILTER (WHERE s.ma20 IS DISTINCT FROM d.ma20
                                  AND NOT coalesce(abs(s.ma20 - d.ma20) <= 1e-9 * abs(d.ma20), false)),
               count(*) FILTER (WHERE s.ma20 IS DISTINCT FROM d.ma20
                                  AND NOT coalesce(abs(s.ma20 - d.ma20) <= 1e-9 * abs(d.ma20), false)
                                  AND s.pos > 19)
        FROM s FULL JOIN d ON s.symbol = d.symbol AND s.open_time = d.open_time"""
    unmatched, close_diff, ma_diff, ma_diff_later = con.execute(q).fetchone()
    con.close()
    m = manifest
    checks = {
        f"rows: sluice = {peer} = generator": s["rows"] == d["rows"] == m["rows"],
        "one row per (symbol, open_time) on both": s["distinct_keys"] == s["rows"] and d["distinct_keys"] == d["rows"],
        "timestamps all in ms on both": bool(s["all_ms"] and d["all_ms"]),
        f"sum(close): sluice = {peer} = generator": close(s["sum_close"], d["sum_close"]) and close(s["sum_close"], m["sum_close"]),
        "rows match by (symbol, open_time), same close": unmatched == 0 and close_diff == 0,
        f"{peer} sum(ma20) = generator (continuous)": close(d["sum_ma20"], m["sum_ma20"]) and d["ma20_rows"] == m["ma20_rows"],
        f"sluice sum(ma20) = {peer}": close(s["sum_ma20"], d["sum_ma20"]) and s["ma20_rows"] == d["ma20_rows"],
    }
    sluice_per_file = close(s["sum_ma20"], m["sum_ma20_per_file"]) and s["ma20_rows"] == m["ma20_rows_per_file"]
    return {"sluice": s, peer: d, "checks": checks, "rows_ma20_differ": ma_diff,
            "rows_ma20_differ_after_19th_of_file": ma_diff_later, "sluice_matches_per_file_restart": sluice_per_file}


if __name__ == "__main__":
    peer = sys.argv[4] if len(sys.argv) > 4 else "duckdb"
    print(json.dumps(verify(sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read()), peer)))
