"""One Spark contender of the kline reference job (benches/spark/bench.py runs each in its own
process): read the day files, run the steps, write Parquet partitioned by symbol and date (zstd).

Modes:
- native:   Spark's own version of the steps (CASE for µs→ms, dropDuplicates, a window for ma20)
- sluice:   the same steps as the pipeline file, through sluice.spark.transform (WASM)
- identity: repartition + sort + a mapInArrow that passes batches through (the crossing's cost)
- sort:     repartition + sort only (the baseline the identity run is measured against)

Prints one JSON line: session start and job seconds, and for `sluice` the steps' counters.
"""

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

from kline_input import COLUMNS, INTS, NAME
MICROS = 100_000_000_000_000  # 1e14: above it a time is in µs

p = argparse.ArgumentParser()
p.add_argument("--mode", required=True, choices=["native", "sluice", "identity", "sort"])
p.add_argument("--data", required=True)
p.add_argument("--out", required=True)
p.add_argument("--pipeline", required=True)
p.add_argument("--batch", type=int, default=65536)
a = p.parse_args()

t0 = time.perf_counter()
from pyspark.sql import SparkSession, Window  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType  # noqa: E402

spark = (
    SparkSession.builder.master("local[2]")
    .appName(f"kline-{a.mode}")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    .config("spark.driver.memory", "4g")
    .config("spark.sql.shuffle.partitions", "8")
    .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(a.batch))
    .config("spark.sql.parquet.compression.codec", "zstd")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
session_s = time.perf_counter() - t0

t1 = time.perf_counter()
schema = StructType([StructField(c, LongType() if c in INTS else StringType() if c == "ignore" else DoubleType())
                     for c in COLUMNS])
df = spark.read.csv(os.path.join(a.data, "*", "*.csv"), schema=schema, header=False, mode="PERMISSIVE")
df = df.na.drop(how="any")
df = df.withColumn("symbol", F.regexp_extract(F.input_file_name(), NAME, 1)).withColumn(
    "date", F.to_date(F.regexp_extract(F.input_file_name(), NAME, 2)))

extra = {}
if a.mode == "native":
    for c in ("open_time", "close_time"):
        df = df.withColumn(c, F.when(F.col(c) > MICROS, F.floor(F.col(c) / 1000)).otherwise(F.col(c)).cast("long"))
    df = df.dropDuplicates(["symbol", "open_time"])
    w = Window.partitionBy("symbol").orderBy("open_time").rowsBetween(-19, 0)
    df = df.withColumn("ma20", F.when(F.count("close").over(w) == 20, F.avg("close").over(w)))
elif a.mode == "sluice":
    import sluice
    import sluice.spark

    stats = tempfile.mkdtemp(prefix="sluice-stats-")
    df = sluice.spark.transform(df, a.pipeline, stats_dir=stats)
elif a.mode in ("identity", "sort"):
    df = df.repartition("symbol").sortWithinPartitions("symbol", "open_time")
    if a.mode == "identity":
        def same(batches):
            yield from batches

        df = df.mapInArrow(same, df.schema)

shutil.rmtree(a.out, ignore_errors=True)
df.write.partitionBy("symbol", "date").parquet(a.out)
job_s = time.perf_counter() - t1
out = {"mode": a.mode, "session_s": session_s, "job_s": job_s}
if a.mode == "sluice":
    tasks = [json.loads(f.read_text()) for f in pathlib.Path(stats).glob("*.json")]
    steps = {}
    for t in tasks:
        for s in t["steps"]:
            acc = steps.setdefault(s["step"], {"calls": 0, "rows_in": 0, "plugin_ns": 0, "plugin_cpu_ns": 0})
            for k in acc:
                acc[k] += s[k]
    out.update(tasks=len(tasks), task_cpu_ns=sum(t["task_cpu_ns"] for t in tasks), steps=steps)
    shutil.rmtree(stats, ignore_errors=True)
spark.stop()
print(json.dumps(out))
sys.stdout.flush()
