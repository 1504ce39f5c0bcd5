"""Sluice vs DuckDB on the kline reference job (docs/benchmarks.md, "DuckDB reference job").

Run through run.sh, which builds the release binary and the Python environment. This script
generates the data (once per size, with `sluice bench generate`), runs Sluice and DuckDB
alternately, measures each run's wall time, CPU time (user + sys of the child and its threads,
from wait4) and peak RSS (ru_maxrss), checks that both outputs agree with each other and with
the generator's manifest, and prints Markdown tables (also written to results.json).
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
MIB = 1024 * 1024


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run cmd; wall, CPU (user + sys) and peak RSS of the child, from wait4."""
    os.sync()  # the previous run's dirty pages are not this run's cost
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Drain stderr while waiting, so a chatty child cannot block on a full pipe.
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    res = {
        "wall_s": wall,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "rss_mib": ru.ru_maxrss / 1024,
        "rc": p.returncode,
    }
    if p.returncode != 0:
        log(err.decode(errors="replace")[-4000:])
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    return res


def ensure_data(a, days: int) -> pathlib.Path:
    name = f"data-s{a.symbols}-d{days}-r{a.rows_per_day}-seed{a.seed}{'-zip' if a.zip else ''}"
    d = a.work / name
    if (d / "manifest.json").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    log(f"generating {name} ...")
    cmd = [a.bin, "bench", "generate", "--out", str(d), "--symbols", str(a.symbols), "--days", str(days),
           "--rows-per-day", str(a.rows_per_day), "--seed", str(a.seed)] + (["--zip"] if a.zip else [])
    t = timed(cmd)
    log(f"  generated in {t['wall_s']:.1f} s")
    return d


def du_mb(path: str) -> float:
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*.parquet")) / 1e6


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} CPUs ({cpu}), {mem / 1024 / 1024:.0f} GiB RAM, Linux {os.uname().release}"


def pipeline_for(a, sync: str | None) -> pathlib.Path:
    """The bench pipeline, with the lake's `sync` mode set when asked (a copy in the work dir)."""
    base = HERE / ("klines-zip.yaml" if a.zip else "klines.yaml")
    if not sync:
        return base
    copy = a.work / f"{base.stem}-sync-{sync}.yaml"
    copy.write_text(base.read_text().rstrip("\n") + f"\n  sync: {sync}\n")
    return copy


def run_sluice(a, data: pathlib.Path, workers: int, pin: str | None = None, binary: str | None = None,
               sync: str | None = None) -> dict:
    lake = a.work / ("out-baseline" if binary else "out-sluice")
    shutil.rmtree(lake, ignore_errors=True)
    summary = a.work / "summary.json"
    pipeline = pipeline_for(a, sync)
    env = dict(os.environ, DATA_DIR=str(data), LAKE_DIR=str(lake))
    cmd = [binary or a.bin, "run", str(pipeline), "--workers", str(workers), "--summary-json", str(summary), "-q"]
    if pin is not None:
        cmd = ["taskset", "-c", pin] + cmd
    if a.no_catalog:
        cmd.append("--no-catalog")
    r = timed(cmd, env)
    s = json.loads(summary.read_text())
    # CPU time of the worker threads inside handler calls (plugin_ns would be wall time).
    # (Binaries before plugin_cpu_ns existed report wall time only.)
    key = "plugin_cpu_ns" if "plugin_cpu_ns" in s["steps"][0] else "plugin_ns"
    r["plugin_s"] = sum(st[key] for st in s["steps"]) / 1e9
    r["steps"] = {st["name"]: st[key] / 1e9 for st in s["steps"]}
    r["rows_written"] = s["rows_written"]
    r["rows_rejected"] = s["rows_rejected"]
    r["files_failed"] = s["files_failed"]
    units = max(s.get("files_committed", 0), 1)
    r["syncs_per_unit"] = s.get("sink_syncs", 0) / units
    r["files_per_unit"] = s.get("sink_files", 0) / units
    r["out"] = str(lake / "klines")
    r["out_mb"] = du_mb(r["out"])
    r["load"] = os.getloadavg()[0]
    return r


def run_duckdb(a, data: pathlib.Path) -> dict:
    out = a.work / "out-duckdb"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(HERE / "peer.py"), str(data), str(out), "--threads", str(a.threads)]
    if a.zip:
        cmd.append("--zip")
    r = timed(cmd)
    r["out"] = str(out)
    r["out_mb"] = du_mb(r["out"])
    r["load"] = os.getloadavg()[0]
    return r


def verify(sluice_out: str, duck_out: str, manifest: pathlib.Path) -> dict:
    """verify.py in its own process: this driver stays small, because a child's ru_maxrss starts
    from its parent's peak RSS at fork (and querying the outputs here would inflate it)."""
    out = subprocess.run([sys.executable, str(HERE / "verify.py"), sluice_out, duck_out, str(manifest)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def med(runs: list[dict], k: str) -> float:
    return statistics.median(r[k] for r in runs)


def table(rows: list[tuple]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(out)


def side_rows(label: str, runs: list[dict]) -> list[tuple]:
    rows = []
    for i, r in enumerate(runs):
        rows.append((label, i + 1, f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", f"{r['rss_mib']:.0f}",
                     f"{r['out_mb']:.0f}", f"{r['load']:.1f}"))
    rows.append((f"**{label} median**", "", f"**{med(runs, 'wall_s'):.2f}**", f"**{med(runs, 'cpu_s'):.2f}**",
                 f"**{med(runs, 'rss_mib'):.0f}**", "", ""))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the sluice binary")
    ap.add_argument("--work", type=pathlib.Path, required=True, help="data, outputs and results.json")
    ap.add_argument("--symbols", type=int, default=6)
    ap.add_argument("--days", type=int, default=14, help="days per symbol (6 x 14 is ~1 GB of CSV)")
    ap.add_argument("--rows-per-day", type=int, default=86400)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--zip", action="store_true", help="one zip per symbol and day")
    ap.add_argument("--runs", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="Sluice workers and DuckDB threads")
    ap.add_argument("--scaling", action="store_true", help="also run Sluice with 1 worker (--runs times)")
    ap.add_argument("--rss-days", default="", help="extra sizes (days, comma-separated) for peak RSS vs input")
    ap.add_argument("--no-peer", action="store_true", help="Sluice only (profiling, quick checks)")
    ap.add_argument("--no-catalog", action="store_true", help="sluice run --no-catalog")
    ap.add_argument("--sync", default=None, choices=["files", "filesystem"], help="the lake's sync mode for --bin")
    ap.add_argument("--baseline-sync", default=None, choices=["files", "filesystem"],
                    help="the lake's sync mode for --baseline")
    ap.add_argument("--baseline", default=None,
                    help="another sluice binary (e.g. built from the commit before a change), run alternately "
                         "with --bin and DuckDB in the same session: a before/after comparison")
    a = ap.parse_args()
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)

    data = ensure_data(a, a.days)
    manifest = json.loads((data / "manifest.json").read_text())
    log(f"data: {manifest['files']} files, {manifest['csv_bytes'] / 1e9:.2f} GB of CSV, {manifest['rows']:,} rows")
    results = {"manifest": manifest, "args": {k: str(v) for k, v in vars(a).items()}, "sluice": [], "duckdb": [],
               "baseline": []}
    for i in range(a.runs):
        order = ["sluice", "duckdb"] if i % 2 == 0 else ["duckdb", "sluice"]
        if a.baseline:
            order = order + ["baseline"] if i % 2 == 0 else ["baseline"] + order
        for side in order:
            if side == "duckdb" and a.no_peer:
                continue
            if side == "duckdb":
                r = run_duckdb(a, data)
            else:
                base = side == "baseline"
                r = run_sluice(a, data, a.threads, binary=a.baseline if base else None,
                               sync=a.baseline_sync if base else a.sync)
            results[side].append(r)
            log(f"run {i + 1} {side}: wall {r['wall_s']:.2f} s, cpu {r['cpu_s']:.2f} s, rss {r['rss_mib']:.0f} MiB")
    s_runs, d_runs = results["sluice"], results["duckdb"]

    print(f"\n### {manifest['files']} files, {manifest['csv_bytes'] / 1e9:.2f} GB of CSV"
          f"{' (zipped: %.2f GB)' % (manifest['disk_bytes'] / 1e9) if a.zip else ''}, {manifest['rows']:,} rows, "
          f"{a.threads} workers/threads\n")
    print(f"Machine: {machine()}. Last column: 1-minute load average after the run (the machine is shared; "
          f"above {a.threads} other work competed for the cores).\n")
    rows = [("side", "run", "wall s", "CPU s", "peak RSS MiB", "Parquet MB", "load")] + side_rows("Sluice", s_runs)
    if results["baseline"]:
        rows += side_rows("Sluice (baseline)", results["baseline"])
    if d_runs:
        rows += side_rows("DuckDB", d_runs)
    print(table(rows))
    if results["baseline"]:
        b_runs = results["baseline"]
        results["ratio_baseline_wall"] = med(s_runs, "wall_s") / med(b_runs, "wall_s")
        print(f"\nSluice / baseline, medians: wall {results['ratio_baseline_wall']:.2f}x, "
              f"CPU {med(s_runs, 'cpu_s') / med(b_runs, 'cpu_s'):.2f}x")
        for label, runs in (("Sluice", s_runs), ("baseline", b_runs)):
            last = runs[-1]
            if "syncs_per_unit" in last:
                print(f"{label}: {last['syncs_per_unit']:.1f} syncs and {last['files_per_unit']:.1f} files per "
                      f"committed unit")
    if d_runs:
        ratio = med(s_runs, "wall_s") / med(d_runs, "wall_s")
        cpu_ratio = med(s_runs, "cpu_s") / med(d_runs, "cpu_s")
        results["ratio_wall"], results["ratio_cpu"] = ratio, cpu_ratio
        print(f"\nSluice / DuckDB, medians: wall {ratio:.2f}x (target <= 0.8x), CPU {cpu_ratio:.2f}x")

    last = s_runs[-1]
    share = last["plugin_s"] / last["cpu_s"]
    results["wasm_share"] = share
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in last["steps"].items())
    print(f"\nWASM handler calls (guest + host-side IPC encode/decode): {last['plugin_s']:.2f} s of "
          f"{last['cpu_s']:.2f} s CPU = {share:.1%} (target < 15%); per step: {steps}")

    if d_runs:
        v = verify(s_runs[-1]["out"], d_runs[-1]["out"], data / "manifest.json")
        results["verify"] = v
        print("\nAgreement (last runs):\n")
        vt = [("", "rows", "sum(close)", "sum(ma20)", "non-null ma20")]
        for side in ("sluice", "duckdb"):
            f = v[side]
            vt.append((side, f"{f['rows']:,}", f"{f['sum_close']:.6f}", f"{f['sum_ma20']:.6f}", f"{f['ma20_rows']:,}"))
        vt.append(("generator", f"{manifest['rows']:,}", f"{manifest['sum_close']:.6f}", f"{manifest['sum_ma20']:.6f}",
                   f"{manifest['ma20_rows']:,}"))
        vt.append(("generator, window restarted per file", "", "", f"{manifest['sum_ma20_per_file']:.6f}",
                   f"{manifest['ma20_rows_per_file']:,}"))
        print(table(vt))
        print()
        for name, ok in v["checks"].items():
            print(f"- {'ok  ' if ok else 'FAIL'} {name}")
        if not v["checks"]["sluice sum(ma20) = duckdb"]:
            print(f"\n  ma20 differs on {v['rows_ma20_differ']:,} rows, "
                  f"{v['rows_ma20_differ_after_19th_of_file']:,} of them after the 19th row of their file.")
            if v["sluice_matches_per_file_restart"]:
                print("  Sluice's ma20 equals the generator's per-file-restart reference: the host gives stateful "
                      "handlers a fresh instance per file, so the window restarts at each file (known; keyed "
                      "routing will carry it across files).")

    if a.scaling:
        # A worker is a pipeline of two threads (the reader parses while the worker runs the chain
        # and writes), so one worker alone already uses more than one core: also measure it
        # pinned to one core, which is the per-core baseline.
        one, pinned = [], []
        for i in range(a.runs):
            r = run_sluice(a, data, 1)
            one.append(r)
            p = run_sluice(a, data, 1, pin="0")
            pinned.append(p)
            log(f"run {i + 1} sluice 1 worker: wall {r['wall_s']:.2f} s, cpu {r['cpu_s']:.2f} s; "
                f"on 1 core: wall {p['wall_s']:.2f} s")
        results["sluice_1_worker"], results["sluice_1_worker_1_core"] = one, pinned
        base = med(s_runs, "wall_s")
        results["scaling"] = med(one, "wall_s") / base
        results["scaling_per_core"] = med(pinned, "wall_s") / base
        print("\nScaling (median wall times; throughput relative to 1 worker on 1 core; target >= 1.8x):\n")
        print(table([("configuration", "wall s", "CPU s", "throughput"),
                     ("1 worker on 1 core (taskset)", f"{med(pinned, 'wall_s'):.2f}", f"{med(pinned, 'cpu_s'):.2f}", "1.00x"),
                     ("1 worker on 2 cores", f"{med(one, 'wall_s'):.2f}", f"{med(one, 'cpu_s'):.2f}",
                      f"{med(pinned, 'wall_s') / med(one, 'wall_s'):.2f}x"),
                     (f"{a.threads} workers on 2 cores", f"{base:.2f}", f"{med(s_runs, 'cpu_s'):.2f}",
                      f"{results['scaling_per_core']:.2f}x (vs 1 worker: {results['scaling']:.2f}x)")]))

    if a.rss_days:
        rss_rows = [("input", "rows", "Sluice wall s", "Sluice peak RSS MiB", "DuckDB wall s", "DuckDB peak RSS MiB")]
        sizes = sorted({int(x) for x in a.rss_days.split(",") if x} | {a.days})
        results["rss"] = []
        for days in sizes:
            dd = ensure_data(a, days)
            mf = json.loads((dd / "manifest.json").read_text())
            sr = run_sluice(a, dd, a.threads) if days != a.days else s_runs[-1]
            dr = (run_duckdb(a, dd) if days != a.days else d_runs[-1]) if not a.no_peer else None
            results["rss"].append({"days": days, "csv_bytes": mf["csv_bytes"], "sluice": sr, "duckdb": dr})
            rss_rows.append((f"{mf['csv_bytes'] / 1e9:.2f} GB ({mf['files']} files)", f"{mf['rows']:,}",
                             f"{sr['wall_s']:.2f}", f"{sr['rss_mib']:.0f}",
                             f"{dr['wall_s']:.2f}" if dr else "-", f"{dr['rss_mib']:.0f}" if dr else "-"))
            log(f"size {days} days: sluice rss {sr['rss_mib']:.0f} MiB" + (f", duckdb {dr['rss_mib']:.0f} MiB" if dr else ""))
        print("\nPeak RSS as the input grows:\n")
        print(table(rss_rows))

    (a.work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    log(f"\nresults: {a.work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
