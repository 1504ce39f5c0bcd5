"""Hostile plugins raise a `StepError` naming the step, in the calling process and inside a Spark
task, and the process (or the executor) goes on."""

from __future__ import annotations

import pyarrow as pa
import pytest

import sluice

CASES = [("hostile-spin", "timeout"), ("hostile-panic", "panic"), ("hostile-hog", "memory_limit"),
         ("hostile-bad-ipc", "bad_output")]


def step(test_plugins, name):
    return {"plugin": str(test_plugins / f"{name}.wasm"), "name": f"evil-{name}",
            "limits": {"timeout": "500ms", "memory": "64MiB"}}


@pytest.mark.parametrize("name,kind", CASES)
def test_in_process(test_plugins, name, kind):
    c = sluice.Chain([{"plugin": "passthrough"}, step(test_plugins, name)])
    t = pa.table({"x": [1, 2, 3]})
    with pytest.raises(sluice.StepError) as e:
        c.process(t)
    assert (e.value.step, e.value.step_index, e.value.kind, e.value.blame) == (f"evil-{name}", 2, kind, "plugin")
    assert f"step 2 `evil-{name}`" in str(e.value)
    # The instance was dropped: the next call makes a fresh one, which misbehaves the same way
    # (not `poisoned`); the chain and the process go on.
    with pytest.raises(sluice.StepError) as again:
        c.process(t)
    assert again.value.kind == kind
    assert sluice.Chain([{"plugin": "passthrough"}]).transform(t).equals(t)


@pytest.mark.parametrize("name,kind", [CASES[0], CASES[1]])
def test_inside_a_spark_task(spark, test_plugins, name, kind):
    from pyspark.errors import PythonException

    import sluice.spark

    df = spark.range(0, 100).selectExpr("id", "id % 3 AS k")
    bad = sluice.spark.transform(df, [step(test_plugins, name)])
    with pytest.raises(PythonException) as e:
        bad.count()
    text = str(e.value)
    assert "sluice.errors.StepError" in text and f"step 1 `evil-{name}`" in text, text[-2000:]
    # The executor survives: the next job on the same session works.
    ok = sluice.spark.transform(df, [{"plugin": "passthrough"}])
    assert ok.count() == 100
