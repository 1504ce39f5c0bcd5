"""Round trips of sluice_plugin.ipc against pyarrow, both ways."""

import io

import pyarrow as pa
import pytest

from sluice_plugin import ipc
from sluice_plugin.ipc import Field

# (our type string, pyarrow type, sample values with nulls)
TYPES = [
    ("int8", pa.int8(), [1, None, -128, 127, 0]),
    ("int16", pa.int16(), [1, None, -32768, 32767, 0]),
    ("int32", pa.int32(), [1, None, -2**31, 2**31 - 1, 0]),
    ("int64", pa.int64(), [1, None, -2**63, 2**63 - 1, 0]),
    ("uint8", pa.uint8(), [1, None, 0, 255, 7]),
    ("uint16", pa.uint16(), [1, None, 0, 65535, 7]),
    ("uint32", pa.uint32(), [1, None, 0, 2**32 - 1, 7]),
    ("uint64", pa.uint64(), [1, None, 0, 2**64 - 1, 7]),
    ("float32", pa.float32(), [1.5, None, -0.25, float("inf"), 0.0]),
    ("float64", pa.float64(), [1.5, None, -1e300, float("-inf"), 0.1]),
    ("bool", pa.bool_(), [True, None, False, True, False]),
    ("utf8", pa.utf8(), ["a", None, "", "héllo ✓ 日本", "x" * 100]),
    ("large_utf8", pa.large_utf8(), ["a", None, "", "ünïcode", "end"]),
    ("binary", pa.binary(), [b"a", None, b"", b"\x00\xff", b"xyz"]),
    ("large_binary", pa.large_binary(), [b"a", None, b"", b"\x00\xff", b"xyz"]),
    ("date32", pa.date32(), [0, None, 19000, -1, 2**31 - 1]),
    ("timestamp[s]", pa.timestamp("s"), [0, None, 1700000000, -1, 5]),
    ("timestamp[ms]", pa.timestamp("ms"), [0, None, 1700000000000, -1, 5]),
    ("timestamp[us]", pa.timestamp("us"), [0, None, 1700000000000000, -1, 5]),
    ("timestamp[ns]", pa.timestamp("ns"), [0, None, 1700000000000000000, -1, 5]),
    ("timestamp[us, UTC]", pa.timestamp("us", "UTC"), [0, None, 1, 2, 3]),
    ("timestamp[ms, America/New_York]", pa.timestamp("ms", "America/New_York"), [0, None, 1, 2, 3]),
]
IDS = [t[0] for t in TYPES]


def pa_write(table_or_batches, schema=None):
    sink = io.BytesIO()
    if isinstance(table_or_batches, pa.Table):
        schema, batches = table_or_batches.schema, table_or_batches.to_batches()
    else:
        batches = table_or_batches
    with pa.ipc.new_stream(sink, schema) as w:
        for b in batches:
            w.write_batch(b)
    return sink.getvalue()


def pa_read(data):
    return pa.ipc.open_stream(data).read_all()


def to_ours(arr):
    """A pyarrow array as our Python values."""
    if pa.types.is_timestamp(arr.type) or pa.types.is_date32(arr.type):
        arr = arr.view(pa.int64() if pa.types.is_timestamp(arr.type) else pa.int32())
    return arr.to_pylist()


def pa_array(pa_type, values):
    if pa.types.is_timestamp(pa_type):
        return pa.array(values, pa.int64()).view(pa_type)
    if pa.types.is_date32(pa_type):
        return pa.array(values, pa.int32()).view(pa_type)
    return pa.array(values, pa_type)


@pytest.mark.parametrize("ts,pt,values", TYPES, ids=IDS)
def test_pyarrow_to_ours(ts, pt, values):
    arr = pa_array(pt, values)
    data = pa_write(pa.table({"c": arr}))
    schema, batches = ipc.read_stream(data)
    assert schema == [Field("c", ts, True)]
    assert len(batches) == 1
    n, cols = batches[0]
    assert n == len(values)
    assert cols[0] == values


@pytest.mark.parametrize("ts,pt,values", TYPES, ids=IDS)
def test_ours_to_pyarrow(ts, pt, values):
    data = ipc.write_stream([Field("c", ts)], [(len(values), [values])])
    t = pa_read(data)
    assert t.schema.field("c").type == pt
    assert t.column("c").combine_chunks().equals(pa_array(pt, values))


@pytest.mark.parametrize("ts,pt,values", TYPES, ids=IDS)
def test_no_nulls_round_trip(ts, pt, values):
    values = [v for v in values if v is not None]
    data = ipc.write_stream([Field("c", ts, False)], [(len(values), [values])])
    t = pa_read(data)
    assert t.column("c").null_count == 0
    assert not t.schema.field("c").nullable
    assert to_ours(t.column("c").combine_chunks()) == values
    # and back through pyarrow's writer (which may omit the validity bitmap)
    schema, batches = ipc.read_stream(pa_write(t))
    assert batches[0][1][0] == values
    assert schema == [Field("c", ts, False)]


@pytest.mark.parametrize("ts,pt,values", TYPES, ids=IDS)
def test_all_null_and_zero_rows(ts, pt, values):
    nulls = [None] * 3
    for col in (nulls, []):
        data = ipc.write_stream([Field("c", ts)], [(len(col), [col])])
        t = pa_read(data)
        assert t.num_rows == len(col)
        assert t.column("c").to_pylist() == col
        _, batches = ipc.read_stream(pa_write(t))
        assert sum((b[1][0] for b in batches), []) == col


def test_many_columns_several_batches_both_ways():
    cols = {ts: pa_array(pt, v) for ts, pt, v in TYPES}
    table = pa.table(cols)
    b1 = table.to_batches()[0]
    batches = [b1, b1.slice(1, 3), b1.slice(0, 0), b1.slice(2)]
    data = pa_write(batches, table.schema)
    schema, ours = ipc.read_stream(data)
    assert [f.type for f in schema] == [t[0] for t in TYPES]
    assert [n for n, _ in ours] == [5, 3, 0, 3]
    for (n, got), b in zip(ours, batches):
        assert got == [to_ours(c) for c in b.columns]
    # ours -> pyarrow, equal to the original
    back = pa_read(ipc.write_stream(schema, ours))
    assert back.equals(pa.Table.from_batches(batches, table.schema))
    # lazy columns are written as they are (buffers copied), with the same result
    schema2, lazy = ipc.read_stream(data, lazy=True)
    assert isinstance(lazy[0][1][0], ipc.RawColumn)
    assert pa_read(ipc.write_stream(schema2, lazy)).equals(back)


def test_schema_only_streams():
    schema = pa.schema([("a", pa.int64()), pa.field("b", pa.utf8(), nullable=False)])
    data = pa_write([], schema)
    ours, batches = ipc.read_stream(data)
    assert ours == [Field("a", "int64"), Field("b", "utf8", False)] and batches == []
    back = pa_read(ipc.write_stream(ours))
    assert back.schema == schema and back.num_rows == 0
    assert pa_read(ipc.write_stream([])).num_columns == 0


def test_legacy_framing_is_read():
    t = pa.table({"a": [1, 2, None]})
    sink = io.BytesIO()
    opts = pa.ipc.IpcWriteOptions(use_legacy_format=True)
    with pa.ipc.new_stream(sink, t.schema, options=opts) as w:
        w.write_table(t)
    data = sink.getvalue()
    assert data[:4] != b"\xff\xff\xff\xff"
    _, batches = ipc.read_stream(data)
    assert batches[0][1][0] == [1, 2, None]


def test_written_stream_is_aligned_and_terminated():
    data = ipc.write_stream([Field("s", "utf8")], [(3, [["a", "bc", None]])])
    assert data.endswith(b"\xff\xff\xff\xff\x00\x00\x00\x00")
    assert len(data) % 8 == 0
    reader = pa.ipc.open_stream(data)
    assert reader.schema.metadata is None
    b = reader.read_next_batch()
    b.validate(full=True)


def test_large_batch_round_trip():
    n = 100_000
    t = pa.table({"i": pa.array(range(n), pa.int64()), "f": pa.array([i * 0.5 for i in range(n)]),
                  "s": pa.array([None if i % 7 == 0 else f"s{i}" for i in range(n)]),
                  "b": pa.array([i % 3 == 0 for i in range(n)])})
    schema, batches = ipc.read_stream(pa_write(t))
    assert pa_read(ipc.write_stream(schema, batches)).equals(t)


@pytest.mark.parametrize("arr,what", [
    (pa.array([[1, 2], [3]]), "list"),
    (pa.array([[1, 2], [3]], pa.large_list(pa.int64())), "large_list"),
    (pa.array([[1, 2], [3, 4]], pa.list_(pa.int64(), 2)), "fixed_size_list"),
    (pa.array(["a", "b", "a"]).dictionary_encode(), "dictionary"),
    (pa.array([{"x": 1}]), "struct"),
    (pa.array([[("k", 1)]], pa.map_(pa.utf8(), pa.int64())), "map"),
    (pa.array(["a"], pa.string_view()), "utf8_view"),
    (pa.array([b"a"], pa.binary_view()), "binary_view"),
])
def test_unsupported_types_name_the_column(arr, what):
    """Nested, dictionary and view columns still fail when the schema is read (the flat types
    the SDK cannot decode pass through instead: test_passthrough.py)."""
    data = pa_write(pa.table({"ok": pa.array([1] * len(arr)), "bad_col": arr}))
    with pytest.raises(ipc.UnsupportedType) as e:
        ipc.read_stream(data)
    assert "bad_col" in str(e.value) and what in str(e.value)
    assert e.value.column == "bad_col"


def test_compressed_batches_are_refused():
    t = pa.table({"a": list(range(100))})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, t.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(t)
    with pytest.raises(ipc.IpcError, match="compressed"):
        ipc.read_stream(sink.getvalue())


def test_bad_types_and_values_on_write():
    with pytest.raises(ipc.IpcError, match="unknown type"):
        Field("x", "decimal(10, 2)")
    with pytest.raises(ipc.IpcError, match="unknown type"):
        Field("x", "timestamp[min]")
    with pytest.raises(ipc.IpcError, match="column `x`"):
        ipc.write_stream([Field("x", "int8")], [(1, [[300]])])
    with pytest.raises(ipc.IpcError, match="column `x`"):
        ipc.write_stream([Field("x", "utf8")], [(1, [[3]])])
    with pytest.raises(ipc.IpcError, match="column `x` has 2 values"):
        ipc.write_stream([Field("x", "int64")], [(1, [[1, 2]])])


def test_truncated_input():
    data = ipc.write_stream([Field("x", "int64")], [(2, [[1, 2]])])
    with pytest.raises(ipc.IpcError):
        ipc.read_stream(data[:40])
    with pytest.raises(ipc.IpcError):
        ipc.read_stream(b"")
