"""Attach latency vs size, Python: evshm against the same IPC bytes over a Unix socket.

For every recording of the plan, side by side in one process and interleaved in rounds:

- ``evshm``: ``evshm.Client.open(path)`` on a warm connection to a cached recording, then
  zero-copy numpy views of the four columns;
- ``bytecopy``: the same bytes from ``evshm-bytecopy`` received into one aligned buffer,
  ``pa.ipc.open_stream(...).read_all()`` in place, numpy views of the four columns.

Each operation ends with usable numpy columns; what it returns is dropped (lease released,
memory freed) outside the timed region. The driver's evshmd serves each recording as one
chunk (one extent of an arena, which the process mapped once, at its first open); then
the 1 GB recording (the largest, in a quick run) is opened whole from a second evshmd
with the default chunk size as well, where every chunk is an extent of its own.
Writes ``attach_python.json``.

Usage: python attach.py PLAN
"""

from __future__ import annotations

import gc
import json
import mmap
import os
import socket
import sys
import time
from typing import Any, Callable, Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.ipc

import evshm
from common import BytecopyClient, Evshmd, load_plan, numpy_columns, summary, write_result

ROUNDS = 5


def main() -> None:
    plan = load_plan(sys.argv[1])
    client = evshm.Client(plan["socket"])
    bytecopy = BytecopyClient(plan["bytecopy_socket"])
    budget = plan["measure_s"]
    results: List[Dict[str, Any]] = []
    for rec in plan["attach"]:
        path = rec["path"]

        def evshm_op() -> Any:
            r = client.open(path)
            return r, numpy_columns(r.table)

        def bytecopy_op() -> Any:
            table = bytecopy.fetch(path)
            return table, numpy_columns(table)

        # Both paths must read the same events before either is timed.
        with client.open(path) as r:
            mine = r.table
            copied = bytecopy.fetch(path)
            if mine.num_rows != rec["events"] or not copied.equals(mine):
                raise SystemExit(f"attach.py: {path}: the byte copy differs from the extent")
            del copied, mine

        ops: Dict[str, Callable[[], Any]] = {"evshm": evshm_op, "bytecopy": bytecopy_op}
        counts = {name: plan_count(op, budget) for name, op in ops.items()}
        samples: Dict[str, List[float]] = {name: [] for name in ops}
        for _ in range(ROUNDS):
            for name, op in ops.items():
                samples[name].extend(run(op, max(1, counts[name] // ROUNDS)))
        row = {"label": rec["label"], "path": path, "events": rec["events"],
               **{name: summary(s) for name, s in samples.items()}}
        print(f"attach.py {rec['label']:>8}: evshm p50 {row['evshm']['p50_us']:.1f} us, "
              f"bytecopy p50 {row['bytecopy']['p50_us']:.1f} us", flush=True)
        results.append(row)
    parts = python_parts(plan, client, plan["attach"][len(plan["attach"]) // 2]["path"])
    # The server keeps a copy of the last recording it served: leave it the smallest.
    bytecopy.fetch(plan["attach"][0]["path"])
    chunked = chunked_attach(plan, client)
    write_result(plan, "attach_python.json",
                 {"sizes": results, "parts": parts, "chunked": chunked})
    bytecopy.close()
    client.close()


def python_parts(plan: Dict[str, Any], client: "evshm.Client", path: str) -> Dict[str, Any]:
    """The pieces of a Python open, each timed alone: the whole ``Client.open`` + numpy
    views, then the same steps redone with the standard library and pyarrow only (the
    ``open`` round trip on a raw socket, the zero-copy buffer of the extent in the
    arena's mapping, ``open_stream().read_all()``, the numpy views). What the client adds
    is the difference. The read-only map of the arena (``mmap_arena``) is timed too,
    though a warm open does not make it: a process maps each arena once, at the first
    open that names it."""
    with client.open(path) as r:
        (chunk,) = r.chunks  # one chunk: the driver's evshmd serves every recording whole
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(plan["socket"])
    lines = sock.makefile("rb")

    def exchange(request: Dict[str, Any]) -> Dict[str, Any]:
        sock.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(lines.readline())

    exchange({"op": "hello", "version": evshm.PROTOCOL_VERSION})
    leases: List[int] = []
    first = exchange({"op": "open", "path": path})
    leases.append(first["lease"])
    arenas = {arena["name"]: arena for arena in first["arenas"]}
    arena = arenas[chunk.extent.arena]
    if arena.get("path") is None:  # a sealed daemon passes descriptors: nothing to map by name
        sock.close()
        return {}
    arena_path, arena_size = arena["path"], arena["size"]
    offset, size = chunk.extent.offset, chunk.extent.size

    def request() -> None:
        leases.append(exchange({"op": "open", "path": path})["lease"])

    def map_arena() -> mmap.mmap:
        fd = os.open(arena_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fstat(fd)
            return mmap.mmap(fd, arena_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        finally:
            os.close(fd)

    mapping = map_arena()
    whole = pa.py_buffer(memoryview(mapping))

    def stream() -> pa.Buffer:
        return whole.slice(offset, size)

    def read_table() -> Any:
        return pa.ipc.open_stream(stream()).read_all()

    table = read_table()
    ops: Dict[str, Callable[[], Any]] = {
        "client_open_numpy": lambda: (lambda r: (r, numpy_columns(r.table)))(client.open(path)),
        "raw_open_request": request,
        "mmap_arena": map_arena,
        "extent_buffer": stream,
        "open_stream_read_all": read_table,
        "numpy_views": lambda: numpy_columns(table),
    }
    out = {}
    for name, op in ops.items():
        run(op, 50)
        out[name] = summary(run(op, 3000))
        for lease in leases:
            exchange({"op": "release", "lease": lease})
        leases.clear()
    del table
    sock.close()
    return out


def chunked_attach(plan: Dict[str, Any], client: "evshm.Client") -> Dict[str, Any]:
    """A whole-file open of a recording served in several chunks: a second evshmd on the
    same root with the default ``--chunk-events``, and the driver's (one chunk per
    recording), side by side. Each open ends with the table (one Arrow chunk per
    extent, no copy); on the chunked daemon also with numpy columns, which are then
    concatenations of the chunks (a copy)."""
    rec = next((r for r in plan["attach"] if r["label"] == "1 GB"), plan["attach"][-1])
    path = rec["path"]
    socket_path = os.path.join(plan["work"], "attach-chunked.sock")
    with Evshmd(plan["evshmd"], plan["root"], socket_path) as daemon:
        chunked = evshm.Client(daemon.socket)
        with chunked.open(path) as r:  # the decode, untimed
            chunks = len(r.chunks)
            if r.rows != rec["events"]:
                raise SystemExit(f"attach.py: {path}: {r.rows} rows in chunks")
        ops: Dict[str, Callable[[], Any]] = {
            "one_chunk_table": lambda: (lambda r: (r, r.table))(client.open(path)),
            "chunked_table": lambda: (lambda r: (r, r.table))(chunked.open(path)),
            "chunked_numpy": lambda: (lambda r: (r, r.numpy()))(chunked.open(path)),
        }
        counts = {name: plan_count(op, plan["measure_s"]) for name, op in ops.items()}
        samples: Dict[str, List[float]] = {name: [] for name in ops}
        for _ in range(ROUNDS):
            for name, op in ops.items():
                samples[name].extend(run(op, max(1, counts[name] // ROUNDS)))
        chunked.close()
    out = {"label": rec["label"], "path": path, "events": rec["events"], "chunks": chunks,
           **{name: summary(s) for name, s in samples.items()}}
    print(f"attach.py {rec['label']} in {chunks} chunks: table p50 "
          f"{out['chunked_table']['p50_us']:.1f} us, one chunk "
          f"{out['one_chunk_table']['p50_us']:.1f} us", flush=True)
    return out


def plan_count(op: Callable[[], Any], budget: float) -> int:
    """How many runs fit in ``budget`` seconds (at least 10, at most 20,000), after
    three untimed warm-up runs."""
    run(op, 3)
    started = time.perf_counter()
    run(op, 3)
    each = (time.perf_counter() - started) / 3
    return int(min(20_000, max(10, budget / max(each, 1e-9))))


def run(op: Callable[[], Any], n: int) -> List[float]:
    """Time ``op`` ``n`` times; each result is dropped outside the timed region."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        result = op()
        took = time.perf_counter() - started
        del result
        out.append(took)
    gc.collect()
    return out


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
