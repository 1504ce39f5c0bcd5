"""Read a Delta table written by Sluice with the `deltalake` package and Polars; print JSON.

Usage: check_delta.py TABLE APP_ID COLUMN [COLUMN...]
For each reader: rows and the sum of each column. Also the table's file URIs, its version, the
txn version of APP_ID, and the `sluice` key of the latest commitInfo.
"""
import json
import sys

import deltalake
import polars as pl

table, app_id, cols = sys.argv[1], sys.argv[2], sys.argv[3:]
t = deltalake.DeltaTable(table)
arrow = t.to_pyarrow_table()
df = pl.read_delta(table)
out = {
    "deltalake_version": deltalake.__version__,
    "polars_version": pl.__version__,
    "version": t.version(),
    "files": sorted(t.file_uris()),
    "txn": t.transaction_version(app_id),
    "commit_sluice": t.history(1)[0].get("sluice"),
    "deltalake": {"rows": arrow.num_rows, **{c: float(sum(v for v in arrow.column(c).to_pylist() if v is not None)) for c in cols}},
    "polars": {"rows": df.height, **{c: float(df[c].sum()) for c in cols}},
}
print(json.dumps(out))
