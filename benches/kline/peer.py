"""The DuckDB side of the kline reference job: one COPY statement (duckdb.sql).

Usage: peer.py DATA_DIR OUT_DIR [--zip] [--threads N]

With --zip, DuckDB cannot read zip archives (its zipfs extension is a community download), so
the archives are first extracted to OUT_DIR.unzipped with Python's zipfile on as many threads as
DuckDB uses; that time is part of the peer's run, as it would be for a user.
"""

import argparse
import concurrent.futures
import os
import pathlib
import shutil
import sys
import time
import zipfile

import duckdb

HERE = pathlib.Path(__file__).resolve().parent


def extract(data: pathlib.Path, dest: pathlib.Path, threads: int) -> str:
    zips = sorted(data.rglob("*.zip"))
    for d in {z.parent.name for z in zips}:
        (dest / d).mkdir(parents=True, exist_ok=True)

    def one(z: pathlib.Path) -> None:
        with zipfile.ZipFile(z) as f:
            f.extractall(dest / z.parent.name)

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, zips))
    return f"'{dest}/**/*.csv'"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--zip", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    data, out = pathlib.Path(a.data).resolve(), pathlib.Path(a.out).resolve()
    t0 = time.perf_counter()
    unzipped = None
    if a.zip:
        unzipped = out.with_name(out.name + ".unzipped")
        source = extract(data, unzipped, a.threads)
    else:
        source = f"'{data}/**/*.csv'"
    t1 = time.perf_counter()
    sql = (HERE / "duckdb.sql").read_text().replace("{input}", source).replace("{out}", str(out))
    con = duckdb.connect()
    con.execute(f"SET threads = {a.threads}")
    con.execute("SET preserve_insertion_order = false")
    con.execute(sql)
    con.close()
    t2 = time.perf_counter()
    if unzipped is not None:
        shutil.rmtree(unzipped)
    print(f"peer: extract {t1 - t0:.2f} s, copy {t2 - t1:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
