"""Guest SDK for Sluice handler plugins written in Python.

A plugin subclasses `Handler`, and its app module (the one given to
`componentize-py`) ends with `Handler = export(MyHandler)`:

    from sluice_plugin import Handler, ConfigError, DataError, export

    class Upper(Handler):
        name, version, summary = "upper", "0.1.0", "Upper-cases a utf8 column."

        def __init__(self, config, tables):
            super().__init__(config, tables)
            self.col = config["column"]

        def process(self, batch):
            values = [None if v is None else v.upper() for v in batch.column(self.col)]
            return batch.with_column(self.col, "utf8", values)

    Handler = export(Upper)

The SDK does the rest: the Arrow IPC bytes (`sluice_plugin.ipc`, pure Python), the WIT
bindings (imported only inside the component), config JSON, and the error variants.
Everything here imports natively too, so handlers can be unit-tested with plain pytest.
"""

# The SDK's version tracks the contract's (0.5.x builds for sluice:plugin@0.5); `sluice plugin
# build` records it in the component, where `sluice plugin inspect` shows it.
__version__ = "0.5.0"

import json
import sys

from .ipc import Field, IpcError, RawColumn, UnsupportedType, is_opaque, parse_type

__all__ = [
    "Field", "Batch", "Handler", "StateSpec", "ConfigError", "DataError", "log", "counter", "export",
    "IpcError", "UnsupportedType",
]


# ---------------------------------------------------------------------------------------------
# Errors

class ConfigError(Exception):
    """The step's config is invalid. `key` is the offending key as a dotted path (`sma.0.window`)."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.message = message
        self.key = key


class DataError(Exception):
    """The input data cannot be processed. `row` is the row index within the batch passed to the
    failing call; `column` the offending column."""

    def __init__(self, message, row=None, column=None):
        super().__init__(message)
        self.message = message
        self.row = row
        self.column = column


# ---------------------------------------------------------------------------------------------
# Batches

class Batch:
    """Rows as columns: `schema` is a list of `Field`s, `columns` a list of Python lists (None for
    null), one per field. Batches are treated as immutable: the helpers return new batches that
    share the unchanged columns.

    A column of a type the SDK cannot decode (decimal, date64, time, duration, interval,
    fixed_size_binary, float16, null) has a pass-through type string `unsupported:<type>`
    (`unsupported:decimal128(10, 2)`): its Arrow buffers are kept and written back unchanged
    (`select`, `take` and `concat` keep them too), and reading it with `column()` is a DataError
    naming the column and type."""

    __slots__ = ("schema", "_cols", "num_rows")

    def __init__(self, schema, columns, num_rows=None):
        schema = [f if isinstance(f, Field) else Field(*f) for f in schema]
        columns = list(columns)
        if len(schema) != len(columns):
            raise ValueError(f"{len(schema)} fields but {len(columns)} columns")
        if num_rows is None:
            num_rows = len(columns[0]) if columns else 0
        for f, c in zip(schema, columns):
            if len(c) != num_rows:
                raise ValueError(f"column `{f.name}` has {len(c)} values, expected {num_rows}")
        self.schema = schema
        self._cols = columns  # lists, or ipc.RawColumn until first read
        self.num_rows = num_rows

    @classmethod
    def from_rows(cls, schema, rows):
        """A batch from a list of dicts (a missing key is null)."""
        schema = [f if isinstance(f, Field) else Field(*f) for f in schema]
        rows = list(rows)
        return cls(schema, [[r.get(f.name) for r in rows] for f in schema], len(rows))

    @classmethod
    def empty(cls, schema):
        return cls(schema, [[] for _ in schema], 0)

    @classmethod
    def concat(cls, schema, batches):
        """One batch of `schema` holding the rows of `batches` (which must have its column names).
        Pass-through columns are concatenated as raw values, without decoding."""
        schema = [f if isinstance(f, Field) else Field(*f) for f in schema]
        batches = list(batches)
        cols = []
        for f in schema:
            if is_opaque(f.type):
                cells = []
                for b in batches:
                    cells.extend(b._cells(f.name, f.type))
                cols.append(RawColumn.from_cells(f.name, f.type, cells))
            else:
                col = []
                for b in batches:
                    col.extend(b.column(f.name))
                cols.append(col)
        return cls(schema, cols, sum(b.num_rows for b in batches))

    @property
    def names(self):
        return [f.name for f in self.schema]

    @property
    def columns(self):
        return [self.column(i) for i in range(len(self.schema))]

    def __len__(self):
        return self.num_rows

    def __repr__(self):
        cols = ", ".join(f"{f.name}: {f.type}" for f in self.schema)
        return f"Batch({self.num_rows} rows; {cols})"

    def __eq__(self, other):
        return (isinstance(other, Batch) and self.schema == other.schema and self.num_rows == other.num_rows
                and all(self._comparable(i) == other._comparable(i) for i in range(len(self.schema))))

    def _comparable(self, i):
        c = self._cols[i]
        return c.cells() if isinstance(c, RawColumn) and c.opaque else self.column(i)

    def _cells(self, name, type):
        """The raw rows of pass-through column `name` of type `type`."""
        i = self.index(name)
        c = self._cols[i]
        if self.schema[i].type != type or not (isinstance(c, RawColumn) and c.opaque):
            raise DataError(f"column `{name}` is {self.schema[i].type}, not {type}", column=name)
        return c.cells()

    def index(self, name):
        """The position of column `name` (KeyError if absent)."""
        for i, f in enumerate(self.schema):
            if f.name == name:
                return i
        raise KeyError(f"no column `{name}` (columns: {', '.join(self.names)})")

    def field(self, name):
        """The `Field` named `name`, or None."""
        for f in self.schema:
            if f.name == name:
                return f
        return None

    def column(self, name):
        """The values of column `name` (or of position `name` when an int), as a list.

        A column of a pass-through type (`unsupported:...`) cannot be read: DataError."""
        i = name if isinstance(name, int) else self.index(name)
        c = self._cols[i]
        if isinstance(c, RawColumn):
            try:
                c = self._cols[i] = c.values()
            except UnsupportedType as e:
                raise DataError(str(e), column=self.schema[i].name) from None
        return c

    def with_column(self, name, type, values, nullable=True):
        """A batch with column `name` replaced in place, or appended when new."""
        values = list(values)
        field = Field(name, type, nullable)
        schema, cols = list(self.schema), list(self._cols)
        try:
            i = self.index(name)
            schema[i], cols[i] = field, values
        except KeyError:
            schema.append(field)
            cols.append(values)
        return Batch(schema, cols, self.num_rows)

    def select(self, names):
        """A batch of just these columns, in this order."""
        idx = [self.index(n) for n in names]
        return Batch([self.schema[i] for i in idx], [self._cols[i] for i in idx], self.num_rows)

    def take(self, rows):
        """A batch of these rows (indices into this batch), in this order; repeats allowed.
        Pass-through columns are taken as raw values, without decoding."""
        rows = list(rows)
        cols = []
        for i, f in enumerate(self.schema):
            c = self._cols[i]
            if isinstance(c, RawColumn) and c.opaque:
                cells = c.cells()
                cols.append(RawColumn.from_cells(f.name, c.type, [cells[r] for r in rows]))
            else:
                c = self.column(i)
                cols.append([c[r] for r in rows])
        return Batch(self.schema, cols, len(rows))

    def rows(self):
        """Iterates the rows as dicts."""
        names = self.names
        if not names:
            return ({} for _ in range(self.num_rows))
        return (dict(zip(names, vals)) for vals in zip(*self.columns))

    def to_ipc(self):
        """This batch as IPC stream bytes."""
        from . import ipc
        return ipc.write_stream(self.schema, [(self.num_rows, self._cols)])


# ---------------------------------------------------------------------------------------------
# State, handler

class StateSpec:
    """Keyed state (see the WIT `state-spec`): key columns, ordering column, and the history the
    handler needs per key to resume exactly."""

    def __init__(self, keys, order_by, lookback_rows=0, lookback_span=None, lookback_gap=None, lookahead=False):
        self.keys = list(keys)
        self.order_by = order_by
        self.lookback_rows = int(lookback_rows)
        self.lookback_span = lookback_span
        self.lookback_gap = lookback_gap
        self.lookahead = bool(lookahead)

    def __repr__(self):
        return (f"StateSpec(keys={self.keys!r}, order_by={self.order_by!r}, lookback_rows={self.lookback_rows}, "
                f"lookback_span={self.lookback_span!r}, lookback_gap={self.lookback_gap!r}, "
                f"lookahead={self.lookahead!r})")


class Handler:
    """Base class of a plugin's handler. One instance per step per worker; it sees that worker's
    batches in order.

    Class attributes: `name`, `version`, `summary` (one line) and `config_doc` (Markdown).
    Set `uses_tables = True` to accept lookup tables (otherwise a step that gives some fails with
    a config error, as the contract asks)."""

    name = "python-plugin"
    version = "0.1.0"
    summary = ""
    config_doc = ""
    uses_tables = False

    def __init__(self, config, tables):
        """`config`: the step's config as parsed JSON (None when absent). `tables`: dict of lookup
        table name -> Batch (all its rows)."""
        self.config = config
        self.tables = tables

    def output_schema(self, schema):
        """The output schema (list of Field) for an input schema. Default: unchanged."""
        return schema

    def process(self, batch):
        """Transforms one batch: return a Batch, a list of Batches, or None (no rows)."""
        raise NotImplementedError(f"{type(self).__name__}.process")

    def finish(self):
        """End of input: return any rows still held (Batch, list, or None)."""
        return None

    def state(self):
        """Declared keyed state (a StateSpec), or None for stateless handlers."""
        return None

    def projection(self):
        """The input columns this handler reads (a list of names), or None for whole batches.

        With a list, only those columns cross into the sandbox: `output_schema` and `process`
        see just them (the ones the input has, in the input's order), and each batch `process`
        returns is a *patch*: its columns replace the input columns of the same name, in place,
        or are appended when new; the other input columns pass through in the host, untouched.
        A patch covers the call's rows, in order, and `finish` returns no rows. Asked once,
        after `__init__`."""
        return None

    def seed(self, batch):
        """History rows that rebuild state; their output is dropped. Default: process them."""
        self.process(batch)

    def continuing(self, keys):
        """Where the keys of the unit in flight continue (with `StateSpec.lookahead`)."""


# ---------------------------------------------------------------------------------------------
# Host imports: logs and counters

def _host():
    try:
        from wit_world.imports import host
        return host
    except ImportError:
        return None


class _Log:
    """`log.info("message", key=value, ...)`: a structured log record through the host (natively:
    printed to stderr). Field values are converted with str()."""

    def _emit(self, level, message, fields):
        host = _host()
        pairs = [(str(k), str(v)) for k, v in fields.items()]
        if host is None:
            print(f"[{level}] {message} {dict(pairs) if pairs else ''}".rstrip(), file=sys.stderr)
        else:
            host.log(getattr(host.Level, level.upper()), str(message), pairs)

    def trace(self, message, **fields):
        self._emit("trace", message, fields)

    def debug(self, message, **fields):
        self._emit("debug", message, fields)

    def info(self, message, **fields):
        self._emit("info", message, fields)

    def warn(self, message, **fields):
        self._emit("warn", message, fields)

    warning = warn

    def error(self, message, **fields):
        self._emit("error", message, fields)


log = _Log()


def counter(name, delta=1):
    """Adds `delta` (>= 0) to the host counter `name` (natively: a no-op)."""
    host = _host()
    if host is not None:
        host.counter_add(str(name), int(delta))


# ---------------------------------------------------------------------------------------------
# Export

_registered = None


def registered():
    """The Handler subclass given to `export`, or None."""
    return _registered


def export(cls):
    """Registers `cls` (a Handler subclass) as the plugin's handler and returns the class the app
    module must bind as `Handler`: `Handler = export(MyHandler)`."""
    global _registered
    if not (isinstance(cls, type) and issubclass(cls, Handler)):
        raise TypeError("export() takes a subclass of sluice_plugin.Handler")
    _registered = cls
    try:
        import wit_world.exports
        from wit_world.imports import types
        base = wit_world.exports.Handler
    except ImportError:  # natively (tests): a plain class with the same info()
        base, types = object, None

    def info(self):
        fields = dict(name=str(cls.name), version=str(cls.version), summary=str(cls.summary),
                      config_doc=str(cls.config_doc))
        return types.PluginInfo(**fields) if types is not None else fields

    return type("Handler", (base,), {"info": info, "__module__": cls.__module__})


def parse_config(text):
    """The step's config JSON text as Python values (None for `null` or empty)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError(f"config is not valid JSON: {e}") from None
