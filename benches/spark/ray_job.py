"""The kline reference job on Ray Data (benches/spark/bench.py runs it as the `ray` contender):
the day files read by Ray's CSV reader (rows that do not parse under the explicit schema
dropped, symbol and date from the file name), the pipeline's steps through
sluice.ray.transform (one symbol per call, in open_time order), Parquet partitioned by symbol
and date. Prints one JSON line with the session start and job seconds."""

import argparse
import json
import os
import re
import shutil
import time

from kline_input import COLUMNS, INTS, NAME

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--out", required=True)
p.add_argument("--pipeline", required=True)
a = p.parse_args()

t0 = time.perf_counter()
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import ray  # noqa: E402
import ray.data  # noqa: E402

import sluice.ray  # noqa: E402

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
ray.data.DataContext.get_current().enable_progress_bars = False
session_s = time.perf_counter() - t0

t1 = time.perf_counter()
NAME_RE = re.compile(NAME)
NUMBER = {True: r"^-?\d+$", False: r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$"}


def skip(row):
    return "skip"  # a row with the wrong number of fields


def typed(batch: pa.Table) -> pa.Table:
    """Strings to the explicit schema; a row with a value that does not parse, or an empty one,
    is dropped (the pipeline's `columns:` and `not_null: "*"`)."""
    keep = None
    for c in COLUMNS:
        col = batch[c]
        ok = pc.and_(pc.is_valid(col), pc.greater(pc.utf8_length(col), 0))
        if c != "ignore":
            ok = pc.and_(ok, pc.match_substring_regex(col, NUMBER[c in INTS]))
        keep = ok if keep is None else pc.and_(keep, ok)
    batch = batch.filter(pc.fill_null(keep, False))
    cols = [batch[c].cast(pa.int64() if c in INTS else pa.string() if c == "ignore" else pa.float64()) for c in COLUMNS]
    names = [NAME_RE.search(x) for x in batch["path"].to_pylist()]
    cols.append(pa.array([m.group(1) for m in names], pa.string()))
    cols.append(pa.array([m.group(2) for m in names], pa.string()).cast(pa.date32()))
    return pa.table(cols, names=[*COLUMNS, "symbol", "date"])


files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.data) for f in fs if f.endswith(".csv"))
ds = ray.data.read_csv(
    files,
    include_paths=True,
    read_options=pacsv.ReadOptions(column_names=COLUMNS),
    parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
    convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in COLUMNS}),
)
ds = ds.map_batches(typed, batch_format="pyarrow", batch_size=None)
out = sluice.ray.transform(ds, a.pipeline)
shutil.rmtree(a.out, ignore_errors=True)
out.write_parquet(a.out, partition_cols=["symbol", "date"], compression="zstd")
job_s = time.perf_counter() - t1
ray.shutdown()
print(json.dumps({"mode": "ray", "session_s": session_s, "job_s": job_s}))
