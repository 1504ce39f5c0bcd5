"""The author-facing SDK natively: Batch helpers, the adapter on IPC bytes, and the scale example."""

import importlib.util
import io
import os

import pyarrow as pa
import pytest

import sluice_plugin
from sluice_plugin import Batch, ConfigError, DataError, Field, Handler, StateSpec, ipc
from sluice_plugin._glue import Adapter, InternalError, describe_exception

HERE = os.path.dirname(os.path.abspath(__file__))
# The Python template `sluice plugin new --lang python` writes (the scale handler).
TEMPLATE = os.path.join(os.path.dirname(HERE), "..", "..", "host", "sluice-cli", "template")
EXAMPLE = os.path.join(TEMPLATE, "python", "app.py")


def load_scale():
    spec = importlib.util.spec_from_file_location("scale_app", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SCHEMA = [Field("symbol", "utf8"), Field("price", "float64")]


def sample():
    return Batch(SCHEMA, [["AAA", "BBB", "CCC"], [3.0, -4.5, None]])


def ipc_of(*batches, schema=None):
    schema = schema or batches[0].schema
    return ipc.write_stream(schema, [(b.num_rows, b.columns) for b in batches])


def pa_table(data):
    return pa.ipc.open_stream(data).read_all()


# --- Batch ------------------------------------------------------------------------------------

def test_batch_basics():
    b = sample()
    assert b.num_rows == len(b) == 3
    assert b.names == ["symbol", "price"]
    assert b.column("price") == [3.0, -4.5, None]
    assert b.column(0) == ["AAA", "BBB", "CCC"]
    assert b.field("price") == Field("price", "float64", True)
    assert b.field("nope") is None
    with pytest.raises(KeyError, match="nope"):
        b.column("nope")
    assert list(b.rows()) == [{"symbol": "AAA", "price": 3.0}, {"symbol": "BBB", "price": -4.5},
                              {"symbol": "CCC", "price": None}]
    assert "3 rows" in repr(b)


def test_batch_validates_shape():
    with pytest.raises(ValueError, match="2 fields but 1 columns"):
        Batch(SCHEMA, [["a"]])
    with pytest.raises(ValueError, match="column `price` has 1 values, expected 2"):
        Batch(SCHEMA, [["a", "b"], [1.0]])
    with pytest.raises(ipc.IpcError, match="unknown type"):
        Batch([Field("x", "float")], [[1.0]])


def test_with_column_replaces_in_place_or_appends():
    b = sample()
    r = b.with_column("price", "float64", [1.0, 2.0, 3.0], nullable=False)
    assert r.names == ["symbol", "price"] and r.column("price") == [1.0, 2.0, 3.0]
    assert r.field("price").nullable is False
    assert b.column("price") == [3.0, -4.5, None]  # the original is unchanged
    a = b.with_column("n", "int64", range(3))
    assert a.names == ["symbol", "price", "n"] and a.column("n") == [0, 1, 2]
    with pytest.raises(ValueError):
        b.with_column("n", "int64", [1])


def test_select_take_from_rows_concat():
    b = sample()
    assert b.select(["price"]).schema == [Field("price", "float64")]
    assert b.select(["price", "symbol"]).names == ["price", "symbol"]
    t = b.take([2, 0, 0])
    assert t.column("symbol") == ["CCC", "AAA", "AAA"] and t.num_rows == 3
    assert b.take([]).num_rows == 0
    rows = [{"symbol": "X", "price": 1.0}, {"symbol": "Y"}]
    f = Batch.from_rows(SCHEMA, rows)
    assert f.column("price") == [1.0, None]
    c = Batch.concat(SCHEMA, [b, f, Batch.empty(SCHEMA)])
    assert c.num_rows == 5 and c.column("symbol") == ["AAA", "BBB", "CCC", "X", "Y"]
    assert Batch.from_rows(SCHEMA, []).num_rows == 0
    assert pa_table(b.to_ipc()).column("price").to_pylist() == [3.0, -4.5, None]


def test_zero_column_batch_keeps_rows():
    b = Batch([], [], num_rows=4)
    assert b.num_rows == 4 and list(b.rows()) == [{}] * 4


# --- the scale example ------------------------------------------------------------------------

def test_scale_scales_the_column():
    scale = load_scale()
    h = scale.Scale({"column": "price", "factor": 3}, {})
    assert h.output_schema(SCHEMA) == SCHEMA
    out = h.process(sample())
    assert out.column("price") == [9.0, -13.5, None]
    assert out.column("symbol") == ["AAA", "BBB", "CCC"]
    assert out.schema == SCHEMA


def test_scale_default_factor_is_2():
    h = load_scale().Scale({"column": "price"}, {})
    assert h.factor == 2.0


@pytest.mark.parametrize("config,key,msg", [
    (None, None, "expected struct Config"),
    ({}, "column", "missing field `column`"),
    ({"column": 3}, "column", "expected a string"),
    ({"column": "price", "factor": "x"}, "factor", 'invalid type: string "x", expected f64'),
    ({"column": "price", "factor": True}, "factor", "expected f64"),
    ({"column": "price", "factor": float("inf")}, "factor", "finite"),
    ({"colunm": "price"}, "colunm", "unknown field `colunm`"),
])
def test_scale_rejects_bad_config(config, key, msg):
    with pytest.raises(ConfigError) as e:
        load_scale().Scale(config, {})
    assert e.value.key == key and msg in e.value.message


def test_scale_checks_the_input_schema():
    h = load_scale().Scale({"column": "price"}, {})
    with pytest.raises(ConfigError, match="column `price` not found in the input") as e:
        h.output_schema([Field("x", "float64")])
    assert e.value.key == "column"
    with pytest.raises(ConfigError, match="column `price` is int64, not float64"):
        h.output_schema([Field("price", "int64")])
    with pytest.raises(DataError) as e:
        h.process(Batch([Field("x", "float64")], [[1.0]]))
    assert e.value.column == "price"


def test_scale_fixtures_through_the_adapter():
    """The fixtures as the host runs them: CSV -> IPC (pyarrow) -> adapter -> IPC -> compare."""
    import pyarrow.csv as pcsv
    fx = os.path.join(TEMPLATE, "tests", "fixtures")
    inp = pcsv.read_csv(os.path.join(fx, "input.csv"))
    exp = pcsv.read_csv(os.path.join(fx, "expected.csv"))
    scale = load_scale()
    a = Adapter.create(scale.Scale, '{"column": "price", "factor": 2}', [])
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, inp.schema) as w:
        w.write_table(inp)
    out = pa_table(a.process(sink.getvalue()))
    assert out.equals(exp)
    assert pa_table(a.finish()).schema == inp.schema


def test_scale_projects_its_column_and_returns_a_patch():
    """As the host runs it with a projection: only `price` goes in, a `price` patch comes out."""
    scale = load_scale()
    a = Adapter.create(scale.Scale, '{"column": "price", "factor": 2}', [])
    assert a.projection() == ["price"]
    projected = pa.table({"price": pa.array([1.5, None], pa.float64())})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, projected.schema) as w:
        w.write_table(projected)
    out = pa_table(a.process(sink.getvalue()))
    assert out.column_names == ["price"] and out.column("price").to_pylist() == [3.0, None]


def test_projection_must_be_names():
    class Bad(Handler):
        name = "bad"

        def projection(self):
            return "price"

    with pytest.raises(Exception, match="projection must return a list of column names"):
        Adapter.create(Bad, "null", []).projection()


def test_export_natively():
    scale = load_scale()
    assert sluice_plugin.registered() is scale.Scale
    info = scale.Handler().info()
    assert info["name"] == "scale" and info["version"] == "0.1.0"
    assert info["config_doc"].startswith("Multiplies")
    with pytest.raises(TypeError):
        sluice_plugin.export(object)


# --- the adapter (what the WIT instance calls) ------------------------------------------------

class Recorder(Handler):
    name = "recorder"

    def __init__(self, config, tables):
        super().__init__(config, tables)
        self.seen, self.seeded, self.keys = [], [], None
        self.held = []

    def output_schema(self, schema):
        return schema + [Field("n", "int64", False)]

    def process(self, batch):
        self.seen.append(batch.num_rows)
        out = batch.with_column("n", "int64", [len(self.seen)] * batch.num_rows, False)
        if self.config and self.config.get("hold"):
            self.held.append(out)
            return None
        return [out, out.take([0])] if batch.num_rows else out

    def finish(self):
        return self.held

    def seed(self, batch):
        self.seeded.append(batch.num_rows)

    def continuing(self, keys):
        self.keys = keys

    def state(self):
        return StateSpec(["symbol"], "price", lookback_rows=2)


def test_adapter_process_concatenates_outputs():
    a = Adapter.create(Recorder, "null", [])
    assert a.handler.config is None and a.handler.tables == {}
    b = sample()
    out_schema = pa.ipc.open_stream(a.output_schema(ipc.write_stream(SCHEMA))).schema
    assert out_schema.names == ["symbol", "price", "n"] and not out_schema.field("n").nullable
    out = pa_table(a.process(ipc_of(b, b.take([1]))))
    assert out.column("n").to_pylist() == [1, 1, 1, 1, 2, 2]
    assert out.column("symbol").to_pylist() == ["AAA", "BBB", "CCC", "AAA", "BBB", "BBB"]
    # an empty input: a schema-only stream of the output schema
    empty = pa_table(a.process(ipc.write_stream(SCHEMA)))
    assert empty.num_rows == 0 and empty.schema.names == ["symbol", "price", "n"]
    assert pa_table(a.finish()).num_rows == 0
    assert a.state().keys == ["symbol"]


def test_adapter_finish_returns_held_rows_with_output_schema():
    a = Adapter.create(Recorder, '{"hold": true}', [])
    assert pa_table(a.process(ipc_of(sample()))).num_rows == 0
    out = pa_table(a.finish())
    assert out.num_rows == 3 and out.schema.names == ["symbol", "price", "n"]


def test_adapter_seed_and_continuing():
    a = Adapter.create(Recorder, "", [])
    a.seed(ipc_of(sample(), sample().take([0])))
    assert a.handler.seeded == [3, 1] and a.handler.seen == []
    a.continuing(ipc_of(sample().select(["symbol"]), sample().select(["symbol"])))
    assert a.handler.keys.column("symbol") == ["AAA", "BBB", "CCC"] * 2


def test_adapter_tables():
    class UsesTables(Recorder):
        uses_tables = True
    t = ipc_of(sample(), sample())
    a = Adapter.create(UsesTables, "{}", [("prices", t)])
    assert a.handler.tables["prices"].num_rows == 6
    with pytest.raises(ConfigError, match="takes no lookup tables, but the step gives it prices"):
        Adapter.create(Recorder, "{}", [("prices", t)])


def test_adapter_bad_config_json():
    with pytest.raises(ConfigError, match="not valid JSON"):
        Adapter.create(Recorder, "{", [])


def test_adapter_checks_output_batches():
    class Wrong(Handler):
        def process(self, batch):
            return batch.with_column("price", "int64", [1] * batch.num_rows)

    a = Adapter.create(Wrong, "null", [])
    with pytest.raises(InternalError, match=r"schema \[symbol: utf8, price: int64\] but declared output "
                                            r"schema \[symbol: utf8, price: float64\]"):
        a.process(ipc_of(sample()))

    class NotABatch(Handler):
        def process(self, batch):
            return {"a": 1}

    with pytest.raises(InternalError, match="must return a Batch"):
        Adapter.create(NotABatch, "null", []).process(ipc_of(sample()))

    class BadValue(Handler):
        def process(self, batch):
            return batch.with_column("price", "float64", ["x"] * batch.num_rows)

    with pytest.raises(InternalError, match="column `price`"):
        Adapter.create(BadValue, "null", []).process(ipc_of(sample()))


def test_unsupported_input_type_is_a_data_error_naming_the_column():
    t = pa.table({"l": pa.array([[1], [2]])})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    with pytest.raises(DataError) as e:
        Adapter.create(Recorder, "null", []).output_schema(sink.getvalue())
    assert e.value.column == "l" and "list" in e.value.message


def test_internal_error_text_has_type_message_and_traceback():
    class Boom(Handler):
        def process(self, batch):
            return {}["missing"]

    try:
        Adapter.create(Boom, "null", []).process(ipc_of(sample()))
    except Exception as e:  # noqa: BLE001
        text = describe_exception(e)
    assert text.startswith("KeyError: 'missing'")
    assert "in process" in text and "test_sdk.py" in text


def test_log_and_counter_natively(capsys):
    sluice_plugin.log.info("hello", rows=3)
    sluice_plugin.counter("rows", 3)
    assert "[info] hello {'rows': '3'}" in capsys.readouterr().err
