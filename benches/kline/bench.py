"""Sluice vs DuckDB and Polars on the kline reference job (docs/benchmarks.md, "DuckDB reference job").

Run through run.sh, which builds the release binary and the Python environment. This script
generates the data (once per shape and size, with `sluice bench generate`), runs Sluice and the
peers in rotating order, measures each run's wall time, CPU time (user + sys of the child and its
threads, from wait4) and peak RSS (ru_maxrss), checks that the outputs agree with each other and
with the generator's manifest, and prints Markdown tables (also written to results.json). `--all`
runs both shapes (few large files; many small files with a partition each), plain and zipped.
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
    name = f"data-v2-s{a.symbols}-d{days}-r{a.rows_per_day}-seed{a.seed}{'-zip' if a.zip else ''}"
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


def versions() -> str:
    out = subprocess.run([sys.executable, "-c", "import duckdb, polars; print(duckdb.__version__, polars.__version__)"],
                         capture_output=True, text=True).stdout.split()
    return f"DuckDB {out[0]}, Polars {out[1]}" if len(out) == 2 else "peer versions unknown"


def fresh_out(a, side: str) -> pathlib.Path:
    """A new output directory for one run. Outputs are deleted together after the shape's last
    run, never just before a run: on ext4 without a journal (this machine), creating a file
    right after thousands were deleted scans past each recently deleted inode (`recently_deleted`
    in the kernel), which was a fifth of the CPU of a run on 1,500 small files. A first ingest
    into an empty lake does not pay that, so no side should pay it for the bench's clean-up."""
    a.outs = getattr(a, "outs", [])
    out = a.work / f"out-{side}-{len(a.outs) + 1}"
    shutil.rmtree(out, ignore_errors=True)
    a.outs.append(out)
    return out


def clean_outs(a) -> None:
    for out in getattr(a, "outs", []):
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out.with_name(out.name + ".unzipped"), ignore_errors=True)
    a.outs = []


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
    lake = fresh_out(a, "baseline" if binary else "sluice")
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


PEERS = {"duckdb": ("DuckDB", "peer.py"), "polars": ("Polars", "polars_peer.py")}


def run_peer(a, peer: str, data: pathlib.Path) -> dict:
    out = fresh_out(a, peer)
    cmd = [sys.executable, str(HERE / PEERS[peer][1]), str(data), str(out), "--threads", str(a.threads)]
    if a.zip:
        cmd.append("--zip")
    r = timed(cmd)
    r["out"] = str(out)
    r["out_mb"] = du_mb(r["out"])
    r["load"] = os.getloadavg()[0]
    return r


def verify(sluice_out: str, peer_out: str, manifest: pathlib.Path, peer: str) -> dict:
    """verify.py in its own process: this driver stays small, because a child's ru_maxrss starts
    from its parent's peak RSS at fork (and querying the outputs here would inflate it)."""
    out = subprocess.run([sys.executable, str(HERE / "verify.py"), sluice_out, peer_out, str(manifest), peer],
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


SHAPES = {
    # 84 files of ~12 MB, 84 partitions.
    "large": {"symbols": 6, "days": 14, "rows_per_day": 86400},
    # 1,500 files of ~0.8 MB, 1,500 partitions: real exchange dumps (issue 16).
    "small": {"symbols": 50, "days": 30, "rows_per_day": 5760},
}


def run_shape(a) -> dict:
    """Every side on one shape, alternating; prints the Markdown tables, returns the results."""
    data = ensure_data(a, a.days)
    if a.settle:
        # The kernel counts an inode as recently deleted for 60 s after its block is written
        # back (see fresh_out): let an earlier bench's (or shape's) deletions age first.
        log(f"waiting {a.settle} s for earlier outputs' deletion to age (--settle 0 skips) ...")
        os.sync()
        time.sleep(a.settle)
    manifest = json.loads((data / "manifest.json").read_text())
    log(f"data: {manifest['files']} files, {manifest['csv_bytes'] / 1e9:.2f} GB of CSV, {manifest['rows']:,} rows")
    results = {"manifest": manifest, "args": {k: str(v) for k, v in vars(a).items()}, "sluice": [], "baseline": []}
    results.update({p: [] for p in a.peers})
    sides = ["sluice"] + (["baseline"] if a.baseline else []) + a.peers
    for i in range(a.runs):
        # Rotate the order, so no side always runs first (after the generator) or last.
        k = i % len(sides)
        for side in sides[k:] + sides[:k]:
            if side in PEERS:
                r = run_peer(a, side, data)
            else:
                base = side == "baseline"
                r = run_sluice(a, data, a.threads, binary=a.baseline if base else None,
                               sync=a.baseline_sync if base else a.sync)
            results[side].append(r)
            log(f"run {i + 1} {side}: wall {r['wall_s']:.2f} s, cpu {r['cpu_s']:.2f} s, rss {r['rss_mib']:.0f} MiB")
    s_runs = results["sluice"]

    print(f"\n### {a.shape or 'custom'}{' zipped' if a.zip else ''}: {manifest['files']} files, "
          f"{manifest['csv_bytes'] / 1e9:.2f} GB of CSV"
          f"{' (zipped: %.2f GB)' % (manifest['disk_bytes'] / 1e9) if a.zip else ''}, {manifest['rows']:,} rows, "
          f"{a.threads} workers/threads\n")
    print(f"Machine: {machine()}; {versions()}. Last column: 1-minute load average after the run (the machine is shared; "
          f"above {a.threads} other work competed for the cores).\n")
    rows = [("side", "run", "wall s", "CPU s", "peak RSS MiB", "Parquet MB", "load")] + side_rows("Sluice", s_runs)
    if results["baseline"]:
        rows += side_rows("Sluice (baseline)", results["baseline"])
    for peer in a.peers:
        rows += side_rows(PEERS[peer][0], results[peer])
    print(table(rows))
    if results["baseline"]:
        b_runs = results["baseline"]
        results["ratio_baseline_wall"] = med(s_runs, "wall_s") / med(b_runs, "wall_s")
        print(f"\nSluice / baseline, medians: wall {results['ratio_baseline_wall']:.2f}x, "
              f"CPU {med(s_runs, 'cpu_s') / med(b_runs, 'cpu_s'):.2f}x")
    for label, runs in (("Sluice", s_runs), ("baseline", results["baseline"])):
        if runs and "syncs_per_unit" in runs[-1]:
            print(f"\n{label}: {runs[-1]['syncs_per_unit']:.2f} syncs and {runs[-1]['files_per_unit']:.2f} files "
                  f"per committed unit")
    print()
    for peer in a.peers:
        runs = results[peer]
        ratio = med(s_runs, "wall_s") / med(runs, "wall_s")
        cpu_ratio = med(s_runs, "cpu_s") / med(runs, "cpu_s")
        results[f"ratio_wall_{peer}"], results[f"ratio_cpu_{peer}"] = ratio, cpu_ratio
        print(f"- Sluice / {PEERS[peer][0]}, medians: wall {ratio:.2f}x (target <= 0.5x), CPU {cpu_ratio:.2f}x")

    last = s_runs[-1]
    share = last["plugin_s"] / last["cpu_s"]
    results["wasm_share"] = share
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in last["steps"].items())
    print(f"\nWASM handler calls (guest + host-side IPC encode/decode): {last['plugin_s']:.2f} s of "
          f"{last['cpu_s']:.2f} s CPU = {share:.1%} (target < 15%); per step: {steps}")

    results["verify"] = {}
    for peer in a.peers:
        v = verify(s_runs[-1]["out"], results[peer][-1]["out"], data / "manifest.json", peer)
        results["verify"][peer] = v
        print(f"\nAgreement with {PEERS[peer][0]} (last runs):\n")
        vt = [("", "rows", "sum(close)", "sum(ma20)", "non-null ma20")]
        for side in ("sluice", peer):
            f = v[side]
            vt.append((side, f"{f['rows']:,}", f"{f['sum_close']:.6f}", f"{f['sum_ma20']:.6f}", f"{f['ma20_rows']:,}"))
        vt.append(("generator", f"{manifest['rows']:,}", f"{manifest['sum_close']:.6f}", f"{manifest['sum_ma20']:.6f}",
                   f"{manifest['ma20_rows']:,}"))
        print(table(vt))
        print()
        for name, ok in v["checks"].items():
            print(f"- {'ok  ' if ok else 'FAIL'} {name}")
        if not v["checks"][f"sluice sum(ma20) = {peer}"]:
            print(f"\n  ma20 differs on {v['rows_ma20_differ']:,} rows, "
                  f"{v['rows_ma20_differ_after_19th_of_file']:,} of them after the 19th row of their file.")
    results["agree"] = all(ok for v in results["verify"].values() for ok in v["checks"].values())

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
        peer = a.peers[0] if a.peers else None
        label = PEERS[peer][0] if peer else "peer"
        rss_rows = [("input", "rows", "Sluice wall s", "Sluice peak RSS MiB", f"{label} wall s",
                     f"{label} peak RSS MiB")]
        sizes = sorted({int(x) for x in a.rss_days.split(",") if x} | {a.days})
        results["rss"] = []
        for days in sizes:
            dd = ensure_data(a, days)
            mf = json.loads((dd / "manifest.json").read_text())
            sr = run_sluice(a, dd, a.threads) if days != a.days else s_runs[-1]
            dr = (run_peer(a, peer, dd) if days != a.days else results[peer][-1]) if peer else None
            results["rss"].append({"days": days, "csv_bytes": mf["csv_bytes"], "sluice": sr, "peer": dr})
            rss_rows.append((f"{mf['csv_bytes'] / 1e9:.2f} GB ({mf['files']} files)", f"{mf['rows']:,}",
                             f"{sr['wall_s']:.2f}", f"{sr['rss_mib']:.0f}",
                             f"{dr['wall_s']:.2f}" if dr else "-", f"{dr['rss_mib']:.0f}" if dr else "-"))
            log(f"size {days} days: sluice rss {sr['rss_mib']:.0f} MiB" + (f", {peer} {dr['rss_mib']:.0f} MiB" if dr else ""))
        print("\nPeak RSS as the input grows:\n")
        print(table(rss_rows))
    clean_outs(a)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the sluice binary")
    ap.add_argument("--work", type=pathlib.Path, required=True, help="data, outputs and results.json")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None,
                    help="large: 6 symbols x 14 days x 86,400 rows (default); small: 50 x 30 x 5,760 "
                         "(1,500 files, 1,500 partitions)")
    ap.add_argument("--all", action="store_true",
                    help="every shape, plain and zipped (four tables and a summary); the shape flags are ignored")
    ap.add_argument("--symbols", type=int, default=None)
    ap.add_argument("--days", type=int, default=None, help="days per symbol")
    ap.add_argument("--rows-per-day", type=int, default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--zip", action="store_true", help="one zip per symbol and day")
    ap.add_argument("--runs", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="Sluice workers and peer threads")
    ap.add_argument("--peers", default="duckdb,polars", help="comma-separated: duckdb, polars (default both)")
    ap.add_argument("--scaling", action="store_true", help="also run Sluice with 1 worker (--runs times)")
    ap.add_argument("--rss-days", default="", help="extra sizes (days, comma-separated) for peak RSS vs input")
    ap.add_argument("--no-peer", action="store_true", help="Sluice only (profiling, quick checks)")
    ap.add_argument("--no-catalog", action="store_true", help="sluice run --no-catalog")
    ap.add_argument("--settle", type=int, default=65,
                    help="seconds to wait before each shape's runs, so that earlier deletions do not slow file "
                         "creation (ext4 without a journal); 0 to skip")
    ap.add_argument("--sync", default=None, choices=["files", "filesystem"], help="the lake's sync mode for --bin")
    ap.add_argument("--baseline-sync", default=None, choices=["files", "filesystem"],
                    help="the lake's sync mode for --baseline")
    ap.add_argument("--baseline", default=None,
                    help="another sluice binary (e.g. built from the commit before a change), run alternately "
                         "with --bin and the peers in the same session: a before/after comparison")
    a = ap.parse_args()
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    a.peers = [] if a.no_peer else [p for p in a.peers.split(",") if p]
    for p in a.peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r} (known: {', '.join(PEERS)})")
    custom = {k: getattr(a, k) for k in ("symbols", "days", "rows_per_day")}

    def configure(shape: str | None, zipped: bool):
        b = argparse.Namespace(**vars(a))
        b.shape, b.zip = shape, zipped
        preset = SHAPES[shape or "large"]
        for k, v in custom.items():
            setattr(b, k, v if v is not None and not a.all else preset[k])
        if shape is None and all(v is None for v in custom.values()):
            b.shape = "large"
        return b

    if not a.all:
        results = run_shape(configure(a.shape, a.zip))
        (a.work / "results.json").write_text(json.dumps(results, indent=2, default=str))
        log(f"\nresults: {a.work / 'results.json'}")
        return 0 if results["agree"] or not a.peers else 1

    everything = {}
    for shape in ("large", "small"):
        for zipped in (False, True):
            name = f"{shape}{'-zip' if zipped else ''}"
            log(f"\n== {name} ==")
            everything[name] = run_shape(configure(shape, zipped))
    (a.work / "results-all.json").write_text(json.dumps(everything, indent=2, default=str))
    print("\n### Summary: medians of each shape\n")
    head = ["shape", "files", "Sluice wall s", "Sluice peak RSS MiB"]
    for p in a.peers:
        head += [f"{PEERS[p][0]} wall s", f"Sluice / {PEERS[p][0]}"]
    head += ["syncs / unit", "files / unit", "outputs agree"]
    rows = [tuple(head)]
    for name, r in everything.items():
        s_runs = r["sluice"]
        row = [name, f"{r['manifest']['files']:,}", f"{med(s_runs, 'wall_s'):.2f}",
               f"{max(x['rss_mib'] for x in s_runs):.0f}"]
        for p in a.peers:
            row += [f"{med(r[p], 'wall_s'):.2f}", f"{r[f'ratio_wall_{p}']:.2f}x"]
        row += [f"{s_runs[-1]['syncs_per_unit']:.2f}", f"{s_runs[-1]['files_per_unit']:.2f}",
                "yes" if r["agree"] else "**no**"]
        rows.append(tuple(row))
    print(table(rows))
    log(f"\nresults: {a.work / 'results-all.json'}")
    return 0 if all(r["agree"] or not a.peers for r in everything.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
