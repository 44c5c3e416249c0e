"""Parallel chunk decode: the cold open of a whole recording per format with
``evshmd --decode-threads 1`` against ``--decode-threads 2``, default chunk size.

For each recording of the plan's ``decode`` list (one per format), two evshmd run side by
side on a root of hard links to it, one per thread count, and the opens alternate
between them. Every open is of a new link, so that it finds neither an index nor a
segment: the daemon's index pass over the file (one thread, whatever the option), the
decode of every chunk into segments (on up to N threads), publication, then the client's
maps and in-place read, timed from ``evshm.Client.open`` to the table in hand. The
daemons log each index pass and chunk decode with its time, which splits every open into
its serial part (the index) and the rest. The first open of each daemon is left out
(warm-up) and gives the column sums that both daemons' tables must agree on. Writes
``threads.json``.

Usage: python threads.py PLAN
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List

import pyarrow.compute as pc

import evshm
from common import COLUMNS, Evshmd, daemon_log_times, load_plan, summary, write_result

THREADS = (1, 2)


def sums(table: Any) -> Dict[str, int]:
    return {name: pc.sum(table.column(name)).as_py() for name in COLUMNS}


def main() -> None:
    plan = load_plan(sys.argv[1])
    reps = plan["threads_reps"]
    results: List[Dict[str, Any]] = []
    for item in plan["decode"]:
        fmt, source, events = item["format"], item["file"], item["events"]
        root = os.path.join(plan["work"], f"threads-{fmt}")
        os.makedirs(root, exist_ok=True)
        ext = os.path.splitext(source)[1]
        daemons: Dict[int, Evshmd] = {}
        opens: Dict[int, List[Dict[str, Any]]] = {n: [] for n in THREADS}
        reference: Dict[int, Dict[str, int]] = {}
        try:
            for n in THREADS:
                daemons[n] = Evshmd(plan["evshmd"], root,
                                    os.path.join(plan["work"], f"threads-{fmt}-{n}.sock"),
                                    log=os.path.join(plan["work"], f"threads-{fmt}-{n}.log"),
                                    args=["--decode-threads", str(n)], log_level="info")
            clients = {n: evshm.Client(d.socket) for n, d in daemons.items()}
            offsets = {n: 0 for n in THREADS}
            for rep in range(reps + 1):
                for n in THREADS if rep % 2 == 0 else THREADS[::-1]:
                    link = os.path.join(root, f"copy{rep}-{n}{ext}")
                    os.link(source, link)
                    started = time.perf_counter()
                    rec = clients[n].open(os.path.basename(link))
                    table = rec.table
                    took = time.perf_counter() - started
                    if rep == 0:
                        reference[n] = sums(table)
                    chunks = len(rec.chunks)
                    rows = rec.rows
                    del table
                    rec.release()
                    del rec
                    log = daemon_log_times(daemons[n].log_path, offsets[n])
                    offsets[n] = log["offset"]
                    if rows != events:
                        raise SystemExit(f"threads.py: {fmt}: {rows} events, expected {events}")
                    if rep > 0:
                        opens[n].append({"seconds": took, "chunks": chunks,
                                         "index_ms": sum(log["index_ms"]),
                                         "decode_ms": [d["ms"] for d in log["decodes"]]})
            for client in clients.values():
                client.close()
        finally:
            for daemon in daemons.values():
                daemon.stop()
        agree = reference[1] == reference[2]
        result = {"format": fmt, "events": events, "file_bytes": os.path.getsize(source),
                  "chunks": opens[1][0]["chunks"], "agree": agree,
                  "cpus": len(os.sched_getaffinity(0)), "reps": reps}
        for n in THREADS:
            result[f"threads_{n}"] = {
                "open": summary(o["seconds"] for o in opens[n]),
                "index": summary(o["index_ms"] / 1e3 for o in opens[n]),
                "after_index": summary(o["seconds"] - o["index_ms"] / 1e3 for o in opens[n]),
                "chunk_decode": summary(ms / 1e3 for o in opens[n] for ms in o["decode_ms"]),
            }
        one, two = (result[f"threads_{n}"]["open"]["p50_us"] for n in THREADS)
        print(f"threads.py {fmt}: {result['chunks']} chunks, 1 thread {one / 1e3:.0f} ms, "
              f"2 threads {two / 1e3:.0f} ms ({one / two:.2f}x)"
              f"{'' if agree else ', tables DIFFER'}", flush=True)
        results.append(result)
    write_result(plan, "threads.json", {"formats": results})


if __name__ == "__main__":
    main()
