"""The `handler` interface of the Sluice WIT world, for componentize-py.

componentize-py looks for a top-level module named after the exported interface with a class
`Instance`; this one delegates to the Handler subclass registered with `sluice_plugin.export`.
Plugin authors do not edit it: build with `-p <this directory> -p <plugin directory>`."""

import wit_world.exports.handler
from componentize_py_types import Err
from wit_world.imports import types

import sluice_plugin
from sluice_plugin import ConfigError, DataError
from sluice_plugin._glue import Adapter, describe_exception


def _err(e):
    if isinstance(e, ConfigError):
        return Err(types.Error_Config(types.ConfigError(str(e.message), e.key)))
    if isinstance(e, DataError):
        row = None if e.row is None else int(e.row)
        col = None if e.column is None else str(e.column)
        return Err(types.Error_Data(types.DataError(str(e.message), row, col)))
    return Err(types.Error_Internal(describe_exception(e)))


def _call(f, *args):
    try:
        return f(*args)
    except Err:
        raise
    except Exception as e:  # noqa: BLE001 - every failure becomes a WIT error
        raise _err(e) from None


class Instance(wit_world.exports.handler.Instance):
    def __init__(self, adapter):
        self._a = adapter

    @classmethod
    def create(cls, config, tables):
        handler_cls = sluice_plugin.registered()
        if handler_cls is None:
            raise Err(types.Error_Internal("no handler registered: the app module must end with "
                                           "`Handler = sluice_plugin.export(MyHandler)`"))
        return cls(_call(Adapter.create, handler_cls, config, tables))

    def output_schema(self, input):
        return _call(self._a.output_schema, input)

    def state(self):
        spec = self._a.state()
        if spec is None:
            return None
        return types.StateSpec(list(spec.keys), spec.order_by, spec.lookback_rows, spec.lookback_span,
                               spec.lookback_gap, spec.lookahead)

    def projection(self):
        # The contract's `projection` has no error result: a failure here traps, which the
        # host reports as the plugin's fault.
        return self._a.projection()

    def process(self, input):
        return _call(self._a.process, input)

    def seed(self, input):
        _call(self._a.seed, input)

    def continuing(self, keys):
        _call(self._a.continuing, keys)

    def finish(self):
        return _call(self._a.finish)
