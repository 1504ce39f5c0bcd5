"""The chain inside Ray Data: `ChainFn` for stateless chains, `sluice.ray.transform` for keyed
ones (the kline pipeline gives the CLI's lake)."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import sluice
from conftest import KLINES, normalize, read_lake

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_session():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_chain_fn_in_map_batches(ray_session):
    import ray.data

    import sluice.ray

    t = pa.table({"x": list(range(1000)), "y": [float(i) for i in range(1000)]})
    steps = [{"plugin": "derive", "config": {"columns": {"z": "y * 2"}}}]
    ds = ray.data.from_arrow(t).map_batches(
        sluice.ray.ChainFn, fn_constructor_args=(steps,), batch_format="pyarrow", batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    out = pa.concat_tables([ray.get(r) for r in ds.to_arrow_refs()]).sort_by("x")
    assert out["z"].to_pylist() == [2.0 * i for i in range(1000)]
    with pytest.raises(ValueError, match="keyed state"):
        sluice.ray.ChainFn(KLINES)


def test_keyed_klines_equal_the_cli_lake(ray_session, spark, kline_data, cli_lake, tmp_path):
    import ray.data

    import sluice.ray
    from conftest import spark_klines

    # The same parsed input as the Spark test (Spark reads the CSV files), handed to Ray.
    raw = tmp_path / "raw"
    spark_klines(spark, kline_data).write.parquet(str(raw))
    ds = ray.data.read_parquet(str(raw))
    out = sluice.ray.transform(ds, KLINES)
    # Ray's empty blocks have no columns, and blocks may differ in field nullability.
    blocks = [b for b in (ray.get(r) for r in out.to_arrow_refs()) if b.num_rows]
    got = normalize(pa.concat_tables([normalize(b) for b in blocks]))
    assert got.equals(read_lake(cli_lake))
