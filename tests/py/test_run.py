"""`sluice.run` and `sluice.validate` run the CLI's own code: the same summary, the same errors."""

from __future__ import annotations

import json

import pytest

import sluice
from conftest import KLINES, cli, read_lake


def test_run_gives_the_cli_summary_and_lake(kline_data, cli_lake, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setenv("DATA_DIR", str(kline_data))
    monkeypatch.setenv("LAKE_DIR", str(lake))
    s = sluice.run(KLINES, check=True)
    want = json.loads((cli_lake.parent / "summary.json").read_text())
    for k in ("pipeline", "files_seen", "files_committed", "rows_in", "rows_written", "rows_rejected"):
        assert s[k] == want[k], k
    per_unit = lambda summary: sorted((u["file"], u["rows_in"], u["rows_written"]) for u in summary["units"])  # noqa: E731
    assert per_unit(s) == per_unit(want)
    assert read_lake(lake).equals(read_lake(cli_lake))
    # The catalog is published, as by the CLI.
    assert (lake / "catalog.duckdb").is_file()
    # A second run finds everything committed.
    again = sluice.run(KLINES)
    assert (again["files_committed"], again["files_unchanged"]) == (0, want["files_committed"])
    # The CLI agrees that the lake is whole.
    cli("lake", "verify", lake)


def test_config_errors_raise_with_positions(tmp_path, monkeypatch):
    p = tmp_path / "bad.yaml"
    p.write_text("pipeline: bad\nsources:\n  s: {path: in, glob: '*.csv', formt: csv}\nsink: {lake: lake, dataset: d}\n")
    with pytest.raises(sluice.ConfigError) as e:
        sluice.run(p)
    assert any(x["line"] == 3 and "formt" in x["message"] for x in e.value.errors), e.value.errors
    # validate reports instead of raising, as `sluice validate` prints.
    r = sluice.validate(p)
    assert r["ok"] is False and r["errors"][0]["line"] == 3
    cli_out = cli("validate", p, check=False)
    assert cli_out.returncode == 2 and f"{p}:3:" in cli_out.stderr
    # The kline pipeline validates once its variables are set.
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "lake"))
    ok = sluice.validate(KLINES)
    assert ok["ok"] and ok["pipelines"][0]["name"] == "kline_bench", ok


def test_a_failed_unit_is_in_the_summary_or_raises_with_check(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("k,t\nx,1\n")
    (tmp_path / "in" / "b.csv").write_text("k,t\ny,\n")  # a null time: sessionize fails on b.csv
    p = tmp_path / "p.yaml"
    p.write_text(
        "pipeline: p\nsources:\n  s:\n    path: in\n    glob: '*.csv'\n"
        "    format: {csv: {header: true, columns: {k: utf8, t: int64}}}\n"
        "steps:\n  - plugin: sessionize\n    config: {keys: [k], time: t, gap: 10ms}\n    on_error: skip_file\n"
        "sink: {lake: lake, dataset: d}\n"
    )
    s = sluice.run(p)
    assert (s["files_committed"], s["files_failed"]) == (1, 1)
    assert "null event time" in json.dumps(s["failures"])
    with pytest.raises(sluice.RunFailed) as e:
        sluice.run(p, check=True)
    assert e.value.summary["files_failed"] == 1
