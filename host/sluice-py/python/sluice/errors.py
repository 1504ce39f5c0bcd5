"""The exceptions of the `sluice` package. The native module raises them with attributes set, and
they pickle with those attributes, so an error raised inside a Spark or Ray worker keeps them."""

from __future__ import annotations


def _rebuild(cls, message, attrs):
    return cls(message, **attrs)


class SluiceError(Exception):
    """Base class of every error the package raises."""

    _fields: tuple = ()

    def __init__(self, message: str, **attrs):
        super().__init__(message)
        self.message = message
        for name in self._fields:
            setattr(self, name, attrs.pop(name, None))
        for name, value in attrs.items():
            setattr(self, name, value)
        self._attrs = {k: getattr(self, k) for k in (*self._fields, *attrs)}

    def __reduce__(self):
        return (_rebuild, (type(self), self.message, self._attrs))


class ConfigError(SluiceError, ValueError):
    """A pipeline file or step list that does not validate. `errors` holds each problem as a dict
    of `file`, `line`, `column`, `message` and `hint`, as `sluice validate` prints them."""

    _fields = ("errors",)


class StepError(SluiceError):
    """A step failed.

    - `step`: the step's name; `step_index`: its number in the file (1-based); `plugin`.
    - `kind`: config, data, internal, timeout, memory_limit, panic, trap, bad_output,
      output_too_large, load or poisoned. `blame`: user, plugin or internal.
    - `row` and `column` for bad data: `row` counts within the batch that step was given (after
      earlier steps filtered, not the caller's row). `key`: that row's values of the step's state
      keys, e.g. `{"symbol": "BTCUSDT"}` (empty for steps without keyed state).
    """

    _fields = ("step", "step_index", "plugin", "kind", "blame", "row", "column", "key")


class RunFailed(SluiceError):
    """`sluice.run(..., check=True)` on a run the CLI would exit 1 for; `summary` is its summary."""

    _fields = ("summary",)
