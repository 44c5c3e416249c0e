"""A fake evshmd behind a fake socket that returns at most 5 bytes per recv.

Requests are answered in-process (redis-py's ``MockSocket`` idea), so the client's
framing, lease bookkeeping and error handling are tested without a daemon. It speaks
protocol 3: a recording is served as chunks, each an extent (a page-aligned run) of an
arena file (or, sealed, of a memfd passed as a descriptor once per connection) holding an
Arrow IPC stream of one record batch, and windows are selected by the documented
running-maximum rule.
"""

from __future__ import annotations

import array
import fcntl
import itertools
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.ipc

# pyproject.toml puts src/ on the path for `pytest` run in python_client/; this covers
# runs from elsewhere (e.g. the repository root).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import evshm

#: Schema metadata of the fake recordings, as the daemon writes it.
METADATA = {"evshm.format": "evt3", "evshm.geometry": "header", "evshm.height": "480",
            "evshm.source": "a.raw", "evshm.width": "640"}


def events_table(rows: int = 1000) -> pa.Table:
    """``rows`` events with ``t`` = 0, 1, 2..., in the daemon's schema (non-nullable
    columns, :data:`METADATA`)."""
    return with_daemon_schema(pa.table({
        "t": pa.array(range(rows), pa.int64()),
        "x": pa.array([i % 640 for i in range(rows)], pa.int16()),
        "y": pa.array([i % 480 for i in range(rows)], pa.int16()),
        "p": pa.array([i % 2 for i in range(rows)], pa.int8()),
    }))


def with_daemon_schema(table: pa.Table) -> pa.Table:
    """``table`` with non-nullable fields and :data:`METADATA`, as evshmd declares them."""
    metadata: dict[bytes | str, bytes | str] = {k: v for k, v in METADATA.items()}
    schema = pa.schema([field.with_nullable(False) for field in table.schema],
                       metadata=metadata)
    return table.cast(schema)


def ipc_stream(table: pa.Table) -> bytes:
    """``table`` as an Arrow IPC stream of one record batch."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_batch(table.combine_chunks().to_batches()[0] if table.num_rows
                           else pa.RecordBatch.from_pylist([], schema=table.schema))
    return bytes(sink.getvalue().to_pybytes())


#: Extents are whole pages of their arena.
PAGE = 4096

#: Arenas made by every fake daemon of the process: their names must be unique, as the
#: client keeps its mappings by name.
_ARENAS = itertools.count(1)


@dataclass
class FakeChunk:
    """A chunk the fake daemon serves: where its stream lies in the arena, and its rows."""

    offset: int
    size: int
    rows: int


def window_rows(t: list[int], t0: int, t1: int) -> tuple[int, int]:
    """The documented rule, spelled out: the first rows whose running maximum reaches
    ``t0`` and ``t1``."""
    lo = hi = len(t)
    running = None
    for row, value in enumerate(t):
        running = value if running is None else max(running, value)
        if running >= t0 and lo == len(t):
            lo = row
        if running >= t1:
            hi = row
            break
    return lo, hi


def assert_inside(rec: evshm.Recording, address: int, nbytes: int) -> None:
    """The bytes at ``address`` lie inside one of ``rec``'s streams, in an arena's
    mapping."""
    ranges = [(b.address, b.address + b.size) for b in rec.stream_buffers]
    assert any(start <= address and address + nbytes <= end for start, end in ranges), (
        hex(address), [(hex(start), hex(end)) for start, end in ranges])


def mappings_of(path: str) -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for line in maps if line.rstrip("\n").endswith(path))


def jittery_table(rows: int = 3000) -> pa.Table:
    rng = np.random.default_rng(11)
    t = np.cumsum(rng.integers(0, 3, rows)) + 5_000
    t = np.where(rng.random(rows) < 0.1, t - rng.integers(0, 4, rows), t)
    assert (np.diff(t) < 0).any()
    return with_daemon_schema(pa.table({
        "t": pa.array(t.astype(np.int64)),
        "x": pa.array(rng.integers(0, 640, rows).astype(np.int16)),
        "y": pa.array(rng.integers(0, 480, rows).astype(np.int16)),
        "p": pa.array(rng.integers(0, 2, rows).astype(np.int8)),
    }))


class FakeSocket:
    """Just enough of a socket: replies come back at most ``chunk`` bytes per recv,
    with at most ``fds_per_recv`` of the reply's descriptors (sealed mode)."""

    def __init__(self, daemon: FakeDaemon, chunk: int = 5) -> None:
        self.daemon = daemon
        self.chunk = chunk
        self.fds_per_recv = 2
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.out_fds: list[int] = []
        self.requests: list[dict[str, Any]] = []
        self.closed = False
        self.shutdown_called = False
        self.leases: set[int] = set()
        self.told: set[str] = set()  # arenas named on this connection
        self.on_recv: Callable[[], None] | None = None  # run once, mid-request
        self.recv_error: BaseException | None = None
        self.recv_flags = 0

    def settimeout(self, timeout: float | None) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        assert not self.closed, "send on a closed socket"
        assert not self.outbox, "request sent before the previous reply was read"
        self.inbox += data
        while b"\n" in self.inbox:
            line, _, rest = bytes(self.inbox).partition(b"\n")
            self.inbox = bytearray(rest)
            request = json.loads(line)
            self.requests.append(request)
            reply, fds = self.daemon.answer(self, request)
            self.outbox += reply
            # What SCM_RIGHTS does: the receiver gets descriptors of its own.
            self.out_fds += [os.dup(fd) for fd in fds]

    def recvmsg(self, size: int, ancbufsize: int = 0,
                ) -> tuple[bytes, list[tuple[int, int, bytes]], int, None]:
        """What ``socket.recv_fds`` calls: the bytes of ``recv`` and some descriptors."""
        data = self.recv(size)
        fds, self.out_fds = (self.out_fds[:self.fds_per_recv],
                             self.out_fds[self.fds_per_recv:])
        ancdata = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
                   if fds else [])
        return data, ancdata, self.recv_flags, None

    def recv(self, size: int) -> bytes:
        assert not self.closed, "recv on a closed socket"
        if self.on_recv is not None:
            callback, self.on_recv = self.on_recv, None
            callback()
        if self.recv_error is not None:
            raise self.recv_error
        data = bytes(self.outbox[:min(size, self.chunk)])
        del self.outbox[:len(data)]
        return data  # b"" when nothing is queued: the daemon hung up

    def close(self) -> None:
        self.closed = True
        for fd in self.out_fds:
            os.close(fd)
        self.out_fds = []
        self.daemon.leases_ended(self)

    def shutdown(self, how: int) -> None:
        self.shutdown_called = True

    def ops(self) -> list[str]:
        return [r["op"] for r in self.requests]


class FakeDaemon:
    """Serves one recording (whatever path is asked for, but ``missing.raw``) as chunks,
    each an extent of one arena file, or of a sealed memfd when ``sealed``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.sockets: list[FakeSocket] = []
        self.next_lease = 1
        self.overrides: dict[str, bytes] = {}  # op -> raw reply line(s)
        self.sealed = False
        self.served = 0
        self.table = events_table()
        self.chunks: list[FakeChunk] = []
        self.arena_name = ""
        self.arena_path = ""
        self.arena_size = 0
        self.memfd: int | None = None  # sealed mode: the daemon's own descriptor
        self.gone: list[str] = []  # arenas dropped, for the next replies
        self.serve(self.table)

    def serve(self, table: pa.Table, chunk_rows: int | None = None,
              sealed: bool = False) -> None:
        """Serve ``table`` in chunks of ``chunk_rows`` rows (one chunk by default) for
        every later open, from a new arena file, or a sealed memfd if ``sealed``.

        Each call makes a new arena, and says the previous one is gone: rewriting a mapped
        file in place would change what earlier mappings read.
        """
        self.close_memfd()
        if self.arena_name:
            self.gone.append(self.arena_name)
        self.table = table
        self.sealed = sealed
        self.chunks = []
        self.served += 1
        self.arena_name = f"evshm-v2-fake-{os.getpid()}-{next(_ARENAS):020x}"
        self.arena_path = str(self.tmp_path / self.arena_name)
        data = bytearray()
        step = chunk_rows or max(table.num_rows, 1)
        for first in range(0, max(table.num_rows, 1), step):
            part = table.slice(first, step)
            stream = ipc_stream(part)
            self.chunks.append(FakeChunk(len(data), len(stream), part.num_rows))
            data += stream + bytes(-len(stream) % PAGE)
        data += bytes(PAGE)  # free space after the extents
        self.arena_size = len(data)
        if sealed:
            self.memfd = sealed_memfd(self.arena_name, bytes(data))
        else:
            Path(self.arena_path).write_bytes(bytes(data))

    @property
    def arenas(self) -> list[str]:
        """The arena files served now (empty in sealed mode)."""
        return [] if self.memfd is not None else [self.arena_path]

    def close_memfd(self) -> None:
        if self.memfd is not None:
            os.close(self.memfd)
            self.memfd = None

    def connect(self, path: str, timeout: float | None, explicit: bool = True) -> FakeSocket:
        sock = FakeSocket(self)
        self.sockets.append(sock)
        return sock

    def leases_ended(self, sock: FakeSocket) -> None:
        sock.leases.clear()

    @property
    def leases(self) -> int:
        return sum(len(s.leases) for s in self.sockets if not s.closed)

    def open_reply(self, sock: FakeSocket, request: dict[str, Any],
                   lease: int) -> tuple[dict[str, Any], list[int]]:
        """The reply to an ``open`` of the served recording, and its descriptors."""
        window = request.get("window")
        selected = []
        if window is None:
            selected = [(number, 0, chunk.rows) for number, chunk in enumerate(self.chunks)]
        else:
            times: list[int] = self.table.column("t").to_numpy().tolist()
            lo, hi = window_rows(times, *window)
            first = 0
            for number, chunk in enumerate(self.chunks):
                start, end = max(lo - first, 0), min(hi - first, chunk.rows)
                if start < end:
                    selected.append((number, start, end))
                first += chunk.rows
        chunks = []
        for number, start, end in selected:
            chunk = self.chunks[number]
            extent = {"arena": 0, "offset": chunk.offset, "size": chunk.size}
            chunks.append({"index": number, "extent": extent, "rows": chunk.rows,
                           "start": start, "end": end})
        arena: dict[str, Any] = {"name": self.arena_name, "size": self.arena_size}
        fds = []
        if self.memfd is None:
            arena["path"] = self.arena_path
        elif self.arena_name not in sock.told:
            arena["passed"] = True
            fds.append(self.memfd)
        if selected:
            sock.told.add(self.arena_name)
        reply: dict[str, Any] = {
            "ok": True, "lease": lease, "path": request["path"],
            "table": request.get("table", "events"),
            "arenas": [arena] if selected else [], "chunks": chunks,
            "rows": sum(end - start for _, start, end in selected),
            "format": "evt3", "width": 640, "height": 480,
            "schema": [{"name": f.name, "type": str(f.type)} for f in self.table.schema],
            "metadata": METADATA, "cached": lease > 1, "dropped": 0,
            "skipped": 0}
        if window is not None:
            reply["window"] = window
        gone = [name for name in self.gone if name in sock.told]
        if gone:
            reply["gone"] = gone
            sock.told.difference_update(gone)
        return reply, fds if selected else []

    def answer(self, sock: FakeSocket, request: dict[str, Any]) -> tuple[bytes, list[int]]:
        op = request["op"]
        if op in self.overrides:
            return self.overrides[op], []
        fds: list[int] = []
        if op == "hello":
            reply: dict[str, Any] = {"ok": True, "version": 3, "server": "fake/1",
                                     "roots": [str(self.tmp_path)]}
        elif op == "open":
            if request["path"] == "missing.raw":
                reply = {"ok": False, "error": {"code": "not_found",
                                                "message": "no root holds missing.raw"}}
            else:
                lease, self.next_lease = self.next_lease, self.next_lease + 1
                sock.leases.add(lease)
                reply, fds = self.open_reply(sock, request, lease)
        elif op == "release":
            if request["lease"] in sock.leases:
                sock.leases.discard(request["lease"])
                reply = {"ok": True}
            else:
                reply = {"ok": False, "error": {"code": "unknown_lease",
                                                "message": f"lease {request['lease']}"}}
        elif op == "stats":
            reply = {"ok": True, "leases": self.leases, "extents": 1}
        elif op == "evict":
            reply = {"ok": True, "evicted": 0, "bytes_evicted": 0}
        elif op == "list":
            reply = {"ok": True, "recordings": [
                {"path": "a.raw", "format": "evt3", "size": 12, "decoded": True}]}
        else:
            reply = {"ok": False, "error": {"code": "unknown_op", "message": op}}
        return json.dumps(reply).encode() + b"\n", fds


def sealed_memfd(name: str, data: bytes) -> int:
    """A memfd holding ``data``, sealed against writing, growing and shrinking (evshmd's
    own arenas are sealed against new writable mappings instead of all writes)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    return fd
