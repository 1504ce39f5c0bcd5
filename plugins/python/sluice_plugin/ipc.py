"""A small pure-Python Arrow IPC *stream* reader and writer (stdlib only).

Enough of the format for Sluice plugins: little-endian, metadata V5, flat
columns of these types (written as strings):

    int8 int16 int32 int64 uint8 uint16 uint32 uint64 float32 float64
    bool utf8 large_utf8 binary large_binary date32
    timestamp[s|ms|us|ns] timestamp[us, UTC]

A column is a Python list, with None for null; date32 is days and a
timestamp is an int in its unit since the epoch.

Other flat types are *pass-through* types: their type string is
`unsupported:` plus a name (`unsupported:decimal128(10, 2)`,
`unsupported:decimal256(40, 5)`, `unsupported:float16`, `unsupported:date64`,
`unsupported:time32[s|ms]`, `unsupported:time64[us|ns]`,
`unsupported:duration[s|ms|us|ns]`,
`unsupported:interval[year_month|day_time|month_day_nano]`,
`unsupported:fixed_size_binary[N]`, `unsupported:null`). They are read and
written as their raw buffers (a `RawColumn`); decoding one raises
`UnsupportedType`. Nested, dictionary-encoded, view and run-end-encoded
columns, and compression, raise `UnsupportedType` naming the column when the
schema is read. Field and schema metadata are dropped.

    schema, batches = read_stream(data)     # batches: [(num_rows, [column, ...]), ...]
    data = write_stream(schema, batches)

The FlatBuffers metadata is read and built by hand (no `flatbuffers` package).
"""

import re
import struct
import sys
from array import array
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, islice
from operator import le

__all__ = ["Field", "IpcError", "UnsupportedType", "RawColumn", "OPAQUE_PREFIX", "is_opaque", "parse_type",
           "read_stream", "write_stream"]


class IpcError(ValueError):
    """Malformed or unsupported IPC bytes."""


class UnsupportedType(IpcError):
    """A column whose type (or encoding) this module does not handle."""

    def __init__(self, column, type_name, detail=""):
        self.column = column
        self.type_name = type_name
        msg = f"column `{column}` has type {type_name}, which the Python SDK does not support"
        super().__init__(msg + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class Field:
    """A column of a schema: name, type string and nullability."""

    name: str
    type: str
    nullable: bool = True

    def __post_init__(self):
        parse_type(self.type)


# ---------------------------------------------------------------------------------------------
# Types

# name -> (struct/array code, byte width)
_PRIMITIVE = {
    "int8": ("b", 1), "int16": ("h", 2), "int32": ("i", 4), "int64": ("q", 8),
    "uint8": ("B", 1), "uint16": ("H", 2), "uint32": ("I", 4), "uint64": ("Q", 8),
    "float32": ("f", 4), "float64": ("d", 8), "date32": ("i", 4),
}
_UNITS = ("s", "ms", "us", "ns")
_TYPE_IDS = {  # FlatBuffers `Type` union ids, for error messages
    1: "null", 2: "int", 3: "floating point", 4: "binary", 5: "utf8", 6: "bool", 7: "decimal",
    8: "date", 9: "time", 10: "timestamp", 11: "interval", 12: "list", 13: "struct", 14: "union",
    15: "fixed_size_binary", 16: "fixed_size_list", 17: "map", 18: "duration", 19: "large_binary",
    20: "large_utf8", 21: "large_list", 22: "run_end_encoded", 23: "binary_view", 24: "utf8_view",
    25: "list_view", 26: "large_list_view",
}
_LITTLE = sys.byteorder == "little"
# array typecodes of a fixed size on every platform (wasm32 included)
_ARRAY_OK = {c: array(c).itemsize == struct.calcsize(c) for c in "bhiqBHIQfd"}


OPAQUE_PREFIX = "unsupported:"
_VAR = ("utf8", "large_utf8", "binary", "large_binary")
_INTERVALS = ("year_month", "day_time", "month_day_nano")
_INTERVAL_WIDTH = (4, 8, 16)
_I32_MAX = 2 ** 31 - 1


def _opaque(inner):
    """(FlatBuffers type id, type table fields, value byte width or None) of a pass-through type
    name (the part after `unsupported:`), or None when it is not one."""
    m = re.fullmatch(r"decimal(32|64|128|256)\((\d+), ?(-?\d+)\)", inner)
    if m:
        bits, prec, scale = int(m[1]), int(m[2]), int(m[3])
        if prec <= _I32_MAX and abs(scale) <= _I32_MAX:
            return 7, ((0, "i", prec), (1, "i", scale), (2, "i", bits)), bits // 8
        return None
    if inner == "float16":
        return 3, ((0, "h", 0),), 2
    if inner == "date64":
        return 8, ((0, "h", 1),), 8
    m = re.fullmatch(r"time(32|64)\[(s|ms|us|ns)\]", inner)
    if m:
        return 9, ((0, "h", _UNITS.index(m[2])), (1, "i", int(m[1]))), int(m[1]) // 8
    m = re.fullmatch(r"duration\[(s|ms|us|ns)\]", inner)
    if m:
        return 18, ((0, "h", _UNITS.index(m[1])),), 8
    m = re.fullmatch(r"interval\[(year_month|day_time|month_day_nano)\]", inner)
    if m:
        unit = _INTERVALS.index(m[1])
        return 11, ((0, "h", unit),), _INTERVAL_WIDTH[unit]
    m = re.fullmatch(r"fixed_size_binary\[(\d+)\]", inner)
    if m and int(m[1]) <= _I32_MAX:
        return 15, ((0, "i", int(m[1])),), int(m[1])
    if inner == "null":
        return 1, (), None
    return None


def is_opaque(t):
    """Whether type string `t` is a pass-through (`unsupported:...`) type."""
    return isinstance(t, str) and t.startswith(OPAQUE_PREFIX)


@lru_cache(maxsize=256)
def parse_type(t):
    """Checks a type string; returns ("prim", code, width) / ("ts", unit, tz) / (kind,) /
    ("opaque", name, width or None, type id, type fields)."""
    if not isinstance(t, str):
        raise IpcError(f"a type is a string, not {t!r}")
    if t in _PRIMITIVE:
        return ("prim",) + _PRIMITIVE[t]
    if t == "bool" or t in _VAR:
        return (t,)
    if t.startswith("timestamp[") and t.endswith("]"):
        unit, _, tz = t[10:-1].partition(",")
        tz = tz.strip()
        if unit in _UNITS and (tz or not _):
            return ("ts", unit, tz or None)
    if t.startswith(OPAQUE_PREFIX):
        inner = t[len(OPAQUE_PREFIX):]
        spec = _opaque(inner)
        if spec is not None:
            return ("opaque", inner, spec[2], spec[0], spec[1])
    raise IpcError(f"unknown type `{t}` (supported: {', '.join(_PRIMITIVE)}, bool, utf8, large_utf8, "
                   "binary, large_binary, timestamp[s|ms|us|ns] with an optional `, TZ`; pass-through: "
                   "unsupported:decimal128(P, S), unsupported:date64, ... as read from the input)")


def _physical(t):
    """(kind, code, width) for encoding: timestamps are int64."""
    p = parse_type(t)
    if p[0] == "ts":
        return ("prim", "q", 8)
    return p


# ---------------------------------------------------------------------------------------------
# FlatBuffers reading

_u16 = struct.Struct("<H").unpack_from
_i32 = struct.Struct("<i").unpack_from
_u32 = struct.Struct("<I").unpack_from


class _Table:
    __slots__ = ("buf", "pos", "vt", "vtlen")

    def __init__(self, buf, pos):
        self.buf = buf
        self.pos = pos
        self.vt = pos - _i32(buf, pos)[0]
        self.vtlen = _u16(buf, self.vt)[0]

    def _off(self, i):
        o = 4 + 2 * i
        return _u16(self.buf, self.vt + o)[0] if o < self.vtlen else 0

    def scalar(self, i, fmt, default=0):
        o = self._off(i)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0] if o else default

    def _ref(self, i):
        o = self._off(i)
        if not o:
            return None
        p = self.pos + o
        return p + _u32(self.buf, p)[0]

    def table(self, i):
        p = self._ref(i)
        return None if p is None else _Table(self.buf, p)

    def string(self, i):
        p = self._ref(i)
        if p is None:
            return None
        n = _u32(self.buf, p)[0]
        return bytes(self.buf[p + 4:p + 4 + n]).decode("utf-8")

    def tables(self, i):
        p = self._ref(i)
        if p is None:
            return []
        n = _u32(self.buf, p)[0]
        out = []
        for k in range(n):
            e = p + 4 + 4 * k
            out.append(_Table(self.buf, e + _u32(self.buf, e)[0]))
        return out

    def structs(self, i, fmt):
        """A vector of structs of all-`fmt` members, flattened."""
        p = self._ref(i)
        if p is None:
            return ()
        n = _u32(self.buf, p)[0]
        per = len(fmt)
        return struct.unpack_from(f"<{n * per}{fmt[0]}", self.buf, p + 4) if n else ()


def _root(buf):
    return _Table(buf, _u32(buf, 0)[0])


# ---------------------------------------------------------------------------------------------
# FlatBuffers building (forward: a parent is written before its children, so every uoffset
# points forward; scalars are aligned to their size, tables to 8)

class _T:
    """A table: fields is a list of (slot, fmt, value) with fmt a struct code, or
    (slot, None, child) for an offset to a child node."""
    __slots__ = ("fields",)

    def __init__(self, *fields):
        self.fields = [f for f in fields if f is not None]


class _S:
    __slots__ = ("data",)

    def __init__(self, s):
        self.data = s.encode("utf-8")


class _VT:
    """A vector of tables."""
    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items


class _VS:
    """A vector of 8-byte-aligned structs, given as raw bytes."""
    __slots__ = ("count", "raw")

    def __init__(self, count, raw):
        self.count = count
        self.raw = raw


def _pad(buf, align, extra=0):
    buf.extend(b"\0" * ((-(len(buf) + extra)) % align))


def _emit(buf, node):
    if isinstance(node, _T):
        slots = max((f[0] for f in node.fields), default=-1) + 1
        # inline layout: soffset, then fields largest first
        sized = sorted(node.fields, key=lambda f: -(4 if f[1] is None else struct.calcsize(f[1])))
        layout, cur = [], 4
        for slot, fmt, val in sized:
            size = 4 if fmt is None else struct.calcsize(fmt)
            cur += (-cur) % size
            layout.append((slot, fmt, val, cur))
            cur += size
        offsets = [0] * slots
        for slot, _, _, at in layout:
            offsets[slot] = at
        _pad(buf, 2)
        vt = len(buf)
        buf.extend(struct.pack(f"<{2 + slots}H", 4 + 2 * slots, cur, *offsets))
        _pad(buf, 8)
        t = len(buf)
        buf.extend(b"\0" * cur)
        struct.pack_into("<i", buf, t, t - vt)
        children = []
        for slot, fmt, val, at in layout:
            if fmt is None:
                children.append((t + at, val))
            else:
                struct.pack_into("<" + fmt, buf, t + at, val)
        for at, child in children:
            struct.pack_into("<I", buf, at, _emit(buf, child) - at)
        _pad(buf, 8)
        return t
    if isinstance(node, _S):
        _pad(buf, 4)
        p = len(buf)
        buf.extend(struct.pack("<I", len(node.data)))
        buf.extend(node.data)
        buf.append(0)
        return p
    if isinstance(node, _VT):
        _pad(buf, 4)
        p = len(buf)
        buf.extend(struct.pack("<I", len(node.items)))
        buf.extend(b"\0" * (4 * len(node.items)))
        for k, child in enumerate(node.items):
            at = p + 4 + 4 * k
            struct.pack_into("<I", buf, at, _emit(buf, child) - at)
        return p
    if isinstance(node, _VS):
        _pad(buf, 8, 4)
        p = len(buf)
        buf.extend(struct.pack("<I", node.count))
        buf.extend(node.raw)
        return p
    raise TypeError(node)


def _build(root):
    buf = bytearray(8)  # root uoffset, then padding so the root table is 8-aligned
    struct.pack_into("<I", buf, 0, _emit(buf, root))
    _pad(buf, 8)
    return bytes(buf)


# ---------------------------------------------------------------------------------------------
# Bitmaps

def _bits_to_str(buf, n):
    """The first n bits of a bitmap as a str of '0'/'1', bit i at index i."""
    if n == 0:
        return ""
    nbytes = (n + 7) // 8
    x = int.from_bytes(bytes(buf[:nbytes]), "little")
    return format(x, f"0{nbytes * 8}b")[::-1][:n]


_TO_01 = bytes.maketrans(b"\x00\x01", b"01")


def _bools_to_bits(flags):
    """A bitmap from an iterable of truthy values (bit i = flags[i])."""
    s = bytes(map(bool, flags))
    if not s:
        return b""
    x = int(s.translate(_TO_01)[::-1], 2)
    return x.to_bytes((len(s) + 7) // 8, "little")


# ---------------------------------------------------------------------------------------------
# Reading

class RawColumn:
    """A column still in its IPC encoding (what `read_stream(lazy=True)` returns). `values()`
    decodes it; the writer copies its buffers as they are when it is written unchanged. A column
    of a pass-through (`unsupported:...`) type cannot be decoded: `values()` raises
    `UnsupportedType`, but `cells()` / `from_cells()` give its rows as raw bytes (for take and
    concat)."""
    __slots__ = ("name", "type", "length", "null_count", "buffers")

    def __init__(self, name, type, length, null_count, buffers):
        self.name, self.type, self.length, self.null_count, self.buffers = name, type, length, null_count, buffers

    def __len__(self):
        return self.length

    def __repr__(self):
        return f"RawColumn({self.name!r}, {self.type!r}, {self.length} rows, {self.null_count} nulls)"

    @property
    def opaque(self):
        return is_opaque(self.type)

    def values(self):
        return _decode(self.name, self.type, self.length, self.null_count, self.buffers)

    def cells(self):
        """The rows of a pass-through column: each its value bytes, or None for null."""
        kind = _physical(self.type)
        if kind[0] != "opaque":
            raise TypeError("cells() is for pass-through columns")
        n, w = self.length, kind[2]
        if w is None:
            return [None] * n
        data = bytes(self.buffers[1][:n * w])
        if w == 0:
            cells = [b""] * n
        else:
            cells = [data[i:i + w] for i in range(0, n * w, w)]
        if self.null_count:
            cells = [c if v == "1" else None for c, v in zip(cells, _bits_to_str(self.buffers[0], n))]
        return cells

    @classmethod
    def from_cells(cls, name, type, cells):
        """A pass-through column from `cells()`-style rows."""
        kind = _physical(type)
        n, w = len(cells), kind[2]
        if w is None:
            return cls(name, type, n, n, [])
        nulls = cells.count(None)
        validity = _bools_to_bits(c is not None for c in cells) if nulls else b""
        zero = b"\0" * w
        data = b"".join(zero if c is None else c for c in cells)
        return cls(name, type, n, nulls, [validity, data])


def _decode(name, t, n, null_count, bufs):
    kind = _physical(t)
    if kind[0] == "opaque":
        raise UnsupportedType(name, kind[1], "a pass-through column: the SDK cannot decode it, but a handler "
                                             "that does not read it passes it through unchanged")
    if n == 0:
        return []
    valid = _bits_to_str(bufs[0], n) if null_count else None
    if kind[0] == "prim":
        code, width = kind[1], kind[2]
        data = bufs[1]
        if len(data) < n * width:
            raise IpcError(f"column `{name}`: values buffer too short")
        vals = list(struct.unpack_from(f"<{n}{code}", data, 0))
    elif kind[0] == "bool":
        vals = [c == "1" for c in _bits_to_str(bufs[1], n)]
    else:
        large = kind[0].startswith("large")
        ocode = "q" if large else "i"
        offs = struct.unpack_from(f"<{n + 1}{ocode}", bufs[1], 0)
        data = bytes(bufs[2])
        if not all(map(le, offs, islice(offs, 1, None))):
            raise IpcError(f"column `{name}` ({t}): offsets are not monotonic")
        if kind[0].endswith("binary"):
            vals = [data[a:b] for a, b in zip(offs, offs[1:])]
        elif data.isascii():
            s = data.decode("ascii")
            vals = [s[a:b] for a, b in zip(offs, offs[1:])]
        else:
            try:
                vals = [data[a:b].decode("utf-8") for a, b in zip(offs, offs[1:])]
            except UnicodeDecodeError as e:
                raise IpcError(f"column `{name}`: invalid UTF-8 ({e})") from None
    if valid is not None:
        vals = [v if c == "1" else None for v, c in zip(vals, valid)]
    return vals


class _NoTable:
    """Stands in for an absent type table: every field at its default."""

    @staticmethod
    def scalar(i, fmt, default=0):
        return default

    @staticmethod
    def string(i):
        return None


def _pass(name, inner):
    t = OPAQUE_PREFIX + inner
    parse_type(t)  # every name built here parses back
    return t


def _field_type(ft):
    """The type string of a FlatBuffers Field, or raise UnsupportedType."""
    name = ft.string(0) or ""
    if ft.table(4) is not None:
        raise UnsupportedType(name, "dictionary", "dictionary-encoded columns are not supported")
    tid = ft.scalar(2, "B")
    tt = ft.table(3) or _NoTable
    if tid == 2:
        bits, signed = tt.scalar(0, "i"), tt.scalar(1, "?", False)
        t = f"{'' if signed else 'u'}int{bits}"
        if t in _PRIMITIVE:
            return t
    elif tid == 3:
        prec = tt.scalar(0, "h")
        if prec == 1:
            return "float32"
        if prec == 2:
            return "float64"
        if prec == 0:
            return _pass(name, "float16")
    elif tid == 4:
        return "binary"
    elif tid == 19:
        return "large_binary"
    elif tid == 5:
        return "utf8"
    elif tid == 20:
        return "large_utf8"
    elif tid == 6:
        return "bool"
    elif tid == 8:
        unit = tt.scalar(0, "h", 1)
        if unit == 0:
            return "date32"
        if unit == 1:
            return _pass(name, "date64")
    elif tid == 10:
        unit = tt.scalar(0, "h")
        if 0 <= unit < 4:
            tz = tt.string(1)
            return f"timestamp[{_UNITS[unit]}, {tz}]" if tz else f"timestamp[{_UNITS[unit]}]"
    elif tid == 7:
        prec, scale, bits = tt.scalar(0, "i"), tt.scalar(1, "i"), tt.scalar(2, "i", 128)
        if bits in (32, 64, 128, 256) and prec >= 0:
            return _pass(name, f"decimal{bits}({prec}, {scale})")
        raise UnsupportedType(name, f"decimal{bits}")
    elif tid == 9:
        unit, bits = tt.scalar(0, "h", 1), tt.scalar(1, "i", 32)
        if 0 <= unit < 4 and bits in (32, 64):
            return _pass(name, f"time{bits}[{_UNITS[unit]}]")
    elif tid == 18:
        unit = tt.scalar(0, "h", 1)
        if 0 <= unit < 4:
            return _pass(name, f"duration[{_UNITS[unit]}]")
    elif tid == 11:
        unit = tt.scalar(0, "h", 0)
        if 0 <= unit < 3:
            return _pass(name, f"interval[{_INTERVALS[unit]}]")
    elif tid == 15:
        width = tt.scalar(0, "i")
        if width >= 0:
            return _pass(name, f"fixed_size_binary[{width}]")
    elif tid == 1:
        return _pass(name, "null")
    raise UnsupportedType(name, _TYPE_IDS.get(tid, f"type id {tid}"))


def _read_schema(header):
    if header is None:
        raise IpcError("schema message without a header")
    if header.scalar(0, "h") != 0:
        raise IpcError("big-endian IPC streams are not supported")
    schema = []
    for ft in header.tables(1):
        t = _field_type(ft)
        schema.append(Field(ft.string(0) or "", t, bool(ft.scalar(1, "?", False))))
    return schema


def _buf_count(kind):
    if kind[0] in ("prim", "bool"):
        return 2
    if kind[0] == "opaque":
        return 0 if kind[2] is None else 2
    return 3  # validity, offsets, data


def _check_column(f, kind, n, null_count, views):
    """Cheap (constant-time) checks that the buffers hold `n` rows of `f`; the offsets' order is
    checked when the column is decoded."""
    if n == 0 or not views:
        return
    need = (n + 7) // 8
    if null_count and len(views[0]) < need:
        raise IpcError(f"column `{f.name}` ({f.type}): validity bitmap of {len(views[0])} bytes, "
                       f"{n} rows need {need}")
    if kind[0] == "bool":
        if len(views[1]) < need:
            raise IpcError(f"column `{f.name}` (bool): values bitmap of {len(views[1])} bytes, {n} rows need {need}")
    elif kind[0] in ("prim", "opaque"):
        need = n * kind[2]
        if len(views[1]) < need:
            raise IpcError(f"column `{f.name}` ({f.type}): values buffer of {len(views[1])} bytes, "
                           f"{n} rows need {need}")
    else:
        ocode, width = ("q", 8) if kind[0].startswith("large") else ("i", 4)
        offsets, data = views[1], views[2]
        need = (n + 1) * width
        if len(offsets) < need:
            raise IpcError(f"column `{f.name}` ({f.type}): offsets buffer of {len(offsets)} bytes, "
                           f"{n} rows need {need}")
        first = struct.unpack_from("<" + ocode, offsets, 0)[0]
        last = struct.unpack_from("<" + ocode, offsets, n * width)[0]
        if first < 0 or first > last:
            raise IpcError(f"column `{f.name}` ({f.type}): offsets start at {first}, outside 0..{last}")
        if last > len(data):
            raise IpcError(f"column `{f.name}` ({f.type}): offsets end at {last}, past the "
                           f"{len(data)}-byte data buffer")


def _read_batch(header, body, schema, lazy):
    if header is None:
        raise IpcError("record batch message without a header")
    if header.table(3) is not None:
        raise IpcError("compressed IPC record batches are not supported")
    n = header.scalar(0, "q")
    if n < 0:
        raise IpcError(f"record batch with a negative row count ({n})")
    nodes = header.structs(1, "qq")
    bufs = header.structs(2, "qq")
    n_nodes, n_bufs = len(nodes) // 2, len(bufs) // 2
    kinds = [_physical(f.type) for f in schema]
    need_bufs = sum(_buf_count(k) for k in kinds)
    if n_nodes < len(schema):
        missing = schema[n_nodes]
        raise IpcError(f"record batch lists {n_nodes} field nodes but the schema has {len(schema)} columns "
                       f"(none for column `{missing.name}`)")
    if n_bufs < need_bufs:
        raise IpcError(f"record batch lists {n_bufs} buffers but the schema's columns need {need_bufs}")
    cols, bi = [], 0
    for ni, (f, kind) in enumerate(zip(schema, kinds)):
        length, null_count = nodes[2 * ni], nodes[2 * ni + 1]
        if length != n:
            raise IpcError(f"column `{f.name}`: field node of {length} rows in a batch of {n} rows")
        if not 0 <= null_count <= length:
            raise IpcError(f"column `{f.name}`: null count {null_count} outside 0..{length}")
        k = _buf_count(kind)
        views = []
        for j in range(k):
            off, ln = bufs[2 * (bi + j)], bufs[2 * (bi + j) + 1]
            if off < 0 or ln < 0 or off + ln > len(body):
                raise IpcError(f"column `{f.name}`: buffer {j} ({off}, {ln} bytes) outside the "
                               f"{len(body)}-byte message body")
            views.append(body[off:off + ln])
        bi += k
        _check_column(f, kind, length, null_count, views)
        raw = RawColumn(f.name, f.type, length, null_count, views)
        cols.append(raw if lazy or kind[0] == "opaque" else raw.values())
    return n, cols


def read_stream(data, lazy=False):
    """Reads IPC stream bytes into (schema, [(num_rows, columns), ...]).

    With lazy=True the columns are `RawColumn`s, decoded on demand."""
    mv = memoryview(data)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    pos, end = 0, len(mv)
    schema, batches = None, []
    while pos + 4 <= end:
        length = _i32(mv, pos)[0]
        pos += 4
        if length == -1:  # continuation marker
            if pos + 4 > end:
                break
            length = _i32(mv, pos)[0]
            pos += 4
        if length == 0:
            break
        if length < 0 or pos + length > end:
            raise IpcError("truncated IPC stream (message metadata)")
        meta = mv[pos:pos + length]
        pos += length
        try:
            msg = _root(meta)
            version = msg.scalar(0, "h")
            if version < 3:
                raise IpcError(f"IPC metadata version V{version + 1} is not supported (V4 or V5 required)")
            htype = msg.scalar(1, "B")
            body_len = msg.scalar(3, "q")
            if body_len < 0 or pos + body_len > end:
                raise IpcError("truncated IPC stream (message body)")
            body = mv[pos:pos + body_len]
            pos += body_len
            header = msg.table(2)
            if htype == 1:
                if schema is not None:
                    raise IpcError("a second schema message in the stream")
                schema = _read_schema(header)
            elif htype == 3:
                if schema is None:
                    raise IpcError("record batch before the schema")
                batches.append(_read_batch(header, body, schema, lazy))
            elif htype == 2:
                raise IpcError("dictionary batches are not supported")
            else:
                raise IpcError(f"unsupported IPC message type {htype}")
        except IpcError:
            raise
        except (struct.error, IndexError, ValueError, OverflowError, MemoryError) as e:
            # the FlatBuffers metadata points outside itself, or a vector is too short
            raise IpcError(f"malformed IPC message metadata ({type(e).__name__}: {e})") from None
    if schema is None:
        raise IpcError("empty IPC stream (no schema message)")
    return schema, batches


# ---------------------------------------------------------------------------------------------
# Writing

_V5 = 4
_CONT = b"\xff\xff\xff\xff"
_EOS = _CONT + b"\0\0\0\0"


def _type_node(t):
    p = parse_type(t)
    if p[0] == "opaque":
        return p[3], _T(*p[4])
    if p[0] == "prim":
        if t.startswith("float"):
            return 3, _T((0, "h", 1 if t == "float32" else 2))
        if t == "date32":
            return 8, _T((0, "h", 0))
        return 2, _T((0, "i", p[2] * 8), (1, "?", not t.startswith("u")))
    if p[0] == "ts":
        tz = (1, None, _S(p[2])) if p[2] else None
        return 10, _T((0, "h", _UNITS.index(p[1])), tz)
    return {"bool": 6, "utf8": 5, "large_utf8": 20, "binary": 4, "large_binary": 19}[t], _T()


def _frame(meta, body=b""):
    pad = (-len(meta)) % 8
    return b"".join((_CONT, struct.pack("<i", len(meta) + pad), meta, b"\0" * pad, body))


def _schema_message(schema):
    fields = []
    for f in schema:
        tid, tnode = _type_node(f.type)
        fields.append(_T((0, None, _S(f.name)), (1, "?", bool(f.nullable)), (2, "B", tid),
                         (3, None, tnode), (5, None, _VT([]))))
    header = _T((0, "h", 0), (1, None, _VT(fields)))
    return _frame(_build(_T((0, "h", _V5), (1, "B", 1), (2, None, header), (3, "q", 0))))


def _not_nullable(f, nulls):
    return IpcError(f"column `{f.name}` is declared non-nullable but holds {nulls} null"
                    f"{'' if nulls == 1 else 's'} (None); declare it nullable or fill the nulls")


def _encode(f, values):
    """(null_count, [buffer bytes...]) for one column of a batch."""
    kind = _physical(f.type)
    if isinstance(values, RawColumn) and values.type == f.type:
        if values.null_count and not f.nullable and f.type != OPAQUE_PREFIX + "null":
            raise _not_nullable(f, values.null_count)
        return values.null_count, [bytes(b) for b in values.buffers]
    if kind[0] == "opaque":
        got = values.type if isinstance(values, RawColumn) else "Python values"
        raise IpcError(f"column `{f.name}` has the pass-through type {f.type}, which can only be written "
                       f"unchanged from the input (got {got})")
    if isinstance(values, RawColumn):
        values = values.values()
    n = len(values)
    nulls = values.count(None)
    if nulls and not f.nullable:
        raise _not_nullable(f, nulls)
    validity = _bools_to_bits(v is not None for v in values) if nulls else b""
    if kind[0] == "prim":
        code = kind[1]
        if nulls:
            values = [0 if v is None else v for v in values]
        if code in "fd" and any(type(v) is not float for v in values):
            values = [float(v) for v in values]
        if _LITTLE and _ARRAY_OK[code]:
            data = array(code, values).tobytes()
        else:
            data = struct.pack(f"<{n}{code}", *values)
        return nulls, [validity, data]
    if kind[0] == "bool":
        return nulls, [validity, _bools_to_bits(values)]
    if kind[0].endswith("binary"):
        parts = [b"" if v is None else bytes(v) for v in values]
    else:
        parts = [b"" if v is None else v.encode("utf-8") for v in values]
    data = b"".join(parts)
    large = kind[0].startswith("large")
    if not large and len(data) >= 2 ** 31:
        raise IpcError(f"column `{f.name}`: more than 2 GiB of {f.type} data in one batch; use large_{f.type}")
    offs = accumulate(map(len, parts), initial=0)
    code = "q" if large else "i"
    if _LITTLE:
        offsets = array(code, offs).tobytes()
    else:
        offsets = struct.pack(f"<{n + 1}{code}", *offs)
    return nulls, [validity, offsets, data]


def _batch_message(schema, num_rows, columns):
    if len(columns) != len(schema):
        raise IpcError(f"a batch has {len(columns)} columns but the schema has {len(schema)}")
    nodes, bufs, body, off = [], [], [], 0
    for f, col in zip(schema, columns):
        if len(col) != num_rows:
            raise IpcError(f"column `{f.name}` has {len(col)} values but the batch has {num_rows} rows")
        try:
            nulls, parts = _encode(f, col)
        except IpcError:
            raise
        except (TypeError, ValueError, OverflowError, AttributeError, struct.error) as e:
            raise IpcError(f"column `{f.name}` ({f.type}): cannot encode a value: {e}") from None
        nodes.append(struct.pack("<qq", num_rows, nulls))
        for p in parts:
            pad = (-len(p)) % 8
            bufs.append(struct.pack("<qq", off, len(p)))
            body.append(p)
            if pad:
                body.append(b"\0" * pad)
            off += len(p) + pad
    header = _T((0, "q", num_rows), (1, None, _VS(len(nodes), b"".join(nodes))),
                (2, None, _VS(len(bufs), b"".join(bufs))))
    meta = _build(_T((0, "h", _V5), (1, "B", 3), (2, None, header), (3, "q", off)))
    return _frame(meta, b"".join(body))


def write_stream(schema, batches=()):
    """IPC stream bytes: the schema, each (num_rows, columns) batch, the end-of-stream marker.

    A column is a list (None for null) or an unchanged `RawColumn`."""
    schema = [f if isinstance(f, Field) else Field(*f) for f in schema]
    out = [_schema_message(schema)]
    for num_rows, columns in batches:
        out.append(_batch_message(schema, num_rows, columns))
    out.append(_EOS)
    return b"".join(out)
