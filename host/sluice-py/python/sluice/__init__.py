"""Sluice's handler chain for Python: the same WebAssembly plugins, config and keyed state as
`sluice run`, on Arrow data from pyarrow, Polars, Spark (`sluice.spark`) or Ray (`sluice.ray`).

    import sluice
    chain = sluice.Chain("pipelines/klines.yaml")          # a pipeline file's steps
    chain = sluice.Chain([{"plugin": "sma", "config": {"column": "close", "window": 20}}])
    out = chain.process(table)                              # a list of pyarrow RecordBatches
    out += chain.finish()                                   # rows steps still hold
    sluice.run("pipelines/klines.yaml")                     # what `sluice run` does, as a dict
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa

from . import _sluice
from .errors import ConfigError, RunFailed, SluiceError, StepError

__version__ = _sluice.__version__
__all__ = ["Chain", "run", "validate", "counters", "plugins", "SluiceError", "ConfigError", "StepError", "RunFailed"]


def _plugin_dir(plugin_dir):
    d = plugin_dir if plugin_dir is not None else os.environ.get("SLUICE_PLUGIN_DIR")
    return os.fspath(d) if d else None


def _source(steps, base_dir) -> tuple[str, str]:
    """(text, file) for the native chain: a pipeline file's text, or a steps map as JSON."""
    if isinstance(steps, (str, os.PathLike)):
        path = Path(steps)
        return path.read_text(), os.fspath(path.resolve())
    if isinstance(steps, dict):
        doc = steps if "steps" in steps else {"steps": [steps]}
    else:
        doc = {"steps": list(steps)}
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return json.dumps(doc), os.fspath(base.resolve() / "<steps>")


class Chain:
    """A pipeline's handler steps, for one stream of batches at a time.

    `steps` is a pipeline file (its `steps:`, `env:` and `settings.limits`; its sources and sink
    are ignored) or a list of step dicts as a pipeline file writes them (`plugin`, `name`,
    `config`, `limits`, `tables`). Plugin and table paths resolve relative to the file, or to
    `base_dir` (default: the working directory) for a list. Every plugin loads and every config
    goes through its plugin's constructor here, so a bad step fails now.

    Keyed state: a stateful step (indicators, sessionize, ...) keeps per-key state in its
    instance across `process` calls, as across files in `sluice run`. Feed each key's rows in
    `order_by` order; `keys()` says which columns those are. `finish()` flushes rows steps hold
    and keeps the state; `reset()` drops it.

    The GIL is released while plugins run, so threads with a chain each run in parallel. A chain
    pickles as its steps (not its state): unpickled in a worker it loads the plugins there, from
    the compiled-component cache on disk. The steps' text goes as written, so `${VAR}` is read
    again from the worker's environment. A chain made before a `fork` raises in the child: make
    or unpickle one there.
    """

    def __init__(self, steps, *, plugin_dir=None, base_dir=None, _range=(0, None)):
        text, file = _source(steps, base_dir)
        self._args = (text, file, _plugin_dir(plugin_dir), _range)
        self._native = _sluice.NativeChain(text, file, self._args[2], _range[0], _range[1])

    @classmethod
    def _restore(cls, text, file, plugin_dir, rng):
        self = cls.__new__(cls)
        self._args = (text, file, plugin_dir, rng)
        self._native = _sluice.NativeChain(text, file, plugin_dir, rng[0], rng[1])
        return self

    def __reduce__(self):
        return (Chain._restore, self._args)

    def __len__(self) -> int:
        return len(self._native.steps())

    def __repr__(self) -> str:
        names = ", ".join(s["name"] for s in self._native.steps())
        return f"sluice.Chain([{names}])"

    def slice(self, start: int, end: int | None = None) -> "Chain":
        """Steps `start..end` of this chain as a chain of their own (fresh state); errors still
        number steps as the file does."""
        first, last = self._args[3]
        end = len(self) if end is None else min(end, len(self))
        return Chain._restore(*self._args[:3], (first + start, first + end))

    def process(self, data) -> list[pa.RecordBatch]:
        """Arrow data through every step. `data` is anything with `__arrow_c_stream__` or
        `__arrow_c_array__`: a pyarrow RecordBatch, Table or RecordBatchReader, a Polars
        DataFrame. Returns the output batches (pyarrow), possibly none. Raises `StepError`."""
        return self._native.process(data)

    def finish(self) -> list[pa.RecordBatch]:
        """The end of the input: what steps still hold (open groups, sessions), through the steps
        after them. Keyed state stays."""
        return self._native.finish()

    def transform(self, data: Iterable[Any] | Any, schema: pa.Schema | None = None) -> pa.Table:
        """Every batch of `data` (one Arrow object or an iterable of them), then `finish()`, as
        one Table."""
        batches = []
        items = [data] if hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__") else data
        for item in items:
            if schema is None and isinstance(getattr(item, "schema", None), pa.Schema):
                schema = item.schema
            batches.extend(self.process(item))
        batches.extend(self.finish())
        if batches:
            return pa.Table.from_batches(batches)
        if schema is None:
            raise ValueError("no input and no schema: cannot tell the output's columns")
        return self.output_schema(schema).empty_table()

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """The schema after every step for input of `schema`, as each plugin declares it."""
        return self._native.output_schema(schema)

    def states(self) -> list[tuple[list[str], str] | None]:
        """Each step's keyed state: `None`, or `(keys, order_by)`."""
        return self._native.states()

    def keys(self) -> tuple[list[str], str | None] | None:
        """How to feed this chain's stateful steps: `(keys, order_by)`, the columns every stateful
        step keys by and the one order they declare; `None` when no step keeps keyed state.
        Raises `ValueError` when no partitioning or no one order serves them all."""
        from ._arrow import plan

        if all(s is None for s in self.states()):
            return None
        keys, order_by, _ = plan(self, None, None)
        return keys, order_by

    def steps(self) -> list[dict]:
        """Each step: `name`, `plugin`, `version`, `contract`, `component_hash`."""
        return self._native.steps()

    def take_rejects(self) -> list[dict]:
        """Rows steps set aside since the last call: dicts of `step`, `reason` and `row` (as text)."""
        return self._native.take_rejects()

    def stats(self) -> list[dict]:
        """Each step's counters since the last call: rows in and out, calls, plugin time and CPU."""
        return self._native.take_stats()

    def reset(self) -> None:
        """Drop every instance, and with them all keyed state."""
        self._native.reset()


def _paths(path) -> list[str]:
    if isinstance(path, (str, os.PathLike)):
        return [os.fspath(path)]
    return [os.fspath(p) for p in path]


def run(
    path,
    *,
    workers: int | None = None,
    force: bool = False,
    rerun_stale: bool = False,
    catalog: bool = True,
    plugin_dir=None,
    check: bool = False,
    verbose: bool = False,
):
    """Run pipelines once, as `sluice run PATH` does (the same code), and return the summary as
    a dict (a list of dicts for several pipelines): what `sluice run --summary-json` writes.

    Config errors raise `ConfigError`. A run the CLI would exit 1 for (a unit failed, a fatal
    error, the catalog not published) returns its summary; with `check=True` it raises
    `RunFailed`. Ctrl-C stops the run as SIGINT does (units in flight commit), then raises
    `KeyboardInterrupt`. `verbose` prints the CLI's summary on stderr.
    """
    text = _sluice.run(
        _paths(path),
        force=force,
        rerun_stale=rerun_stale,
        workers=workers,
        catalog=catalog,
        plugin_dir=_plugin_dir(plugin_dir),
        verbose=verbose,
    )
    summaries = json.loads(text)
    if check:
        for s in summaries:
            if s.get("fatal") or s.get("files_failed") or s.get("catalog_error"):
                reason = s.get("fatal") or s.get("catalog_error") or f"{s['files_failed']} unit(s) failed"
                raise RunFailed(f"pipeline `{s.get('pipeline')}`: {reason}", summary=s)
    return summaries[0] if len(summaries) == 1 else summaries


def validate(path, *, connect: bool = False, environment: bool = True, plugin_dir=None) -> dict:
    """Check pipelines as `sluice validate` does (the same code): `{ok, pipelines, errors}`, each
    error a dict of `file`, `line`, `column`, `message`, `hint`. `connect=True` also asks the
    servers; `environment=False` checks the files only."""
    return _sluice.validate(_paths(path), connect=connect, environment=environment, plugin_dir=_plugin_dir(plugin_dir))


def counters() -> dict[str, int]:
    """Counters plugins reported in this process, e.g. `indicators.out_of_order_rows`."""
    return _sluice.counters()


def plugins(plugin_dir=None) -> list[str]:
    """The standard plugins' names (and those in the plugin directory)."""
    return _sluice.plugins(_plugin_dir(plugin_dir))
