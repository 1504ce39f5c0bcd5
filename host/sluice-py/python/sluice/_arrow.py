"""Matching the chain's output to the schema an engine declared: by name, then cast."""

from __future__ import annotations

import pyarrow as pa

from .errors import SluiceError, StepError


def sparkable(schema: pa.Schema) -> pa.Schema:
    """`schema` with types Spark has no Arrow mapping for replaced by ones it has (unsigned
    integers by the next wider signed ones, uint64 by int64; dictionaries by their values; large
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
        if pa.types.is_large_string(t) or pa.types.is_string_view(t):
            return pa.string()
        if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
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
