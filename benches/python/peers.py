"""Cold open per format: evshmd's decode and publish against the peers' decode, and the
peers' correctness.

For each recording of the plan's ``decode`` list (one per format), each cold open from a
fresh evshmd (so that it finds nothing cached, and so that no daemon keeps the extents
of earlier opens: on this virtual machine, faulting in memory that was not freed lately
costs several times more; the peers free their arrays between runs too):

- ``evshmd cold open``: ``evshm.Client.open`` of a recording no extent holds yet, once
  the daemon has provisioned its arenas (``--provision``, its default of 1 GiB of free
  pages allocated and mapped ahead), as a daemon started a while before the open has:
  the daemon's index pass over the file, then the decode of its chunks (default
  ``--chunk-events`` and ``--decode-threads``) into extents of an arena, publication,
  then the client's map of the arena and in-place read (a table with one Arrow chunk per
  extent); the file itself is in the page cache for evshmd and the peers;
- each peer that reads the format decodes the same file into numpy arrays.

Before any timing, every peer's output is compared with evshm's, event by event (count
and all four columns); a disagreement is recorded, not hidden, and such a peer is never
reported as a reference. expelliarmus's read buffer is tuned per format (the fastest of a
few sizes), so the comparison is with the peer at its best. Repetitions alternate evshmd
and the peers. Writes ``peers.json``.

Usage: python peers.py PLAN
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import evshm
from common import COLUMNS, Evshmd, load_plan, summary, write_result

Columns = Dict[str, np.ndarray]

EXPELLIARMUS_BUFFERS = (4096, 65536, 1 << 20)


def peer_readers(fmt: str) -> Dict[str, Callable[..., Columns]]:
    """The peers that read ``fmt``, by name; a peer that does not import is skipped."""
    peers: Dict[str, Callable[..., Columns]] = {}
    if fmt not in ("dat", "evt2", "evt3"):
        return peers  # no peer reads it (expelliarmus reads DAT, EVT2 and EVT3)
    try:
        from expelliarmus import Wizard

        def expelliarmus_read(path: str, buff_size: int = 65536) -> Columns:
            arr = Wizard(encoding=fmt, buff_size=buff_size).read(path)
            return {name: arr[name] for name in COLUMNS}

        peers["expelliarmus"] = expelliarmus_read
    except ImportError as exc:
        print(f"peers.py: skipped: expelliarmus ({exc})", flush=True)
    if fmt == "evt3":
        try:
            import evt3

            def evt3_read(path: str) -> Columns:
                ev = evt3.decode_file(path)
                return {"t": ev.timestamp, "x": ev.x, "y": ev.y, "p": ev.polarity}

            peers["evt3"] = evt3_read
        except ImportError as exc:
            print(f"peers.py: skipped: evt3 package ({exc})", flush=True)
    return peers


def compare(reference: Columns, got: Columns) -> Tuple[bool, str]:
    """Event-by-event comparison; the verdict and what differs."""
    n_ref, n_got = len(reference["t"]), len(got["t"])
    if n_ref != n_got:
        return False, f"{n_got} events, evshm has {n_ref}"
    for name in COLUMNS:
        a = reference[name].astype(np.int64)
        b = np.asarray(got[name]).astype(np.int64)
        diff = np.flatnonzero(a != b)
        if diff.size:
            i = int(diff[0])
            return False, (f"column {name} differs at {diff.size} events, first at event {i}: "
                           f"{int(b[i])} instead of {int(a[i])}")
    return True, f"all {n_ref} events equal"


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    result = fn()
    took = time.perf_counter() - started
    del result
    return took


def main() -> None:
    plan = load_plan(sys.argv[1])
    reps = plan["reps"]
    results: List[Dict[str, Any]] = []
    for item in plan["decode"]:
        fmt, source, events = item["format"], item["file"], item["events"]
        root, name_in_root = os.path.split(source)

        def daemon(i: int) -> Evshmd:
            return Evshmd(plan["evshmd"], root, os.path.join(plan["work"], f"cold-{fmt}-{i}.sock"))

        with daemon(0) as first:
            client = evshm.Client(first.socket)
            # The first cold open also gives the reference decode.
            started = time.perf_counter()
            reference_rec = client.open(name_in_root)
            first_open = time.perf_counter() - started
            # One copy of the chunks as contiguous arrays, as the peers return them.
            reference = reference_rec.numpy()
            chunks = len(reference_rec.chunks)
            if len(reference["t"]) != events:
                raise SystemExit(f"peers.py: evshm decoded {len(reference['t'])} events "
                                 f"of {source}, expected {events}")
            peers = peer_readers(fmt)
            verdicts: Dict[str, Dict[str, Any]] = {}
            params: Dict[str, Dict[str, Any]] = {}
            for name, read in peers.items():
                if name == "expelliarmus":
                    tried = {b: timed(lambda b=b: read(source, buff_size=b))
                             for b in EXPELLIARMUS_BUFFERS}
                    params[name] = {"buff_size": min(tried, key=tried.__getitem__)}
                else:
                    params[name] = {}
                got = read(source, **params[name])
                ok, detail = compare(reference, got)
                del got
                verdicts[name] = {"agrees": ok, "detail": detail, "params": params[name]}
                print(f"peers.py {fmt}: {name}: {'agrees' if ok else 'DISAGREES'}: {detail}",
                      flush=True)
            del reference
            reference_rec.release()
            del reference_rec
            client.close()

        cold: List[float] = []
        provisioned: List[int] = []
        peer_times: Dict[str, List[float]] = {name: [] for name in peers}
        for i in range(1, reps + 1):
            with daemon(i) as fresh, evshm.Client(fresh.socket) as client:
                # Started well before the open, as a daemon serving a training job is: its
                # free pages (--provision) allocated ahead.
                provisioned.append(fresh.wait_provisioned())
                client.stats()  # connected before the clock starts

                def cold_open() -> None:
                    with client.open(name_in_root) as rec:
                        rec.table  # noqa: B018 - the open ends with the table usable
                cold.append(timed(cold_open))
            for name, read in peers.items():
                peer_times[name].append(
                    timed(lambda read=read, name=name: read(source, **params[name])))
        result = {
            "format": fmt, "file": os.path.basename(source), "events": events,
            "file_bytes": os.path.getsize(source), "first_open_s": first_open,
            "chunks": chunks,
            "evshmd_cold_open": summary(cold),
            "evshmd_provisioned_bytes": provisioned,
            "peers": {name: {**verdicts[name], "time": summary(peer_times[name])}
                      for name in peers},
        }
        best = best_peer(result) if peers else None
        print(f"peers.py {fmt}: evshmd cold open p50 "
              f"{result['evshmd_cold_open']['p50_us'] / 1e3:.0f} ms; fastest correct peer: "
              f"{best[0] if best else 'none'}", flush=True)
        results.append(result)
    write_result(plan, "peers.json", {"formats": results})


def best_peer(result: Dict[str, Any]) -> Optional[Tuple[str, Dict[str, Any]]]:
    correct = [(name, peer) for name, peer in result["peers"].items() if peer["agrees"]]
    if not correct:
        return None
    return min(correct, key=lambda item: item[1]["time"]["p50_us"])


if __name__ == "__main__":
    main()
