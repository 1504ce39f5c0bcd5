"""The Kafka benchmark's driver (run.sh starts the broker and builds the binaries)."""
import json
import os
import statistics
import subprocess
import threading
import time

SLUICE = os.environ["SLUICE_BIN"]
KBENCH = os.environ["KBENCH"]
BROKER = os.environ["BROKER"]
WORK = os.environ["WORK"]
RECORDS = int(os.environ["RECORDS"])
STREAM_SECONDS = int(os.environ.get("STREAM_SECONDS", "120"))
STREAM_RATE = int(os.environ.get("STREAM_RATE", "5000"))
# The session gap: 30m keeps every user's session open for a whole run (the worst case for the
# keyed state each unit commits: a key's open session), 1s closes most after an event or two.
GAP = os.environ.get("SESSION_GAP", "30m")

PIPELINE = """pipeline: kbench
sources:
  events:
    kind: kafka
    brokers: {broker}
    topic: {topic}
    max_rows: {max_rows}
    max_wait: {max_wait}
    format: {{jsonl: {{columns: {{id: int64, user: utf8, ts: int64, action: utf8}}}}}}
    metadata: {{partition: kafka_partition, offset: kafka_offset}}
    watch: {{poll_interval: 100ms}}
steps:
  - plugin: sessionize
    config: {{keys: [user], time: ts, gap: {gap}}}
sink:
  lake: lake
  dataset: events
settings: {{workers: 2}}
"""


def timed(cmd, cwd=None):
    """Run `cmd` under /usr/bin/time: wall seconds, peak RSS (MiB), stdout."""
    t = time.monotonic()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t
    if out.returncode != 0:
        raise SystemExit(f"{cmd} failed: {out.stderr[-2000:]}")
    rss = int(out.stderr.strip().splitlines()[-1]) / 1024
    return wall, rss, out.stdout


def write_pipeline(d, topic, max_rows, max_wait):
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "p.yaml")
    with open(p, "w") as f:
        f.write(PIPELINE.format(broker=BROKER, topic=topic, max_rows=max_rows, max_wait=max_wait, gap=GAP))
    return p


def create_topic(name):
    subprocess.run([os.environ["TANSU"], "topic", "create", name, "--partitions", "3", "--broker", f"tcp://{BROKER}"],
                   check=True, capture_output=True)


def throughput():
    log = os.path.join(WORK, "produce-batch.csv")
    wall, _, out = timed([KBENCH, "produce", BROKER, "events", "3", str(RECORDS), "0", log])
    print("produce:", out.strip(), flush=True)
    rows = []
    for i in range(2):
        wall, rss, out = timed([KBENCH, "consume", BROKER, "events", str(RECORDS)])
        rows.append(("floor: kbench consume (read, discard)", wall, rss))
        d = os.path.join(WORK, f"run{i}")
        p = write_pipeline(d, "events", 50000, "1s")
        wall, rss, _ = timed([SLUICE, "run", p, "-q"], cwd=d)
        rows.append(("sluice run (jsonl, sessionize, lake)", wall, rss))
        q = subprocess.run([SLUICE, "query", "--lake", os.path.join(d, "lake"), "--format", "json",
                            "SELECT count(*) AS n, count(DISTINCT id) AS d FROM events"], capture_output=True, text=True)
        got = json.loads(q.stdout.splitlines()[0])
        assert got["n"] == RECORDS and got["d"] == RECORDS, got
    by = {}
    for name, wall, rss in rows:
        by.setdefault(name, []).append((wall, rss))
    print(f"\nthroughput, {RECORDS} records on 3 partitions (median of 2):")
    for name, runs in by.items():
        wall = statistics.median(w for w, _ in runs)
        rss = max(r for _, r in runs)
        print(f"  {name:42s} {wall:7.2f} s  {RECORDS / wall:10,.0f} records/s  peak RSS {rss:7.1f} MiB")


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


def latency():
    create_topic("stream")
    d = os.path.join(WORK, "watch")
    p = write_pipeline(d, "stream", 10000, "200ms")
    watch = subprocess.Popen([SLUICE, "--log-format", "json", "watch", p], cwd=d, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(WORK, "watch.log"), "w"))
    rss = []
    seen = []  # (time_ms, {partition: max offset})
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            r = rss_mib(watch.pid)
            if r is not None:
                rss.append((time.monotonic(), r))
            stop.wait(1.0)

    def probe():
        lake = os.path.join(d, "lake")
        while not stop.is_set():
            t0 = time.time()
            q = subprocess.run([SLUICE, "query", "--lake", lake, "--format", "json",
                                "SELECT kafka_partition AS p, max(kafka_offset) AS o FROM events GROUP BY 1"],
                               capture_output=True, text=True)
            if q.returncode == 0:
                got = {}
                for line in q.stdout.splitlines():
                    if line.strip():
                        r = json.loads(line)
                        got[r["p"]] = r["o"]
                # The query saw the catalog as it was when it opened it: stamp with the start.
                seen.append((t0 * 1000, got))
            stop.wait(max(0.0, 0.2 - (time.time() - t0)))

    threads = [threading.Thread(target=sample), threading.Thread(target=probe)]
    for t in threads:
        t.start()
    time.sleep(2)
    total = STREAM_RATE * STREAM_SECONDS
    log = os.path.join(WORK, "produce-stream.csv")
    subprocess.run([KBENCH, "produce", BROKER, "stream", "3", str(total), str(STREAM_RATE), log], check=True,
                   capture_output=True)
    deadline = time.time() + 60
    batches = [tuple(int(x) for x in l.split(",")) for l in open(log)]
    last = {}
    for p, off, n, _ in batches:
        last[p] = max(last.get(p, -1), off + n - 1)
    while time.time() < deadline:
        if seen and all(seen[-1][1].get(p, -1) >= o for p, o in last.items()):
            break
        time.sleep(0.2)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    watch.terminate()
    watch.wait(timeout=60)
    lat = []
    for p, off, n, ms in batches:
        visible = next((t for t, got in seen if got.get(p, -1) >= off + n - 1), None)
        if visible is None:
            raise SystemExit(f"partition {p} offsets {off}..{off + n - 1} never became queryable")
        lat.extend([visible - ms] * n)
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
    print(f"\nlatency, produce to queryable ({STREAM_RATE} records/s for {STREAM_SECONDS} s, session gap {GAP}, "
          f"watch polling every 100 ms, max_wait 200ms, probe every 200 ms):")
    print(f"  p50 {pct(0.5):.2f} s   p99 {pct(0.99):.2f} s   max {lat[-1] / 1000:.2f} s")
    if rss:
        t0 = rss[0][0]
        first = [r for t, r in rss if t - t0 < 30]
        lastw = [r for t, r in rss if t - t0 > STREAM_SECONDS - 30]
        print(f"  watch RSS: first 30 s max {max(first):.1f} MiB, last 30 s max {max(lastw or first):.1f} MiB, "
              f"overall max {max(r for _, r in rss):.1f} MiB ({len(rss)} samples)")
        by_minute = {}
        for t, r in rss:
            m = int((t - t0) // 60)
            by_minute[m] = max(by_minute.get(m, 0), r)
        print("  watch RSS, max per minute (MiB): " + ", ".join(f"{r:.0f}" for _, r in sorted(by_minute.items())))
    # What the lake keeps for the stream: one ledger line per unit, keyed state per key.
    lake = os.path.join(d, "lake")
    ledger = os.path.join(lake, "_sluice", "ledger.jsonl")
    units = sum(1 for line in open(ledger) if '"unit_id"' in line)
    state = os.path.join(lake, "_sluice", "state", "events")
    tails = len(os.listdir(state)) if os.path.isdir(state) else 0
    print(f"  lake after the watch: ledger {os.path.getsize(ledger) / 2**20:.1f} MiB in {units} unit lines, "
          f"{tails} tails files")


if __name__ == "__main__":
    if os.environ.get("ONLY") != "latency":
        throughput()
    latency()
