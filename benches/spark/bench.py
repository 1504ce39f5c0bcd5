"""The kline reference job on Spark local[2] (docs/benchmarks.md, "Spark and the chain"): Spark's
own window functions, against Spark plus the Sluice chain through mapInArrow, against `sluice
run`; plus the control runs that price the JVM→Python crossing.

Run through run.sh (release binary, release wheel, venv). Each contender runs in its own process
tree (a new session), in rotating order; wall time (until the contender's own process exits),
CPU (user + sys of the whole tree: this process is a child subreaper, so the JVM and the Python
workers that outlive their parent are reaped here and counted in RUSAGE_CHILDREN) and peak RSS
(the tree's total, sampled every 50 ms from /proc). The
outputs are checked: the chain inside Spark equals `sluice run` exactly, ma20 included; Spark's
native version agrees within 1e-9.
"""

import argparse
import ctypes
import json
import resource
import signal
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
PIPELINE = REPO / "benches" / "kline" / "klines.yaml"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def tree_rss_kib(sid: int) -> int:
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) != sid:  # field 6 (session) after pid and comm
                continue
            total += int(open(f"/proc/{d}/statm").read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, ValueError, IndexError):
            continue
    return total


def reap_tree(sid: int, grace_s: float = 60.0) -> None:
    """Wait for every descendant left (orphans reparent to this subreaper); kill the session's
    stragglers after `grace_s`."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > deadline:
                try:
                    os.killpg(sid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)


def timed(cmd, env=None):
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], tree_rss_kib(p.pid))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out_chunks, err_chunks = [], []
    t_out = threading.Thread(target=lambda: out_chunks.append(p.stdout.read()))
    t_err = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()))
    t_out.start()
    t_err.start()
    _, status, _ = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    t_out.join()
    t_err.join()
    reap_tree(p.pid)
    stop.set()
    th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        log(err_chunks[0].decode(errors="replace")[-4000:])
        raise SystemExit(f"failed ({rc}): {' '.join(map(str, cmd))}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    res = {"wall_s": wall, "cpu_s": cpu, "rss_mib": peak[0] / 1024}
    lines = out_chunks[0].decode().strip().splitlines()
    if lines and lines[-1].startswith("{"):
        res["inner"] = json.loads(lines[-1])
    return res


def read(out: pathlib.Path):
    import pyarrow as pa
    import pyarrow.dataset as pads

    t = pads.dataset(out, format="parquet", partitioning="hive").to_table(
        columns=["symbol", "open_time", "close", "ma20"])
    cols = []
    for name in t.column_names:
        c = t[name]
        if pa.types.is_dictionary(c.type):
            c = c.cast(c.type.value_type)
        cols.append(c)
    t = pa.table(cols, names=t.column_names)
    return t.sort_by([("symbol", "ascending"), ("open_time", "ascending")]).combine_chunks()


def main():
    # PR_SET_CHILD_SUBREAPER: orphaned descendants (Spark's JVM, Ray's workers) become ours.
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", default=sys.executable, help="the interpreter with pyspark and the sluice wheel")
    ap.add_argument("--work", type=pathlib.Path, required=True)
    ap.add_argument("--symbols", type=int, default=6)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--rows-per-day", type=int, default=86400)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--no-ray", dest="ray", action="store_false", help="skip the Ray Data contender")
    a = ap.parse_args()

    data = a.work / f"spark-data-s{a.symbols}-d{a.days}-r{a.rows_per_day}"
    if not (data / "manifest.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        log(f"generating {data.name} ...")
        subprocess.run([a.bin, "bench", "generate", "--out", data, "--symbols", str(a.symbols), "--days",
                        str(a.days), "--rows-per-day", str(a.rows_per_day)], check=True, stdout=subprocess.DEVNULL)
    manifest = json.loads((data / "manifest.json").read_text())
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=a.python, PYSPARK_DRIVER_PYTHON=a.python)
    env.pop("SLUICE_PLUGIN_DIR", None)  # the wheel's embedded plugins, as `sluice run` uses its own

    outs = {m: a.work / f"spark-out-{m}" for m in ["cli", "native", "sluice", "identity", "sort", "ray"]}

    def contender(mode):
        if mode == "cli":
            shutil.rmtree(outs["cli"], ignore_errors=True)
            e = dict(env, DATA_DIR=str(data), LAKE_DIR=str(outs["cli"]))
            return timed([a.bin, "run", "-q", PIPELINE, "--no-catalog"], e)
        if mode == "ray":
            return timed([a.python, HERE / "ray_job.py", "--data", data, "--out", outs["ray"], "--pipeline", PIPELINE], env)
        return timed([a.python, HERE / "spark_job.py", "--mode", mode, "--data", data, "--out", outs[mode],
                      "--pipeline", PIPELINE, "--batch", str(a.batch)], env)

    # One warm-up run fills the OS page cache and the compiled-plugin cache.
    modes = ["cli", "native", "sluice", "identity", "sort"] + (["ray"] if a.ray else [])
    results = {m: [] for m in modes}
    contender("sluice")
    for r in range(a.runs):
        order = modes[r % len(modes):] + modes[: r % len(modes)]
        for m in order:
            res = contender(m)
            results[m].append(res)
            log(f"run {r + 1} {m}: {res['wall_s']:.1f} s wall, {res['cpu_s']:.1f} s CPU, {res['rss_mib']:.0f} MiB")

    # Outputs: the chain inside Spark equals `sluice run` exactly; native within 1e-9.
    import pyarrow.compute as pc

    cli = read(outs["cli"] / "klines")
    chain = read(outs["sluice"])
    native = read(outs["native"])
    assert chain.num_rows == cli.num_rows == native.num_rows == manifest["rows"], (
        chain.num_rows, cli.num_rows, native.num_rows, manifest.get("rows"))
    assert chain.equals(cli), "Spark + Sluice differs from sluice run"
    diff = pc.max(pc.abs(pc.subtract(native["ma20"], cli["ma20"]))).as_py() or 0.0
    assert diff < 1e-9 and native["ma20"].null_count == cli["ma20"].null_count, diff
    if a.ray:
        assert read(outs["ray"]).equals(cli), "Ray + Sluice differs from sluice run"

    def med(m, k):
        return statistics.median(x[k] for x in results[m])

    def inner(m, k):
        return statistics.median(x["inner"][k] for x in results[m])

    rows = manifest["rows"]
    last = results["sluice"][-1]
    s = last["inner"]
    calls = s["steps"]["normalize_time"]["calls"]  # batches into the first mapInArrow
    wasm_ns = sum(v["plugin_ns"] for v in s["steps"].values())
    wasm_cpu_ns = sum(v["plugin_cpu_ns"] for v in s["steps"].values())
    crossing = (inner("identity", "job_s") - inner("sort", "job_s"))
    batches = max(1, -(-rows // a.batch))
    print(f"\n{a.symbols} symbols x {a.days} days: {rows:,} rows after cleaning; "
          f"Spark local[2], maxRecordsPerBatch {a.batch}; median of {a.runs} runs.\n")
    print("| contender | wall | Spark job (no session start) | CPU | peak RSS (process tree) |")
    print("|---|---|---|---|---|")
    names = {"cli": "`sluice run`", "native": "Spark native (window functions)",
             "sluice": "Spark + Sluice chain (mapInArrow)", "identity": "control: sort + identity mapInArrow",
             "sort": "control: sort only", "ray": "Ray Data + Sluice chain (map_groups)"}
    for m in modes:
        job = "—" if m == "cli" else f"{inner(m, 'job_s'):.1f} s"  # Ray: without ray.init
        print(f"| {names[m]} | {med(m, 'wall_s'):.1f} s | {job} | {med(m, 'cpu_s'):.1f} s | {med(m, 'rss_mib'):,.0f} MiB |")
    print()
    print(f"- Sluice inside Spark / Spark native, Spark job time: "
          f"{inner('sluice', 'job_s') / inner('native', 'job_s'):.2f} (target ≤ 1.0)")
    print(f"- JVM→Python→JVM crossing (identity − sort only): {crossing:.2f} s for ~{batches} batches of "
          f"{a.batch} rows: {crossing / batches * 1000:.0f} ms per batch, {crossing / rows * 1e9:.0f} ns per row")
    print(f"- WASM: {calls} calls of the first step; all steps {wasm_ns / 1e9:.2f} s wall, "
          f"{wasm_cpu_ns / 1e9:.2f} s CPU ({wasm_ns / max(calls, 1) / 1e6:.1f} ms per batch through the three steps); "
          f"{wasm_cpu_ns / 1e9 / last['cpu_s'] * 100:.0f}% of the contender's CPU (same run), "
          f"{wasm_cpu_ns / max(s['task_cpu_ns'], 1) * 100:.0f}% of the Python tasks' CPU")
    print(f"- Outputs: Spark + Sluice{' and Ray + Sluice equal' if a.ray else ' equals'} `sluice run` row for row "
          f"(ma20 included); Spark native's ma20 within {diff:.1e}")
    (a.work / "spark-results.json").write_text(json.dumps(results, indent=1))


main()
