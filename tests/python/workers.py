"""Code that runs in child processes of the tests, and reading their memory back.

Kept in a module of its own so that ``spawn`` children can import it by name (they get
the parent's ``sys.path``). Nothing here imports torch at module level: the torch
helpers import it when called, in processes where it is installed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import evshm

# ----------------------------------------------------------------------- /proc


def _kb_fields(lines: list[str]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def mapping_memory(pid: int, path: str) -> dict[str, int]:
    """The ``/proc/PID/smaps`` counters (kB) of the mappings of ``path``, summed; empty
    when ``pid`` does not map it."""
    totals: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps") as smaps:
        block: list[str] = []
        inside = False
        for line in smaps:
            head = line.split(maxsplit=5)
            if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:  # a new mapping
                if inside:
                    for key, value in _kb_fields(block).items():
                        totals[key] = totals.get(key, 0) + value
                inside = len(head) == 6 and head[5].rstrip("\n") == path
                block = []
            else:
                block.append(line)
        if inside:
            for key, value in _kb_fields(block).items():
                totals[key] = totals.get(key, 0) + value
    return totals


def rollup(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup``: the process's memory counters (kB)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return _kb_fields(f.readlines())


def mappings_of(path: str, pid: str = "self") -> int:
    """How many lines of ``/proc/PID/maps`` map ``path``."""
    with open(f"/proc/{pid}/maps") as maps:
        return sum(1 for line in maps if line.rstrip("\n").endswith(path))


def assert_one_copy(read: int, resident: int, readers: dict[int, dict[str, int]],
                    others: dict[int, dict[str, int]],
                    rollups: dict[int, dict[str, int]], slack: int = 1 << 20) -> None:
    """The memory test: ``readers`` and ``others`` hold the /proc/PID/smaps counters of
    the arena's mapping in the readers and in the other processes that map it (evshmd
    among them), ``rollups`` the readers' /proc/PID/smaps_rollup, all taken while the
    readers held their mappings. ``read`` is the bytes of the extents each reader read
    whole, ``resident`` the bytes of the arena file's pages (its ``st_blocks``).

    Each reader maps the whole arena, but only the pages it read are resident in it:
    at least ``read`` bytes (Rss), none of them private (Private_*: the same pages are
    mapped by evshmd, which wrote them). If the pages are shared, the Pss of all the
    processes that map the arena adds up to one copy of its resident pages; a private
    copy in a reader would add up to more. PSS charges each page 1/k to each of the k
    processes mapping it; the kernel keeps it exact to well under a kB, and smaps rounds
    each figure down to a kB, so the sum of all mappers lands within 1% of the pages
    (which absorbs that rounding).
    """
    tolerance = 0.01 * resident
    for pid, mem in readers.items():
        assert mem.get("Rss", 0) * 1024 >= read - tolerance, (pid, mem, read)
        assert mem.get("Rss", 0) * 1024 <= resident + tolerance, (pid, mem, resident)
        assert mem.get("Private_Clean", 0) + mem.get("Private_Dirty", 0) == 0, (pid, mem)
    readers_pss = sum(mem["Pss"] for mem in readers.values()) * 1024
    everyone_pss = readers_pss + sum(mem.get("Pss", 0) for mem in others.values()) * 1024
    assert abs(everyone_pss - resident) <= tolerance, (everyone_pss, resident, readers,
                                                       others)
    assert readers_pss <= read + tolerance, (readers_pss, read)
    # The same seen in smaps_rollup: the arena is shared memory (tmpfs), so it is in
    # each reader's Pss_Shmem; their sum stays one copy plus ``slack`` bytes of other
    # shared memory (multiprocessing's semaphores, torch's batches in flight).
    if all("Pss_Shmem" in r for r in rollups.values()):
        for pid, r in rollups.items():
            assert r["Pss_Shmem"] >= readers[pid]["Pss"] - 4, (pid, r)
        shmem = sum(r["Pss_Shmem"] for r in rollups.values()) * 1024
        assert shmem <= read + tolerance + slack, (shmem, read)


# ----------------------------------------------------------------------- checksums


def checksum(rec: evshm.Recording) -> tuple[int, int, int, int, int]:
    """Rows and the sum of each column: enough to tell two reads of a window apart."""
    cols = rec.numpy()
    t, x, y, p = (int(cols[c].sum(dtype=np.int64)) for c in "txyp")
    return rec.rows, t, x, y, p


def read_share(windows: evshm.EventWindows, worker: int, workers: int, results: Any,
               done: Any) -> None:
    """A reader process: checksum windows ``worker::workers``, then read every event of
    every recording (so their whole extents are resident in this process), report, and
    keep everything mapped until ``done`` is set (or 120 s pass). Reports the extent of
    each recording's first chunk, and how many mappings of its arena this process has."""
    sums = {i: checksum(windows[i]) for i in range(worker, len(windows), workers)}
    whole = {path: checksum(windows.recording(path)) for path in windows.paths}
    extents = {path: windows.recording(path).chunks[0].extent for path in windows.paths}
    mapped = {extent.arena: mappings_of(f"/{extent.arena}") for extent in extents.values()}
    results.put((os.getpid(), sums, whole, extents, mapped))
    done.wait(120)
    windows.close()


def read_given_windows(windows: evshm.EventWindows, worker: int, workers: int,
                       results: Any) -> None:
    """A reader process over given windows (``windows=``): checksum windows
    ``worker::workers`` one at a time, and after each ask the daemon how much it holds;
    report the checksums and the largest ``bytes_resident`` seen, with the budget."""
    sums = {}
    resident = 0
    with evshm.Client(windows.socket_path) as observer:
        for i in range(worker, len(windows), workers):
            sums[i] = checksum(windows[i])
            resident = max(resident, observer.stats()["bytes_resident"])
        budget = observer.stats()["memory_budget"]
    windows.close()
    results.put((os.getpid(), sums, resident, budget))


# ----------------------------------------------------------------------- torch


class WindowProbe:
    """A transform for DataLoader tests: the histogram of a window, plus what the test
    checks the window against (its start, size and column sums, and the worker pid)."""

    def __call__(self, events: evshm.Events) -> dict[str, Any]:
        import torch

        from evshm.transforms import EventHistogram

        return {
            "histogram": torch.from_numpy(EventHistogram()(events)),
            "t0": events.t0,
            "rows": len(events),
            "t_sum": int(events.t.sum(dtype=np.int64)),
            "x_sum": int(events.x.sum(dtype=np.int64)),
            "pid": os.getpid(),
        }


def touch_everything(worker_id: int) -> None:
    """A ``worker_init_fn``: read every event of every recording of the dataset, so
    that all their pages are resident in this worker (the worst case for sharing)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    assert info is not None and info.id == worker_id
    for path in info.dataset.paths:  # type: ignore[attr-defined]
        checksum(info.dataset.recording(path))  # type: ignore[attr-defined]


class WindowName:
    """A target for DataLoader tests: the window itself, ``"path@t_start-t_end"``, so
    that a test can tell which window an item is."""

    def __call__(self, path: str, t_start: int, t_end: int) -> str:
        return f"{path}@{t_start}-{t_end}"


class FirstDraws:
    """A transform for DataLoader tests: the next draw of its random generator and the
    pid of the process that drew it, whatever the events."""

    def __init__(self, seed: int) -> None:
        from evshm.transforms import RandomTransform

        self.random = RandomTransform(seed)

    def __call__(self, events: evshm.Events) -> dict[str, Any]:
        return {"draw": float(self.random.generator().random()), "pid": os.getpid()}


def rows_at_default_socket(path: str) -> int:
    """Rows of ``path`` read through the daemon at the default socket (a spawned child
    inherits the test's ``$EVSHM_SOCKET``)."""
    with evshm.Client() as client, client.open(path) as rec:
        return rec.rows
