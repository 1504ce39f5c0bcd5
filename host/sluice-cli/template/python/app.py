"""`scale`: multiplies a Float64 column by a factor. A starting point: edit freely.

The Python template of `sluice plugin new NAME --lang python` (which renames `scale` and `Scale`),
and the twin of the Rust template: the same config, errors and fixtures. Build it with
`sluice plugin build`.
"""

import math

from sluice_plugin import ConfigError, DataError, Handler, export

CONFIG_KEYS = ("column", "factor")


def _json_type(v):
    """A JSON value's kind, worded as serde does in the Rust SDK's messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{v}`"
    if isinstance(v, str):
        return f'string "{v}"'
    return "sequence" if isinstance(v, list) else "map"


def parse_config(config):
    """(column, factor) from the step's config; unknown keys are errors, as in the Rust twin."""
    if not isinstance(config, dict):
        raise ConfigError(f"invalid type: {_json_type(config)}, expected struct Config")
    for key in config:
        if key not in CONFIG_KEYS:
            raise ConfigError(f"unknown field `{key}`, expected `column` or `factor`", key)
    if "column" not in config:
        raise ConfigError("missing field `column`", "column")
    column = config["column"]
    if not isinstance(column, str):
        raise ConfigError(f"invalid type: {_json_type(column)}, expected a string", "column")
    factor = config.get("factor", 2.0)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise ConfigError(f"invalid type: {_json_type(factor)}, expected f64", "factor")
    factor = float(factor)
    if not math.isfinite(factor):
        raise ConfigError("`factor` must be a finite number", "factor")
    return column, factor


class Scale(Handler):
    name = "scale"
    version = "0.1.0"
    summary = "Multiplies a Float64 column by a factor."
    config_doc = """\
Multiplies a Float64 column by a factor.

- `column` (string, required): the Float64 column to scale.
- `factor` (number, default 2): the factor.

Example: `config: {column: price, factor: 100}`"""

    def __init__(self, config, tables):
        super().__init__(config, tables)
        self.column, self.factor = parse_config(config)

    def output_schema(self, schema):
        """Checked by `sluice validate` before any data moves."""
        name = self.column
        field = next((f for f in schema if f.name == name), None)
        if field is None:
            raise ConfigError(f"column `{name}` not found in the input", "column")
        if field.type != "float64":
            raise ConfigError(f"column `{name}` is {field.type}, not float64", "column")
        return schema

    def projection(self):
        """Only `column` crosses into the sandbox; the host keeps the other columns and puts the
        scaled one back in its place. Remove this to receive whole batches."""
        return [self.column]

    def process(self, batch):
        name = self.column
        field = batch.field(name)
        if field is None or field.type != "float64":
            raise DataError("column missing" if field is None else f"column is {field.type}, not float64",
                            column=name)
        f = self.factor
        values = [None if v is None else v * f for v in batch.column(name)]
        return batch.with_column(name, "float64", values, field.nullable)


Handler = export(Scale)
