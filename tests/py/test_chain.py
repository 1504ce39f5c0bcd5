"""`sluice.Chain` on pyarrow and Polars data: inputs, schemas, keyed state across calls, errors
with step, row and key, pickling, and the GIL released while plugins run."""

from __future__ import annotations

import pickle
import threading
import time

import pyarrow as pa
import pytest

import sluice
from conftest import KLINES, REPO

SMA = {"plugin": "indicators", "config": {"keys": ["k"], "order_by": "t",
                                          "indicators": [{"kind": "sma", "column": "v", "window": 3, "as": "ma3"}]}}


def data(n=10, keys=("a", "b")):
    rows = [(k, t, float(t * 10 + i)) for t in range(n) for i, k in enumerate(keys)]
    return pa.table({"k": [r[0] for r in rows], "t": [r[1] for r in rows], "v": [r[2] for r in rows]})


def test_every_arrow_input_gives_the_same_output():
    polars = pytest.importorskip("polars")
    t = data()
    want = sluice.Chain([SMA]).transform(t)
    assert want.column_names == ["k", "t", "v", "ma3"]
    assert want.num_rows == t.num_rows
    # A RecordBatch (__arrow_c_array__ / stream), a Table, a RecordBatchReader, a Polars frame.
    batch = t.to_batches()[0]
    assert sluice.Chain([SMA]).transform(batch).equals(want)
    assert sluice.Chain([SMA]).transform(pa.RecordBatchReader.from_batches(t.schema, t.to_batches())).equals(want)
    got = sluice.Chain([SMA]).transform(polars.from_arrow(t))
    assert got.cast(want.schema).equals(want)
    with pytest.raises(TypeError, match="expected Arrow data"):
        sluice.Chain([SMA]).process([1, 2, 3])


def test_keyed_state_carries_across_calls():
    t = data(30)
    whole = sluice.Chain([SMA]).transform(t)
    c = sluice.Chain([SMA])
    parts = []
    for start in range(0, t.num_rows, 7):  # 7 rows at a time: keys interleaved, windows cut
        parts.extend(c.process(t.slice(start, 7)))
    parts.extend(c.finish())
    assert pa.Table.from_batches(parts).equals(whole)
    # ma3 of key a at t=2 is the mean of its first three values: state, not just this call.
    a = whole.filter(pa.compute.equal(whole["k"], "a"))
    assert a["ma3"].to_pylist()[:3] == [None, None, pytest.approx((0 + 10 + 20) / 3)]
    # reset() forgets it: the next call starts each key over.
    c.reset()
    again = pa.Table.from_batches(c.process(t.slice(0, 2)))
    assert again["ma3"].to_pylist() == [None, None]


def test_output_schema_matches_the_output_and_keys_are_declared():
    c = sluice.Chain(KLINES)
    assert [s["name"] for s in c.steps()] == ["normalize_time", "dedup", "indicators"]
    assert all(s["component_hash"].startswith("sha256:") for s in c.steps())
    assert c.states() == [None, None, (["symbol"], "open_time")]
    assert c.keys() == (["symbol"], "open_time")
    t = data()
    s = sluice.Chain([SMA]).output_schema(t.schema)
    assert s == sluice.Chain([SMA]).transform(t).schema


def test_a_pipeline_file_needs_only_the_variables_its_steps_use():
    # klines.yaml declares DATA_DIR and LAKE_DIR for its source and sink; neither is set here.
    c = sluice.Chain(REPO / "benches" / "kline" / "klines.yaml")
    assert len(c) == 3
    assert len(c.slice(2)) == 1


def test_config_errors_have_positions_and_hints(tmp_path):
    with pytest.raises(sluice.ConfigError) as e:
        sluice.Chain([{"plugin": "sma", "limts": {}}])
    err = e.value.errors[0]
    assert err["line"] == 1 and err["column"] > 1, err
    assert "limts" in err["message"] and "limits" in err["hint"]
    assert isinstance(e.value, ValueError)
    p = tmp_path / "p.yaml"
    p.write_text("pipeline: p\nsteps:\n  - plugin: sma\n    config: {window: 3}\n  - nme: x\n")
    with pytest.raises(sluice.ConfigError) as e:
        sluice.Chain(p)
    assert any(x["file"] == str(p) and x["line"] == 5 for x in e.value.errors), e.value.errors
    # A plugin's own config check, at construction, naming the step and the key.
    with pytest.raises(sluice.StepError) as e:
        sluice.Chain([{"plugin": "sessionize", "config": {"keys": ["u"], "time": "t", "gap": 10}}])
    assert (e.value.step, e.value.kind, e.value.column) == ("sessionize", "config", "gap")
    # An unknown plugin.
    with pytest.raises(sluice.StepError, match="did you mean `indicators`") as e:
        sluice.Chain([{"plugin": "indicatorz"}])
    assert e.value.kind == "load"


def test_bad_data_names_the_step_the_row_and_the_key():
    c = sluice.Chain([{"plugin": "passthrough"},
                      {"plugin": "sessionize", "name": "sessions", "config": {"keys": ["user"], "time": "t", "gap": "10ms"}}])
    t = pa.table({"user": ["a", "b", "c"], "t": pa.array([1, 2, None], pa.int64())})
    with pytest.raises(sluice.StepError) as e:
        c.process(t)
    err = e.value
    assert (err.step, err.step_index, err.plugin, err.kind, err.blame) == ("sessions", 2, "sessionize", "data", "user")
    assert (err.row, err.column, err.key) == (2, "t", {"user": "c"})
    assert "step 2 `sessions`" in str(err) and "row 2" in str(err) and "key user=c" in str(err)
    # A slice of the chain numbers its steps as the whole chain does.
    with pytest.raises(sluice.StepError) as e:
        c.slice(1).process(t)
    assert (e.value.step_index, e.value.key) == (2, {"user": "c"})
    # It pickles with its attributes (a Spark or Ray worker sends it back that way).
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), back.key, back.row, str(back)) == (sluice.StepError, {"user": "c"}, 2, str(err))


def test_a_chain_pickles_as_its_steps():
    t = data(25)
    c = sluice.Chain(KLINES).slice(2)
    c2 = sluice.Chain([SMA])
    c2.process(t)  # state is not pickled: the copy starts fresh
    back = pickle.loads(pickle.dumps(c2))
    assert back.transform(t).equals(sluice.Chain([SMA]).transform(t))
    assert [s["name"] for s in pickle.loads(pickle.dumps(c)).steps()] == ["indicators"]


def test_the_gil_is_released_while_plugins_run(test_plugins):
    # hostile-spin loops in the guest until its 800 ms deadline. Two threads with a chain each
    # take about one deadline, not two, when the GIL is released while WASM runs.
    step = {"plugin": str(test_plugins / "hostile-spin.wasm"), "limits": {"timeout": "800ms"}}
    chains = [sluice.Chain([step]), sluice.Chain([step])]
    t = data(2)
    kinds = []

    def call(c):
        try:
            c.process(t)
        except sluice.StepError as e:
            kinds.append(e.kind)

    started = time.perf_counter()
    threads = [threading.Thread(target=call, args=(c,)) for c in chains]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    both = time.perf_counter() - started
    assert kinds == ["timeout", "timeout"]
    assert both < 1.4, f"two 800 ms calls on two threads took {both:.2f} s: the GIL was held"


def test_a_forked_child_gets_a_runtime_of_its_own(test_plugins):
    # The parent's runtime enforces deadlines with a ticker thread, which fork does not copy. A
    # child (multiprocessing, Spark's daemon) must make its own, or a spinning guest hangs it.
    import os
    import signal

    spin = {"plugin": str(test_plugins / "hostile-spin.wasm"), "limits": {"timeout": "300ms"}}
    sluice.Chain([spin])  # the parent's runtime exists before the fork
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sluice.Chain([spin]).process(data(2))
        except sluice.StepError as e:
            code = 0 if e.kind == "timeout" else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's spinning plugin was never stopped")


def test_compiled_components_are_cached_on_disk(tmp_path):
    # A fresh process (a Spark task, a Ray actor) loads what an earlier one compiled: the cache
    # files are written once and then only read.
    import os
    import subprocess
    import sys

    env = dict(os.environ, SLUICE_CACHE_DIR=str(tmp_path / "cache"))
    code = f"import sluice; sluice.Chain({[SMA]!r}).transform(__import__('pyarrow').table({{'k': ['a'], 't': [1], 'v': [1.0]}}))"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert files, "nothing was cached"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    again = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert again == files, "the second process compiled again"


def test_plugin_counters_are_reported():
    # indicators orders each batch itself, and counts rows that arrive in a later batch with an
    # earlier time than their key has seen (what the Spark test checks is zero in every worker).
    before = sluice.counters().get("indicators.out_of_order_rows", 0)
    t = pa.table({"k": ["a", "a", "a"], "t": [3, 1, 2], "v": [1.0, 2.0, 3.0]})
    c = sluice.Chain([SMA])
    c.process(t.slice(0, 1))
    c.process(t.slice(1))
    assert sluice.counters()["indicators.out_of_order_rows"] - before == 2


def test_a_chain_made_before_a_fork_is_refused_in_the_child():
    import os

    c = sluice.Chain([SMA])
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            c.process(data(2))
        except sluice.SluiceError as e:
            code = 0 if "another process" in str(e) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
