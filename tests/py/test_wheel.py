"""The wheel alone: installed into a clean venv with only pyarrow beside it, it runs the kline
pipeline with its embedded plugins and its own copy of DuckDB (no SLUICE_PLUGIN_DIR, nothing from
the build machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import KLINES

CHECK = """
import json, sluice
s = sluice.run({pipeline!r}, check=True)
duck = [l.split()[-1] for l in open('/proc/self/maps') if 'libduckdb' in l]
print(json.dumps({{"rows": s["rows_written"], "plugins": sluice.plugins(), "duckdb": sorted(set(duck))}}))
"""


def test_the_wheel_alone_in_a_clean_venv(tmp_path, kline_data, cli_lake):
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/sluice/target"))
    wheels = sorted((target / "wheels").glob("sluice-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([venv / "bin/pip", "install", "-q", "pyarrow", wheels[0]], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "LD_", "PYTHON"))}
    env.update(DATA_DIR=str(kline_data), LAKE_DIR=str(tmp_path / "lake"), SLUICE_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([venv / "bin/python", "-c", CHECK.format(pipeline=str(KLINES))], env=env, cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    want = json.loads((cli_lake.parent / "summary.json").read_text())
    assert got["rows"] == want["rows_written"]
    assert {"indicators", "dedup", "normalize_time"} <= set(got["plugins"])
    # DuckDB (the catalog) is the wheel's own copy, not the build machine's.
    assert got["duckdb"] and all("/sluice.libs/" in p for p in got["duckdb"]), got["duckdb"]
