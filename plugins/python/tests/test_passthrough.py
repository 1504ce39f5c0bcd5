"""Pass-through of types the SDK cannot decode, checks on malformed IPC input, and nullability
on write."""

import decimal
import importlib.util
import io
import os
import random
import struct

import pyarrow as pa
import pytest

from sluice_plugin import Batch, DataError, Field, Handler, ipc
from sluice_plugin._glue import Adapter, InternalError

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "..", "..", "host", "sluice-cli", "template", "python", "app.py")


def pa_write(table, batches=None):
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        for b in (batches if batches is not None else table.to_batches()):
            w.write_batch(b)
    return sink.getvalue()


def pa_read(data):
    return pa.ipc.open_stream(data).read_all()


def load_scale():
    spec = importlib.util.spec_from_file_location("scale_app_pt", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Scale


D = decimal.Decimal

# (pyarrow array with a null, our pass-through type string)
PASSTHROUGH = [
    (pa.array([D("1.25"), None, D("-3.50"), D("0.01")], pa.decimal128(10, 2)), "unsupported:decimal128(10, 2)"),
    (pa.array([D("12345678901234567890.12345"), None, D("0"), D("-1")], pa.decimal256(40, 5)),
     "unsupported:decimal256(40, 5)"),
    (pa.array([D("1.5"), None, D("2"), D("-0.5")], pa.decimal32(5, 1)), "unsupported:decimal32(5, 1)"),
    (pa.array([D("1.5"), None, D("2"), D("-0.5")], pa.decimal64(12, 3)), "unsupported:decimal64(12, 3)"),
    (pa.array([0, None, 86_400_000, -1], pa.date64()), "unsupported:date64"),
    (pa.array([1, None, 3, 86399], pa.time32("s")), "unsupported:time32[s]"),
    (pa.array([1, None, 3, 4], pa.time32("ms")), "unsupported:time32[ms]"),
    (pa.array([1, None, 3, 4], pa.time64("us")), "unsupported:time64[us]"),
    (pa.array([1, None, 3, 4], pa.time64("ns")), "unsupported:time64[ns]"),
    (pa.array([1, None, -3, 4], pa.duration("s")), "unsupported:duration[s]"),
    (pa.array([1, None, -3, 4], pa.duration("ns")), "unsupported:duration[ns]"),
    (pa.array([(1, 2, 3), None, (0, 0, 0), (-1, 5, 7)], pa.month_day_nano_interval()),
     "unsupported:interval[month_day_nano]"),
    (pa.array([b"abc", None, b"\x00\x01\x02", b"zzz"], pa.binary(3)), "unsupported:fixed_size_binary[3]"),
    (pa.array([None] * 4, pa.null()), "unsupported:null"),
]
PT_IDS = [t for _, t in PASSTHROUGH]


def _float16():
    import numpy as np
    return pa.array(np.array([1.5, np.nan, -2.0, 0.0], dtype=np.float16), from_pandas=True)


@pytest.mark.parametrize("arr,ts", PASSTHROUGH + [(None, "unsupported:float16")], ids=PT_IDS + ["float16"])
def test_passthrough_types_round_trip(arr, ts):
    if arr is None:
        arr = _float16()
    t = pa.table({"x": pa.array([1.0, 2.0, None, 4.0]), "p": arr})
    data = pa_write(t, t.to_batches() + [t.slice(1, 2).combine_chunks().to_batches()[0]])
    for lazy in (True, False):
        schema, batches = ipc.read_stream(data, lazy=lazy)
        assert schema == [Field("x", "float64"), Field("p", ts)]
        assert isinstance(batches[0][1][1], ipc.RawColumn)
        back = pa_read(ipc.write_stream(schema, batches))
        assert back.schema == t.schema
        assert back.equals(pa.Table.from_batches(pa.ipc.open_stream(data).read_all().to_batches()))
    # the type string parses, and a schema-only stream of it is the same type in pyarrow
    assert ipc.parse_type(ts)[0] == "opaque"
    assert pa.ipc.open_stream(ipc.write_stream([Field("p", ts)])).schema.field("p").type == t.schema.field("p").type


@pytest.mark.parametrize("arr,ts", PASSTHROUGH, ids=PT_IDS)
def test_take_and_concat_keep_passthrough_columns(arr, ts):
    t = pa.table({"x": pa.array([1.0, 2.0, None, 4.0]), "p": arr})
    schema, batches = ipc.read_stream(pa_write(t), lazy=True)
    b = Batch(schema, batches[0][1], batches[0][0])
    rows = [3, 1, 1, 0]
    taken = b.take(rows)
    assert pa_read(taken.to_ipc()).equals(t.take(rows))
    both = Batch.concat(schema, [b, taken, b.take([])])
    assert pa_read(both.to_ipc()).equals(pa.concat_tables([t, t.take(rows)]).combine_chunks())
    assert b.select(["p"]).to_ipc() == ipc.write_stream([schema[1]], [(4, [batches[0][1][1]])])
    assert taken == Batch(schema, [taken.column("x"), taken._cols[1]], 4)


def scale_input():
    price = pa.array([1.5, None, -2.0, 10.0, 0.25])
    dec = pa.array([D("1.25"), D("2.00"), None, D("-3.50"), D("99999999.99")], pa.decimal128(10, 2))
    day = pa.array([0, 86_400_000, None, 1_700_000_000_000, -86_400_000], pa.date64())
    return pa.table({"amount": dec, "price": price, "day": day})


def test_scale_leaves_decimal_and_date64_untouched():
    """The acceptance case: pyarrow writes decimal128 + float64 + date64; the handler scales the
    float64 only; pyarrow reads back the input with just that column changed."""
    t = scale_input()
    batches = [t.slice(0, 3).combine_chunks().to_batches()[0], t.slice(3).combine_chunks().to_batches()[0]]
    a = Adapter.create(load_scale(), '{"column": "price", "factor": 2}', [])
    schema_out = pa.ipc.open_stream(a.output_schema(pa_write(t, []))).schema
    assert schema_out == t.schema
    out = pa_read(a.process(pa_write(t, batches)))
    price = pa.array([3.0, None, -4.0, 20.0, 0.5])
    assert out.equals(t.set_column(1, "price", price))
    assert pa_read(a.finish()).schema == t.schema


def test_reading_a_passthrough_column_is_a_data_error():
    class ReadsIt(Handler):
        def process(self, batch):
            return batch.with_column("day", "int64", batch.column("day"))

    with pytest.raises(DataError) as e:
        Adapter.create(ReadsIt, "null", []).process(pa_write(scale_input()))
    assert e.value.column == "day"
    assert "`day`" in e.value.message and "date64" in e.value.message
    b = Batch(*(lambda s, bs: (s, bs[0][1], bs[0][0]))(*ipc.read_stream(pa_write(scale_input()), lazy=True)))
    with pytest.raises(DataError, match=r"column `amount` has type decimal128\(10, 2\)"):
        b.column("amount")
    with pytest.raises(DataError):
        list(b.rows())
    assert b.column("price")[0] == 1.5


def test_passthrough_with_tables_and_filters():
    class Filter(Handler):
        uses_tables = True

        def process(self, batch):
            assert self.tables["t"].num_rows == 10
            keep = [i for i, v in enumerate(batch.column("price")) if v is not None and v > 0]
            return batch.take(keep)

    t = scale_input()
    a = Adapter.create(Filter, "null", [("t", pa_write(t, t.to_batches() * 2))])
    assert pa_read(a.process(pa_write(t))).equals(t.take([0, 3, 4]))


def test_passthrough_fields_and_written_values():
    f = Field("d", "unsupported:decimal128(10, 2)")
    assert f.nullable and ipc.parse_type(f.type)[2] == 16
    for bad in ("unsupported:decimal(10, 2)", "unsupported:list<int64>", "unsupported:", "decimal128(10, 2)",
                "unsupported:time32[xs]", "unsupported:fixed_size_binary[-1]"):
        with pytest.raises(ipc.IpcError, match="unknown type"):
            Field("d", bad)

    class Writes(Handler):
        def process(self, batch):
            return batch.with_column("amount", "unsupported:decimal128(10, 2)", [None] * batch.num_rows)

    with pytest.raises(InternalError, match=r"column `amount` has the pass-through type .* only be written "
                                            r"unchanged"):
        Adapter.create(Writes, "null", []).process(pa_write(scale_input()))

    class Renames(Handler):
        def output_schema(self, schema):
            return [Field(f.name, "unsupported:decimal128(10, 3)" if f.name == "amount" else f.type, f.nullable)
                    for f in schema]

        def process(self, batch):
            return Batch(self.output_schema(batch.schema), [batch._cols[i] for i in range(3)], batch.num_rows)

    with pytest.raises(InternalError, match="column `amount`"):
        Adapter.create(Renames, "null", []).process(pa_write(scale_input()))


# --- malformed input ------------------------------------------------------------------------

def batch_message(n, nodes, bufs, body):
    """A record batch message with these field nodes (length, null_count) and buffers
    (offset, length), built by hand."""
    pk = lambda items: b"".join(struct.pack("<qq", *x) for x in items)  # noqa: E731
    header = ipc._T((0, "q", n), (1, None, ipc._VS(len(nodes), pk(nodes))), (2, None, ipc._VS(len(bufs), pk(bufs))))
    meta = ipc._build(ipc._T((0, "h", 4), (1, "B", 3), (2, None, header), (3, "q", len(body))))
    return ipc._frame(meta, body)


def stream(schema, *messages):
    return ipc._schema_message(schema) + b"".join(messages) + ipc._EOS


I64 = [Field("a", "int64"), Field("s", "utf8")]
GOOD_BODY = (struct.pack("<2q", 7, 8)  # a: values 0..16
             + struct.pack("<3i", 0, 1, 3) + b"\0" * 4  # s offsets 16..28, padded to 32
             + b"xyz" + b"\0" * 5)  # s data 32..35
GOOD_BUFS = [(0, 0), (0, 16), (0, 0), (16, 12), (32, 3)]


def test_hand_built_batch_is_read():
    schema, batches = ipc.read_stream(stream(I64, batch_message(2, [(2, 0), (2, 0)], GOOD_BUFS, GOOD_BODY)))
    assert batches == [(2, [[7, 8], ["x", "yz"]])]


@pytest.mark.parametrize("nodes,bufs,body,match", [
    ([(2, 0)], GOOD_BUFS, GOOD_BODY, r"1 field nodes but the schema has 2 columns \(none for column `s`\)"),
    ([], [], b"", r"0 field nodes"),
    ([(2, 0), (2, 0)], GOOD_BUFS[:4], GOOD_BODY, "lists 4 buffers but the schema's columns need 5"),
    ([(2, 0), (2, 0)], GOOD_BUFS[:4] + [(32, 9)], GOOD_BODY, r"column `s`: buffer 2 .* outside the 40-byte"),
    ([(3, 0), (2, 0)], GOOD_BUFS, GOOD_BODY, "field node of 3 rows in a batch of 2"),
    ([(2, 3), (2, 0)], GOOD_BUFS, GOOD_BODY, "null count 3 outside 0..2"),
    ([(2, 1), (2, 0)], GOOD_BUFS, GOOD_BODY, r"column `a` \(int64\): validity bitmap of 0 bytes, 2 rows need 1"),
    ([(2, 0), (2, 0)], [(0, 0), (0, 15)] + GOOD_BUFS[2:], GOOD_BODY,
     r"column `a` \(int64\): values buffer of 15 bytes, 2 rows need 16"),
    ([(2, 0), (2, 0)], GOOD_BUFS[:3] + [(16, 8), (32, 3)], GOOD_BODY, "offsets buffer of 8 bytes, 2 rows need 12"),
    ([(2, 0), (2, 0)], GOOD_BUFS[:4] + [(32, 2)], GOOD_BODY, "offsets end at 3, past the 2-byte data buffer"),
])
def test_malformed_batches_raise_ipc_errors(nodes, bufs, body, match):
    data = stream(I64, batch_message(2, nodes, bufs, body))
    for lazy in (True, False):
        with pytest.raises(ipc.IpcError, match=match):
            ipc.read_stream(data, lazy=lazy)
    with pytest.raises(InternalError, match="cannot read the input IPC stream: .*" + match.split(" ")[0]):
        Adapter.create(Handler, "null", []).process(data)


@pytest.mark.parametrize("offsets,match", [
    ((0, 2, 1), "offsets are not monotonic"),
    ((-1, 1, 3), "offsets start at -1"),
    ((2, 1, 1), "offsets start at 2, outside 0..1"),
])
def test_bad_offsets(offsets, match):
    body = GOOD_BODY[:16] + struct.pack("<3i", *offsets) + GOOD_BODY[28:]
    data = stream(I64, batch_message(2, [(2, 0), (2, 0)], GOOD_BUFS, body))
    with pytest.raises(ipc.IpcError, match=match):
        ipc.read_stream(data)
    # lazily the constant-time checks fail at read time, the order check when the column is read
    try:
        schema, batches = ipc.read_stream(data, lazy=True)
    except ipc.IpcError as e:
        assert match in str(e)
        return
    with pytest.raises(ipc.IpcError, match=match):
        batches[0][1][1].values()


@pytest.mark.parametrize("field,n,bufs,match", [
    (Field("b", "bool"), 9, [(0, 0), (0, 1)], r"values bitmap of 1 bytes, 9 rows need 2"),
    (Field("b", "bool"), 9, [(0, 1), (0, 2)], r"validity bitmap of 1 bytes, 9 rows need 2"),
    (Field("d", "unsupported:decimal128(10, 2)"), 2, [(0, 0), (0, 16)], r"column `d` .*16 bytes, 2 rows need 32"),
    (Field("l", "large_binary"), 1, [(0, 0), (0, 8), (8, 0)], r"offsets buffer of 8 bytes, 1 rows need 16"),
])
def test_short_buffers(field, n, bufs, match):
    null_count = 1 if bufs[0][1] else 0
    data = stream([field], batch_message(n, [(n, null_count)], bufs, b"\0" * 32))
    with pytest.raises(ipc.IpcError, match=match):
        ipc.read_stream(data, lazy=True)


def test_truncated_and_corrupted_streams_only_raise_ipc_errors():
    t = scale_input()
    data = pa_write(t.append_column("s", pa.array(["a", None, "ccc", "", "é"])))
    for cut in range(len(data)):
        try:
            ipc.read_stream(data[:cut], lazy=True)
        except ipc.IpcError:
            pass
    rng = random.Random(7)
    for _ in range(3000):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            _, batches = ipc.read_stream(bytes(bad), lazy=True)
            for _, cols in batches:
                for c in cols:
                    if not c.opaque:
                        c.values()
        except ipc.IpcError:
            pass


# --- nullability on write ----------------------------------------------------------------------

def test_non_nullable_field_with_none_is_refused():
    with pytest.raises(ipc.IpcError, match=r"column `x` is declared non-nullable but holds 1 null"):
        ipc.write_stream([Field("x", "int64", False)], [(2, [[1, None]])])
    with pytest.raises(ipc.IpcError, match=r"column `s` is declared non-nullable but holds 2 nulls"):
        Batch([Field("s", "utf8", False)], [[None, None]]).to_ipc()
    ipc.write_stream([Field("x", "int64", False)], [(2, [[1, 2]])])

    class DeclaresNonNull(Handler):
        def output_schema(self, schema):
            return [Field(f.name, f.type, False) for f in schema]

        def process(self, batch):
            return Batch(self.output_schema(batch.schema), batch.columns, batch.num_rows)

    with pytest.raises(InternalError, match="cannot write the output: column `price` is declared non-nullable"):
        Adapter.create(DeclaresNonNull, "null", []).process(pa_write(pa.table({"price": [1.0, None]})))

    class PassesRaw(DeclaresNonNull):
        def process(self, batch):
            return Batch(self.output_schema(batch.schema), batch._cols, batch.num_rows)

    with pytest.raises(InternalError, match="column `amount` is declared non-nullable but holds 1 null"):
        Adapter.create(PassesRaw, "null", []).process(pa_write(scale_input().select(["amount"])))
    ok = pa.table({"amount": pa.array([D("1.00")], pa.decimal128(10, 2))})
    out = pa_read(Adapter.create(PassesRaw, "null", []).process(pa_write(ok)))
    assert not out.schema.field("amount").nullable and out.column("amount").to_pylist() == [D("1.00")]
