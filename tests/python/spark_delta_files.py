"""Spark reads the files a Delta table's current snapshot lists (no Delta jars: they cannot be
fetched here), as plain Parquet with the partition columns from the paths. Prints JSON.

Usage: spark_delta_files.py TABLE BASE_PATH COLUMN [COLUMN...]
BASE_PATH is the directory holding the `<partition>=<value>/` directories of the data files.
"""
import json
import sys

import deltalake
from pyspark.sql import SparkSession, functions as F

table, base, cols = sys.argv[1], sys.argv[2], sys.argv[3:]
files = [u.removeprefix("file://") for u in deltalake.DeltaTable(table).file_uris()]
spark = (
    SparkSession.builder.master("local[2]")
    .appName("sluice-delta-files")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.shuffle.partitions", "2")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.option("basePath", base).parquet(*files)
row = df.agg(F.count(F.lit(1)).alias("rows"), *[F.sum(c).alias(c) for c in cols]).collect()[0]
out = {"spark": spark.version, "files": len(files), "columns": df.columns, "rows": row["rows"], **{c: float(row[c]) for c in cols}}
spark.stop()
print(json.dumps(out))
