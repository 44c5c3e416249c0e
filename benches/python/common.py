"""Helpers shared by the Python benches: the plan, timing, PSS, the byte-copy client.

The driver (``benches/run.py``) writes one plan (JSON) per run and hands its path to every
bench; see ``evshm_benches::plan`` for its fields. Every bench writes its results as JSON
into the plan's ``out_dir``, and ``report.py`` turns them into ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.ipc

COLUMNS = ("t", "x", "y", "p")


def load_plan(path: str) -> Dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def write_result(plan: Dict[str, Any], name: str, value: Any) -> None:
    with open(os.path.join(plan["out_dir"], name), "w") as f:
        json.dump(value, f, indent=2)


def now() -> float:
    """CLOCK_MONOTONIC in seconds: one clock for every process on the machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def summary(seconds: Iterable[float]) -> Optional[Dict[str, float]]:
    """Percentiles in microseconds (numpy's linear interpolation, as the Rust side)."""
    us = np.asarray(list(seconds), dtype=np.float64) * 1e6
    if us.size == 0:
        return None
    q = np.percentile(us, [50, 90, 99, 99.9])
    return {"n": int(us.size), "min_us": float(us.min()), "p50_us": float(q[0]),
            "p90_us": float(q[1]), "p99_us": float(q[2]), "p999_us": float(q[3]),
            "max_us": float(us.max()), "mean_us": float(us.mean())}


def smaps_rollup(pid: int) -> Dict[str, int]:
    """``/proc/PID/smaps_rollup`` in bytes: Rss, Pss, Pss_Anon, Pss_File, Pss_Shmem..."""
    out: Dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def arena_shared_pss(pid: int) -> int:
    """The PSS, in bytes, of the pages of evshm's arenas that process ``pid`` maps and
    that another process maps too: its share of the extents that readers read. (Pages of
    an arena only ``pid`` maps, such as evshmd's provisioned pages or extents no reader
    reads, are its ``Private_*`` pages and charged to it alone: left out.)"""
    total = 0
    fields: Dict[str, int] = {}
    inside = False

    def flush() -> int:
        return (fields.get("Pss", 0) - fields.get("Private_Clean", 0)
                - fields.get("Private_Dirty", 0)) * 1024 if inside else 0

    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):  # a new mapping
                total += flush()
                fields = {}
                inside = len(head) >= 6 and "evshm-v2-" in head[5]
            elif len(head) == 3 and head[2] == "kB":
                fields[head[0].rstrip(":")] = int(head[1])
    return total + flush()


def numpy_columns(table: pa.Table) -> Dict[str, np.ndarray]:
    """The event columns as numpy arrays, zero-copy (a single chunk each: the driver's
    evshmd serves every recording as one chunk, see ``run.py``)."""
    if table.column("t").num_chunks != 1:
        raise RuntimeError(f"the table is in {table.column('t').num_chunks} chunks, not one: "
                           "start evshmd with a larger --chunk-events")
    return {name: table.column(name).chunk(0).to_numpy(zero_copy_only=True)
            for name in COLUMNS}


def column_sums(columns: Dict[str, np.ndarray]) -> Dict[str, int]:
    """A pass over every value of every column; also a cheap fingerprint of the data."""
    return {name: int(np.sum(columns[name], dtype=np.int64)) for name in COLUMNS}


class BytecopyClient:
    """Client of ``evshm-bytecopy``: the same IPC bytes, received over a Unix socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)

    def fetch(self, path: str) -> pa.Table:
        """Receive the stream of ``path`` into one 64-byte aligned buffer (one copy, the
        cheapest a byte copy can be) and read it in place with ``pa.ipc.open_stream``."""
        self.sock.sendall(f"open {path}\n".encode())
        header = self._recv_exact(8)
        (size,) = struct.unpack("<Q", header)
        if size == 0:
            raise RuntimeError(f"the byte-copy server could not open {path}")
        raw = np.empty(size + 64, dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        buffer = raw[start:start + size]
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self.sock.recv_into(view[got:], size - got)
            if n == 0:
                raise RuntimeError("the byte-copy server closed the connection")
            got += n
        return pa.ipc.open_stream(pa.py_buffer(buffer)).read_all()

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("the byte-copy server closed the connection")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def _accepts(path: str) -> bool:
    """Whether something listens on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class Evshmd:
    """An evshmd child on ``root`` (context manager); SIGTERM on exit, which removes its
    arenas, and a check that none is left behind. ``args`` are more options
    (``--chunk-events``, ``--decode-threads``...); ``log_level`` ``info`` makes it log
    each index and chunk decode with its time (see :func:`daemon_log_times`)."""

    def __init__(self, binary: str, root: str, socket_path: str, shm_dir: str = "/dev/shm",
                 log: Optional[str] = None, args: Sequence[str] = (),
                 log_level: str = "warn") -> None:
        self.socket = socket_path
        self.shm_dir = shm_dir
        self.log_path = log
        self._log = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [binary, "--root", root, "--socket", socket_path, "--log-level", log_level,
             *args],
            stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + 10
        # The socket file exists from bind(), before listen(): wait until it accepts.
        while not _accepts(socket_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"evshmd did not start on {socket_path}")
            time.sleep(0.01)
        # The daemon names its arenas after its instance id, held in the socket's lock.
        with open(f"{socket_path}.lock") as lock:
            self.arena_prefix = f"evshm-v2-{lock.read().strip()}-"

    def wait_provisioned(self, settle_s: float = 1.0, limit_s: float = 30.0) -> int:
        """Wait until the daemon's provisioned memory (``--provision``: free pages of its
        arenas allocated ahead for the next cold opens) stops growing, as it would for a
        daemon started a while before the open; return its bytes."""
        import evshm

        deadline = time.monotonic() + limit_s
        with evshm.Client(self.socket) as client:
            provisioned = client.stats().get("bytes_provisioned", 0)
            since = time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - since < settle_s:
                time.sleep(0.05)
                now = client.stats().get("bytes_provisioned", 0)
                if now != provisioned:
                    provisioned, since = now, time.monotonic()
        return int(provisioned)

    def __enter__(self) -> "Evshmd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        left = [n for n in os.listdir(self.shm_dir)
                if n.startswith(self.arena_prefix)]
        if left:
            raise RuntimeError(f"evshmd left arenas behind: {left}")


# evshmd's info lines for an index pass (each request that takes the index further into
# the file logs one) and a chunk decode (daemon/src/recording.rs, chunks.rs).
INDEXED = re.compile(r"indexed (?P<path>\S+) \((?P<format>\w+), (?P<events>\d+) events in "
                     r"(?P<chunks>\d+) chunks\) in (?P<ms>[\d.]+) ms")
DECODED = re.compile(r"decoded (?P<path>\S+) chunk (?P<chunk>\d+) \(\w+, "
                     r"(?P<events>\d+) events, .* in (?P<ms>[\d.]+) ms")


def daemon_log_times(log: str, offset: int = 0) -> Dict[str, Any]:
    """What an evshmd started with ``log_level="info"`` logged from byte ``offset`` of its
    log on: the index passes (milliseconds each) and the chunk decodes (events and
    milliseconds each), and where the log ends now (the next ``offset``)."""
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
        end = f.tell()
    indexed: List[float] = [float(m["ms"]) for m in INDEXED.finditer(text)]
    decoded = [{"chunk": int(m["chunk"]) - 1, "events": int(m["events"]), "ms": float(m["ms"])}
               for m in DECODED.finditer(text)]
    return {"index_ms": indexed, "decodes": decoded, "offset": end}


def settle(client: Any, timeout: float = 60.0) -> None:
    """Wait until the daemon decodes nothing in the background (a read-ahead): no byte
    held while the caller holds no lease."""
    deadline = time.monotonic() + timeout
    while client.stats()["bytes_leased"] > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"evshmd still decoding after {timeout:.0f} s")
        time.sleep(0.02)
