"""Fixtures for the `sluice` Python package's tests (run by scripts/test.sh against the installed
wheel): the CLI binary, the rebuilt plugins, generated kline files, the CLI's lake of them, and a
local Spark session.

Environment: SLUICE_BIN (the `sluice` binary; default the debug build), SLUICE_PLUGIN_DIR (the
rebuilt standard plugins) and SLUICE_TEST_PLUGIN_DIR (the hostile test plugins).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

REPO = Path(__file__).resolve().parents[2]
KLINES = REPO / "benches" / "kline" / "klines.yaml"
COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
           "trades", "taker_buy_base", "taker_buy_quote", "ignore"]


def sluice_bin() -> str:
    default = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/sluice/target")) / "debug/sluice"
    return os.environ.get("SLUICE_BIN", str(default))


def cli(*args, env=None, check=True) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    p = subprocess.run([sluice_bin(), *map(str, args)], capture_output=True, text=True, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"sluice {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def test_plugins() -> Path:
    d = os.environ.get("SLUICE_TEST_PLUGIN_DIR")
    if not d or not Path(d, "hostile-spin.wasm").is_file():
        pytest.fail("SLUICE_TEST_PLUGIN_DIR must name the rebuilt test plugins (scripts/test.sh sets it)")
    return Path(d)


@pytest.fixture(scope="session")
def kline_data(tmp_path_factory) -> Path:
    """3 symbols × 3 days × 3000 one-second klines, with malformed rows, duplicates and a file in
    microseconds (the benchmark's generator)."""
    out = tmp_path_factory.mktemp("klines") / "data"
    cli("bench", "generate", "--out", out, "--symbols", 3, "--days", 3, "--rows-per-day", 3000, "--seed", 7)
    return out


@pytest.fixture(scope="session")
def cli_lake(kline_data, tmp_path_factory) -> Path:
    """`sluice run benches/kline/klines.yaml` over the kline files: the lake's `klines` dataset."""
    lake = tmp_path_factory.mktemp("cli") / "lake"
    summary = lake.parent / "summary.json"
    cli("run", KLINES, "--summary-json", summary, env={"DATA_DIR": str(kline_data), "LAKE_DIR": str(lake)})
    assert json.loads(summary.read_text())["files_failed"] == 0
    return lake


def read_lake(lake: Path, dataset: str = "klines") -> pa.Table:
    """A lake dataset with pyarrow, hive partitions as plain columns (symbol: string, date: date32)."""
    t = pads.dataset(lake / dataset, format="parquet", partitioning="hive").to_table()
    return normalize(t)


def normalize(t: pa.Table) -> pa.Table:
    """Columns in a fixed order with the lake's types, rows sorted by (symbol, open_time)."""
    cols = []
    for name in ["symbol", "date", *COLUMNS, "ma20"]:
        c = t[name]
        if pa.types.is_dictionary(c.type):
            c = c.cast(c.type.value_type)
        want = {"symbol": pa.string(), "date": pa.date32()}.get(name)
        if want is None:
            want = pa.string() if name == "ignore" else (pa.int64() if name in ("open_time", "close_time", "trades") else pa.float64())
        if name == "date" and pa.types.is_string(c.type):
            c = c.cast(pa.date32())
        cols.append(c.cast(want))
    out = pa.table(cols, names=["symbol", "date", *COLUMNS, "ma20"])
    return out.sort_by([("symbol", "ascending"), ("open_time", "ascending")]).combine_chunks()


def ipc_bytes(t: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t, max_chunksize=1 << 20)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="session")
def spark():
    """A local Spark session on 2 cores; its Python workers run this interpreter (with the
    wheel). Skipped without Java, except under CI=true."""
    if shutil.which("java") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("java is needed for the Spark tests (scripts/setup.sh installs it)")
        pytest.skip("no java")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .appName("sluice-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4096")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


def spark_klines(spark, data: Path):
    """The kline files as Spark reads them: the pipeline's source steps (explicit schema, malformed
    and incomplete rows dropped, symbol and date from the file name) in Spark's own terms."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    types = {"open_time": LongType(), "close_time": LongType(), "trades": LongType(), "ignore": StringType()}
    schema = StructType([StructField(c, types.get(c, DoubleType())) for c in COLUMNS])
    df = spark.read.csv(str(data / "*" / "*.csv"), schema=schema, header=False, mode="PERMISSIVE")
    df = df.na.drop(how="any")
    pattern = r"([A-Za-z0-9]+)-1s-(\d{4}-\d{2}-\d{2})\.csv$"
    return (
        df.withColumn("symbol", F.regexp_extract(F.input_file_name(), pattern, 1))
        .withColumn("date", F.to_date(F.regexp_extract(F.input_file_name(), pattern, 2)))
    )
