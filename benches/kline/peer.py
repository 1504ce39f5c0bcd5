"""The DuckDB side of the kline reference job: one COPY statement (duckdb.sql).

Usage: peer.py DATA_DIR OUT_DIR [--zip] [--threads N] (see peer_input.py for --zip).
"""

import pathlib
import sys
import time

import duckdb

from peer_input import csv_glob, parse_args

HERE = pathlib.Path(__file__).resolve().parent


def main() -> int:
    a = parse_args()
    t0 = time.perf_counter()
    with csv_glob(a) as source:
        t1 = time.perf_counter()
        sql = (HERE / "duckdb.sql").read_text().replace("{input}", f"'{source}'").replace("{out}", str(a.out))
        con = duckdb.connect()
        con.execute(f"SET threads = {a.threads}")
        con.execute("SET preserve_insertion_order = false")
        con.execute(sql)
        con.close()
        t2 = time.perf_counter()
    print(f"peer: extract {t1 - t0:.2f} s, copy {t2 - t1:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
