"""Read a dataset's timestamp columns with pyarrow (and Polars, when installed); print JSON.

Usage: python check_timestamps.py LAKE DATASET COLUMN...
Prints one JSON object: per reader, per COLUMN, the type the reader gives it and the first row's
value in microseconds since the epoch (null when the column is not a timestamp).
"""

import datetime
import glob
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

lake, dataset, columns = sys.argv[1], sys.argv[2], sys.argv[3:]
files = sorted(glob.glob(f"{lake}/{dataset}/**/*.parquet", recursive=True))
out = {}

table = pa.concat_tables([pq.read_table(f) for f in files])
out["pyarrow"] = {}
for c in columns:
    col = table[c]
    us = None
    if pa.types.is_timestamp(col.type):
        us = col.cast(pa.timestamp("us", col.type.tz)).cast(pa.int64())[0].as_py()
    out["pyarrow"][c] = {"type": str(col.type), "us": us}

try:
    import polars as pl
except ImportError:
    pl = None
if pl is not None:
    frame = pl.concat([pl.read_parquet(f) for f in files])
    out["polars"] = {}
    for c in columns:
        s = frame[c]
        us = None
        if isinstance(s.dtype, pl.Datetime):
            us = s.dt.cast_time_unit("us").cast(pl.Int64)[0]
        out["polars"][c] = {"type": str(s.dtype), "us": us}
print(json.dumps(out))
