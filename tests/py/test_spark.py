"""The kline reference steps inside Spark (`sluice.spark.transform`) give `sluice run`'s lake,
row for row, ma20 included; the same component gives the same bytes through the CLI, through
`Chain.process` and through Spark."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import sluice
from conftest import KLINES, cli, ipc_bytes, normalize, read_lake, spark_klines


def spark_table(df, tmp_path, name) -> pa.Table:
    out = tmp_path / name
    df.write.mode("overwrite").parquet(str(out))
    return pads.dataset(out, format="parquet").to_table()


def test_klines_through_spark_equal_the_cli_lake(spark, kline_data, cli_lake, tmp_path):
    import sluice.spark

    df = spark_klines(spark, kline_data)
    # Keys and order from the pipeline's stateful step (indicators: symbol, open_time).
    stats = tmp_path / "stats"
    stats.mkdir()
    out = sluice.spark.transform(df, KLINES, stats_dir=str(stats))
    plan = out._jdf.queryExecution().executedPlan().toString()
    assert "MapInArrow" in plan and "Exchange hashpartitioning(symbol" in plan, plan
    got = normalize(spark_table(out, tmp_path, "spark"))
    want = read_lake(cli_lake)
    assert got.num_rows == want.num_rows > 20_000
    assert got.column("ma20").null_count == want.column("ma20").null_count == 3 * 19
    for name in want.column_names:
        assert got[name].equals(want[name]), name
    assert got.equals(want)
    # Every task reported its steps: all rows reached indicators, none out of order for its key
    # (the plugin counts them in each worker; test_chain checks that the counter counts).
    tasks = [json.loads(f.read_text()) for f in stats.glob("*.json")]
    rows_into = sum(s["rows_in"] for t in tasks for s in t["steps"] if s["step"] == "indicators")
    assert rows_into == want.num_rows
    assert all(t["counters"].get("indicators.out_of_order_rows", 0) == 0 for t in tasks), tasks


def test_the_same_component_gives_the_same_bytes_everywhere(spark, kline_data, cli_lake, tmp_path):
    import sluice.spark

    want = read_lake(cli_lake)
    # The component the CLI ran (from the lake's lineage) is the one the chain loads.
    lineage = [json.loads(line) for line in cli("lake", "lineage", "--json", cli_lake / "klines").stdout.splitlines()]
    chain = sluice.Chain(KLINES)
    hashes = {s["name"]: s["component_hash"] for s in chain.steps()}
    for s in lineage[0]["lineage"]["steps"]:
        assert hashes[s["name"]] == s["component_hash"], s

    # Chain.process over the same rows, a key at a time in open_time order (after normalize_time
    # and dedup, which keep no keyed state).
    head, rest = chain.slice(0, 2), chain.slice(2)
    raw = spark_klines(spark, kline_data)
    table = spark_table(raw, tmp_path, "raw")
    parts = head.transform(table)
    parts = parts.sort_by([("symbol", "ascending"), ("open_time", "ascending")])
    through_chain = normalize(rest.transform(parts))

    through_spark = normalize(spark_table(sluice.spark.transform(raw, KLINES), tmp_path, "spark2"))
    assert ipc_bytes(through_chain) == ipc_bytes(want) == ipc_bytes(through_spark)


def test_schemas_and_keys(spark):
    import sluice.spark

    df = spark.range(0, 50).selectExpr("CAST(id % 2 AS STRING) AS k", "id AS t", "CAST(id AS DOUBLE) AS v")
    steps = [{"plugin": "indicators", "config": {"keys": ["k"], "order_by": "t",
                                                 "indicators": [{"kind": "sma", "column": "v", "window": 2, "as": "m"}]}}]
    out = sluice.spark.transform(df, steps)
    assert out.columns == ["k", "t", "v", "m"]
    rows = {(r.k, r.t): r.m for r in out.collect()}
    assert rows[("0", 2)] == 1.0 and rows[("1", 3)] == 2.0 and rows[("0", 0)] is None
    # Partitioning by other columns than the state's keys would split a key: refused.
    with pytest.raises(ValueError, match="split a key"):
        sluice.spark.transform(df, steps, keys=["t"])
    with pytest.raises(ValueError, match="split a key"):
        sluice.spark.transform(df, steps, keys=[])
    assert sluice.spark.transform(df, steps, keys="k").count() == 50
    # A chain without keyed state runs without a shuffle.
    plain = sluice.spark.transform(df, [{"plugin": "passthrough"}])
    assert "Exchange" not in plain._jdf.queryExecution().executedPlan().toString()
    assert plain.count() == 50


def test_the_output_does_not_depend_on_attempts_or_partitions(spark, kline_data, cli_lake, tmp_path):
    # The chain is deterministic: the same job run again (as a retried or speculative task runs
    # it) and over another number of shuffle partitions gives the same rows.
    import sluice.spark

    raw = spark_klines(spark, kline_data)
    first = normalize(spark_table(sluice.spark.transform(raw, KLINES), tmp_path, "a"))
    again = normalize(spark_table(sluice.spark.transform(raw, KLINES), tmp_path, "b"))
    other = normalize(spark_table(sluice.spark.transform(raw, KLINES, partitions=5), tmp_path, "c"))
    assert ipc_bytes(first) == ipc_bytes(again) == ipc_bytes(other)

    # `dedup` with `scope: file` runs before the shuffle, in the input's partitions: with the
    # files scattered over 7 partitions, duplicates that land apart survive. Keyed by
    # (symbol, open_time) with `scope: run`, it runs after the shuffle by the key both stateful
    # steps share (symbol), sees every copy, and the lake's rows come back exactly.
    scattered = raw.repartition(7)
    steps = [
        {"plugin": "normalize_time", "config": {"columns": ["open_time", "close_time"], "to": "ms"}},
        {"plugin": "dedup", "config": {"keys": ["symbol", "open_time"], "scope": "run"}},
        {"plugin": "indicators", "config": {"keys": ["symbol"], "order_by": "open_time",
                                            "indicators": [{"kind": "sma", "column": "close", "window": 20, "as": "ma20"}]}},
    ]
    assert sluice.Chain(steps).keys() == (["symbol"], "open_time")
    got = normalize(spark_table(sluice.spark.transform(scattered, steps, partitions=5), tmp_path, "d"))
    assert ipc_bytes(got) == ipc_bytes(read_lake(cli_lake))
