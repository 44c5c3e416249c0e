"""A fake evshmd behind a fake socket that returns at most 5 bytes per recv.

Requests are answered in-process (redis-py's ``MockSocket`` idea), so the client's
framing, lease bookkeeping and error handling are tested without a daemon. Segments are
ordinary files holding an Arrow IPC stream.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pyarrow as pa
import pyarrow.ipc
import pytest

# pyproject.toml puts src/ on the path for `pytest` run in python_client/; this covers
# runs from elsewhere (e.g. the repository root).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from evshm import _client  # noqa: E402


def events_table(rows: int = 1000) -> pa.Table:
    return pa.table({
        "t": pa.array(range(rows), pa.int64()),
        "x": pa.array([i % 640 for i in range(rows)], pa.int16()),
        "y": pa.array([i % 480 for i in range(rows)], pa.int16()),
        "p": pa.array([i % 2 for i in range(rows)], pa.int8()),
    })


def write_segment(path: str, rows: int = 1000, table: Optional[pa.Table] = None) -> int:
    """Write an Arrow IPC stream of one record batch (``events_table(rows)`` by default)."""
    if table is None:
        table = events_table(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


class FakeSocket:
    """Just enough of a socket: replies come back at most ``chunk`` bytes per recv."""

    def __init__(self, daemon: "FakeDaemon", chunk: int = 5) -> None:
        self.daemon = daemon
        self.chunk = chunk
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.requests: List[Dict[str, Any]] = []
        self.closed = False
        self.shutdown_called = False
        self.leases: set = set()
        self.on_recv: Optional[Callable[[], None]] = None  # run once, mid-request
        self.recv_error: Optional[BaseException] = None

    def settimeout(self, timeout: Optional[float]) -> None:
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
            self.outbox += self.daemon.answer(self, request)

    def recvmsg(self, size: int, ancbufsize: int = 0) -> Tuple[bytes, list, int, None]:
        """What ``socket.recv_fds`` calls: the bytes of ``recv``, never a descriptor."""
        return self.recv(size), [], 0, None

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
        self.daemon.leases_ended(self)

    def shutdown(self, how: int) -> None:
        self.shutdown_called = True

    def ops(self) -> List[str]:
        return [r["op"] for r in self.requests]


class FakeDaemon:
    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.sockets: List[FakeSocket] = []
        self.next_lease = 1
        self.overrides: Dict[str, bytes] = {}  # op -> raw reply line(s)
        self.segment = str(tmp_path / "evshm-v1-fake")
        self.segment_size = write_segment(self.segment)
        self.rows = 1000
        self.served = 0

    def serve(self, table: pa.Table) -> None:
        """Serve ``table`` (one record batch) as the segment of every later open.

        It goes to a new file: rewriting a mapped file would make the old mappings fault.
        """
        self.served += 1
        self.segment = str(self.tmp_path / f"evshm-v1-fake-{self.served}")
        self.segment_size = write_segment(self.segment, table=table)
        self.rows = table.num_rows

    def connect(self, path: str, timeout: Optional[float]) -> FakeSocket:
        sock = FakeSocket(self)
        self.sockets.append(sock)
        return sock

    def leases_ended(self, sock: FakeSocket) -> None:
        sock.leases.clear()

    @property
    def leases(self) -> int:
        return sum(len(s.leases) for s in self.sockets if not s.closed)

    def answer(self, sock: FakeSocket, request: Dict[str, Any]) -> bytes:
        op = request["op"]
        if op in self.overrides:
            return self.overrides[op]
        if op == "hello":
            reply: Dict[str, Any] = {"ok": True, "version": 1, "server": "fake/1"}
        elif op == "open":
            if request["path"] == "missing.raw":
                reply = {"ok": False, "error": {"code": "not_found",
                                                "message": "no root holds missing.raw"}}
            else:
                lease, self.next_lease = self.next_lease, self.next_lease + 1
                sock.leases.add(lease)
                reply = {"ok": True, "lease": lease, "path": request["path"],
                         "segment": {"name": "evshm-v1-fake", "path": self.segment,
                                     "size": self.segment_size},
                         "rows": self.rows, "format": "evt3", "width": 640, "height": 480,
                         "cached": lease > 1}
        elif op == "release":
            if request["lease"] in sock.leases:
                sock.leases.discard(request["lease"])
                reply = {"ok": True}
            else:
                reply = {"ok": False, "error": {"code": "unknown_lease",
                                                "message": f"lease {request['lease']}"}}
        elif op == "stats":
            reply = {"ok": True, "leases": self.leases, "segments": 1}
        elif op == "list":
            reply = {"ok": True, "recordings": [
                {"path": "a.raw", "format": "evt3", "size": 12, "decoded": True}]}
        else:
            reply = {"ok": False, "error": {"code": "unknown_op", "message": op}}
        return json.dumps(reply).encode() + b"\n"


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Iterator[FakeDaemon]:
    daemon = FakeDaemon(tmp_path)
    monkeypatch.setattr(_client, "_connect", daemon.connect)
    yield daemon
    gc.collect()
