"""Read a Sluice lake with pyarrow and with DuckDB from Python; print JSON totals to compare with
`sluice query`.

Usage: python check_lake.py LAKE DATASET COLUMN...
Prints one JSON object: the DuckDB version, and per reader (pyarrow dataset over the hive
directories, DuckDB over the catalog, DuckDB over the hive glob) the row count and the sum of
each COLUMN.
"""

import json
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds

lake, dataset, columns = sys.argv[1], sys.argv[2], sys.argv[3:]
out = {"duckdb": duckdb.__version__}

# pyarrow: the hive directories, with hive partitioning (values are %-escaped like Hive's).
table = ds.dataset(f"{lake}/{dataset}", format="parquet", partitioning="hive").to_table()
out["pyarrow"] = {"rows": table.num_rows, **{c: pc.sum(table[c]).as_py() for c in columns}}

sums = ", ".join(f'sum("{c}")::DOUBLE' for c in columns)
con = duckdb.connect()
con.execute(f"ATTACH '{lake}/catalog.duckdb' AS lake (READ_ONLY)")
row = con.execute(f'SELECT count(*), {sums} FROM lake.main."{dataset}"').fetchone()
out["duckdb_catalog"] = {"rows": row[0], **dict(zip(columns, row[1:]))}
row = con.execute(
    f"SELECT count(*), {sums} FROM read_parquet('{lake}/{dataset}/**/*.parquet', hive_partitioning = true)"
).fetchone()
out["duckdb_glob"] = {"rows": row[0], **dict(zip(columns, row[1:]))}
print(json.dumps(out))
