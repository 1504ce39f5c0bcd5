"""The chain inside Ray Data.

- `ChainFn(steps)`: a callable class for `ds.map_batches(ChainFn, fn_constructor_args=(steps,),
  batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=...))`. Each batch goes
  through the chain and `finish()`, so it is for chains without keyed state (it refuses others):
  `map_batches` has no end-of-input hook, and Ray gives no order across batches.
- `transform(ds, steps, keys=..., order_by=...)`: keyed chains. `groupby(keys).map_groups` hands
  each key's rows to one call; they are sorted by `order_by` there (after the steps before the
  first stateful one, as in `sluice.spark`), run through a fresh chain and finished.
"""

from __future__ import annotations

import pyarrow as pa

from . import Chain
from ._arrow import plan


def _chain(steps, plugin_dir=None, base_dir=None) -> Chain:
    if isinstance(steps, Chain):
        return Chain._restore(*steps.__reduce__()[1])
    return Chain(steps, plugin_dir=plugin_dir, base_dir=base_dir)


def _table(batches, chain: Chain, schema: pa.Schema) -> pa.Table:
    if batches:
        return pa.Table.from_batches(batches)
    return chain.output_schema(schema).empty_table()


class ChainFn:
    """A chain without keyed state, for `Dataset.map_batches(..., batch_format="pyarrow")`."""

    def __init__(self, steps, plugin_dir=None, base_dir=None):
        self.chain = _chain(steps, plugin_dir, base_dir)
        if any(s is not None for s in self.chain.states()):
            raise ValueError(
                "this chain keeps keyed state: map_batches would split a key's rows across calls "
                "without order; use sluice.ray.transform(ds, steps, keys=..., order_by=...)"
            )

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = self.chain.process(batch)
        out += self.chain.finish()
        self.chain.take_rejects()
        return _table(out, self.chain, batch.schema)


class _Groups:
    """One key's rows per call: the stateless head, a sort, the stateful rest, on fresh state."""

    def __init__(self, args, order_by, first):
        chain = Chain._restore(*args)
        self.head = chain.slice(0, first) if first > 0 else None
        self.rest = chain.slice(first)
        self.order_by = order_by

    def __call__(self, group: pa.Table) -> pa.Table:
        if self.head is not None:
            self.head.reset()
            group = self.head.transform(group, group.schema)
            self.head.take_rejects()
        if self.order_by is not None:
            group = group.sort_by(self.order_by)
        self.rest.reset()
        out = self.rest.transform(group, group.schema)
        self.rest.take_rejects()
        return out


def transform(ds, steps, keys=None, order_by=None, *, plugin_dir=None, base_dir=None, concurrency: int = 1):
    """`ds` through the chain of `steps`; keyed chains by `groupby(keys).map_groups`. `keys` and
    `order_by` default to what the stateful steps declare. `concurrency`: actors in the pool
    (keep it below the CPUs Ray has, or the pool starves the readers)."""
    import ray.data

    chain = _chain(steps, plugin_dir, base_dir)
    keys, order_by, first = plan(chain, keys, order_by)
    compute = ray.data.ActorPoolStrategy(size=concurrency)
    if not keys:
        return ds.map_batches(ChainFn, fn_constructor_args=(chain,), batch_format="pyarrow", compute=compute)
    args = chain.__reduce__()[1]
    return ds.groupby(keys).map_groups(
        _Groups, fn_constructor_args=(args, order_by, first), batch_format="pyarrow", compute=compute
    )
