"""The chain inside Spark: `transform(df, steps, keys=..., order_by=...)` returns a DataFrame.

A key's rows reach one chain, in order, so keyed steps (moving averages, sessions, dedup by
key) give what `sluice run` gives:

1. the steps before the first stateful one run first (`mapInArrow`, in the input's partitions and
   order), so a step that rewrites the ordering column (normalize_time) or a key runs before the
   shuffle and the sort;
2. `df.repartition(*keys)`: every row of a key lands in one partition (hash partitioning never
   splits a key; adaptive execution may only merge whole partitions);
3. `sortWithinPartitions(*keys, order_by)`;
4. the rest of the chain (`mapInArrow`), one chain per task, `finish()` at the end of the
   partition.

Without keyed state (and without `keys=`) the chain runs in one `mapInArrow`, with no shuffle.
The chain is deterministic, so a retried or speculative task gives the same rows.
"""

from __future__ import annotations

from . import Chain
from ._arrow import check_rejects, conform, plan, sparkable


def _chain(steps, plugin_dir, base_dir) -> Chain:
    return steps if isinstance(steps, Chain) else Chain(steps, plugin_dir=plugin_dir, base_dir=base_dir)


def _stage(df, chain: Chain, rejects: str, stats_dir):
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    out = chain.output_schema(to_arrow_schema(df.schema))
    spark_schema = from_arrow_schema(sparkable(out))
    target = to_arrow_schema(spark_schema)
    args = chain.__reduce__()[1]
    where = "sluice chain [" + ", ".join(s["name"] for s in chain.steps()) + "]"

    def run(batches):
        import os
        import time

        c = Chain._restore(*args)
        started = time.thread_time_ns()
        for b in batches:
            for o in c.process(b):
                yield conform(o, target, where)
            check_rejects(c, rejects, where)
        for o in c.finish():
            yield conform(o, target, where)
        check_rejects(c, rejects, where)
        if stats_dir:
            import json
            import uuid

            import sluice

            task = {"pid": os.getpid(), "task_cpu_ns": time.thread_time_ns() - started, "steps": c.stats(),
                    "counters": sluice.counters()}
            with open(os.path.join(stats_dir, f"{uuid.uuid4().hex}.json"), "w") as f:
                json.dump(task, f)

    return df.mapInArrow(run, spark_schema)


def transform(
    df,
    steps,
    keys=None,
    order_by=None,
    *,
    partitions: int | None = None,
    plugin_dir=None,
    base_dir=None,
    rejects: str = "drop",
    stats_dir: str | None = None,
):
    """`df` through the chain of `steps` (a pipeline file, a list of step dicts, or a `Chain`).

    - `keys`, `order_by`: default to what the chain's stateful steps declare (`Chain.keys()`: the
      key columns they all share, and their one order).
      `keys` may be fewer columns than a step's (coarser partitions are still right), never
      others. `order_by` is a column name or a Spark `Column`.
    - `partitions`: the number of shuffle partitions (default: Spark's).
    - `rejects`: rows steps set aside are dropped (`"drop"`) or fail the task (`"raise"`).
    - `stats_dir`: each task writes its steps' counters and the plugins' counters
      (`sluice.counters()` of its worker) there as JSON (a local path, for benchmarks and tests).

    A failing step fails the task with a `StepError` whose text names the step, the plugin, the
    row and the key; the executor stays up.
    """
    if rejects not in ("drop", "raise"):
        raise ValueError(f"rejects must be 'drop' or 'raise', not {rejects!r}")
    chain = _chain(steps, plugin_dir, base_dir)
    keys, order_by, first = plan(chain, keys, order_by)
    if not keys:
        return _stage(df, chain, rejects, stats_dir)
    if first > 0:
        df = _stage(df, chain.slice(0, first), rejects, stats_dir)
    df = df.repartition(partitions, *keys) if partitions else df.repartition(*keys)
    order = [*keys, order_by] if order_by is not None else list(keys)
    df = df.sortWithinPartitions(*order)
    if first < len(chain):
        df = _stage(df, chain.slice(first), rejects, stats_dir)
    return df
