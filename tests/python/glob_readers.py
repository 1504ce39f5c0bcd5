"""Glob readers and catalog readers in a loop while Sluice writes (tests/e2e/python_readers.rs).

Usage: glob_readers.py LAKE DATASET STOP_FILE

Until STOP_FILE exists, reads `LAKE/DATASET/**/*.parquet` with DuckDB, pyarrow and (when
installed) Polars, and the catalog through a connection opened at the start (an old snapshot)
and through fresh connections. Each read must see every (symbol, open_time) at most once: a
replaced file and its replacement side by side would show a unit's rows twice. Each read must
also see whole days: a day's rows are one unit, so a partial day means the read saw part of a
unit's files. A glob read that fails because a file it listed was replaced before it opened it
is counted as `vanished` (the reader would retry), not as a problem. Prints one JSON object:
reads, vanished reads and problems per reader.
"""

import glob
import json
import os
import sys
import time

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as pads

try:
    import polars as pl
except ImportError:  # only one of the venvs has it
    pl = None

lake, dataset, stop = sys.argv[1], sys.argv[2], sys.argv[3]
pattern = os.path.join(lake, dataset, "**", "*.parquet")
catalog = os.path.join(lake, "catalog.duckdb")
result = {"duckdb": duckdb.__version__, "readers": {}}


def note(reader, problem=None, vanished=False):
    r = result["readers"].setdefault(reader, {"reads": 0, "vanished": 0, "problems": []})
    if vanished:
        r["vanished"] += 1
    elif problem is None:
        r["reads"] += 1
    elif len(r["problems"]) < 20:
        r["problems"].append(problem)


def check(reader, rows, keys, per_day):
    """rows: total rows; keys: distinct (symbol, open_time); per_day: {(symbol, date): rows}."""
    if rows != keys:
        note(reader, f"{rows} rows but {keys} distinct keys: some unit is visible twice")
        return
    sizes = set(per_day.values())
    # Every day file has the same number of rows in this test's data.
    if len(sizes) > 1:
        note(reader, f"days of different sizes {sorted(sizes)}: some unit is visible only in part")
        return
    note(reader)


def duck_glob():
    con = duckdb.connect()
    (rows, keys) = con.execute(
        f"SELECT count(*), count(DISTINCT (symbol, open_time)) FROM read_parquet('{pattern}', hive_partitioning = true)"
    ).fetchone()
    per_day = dict(
        ((s, str(d)), n)
        for s, d, n in con.execute(
            f"SELECT symbol, date, count(*) FROM read_parquet('{pattern}', hive_partitioning = true) GROUP BY 1, 2"
        ).fetchall()
    )
    check("duckdb_glob", rows, keys, per_day)


def arrow_glob():
    files = glob.glob(pattern, recursive=True)
    if not files:
        return
    t = pads.dataset(files, format="parquet", partitioning="hive").to_table(columns=["symbol", "open_time"])
    keys = t.group_by(["symbol", "open_time"]).aggregate([]).num_rows
    # The day comes from the path: group by the file's directory.
    per_day = {}
    for f in files:
        d = os.path.dirname(f)
        n = pads.dataset(f, format="parquet").count_rows()
        per_day[d] = per_day.get(d, 0) + n
    check("pyarrow_glob", t.num_rows, keys, per_day)


def polars_glob():
    if pl is None:
        return
    df = pl.scan_parquet(pattern, hive_partitioning=True).select(["symbol", "open_time", "date"]).collect()
    keys = df.select(["symbol", "open_time"]).unique().height
    per_day = {(r[0], str(r[1])): r[2] for r in df.group_by(["symbol", "date"]).len().iter_rows()}
    check("polars_glob", df.height, keys, per_day)


old_snapshot = None


def catalog_reads():
    global old_snapshot
    if not os.path.exists(catalog):
        return
    if old_snapshot is None:
        old_snapshot = duckdb.connect(catalog, read_only=True)
    for name, con in (("catalog_old_snapshot", old_snapshot), ("catalog_fresh", None)):
        c = con or duckdb.connect(catalog, read_only=True)
        try:
            (rows, keys) = c.execute(f"SELECT count(*), count(DISTINCT (symbol, open_time)) FROM {dataset}").fetchone()
            if rows != keys:
                note(name, f"{rows} rows but {keys} distinct keys")
            else:
                note(name)
        finally:
            if con is None:
                c.close()


readers = [("duckdb_glob", duck_glob), ("pyarrow_glob", arrow_glob), ("polars_glob", polars_glob), ("catalog", catalog_reads)]
deadline = time.time() + 300
while not os.path.exists(stop) and time.time() < deadline:
    for name, read in readers:
        try:
            read()
        except Exception as e:  # a reader that fails is a problem of that reader, not the end
            text = f"{type(e).__name__}: {e}"
            # A file replaced between the listing and the read: the reader retries. Anything else
            # (a torn file, a catalog that cannot read its snapshot) is a problem.
            vanished = name != "catalog" and any(
                m in text for m in ("No such file", "FileNotFound", "not found", "does not exist")
            )
            note(name if name != "catalog" else "catalog_reads", text, vanished)
print(json.dumps(result))
