"""The adapter between the WIT `handler` interface (IPC bytes) and a `Handler` subclass.

Pure Python and independent of the bindings, so that it runs natively in tests; the top-level
`handler` module wraps it in the `Instance` resource and turns exceptions into WIT errors."""

import traceback

from . import Batch, ConfigError, DataError, Field, Handler, StateSpec, ipc, parse_config


class InternalError(Exception):
    """A plugin bug the SDK detected (reported as the `internal` error, without a traceback)."""


def _read(data):
    try:
        return ipc.read_stream(data, lazy=True)
    except ipc.UnsupportedType as e:
        raise DataError(str(e), column=e.column) from None
    except ipc.IpcError as e:
        raise InternalError(f"cannot read the input IPC stream: {e}") from None


def _batches(result, what):
    if result is None:
        return []
    if isinstance(result, Batch):
        return [result]
    if isinstance(result, (list, tuple)) and all(isinstance(b, Batch) for b in result):
        return list(result)
    raise InternalError(f"{what} must return a Batch, a list of Batches or None, not {type(result).__name__}")


def _check_schema(schema, what):
    if not isinstance(schema, (list, tuple)) or not all(isinstance(f, Field) for f in schema):
        raise InternalError(f"{what} must return a list of sluice_plugin.Field, not {schema!r}")
    return list(schema)


def _describe(schema):
    return "[" + ", ".join(f"{f.name}: {f.type}" for f in schema) + "]"


class Adapter:
    """One handler instance plus the SDK's bookkeeping."""

    def __init__(self, handler):
        self.handler = handler
        self._schemas = None  # (input schema, output schema) of the last input schema

    @classmethod
    def create(cls, handler_cls, config_text, tables):
        config = parse_config(config_text)
        if tables and not handler_cls.uses_tables:
            names = ", ".join(name for name, _ in tables)
            raise ConfigError(f"this plugin takes no lookup tables, but the step gives it {names} (`tables:`)")
        by_name = {}
        for name, data in tables:
            schema, batches = _read(data)
            by_name[name] = Batch.concat(schema, [Batch(schema, cols, n) for n, cols in batches])
        return cls(handler_cls(config, by_name))

    def _output_schema_for(self, schema):
        if self._schemas is not None and self._schemas[0] == schema:
            return self._schemas[1]
        out = _check_schema(self.handler.output_schema(list(schema)), "output_schema")
        self._schemas = (schema, out)
        return out

    def _write(self, schema, batches):
        names = [f.name for f in schema]
        types = [f.type for f in schema]
        for b in batches:
            if [f.name for f in b.schema] != names or [f.type for f in b.schema] != types:
                raise InternalError(f"handler returned a batch with schema {_describe(b.schema)} "
                                    f"but declared output schema {_describe(schema)}")
        try:
            return ipc.write_stream(schema, [(b.num_rows, b._cols) for b in batches])
        except ipc.IpcError as e:
            raise InternalError(f"cannot write the output: {e}") from None

    def output_schema(self, data):
        schema, _ = _read(data)
        return ipc.write_stream(self._output_schema_for(schema))

    def process(self, data):
        schema, batches = _read(data)
        out_schema = self._output_schema_for(schema)
        out = []
        for n, cols in batches:
            out.extend(_batches(self.handler.process(Batch(schema, cols, n)), "process"))
        return self._write(out_schema, out)

    def finish(self):
        out = _batches(self.handler.finish(), "finish")
        if self._schemas is not None:
            schema = self._schemas[1]
        elif out:
            schema = out[0].schema
        else:
            schema = []
        return self._write(schema, out)

    def seed(self, data):
        schema, batches = _read(data)
        self._output_schema_for(schema)
        for n, cols in batches:
            self.handler.seed(Batch(schema, cols, n))

    def continuing(self, data):
        schema, batches = _read(data)
        self.handler.continuing(Batch.concat(schema, [Batch(schema, cols, n) for n, cols in batches]))

    def projection(self):
        cols = self.handler.projection()
        if cols is not None and (not isinstance(cols, (list, tuple)) or not all(isinstance(c, str) for c in cols)):
            raise InternalError(f"projection must return a list of column names or None, not {cols!r}")
        return None if cols is None else list(cols)

    def state(self):
        spec = self.handler.state()
        if spec is not None and not isinstance(spec, StateSpec):
            raise InternalError(f"state must return a StateSpec or None, not {type(spec).__name__}")
        return spec


def describe_exception(e):
    """The `internal` error text of an unexpected exception: type, message, short traceback."""
    if isinstance(e, InternalError):
        return str(e)
    tb = traceback.format_exception(type(e), e, e.__traceback__, limit=-4)
    head = f"{type(e).__name__}: {e}"
    return head + "\n" + "".join(tb[1:-1]).rstrip()


__all__ = ["Adapter", "InternalError", "describe_exception", "Handler"]
