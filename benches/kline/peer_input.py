"""What the peers of the kline reference job share: their command line, and the CSV files they
read.

Usage of a peer: PEER.py DATA_DIR OUT_DIR [--zip] [--threads N]

With --zip, neither peer reads zip archives (DuckDB's zipfs extension is a community download),
so the archives are first extracted to OUT_DIR.unzipped with Python's zipfile on as many threads
as the peer uses; that time is part of the peer's run, as it would be for a user.
"""

import argparse
import concurrent.futures
import contextlib
import os
import pathlib
import shutil
import zipfile
from collections.abc import Iterator


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--zip", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    a.data, a.out = pathlib.Path(a.data).resolve(), pathlib.Path(a.out).resolve()
    return a


def extract(data: pathlib.Path, dest: pathlib.Path, threads: int) -> None:
    zips = sorted(data.rglob("*.zip"))
    for d in {z.parent.name for z in zips}:
        (dest / d).mkdir(parents=True, exist_ok=True)

    def one(z: pathlib.Path) -> None:
        with zipfile.ZipFile(z) as f:
            f.extractall(dest / z.parent.name)

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, zips))


@contextlib.contextmanager
def csv_glob(a: argparse.Namespace) -> Iterator[str]:
    """The glob of the CSV files to read: the data's, or (--zip) the extracted files', which are
    deleted when the peer is done."""
    if not a.zip:
        yield f"{a.data}/**/*.csv"
        return
    unzipped = a.out.with_name(a.out.name + ".unzipped")
    extract(a.data, unzipped, a.threads)
    try:
        yield f"{unzipped}/**/*.csv"
    finally:
        shutil.rmtree(unzipped)
