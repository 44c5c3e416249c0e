"""A/B of evshmd's cold open with and without provisioned pages (``--provision``), beside
the peers, in one run.

For each 33.6 M-event recording (DAT, EVT2, EVT3 written by ``evshm generate``), each
repetition starts a fresh evshmd twice: with its default ``--provision`` (1 GiB of free
pages of its arenas allocated and mapped ahead, waited for until they stop growing, as
for a daemon started a while before; the decode then writes into pages that cost no
allocation and no page fault) and with ``--provision 0`` (every page of the decode's
extents allocated and faulted in during the open); each opens the recording cold from
Python (``Client.open`` and the table read); then the peers decode the same file into
numpy arrays. Memory is touched first (this VM backs guest memory lazily). Medians;
ratio = peer / evshmd. The provisioned bytes each daemon had made before its open are
printed too (they should be the default's 1 GiB, at most a quarter of the budget).

Usage: python provision_ab.py EVSHMD EVSHM_CLI WORKDIR [REPS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import evshm
from common import Evshmd

EVENTS = 1 << 25
FILES = {"dat": "ab.dat", "evt2": "ab-evt2.raw", "evt3": "ab-evt3.raw"}


def touch_memory(gib: int = 6) -> None:
    """Write and free a file in /dev/shm, so that the runs find recycled guest memory."""
    block = b"\1" * (64 << 20)
    with open("/dev/shm/evshm-ab-touch", "wb") as f:
        for _ in range(gib * 16):
            f.write(block)
    os.unlink("/dev/shm/evshm-ab-touch")


def peers(fmt: str) -> Dict[str, Callable[[str], object]]:
    """The fastest correct peers of docs/BENCHMARKS.md §4: expelliarmus for DAT and EVT2
    (its EVT3 output disagrees with the reference, so the `evt3` package there)."""
    if fmt == "evt3":
        import evt3

        return {"evt3": evt3.decode_file}
    from expelliarmus import Wizard

    return {"expelliarmus": lambda path: Wizard(encoding=fmt, buff_size=BUFFERS[fmt]).read(path)}


#: expelliarmus's read buffer per format: the fastest of 4 KiB, 64 KiB and 1 MiB, found by
#: :func:`tune` before the runs (as benches/python/peers.py does).
BUFFERS: Dict[str, int] = {}


def tune(fmt: str, path: str) -> None:
    """Pick expelliarmus's fastest read buffer for ``fmt``, so that it runs at its best."""
    from expelliarmus import Wizard

    times = {}
    for size in (4096, 65536, 1 << 20):
        started = time.perf_counter()
        Wizard(encoding=fmt, buff_size=size).read(path)
        times[size] = time.perf_counter() - started
    BUFFERS[fmt] = min(times, key=times.__getitem__)


def cold_open(binary: str, root: str, sock: str, name: str,
              args: List[str]) -> Tuple[float, int]:
    """The cold open's time, and the bytes the daemon had provisioned before it."""
    with Evshmd(binary, root, sock, args=args) as daemon:
        provisioned = daemon.wait_provisioned()
        with evshm.Client(sock) as client:
            client.stats()  # connected before the clock starts
            started = time.perf_counter()
            with client.open(name) as rec:
                rec.table  # noqa: B018 - the open ends with the table usable
            return time.perf_counter() - started, provisioned


def main() -> None:
    binary, cli, work = sys.argv[1:4]
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    root = os.path.join(work, "root")
    os.makedirs(root, exist_ok=True)
    for fmt, name in FILES.items():
        path = os.path.join(root, name)
        if not os.path.exists(path):
            subprocess.run([cli, "generate", path, "--format", fmt, "--events", str(EVENTS)],
                           check=True, capture_output=True)
    touch_memory()
    print("| format | evshmd, provisioned | evshmd, --provision 0 | peer | "
          "ratio provisioned | ratio without | provisioned before the open |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for fmt, name in FILES.items():
        path = os.path.join(root, name)
        if fmt != "evt3":
            tune(fmt, path)
        times: Dict[str, List[float]] = {"provisioned": [], "none": []}
        made: List[int] = []
        readers = peers(fmt)
        for peer in readers:
            times[peer] = []
        for rep in range(reps):
            for mode, args in (("provisioned", []), ("none", ["--provision", "0"])):
                sock = os.path.join(work, f"{fmt}-{rep}-{mode}.sock")
                took, provisioned = cold_open(binary, root, sock, name, args)
                times[mode].append(took)
                if mode == "provisioned":
                    made.append(provisioned)
            for peer, read in readers.items():
                started = time.perf_counter()
                read(path)
                times[peer].append(time.perf_counter() - started)
        med = {k: statistics.median(v) for k, v in times.items()}
        best = min(readers, key=lambda p: med[p])
        print(f"| {fmt} | {med['provisioned'] * 1e3:.0f} ms | {med['none'] * 1e3:.0f} ms | "
              f"{best} {med[best] * 1e3:.0f} ms | {med[best] / med['provisioned']:.2f}x | "
              f"{med[best] / med['none']:.2f}x | {min(made) / 2**20:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
