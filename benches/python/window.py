"""A cold time window of a large recording: how soon its rows are in hand, against
decoding the whole file with the fastest correct peer.

The plan's ``window`` recording is an EVT3 file written by ``evshm generate`` (hundreds of
millions of events in a full run), the window 50 ms in the middle of its time span, in
the page cache for evshmd and the peers alike (the file is read once first).

Setup, untimed except where said:

1. a fresh evshmd (default ``--chunk-events``, ``--decode-threads``, ``--read-ahead``)
   opens the whole file for Python: the reference table (this first whole-file open is
   timed once, for scale);
2. every peer that reads the format decodes the whole file, and its output is compared
   with evshm's event by event; the fastest that agrees is *the peer*, and its rows of the
   window (PROTOCOL.md's rule: from the first row whose running maximum of ``t`` reaches
   ``t0`` to the first that reaches ``t1``) are what every window open must return.

Then rounds, the order of the steps rotating from round to round:

- **peer**: the peer decodes the whole file into numpy arrays;
- **Python** and **Rust** (``evshm-window``), each in three states of the daemon:
  (a) *first contact*: a fresh evshmd; the open builds the chunk index as far as the
  window (a counting pass from the start of the file) and decodes the window's chunks;
  (b) *index cached*: a fresh evshmd that has served another window of the file (its
  last 50 ms, to another connection): the whole index is in memory, the window's chunks are
  not decoded;
  (c) *warm*: the same window again, from (a)'s daemon and connection, once one untimed
  open has made its chunks resident and any read-ahead is done.

Python times ``client.open(path, window=(t0, t1))`` and ``Recording.numpy()`` (the rows
as numpy arrays: views when the window lies in one chunk, a copy when it straddles two);
Rust times ``Client::open_window`` (record batches over the mappings). Connections are
made before the clock starts. Every (a) and (b) open is checked against the peer's rows
(Python: all four columns; Rust: the columns' sums). The daemons log at info level, which
gives the index pass and every chunk decode (events, time). Writes ``window.json``.

Usage: python window.py PLAN
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import evshm
from common import (
    COLUMNS,
    Evshmd,
    column_sums,
    daemon_log_times,
    load_plan,
    settle,
    summary,
    write_result,
)
from peers import peer_readers

Columns = Dict[str, np.ndarray]
PART = 1 << 22  # rows per piece when scanning a long column


def window_bounds(parts: Iterable[np.ndarray], t0: int, t1: int) -> Tuple[int, int]:
    """Rows ``[lo, hi)`` of the window ``[t0, t1)`` in a column of times given in
    consecutive parts: from the first row whose running maximum reaches ``t0`` to the
    first whose running maximum reaches ``t1`` (PROTOCOL.md, ``window``)."""
    lo: Optional[int] = None
    offset, carry = 0, np.iinfo(np.int64).min
    for part in parts:
        running = np.maximum.accumulate(part.astype(np.int64))
        np.maximum(running, carry, out=running)
        if lo is None:
            i = int(np.searchsorted(running, t0, "left"))
            if i < len(running):
                lo = offset + i
        if lo is not None:
            j = int(np.searchsorted(running, t1, "left"))
            if j < len(running):
                return lo, offset + j
        if len(running):
            carry = int(running[-1])
        offset += len(part)
    return (offset if lo is None else lo), offset


def pieces(column: np.ndarray) -> Iterable[np.ndarray]:
    return (column[i:i + PART] for i in range(0, len(column), PART))


def table_pieces(table: pa.Table, name: str) -> Iterable[np.ndarray]:
    return (chunk.to_numpy(zero_copy_only=True) for chunk in table.column(name).chunks)


def compare_whole(table: pa.Table, got: Columns) -> Tuple[bool, str]:
    """Event-by-event comparison of a peer's whole decode with evshm's chunked table,
    chunk by chunk (no copy of the whole file); stops at the first difference."""
    n = table.num_rows
    if len(got["t"]) != n:
        return False, f"{len(got['t'])} events, evshm has {n}"
    for name in COLUMNS:
        offset = 0
        for ours in table_pieces(table, name):
            theirs = np.asarray(got[name][offset:offset + len(ours)]).astype(np.int64)
            diff = np.flatnonzero(ours.astype(np.int64) != theirs)
            if diff.size:
                i = int(diff[0])
                return False, (f"column {name} differs, first at event {offset + i}: "
                               f"{int(theirs[i])} instead of {int(ours[i])}")
            offset += len(ours)
    return True, f"all {n} events equal"


def same_rows(expected: Columns, got: Columns) -> bool:
    return all(len(got[name]) == len(expected[name])
               and np.array_equal(np.asarray(got[name]).astype(np.int64),
                                  expected[name].astype(np.int64)) for name in COLUMNS)


class Bench:
    def __init__(self, plan: Dict[str, Any]) -> None:
        self.plan = plan
        self.item = plan["window"]
        self.path = self.item["path"]
        self.daemons = 0
        self.warm_n = plan["window_warm"]

    # ------------------------------------------------------------------ daemons
    def daemon(self) -> Evshmd:
        self.daemons += 1
        name = f"window-{self.daemons}"
        return Evshmd(self.plan["evshmd"], self.plan["root"],
                      os.path.join(self.plan["work"], f"{name}.sock"),
                      log=os.path.join(self.plan["work"], f"{name}.log"), log_level="info")

    def prime(self, daemon: Evshmd) -> None:
        """Makes ``daemon`` index the whole file: another window (the last 50 ms), another
        connection, released."""
        with evshm.Client(daemon.socket) as other:
            rec = other.open(self.path, window=self.primer)
            if not rec.rows:
                raise SystemExit("window.py: the primer window is empty")
            rec.release()
            del rec
            gc.collect()
            settle(other)

    # ------------------------------------------------------------------ setup
    def setup(self) -> Dict[str, Any]:
        item = self.item
        with open(item["file"], "rb") as f:  # into the page cache
            while f.read(1 << 24):
                pass
        out: Dict[str, Any] = {"format": item["format"], "events": item["events"],
                               "file": os.path.basename(item["file"]),
                               "file_bytes": os.path.getsize(item["file"]),
                               "window_us": item["window_us"]}
        with self.daemon() as daemon, evshm.Client(daemon.socket) as client:
            client.stats()
            started = time.perf_counter()
            rec = client.open(self.path)
            table = rec.table
            out["whole_open_s"] = time.perf_counter() - started
            log = daemon_log_times(daemon.log_path)
            out["whole_index_ms"] = sum(log["index_ms"])
            out["chunks"] = len(rec.chunks)
            out["chunk_rows"] = [c.rows for c in rec.chunks]
            if table.num_rows != item["events"]:
                raise SystemExit(f"window.py: evshm decoded {table.num_rows} events, "
                                 f"expected {item['events']}")
            t_first = int(table.column("t").chunk(0)[0].as_py())
            t_last = int(pc.max(table.column("t")).as_py())
            t0 = t_first + (t_last - t_first) // 2
            self.window = (t0, t0 + item["window_us"])
            # The last 50 ms: evshmd indexes only as far as requests need, and this takes
            # the index to the end of the file without touching the middle's chunks.
            self.primer = (t_last - item["window_us"], t_last + 1)
            out.update(t_first=t_first, t_last=t_last, window=list(self.window))
            lo, hi = window_bounds(table_pieces(table, "t"), *self.window)
            evshm_rows = {name: np.concatenate([c.to_numpy(zero_copy_only=True) for c in
                                                table.column(name).slice(lo, hi - lo).chunks])
                          for name in COLUMNS}
            out["window_rows"] = hi - lo
            peers: Dict[str, Dict[str, Any]] = {}
            best: Optional[Tuple[float, str]] = None
            for name, read in peer_readers(item["format"]).items():
                params = self.peer_params(name)
                started = time.perf_counter()
                got = read(item["file"], **params)
                took = time.perf_counter() - started
                ok, detail = compare_whole(table, got)
                peers[name] = {"agrees": ok, "detail": detail, "params": params,
                               "setup_s": took}
                print(f"window.py: {name}: {'agrees' if ok else 'DISAGREES'}: {detail} "
                      f"({took:.2f} s)", flush=True)
                if ok and (best is None or took < best[0]):
                    best = (took, name)
                    lo_p, hi_p = window_bounds(pieces(got["t"]), *self.window)
                    self.expected = {n: np.array(got[n][lo_p:hi_p]) for n in COLUMNS}
                del got
                gc.collect()
            del table
            rec.release()
            del rec
            gc.collect()
        out["peers"] = peers
        if best is None:
            print("window.py: no peer agrees with evshm: the windows are checked against "
                  "evshm's whole-file decode and no peer time is reported", flush=True)
            self.expected = evshm_rows
            self.peer = None
        else:
            self.peer = best[1]
            if not same_rows(self.expected, evshm_rows):
                raise SystemExit("window.py: the peer's rows of the window differ from "
                                 "evshm's whole-file decode")
        del evshm_rows
        out["peer"] = self.peer
        self.sums = column_sums(self.expected)
        print(f"window.py: window {self.window} holds {out['window_rows']} events; "
              f"{out['chunks']} chunks; whole-file cold open {out['whole_open_s']:.2f} s",
              flush=True)
        return out

    def peer_params(self, name: str) -> Dict[str, Any]:
        """expelliarmus's read buffer as tuned in ``peers.py`` for the format."""
        if name != "expelliarmus":
            return {}
        try:
            with open(os.path.join(self.plan["out_dir"], "peers.json")) as f:
                formats = json.load(f)["formats"]
            found = next(f for f in formats if f["format"] == self.item["format"])
            return dict(found["peers"]["expelliarmus"]["params"])
        except (OSError, StopIteration, KeyError):
            return {"buff_size": 65536}

    # ------------------------------------------------------------------ steps
    def peer_step(self) -> float:
        read = peer_readers(self.item["format"])[self.peer]
        params = self.peer_params(self.peer)
        started = time.perf_counter()
        got = read(self.item["file"], **params)
        took = time.perf_counter() - started
        del got
        gc.collect()
        return took

    def python_open(self, client: "evshm.Client") -> Tuple[float, "evshm.Recording", Columns]:
        started = time.perf_counter()
        rec = client.open(self.path, window=self.window)
        columns = rec.numpy()
        return time.perf_counter() - started, rec, columns

    def record(self, daemon: Evshmd, took: float, rows: int, chunks: List[Dict[str, int]],
               decodes: int, agrees: bool, offset: int = 0) -> Dict[str, Any]:
        log = daemon_log_times(daemon.log_path, offset)
        # The open's own decodes come first; later ones are read-aheads of warm opens.
        mine = log["decodes"][:decodes]
        return {"seconds": took, "rows": rows, "chunks": chunks, "decodes": decodes,
                "decoded_events": sum(d["events"] for d in mine),
                "decode_ms": [d["ms"] for d in mine],
                "index_ms": sum(log["index_ms"]), "agrees": agrees}

    def python_step(self, indexed: bool) -> Dict[str, Any]:
        with self.daemon() as daemon:
            if indexed:
                self.prime(daemon)
            offset = daemon_log_times(daemon.log_path)["offset"]
            with evshm.Client(daemon.socket) as client:
                before = client.stats()["decodes"]
                took, rec, columns = self.python_open(client)
                decodes = client.stats()["decodes"] - before
                chunks = [{"index": c.index, "rows": c.rows, "start": c.start, "end": c.end}
                          for c in rec.chunks]
                out = self.record(daemon, took, rec.rows, chunks, decodes,
                                  same_rows(self.expected, columns), offset)
                del columns
                rec.release()
                del rec
                if not indexed:
                    out["warm"] = self.python_warm(client)
        return out

    def python_warm(self, client: "evshm.Client") -> Optional[Dict[str, float]]:
        _, rec, columns = self.python_open(client)  # reads forward: may start a read-ahead
        del rec, columns
        gc.collect()
        settle(client)
        samples = []
        for _ in range(self.warm_n):
            took, rec, columns = self.python_open(client)
            if not rec.cached:
                raise SystemExit("window.py: a warm open decoded something")
            samples.append(took)
            del rec, columns
        gc.collect()
        return summary(samples)

    def rust_step(self, indexed: bool) -> Dict[str, Any]:
        with self.daemon() as daemon:
            if indexed:
                self.prime(daemon)
            with evshm.Client(daemon.socket) as stats:
                before = stats.stats()["decodes"]
            offset = daemon_log_times(daemon.log_path)["offset"]
            cmd = [self.plan["evshm_window"], "--socket", daemon.socket, "--path", self.path,
                   "--start", str(self.window[0]), "--end", str(self.window[1]),
                   "--warm", "0" if indexed else str(self.warm_n)]
            got = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                            text=True).stdout)
            out = self.record(daemon, got["first_s"], got["rows"], got["chunks"],
                              got["decodes_after"] - before, got["sums"] == self.sums, offset)
            if not indexed:
                out["warm"] = got["warm"]
        return out


def main() -> None:
    plan = load_plan(sys.argv[1])
    bench = Bench(plan)
    result = bench.setup()
    runs: Dict[str, List[Any]] = {"peer": [], "python_cold": [], "python_indexed": [],
                                  "rust_cold": [], "rust_indexed": []}
    steps: List[Tuple[str, Callable[[], Any]]] = [
        ("python_cold", lambda: bench.python_step(indexed=False)),
        ("python_indexed", lambda: bench.python_step(indexed=True)),
        ("rust_cold", lambda: bench.rust_step(indexed=False)),
        ("rust_indexed", lambda: bench.rust_step(indexed=True)),
    ]
    if bench.peer:
        steps.insert(0, ("peer", bench.peer_step))
    for rep in range(plan["window_reps"]):
        shift = rep % len(steps)
        for name, step in steps[shift:] + steps[:shift]:
            got = step()
            runs[name].append(got)
            if isinstance(got, dict):
                print(f"window.py round {rep} {name}: {got['seconds'] * 1e3:.1f} ms, "
                      f"{got['rows']} rows in {len(got['chunks'])} chunks, "
                      f"{got['decodes']} decodes, index {got['index_ms']:.0f} ms"
                      f"{'' if got['agrees'] else ', ROWS DIFFER'}", flush=True)
            else:
                print(f"window.py round {rep} {name}: {got:.2f} s", flush=True)
    result["runs"] = runs
    result["reps"] = plan["window_reps"]
    result["warm_opens"] = plan["window_warm"]
    write_result(plan, "window.json", result)


if __name__ == "__main__":
    main()
