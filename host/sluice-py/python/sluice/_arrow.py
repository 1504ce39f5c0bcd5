"""What the engine adapters share: how a chain is cut and fed (`plan`), and matching the chain's
output to the schema an engine declared (by name, then cast)."""

from __future__ import annotations

import pyarrow as pa

from .errors import SluiceError, StepError


def _is(t: pa.DataType, test: str) -> bool:
    """A type test pyarrow may not have (views came in pyarrow 16)."""
    f = getattr(pa.types, test, None)
    return bool(f and f(t))


def plan(chain, keys, order_by):
    """How to feed `chain`: `(keys, order_by, first)`, where `first` is the index of the first
    step to run after the rows are grouped by `keys` and sorted by `order_by` (the steps before
    it keep no keyed state and run before the shuffle).

    The default keys are the columns every stateful step keys by (dedup by `[symbol, open_time]`
    and a moving average by `[symbol]` share `[symbol]`: partitioning by it keeps each step's keys
    whole), and the order is the one order the steps declare. Explicit keys may be fewer columns
    than that, never others. No keys (a chain without keyed state, none given) means no shuffle:
    `([], None, 0)`."""
    if isinstance(keys, str):
        keys = [keys]
    states = chain.states()
    stateful = [(i, s) for i, s in enumerate(states) if s is not None]
    if not stateful:
        return (list(keys), order_by, 0) if keys else ([], None, 0)
    names = [st["name"] for st in chain.steps()]
    common = [k for k in stateful[0][1][0] if all(k in s[0] for _, s in stateful)]
    if not common:
        raise ValueError(
            "the stateful steps " + ", ".join(f"`{names[i]}` (by {s[0]})" for i, s in stateful)
            + " share no key column: no one partitioning serves them; split the chain (Chain.slice)"
        )
    orders = {s[1] for _, s in stateful if s[1]}
    if len(orders) > 1 and order_by is None:
        raise ValueError(
            "the stateful steps " + ", ".join(f"`{names[i]}` (by {s[1]!r})" for i, s in stateful if s[1])
            + " order their rows differently: one sort cannot serve them; split the chain (Chain.slice)"
        )
    if keys is None:
        keys = common
    elif not keys or not set(keys) <= set(common):
        raise ValueError(
            f"keys={list(keys)}: the chain keeps state by {common}; partitioning by other columns "
            "(or none) would split a key's rows across tasks"
        )
    if order_by is None and orders:
        order_by = orders.pop()
    return list(keys), order_by, stateful[0][0]


def sparkable(schema: pa.Schema) -> pa.Schema:
    """`schema` with types Spark has no Arrow mapping for replaced by ones it has (unsigned
    integers by the next wider signed ones, uint64 by int64 (a value above its range fails the
    cast); dictionaries by their values; large
    strings and binaries by plain ones; timestamps in µs), every field nullable."""

    def fit(t: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(t):
            return fit(t.value_type)
        if pa.types.is_uint8(t):
            return pa.int16()
        if pa.types.is_uint16(t):
            return pa.int32()
        if pa.types.is_uint32(t) or pa.types.is_uint64(t):
            return pa.int64()
        if pa.types.is_large_string(t) or _is(t, "is_string_view"):
            return pa.string()
        if pa.types.is_large_binary(t) or _is(t, "is_binary_view"):
            return pa.binary()
        if pa.types.is_timestamp(t) and t.unit != "us":
            return pa.timestamp("us", tz=t.tz)
        return t

    return pa.schema([pa.field(f.name, fit(f.type), nullable=True) for f in schema])


def conform(batch: pa.RecordBatch, target: pa.Schema, where: str) -> pa.RecordBatch:
    """`batch`'s columns in `target`'s order, each cast to its type (a value that does not fit is
    an error naming the column). Spark matches columns by position and drops extra ones without
    a word, so the match is made here, by name."""
    if batch.schema.equals(target, check_metadata=False):
        return batch
    columns = []
    for field in target:
        i = batch.schema.get_field_index(field.name)
        if i < 0:
            have = ", ".join(batch.schema.names)
            raise SluiceError(f"{where}: the chain's output has no column `{field.name}` (it has: {have})")
        col = batch.column(i)
        if col.type != field.type:
            try:
                col = col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SluiceError(f"{where}: column `{field.name}` ({col.type}) does not fit {field.type}: {e}") from None
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=target)


def check_rejects(chain, policy: str, where: str) -> int:
    """Rows the chain's steps set aside: counted (`drop`) or raised (`raise`)."""
    rejects = chain.take_rejects()
    if rejects and policy == "raise":
        r = rejects[0]
        raise StepError(
            f"{where}: step `{r['step']}` set {len(rejects)} row(s) aside; the first: {r['reason']}: {r['row']}",
            step=r["step"],
            kind="data",
            blame="user",
        )
    return len(rejects)
