"""Parallel chunk decode: the cold open of a whole recording per format with
``evshmd --decode-threads 1`` against ``--decode-threads 2``, default chunk size.

For each recording of the plan's ``decode`` list (one per format), cold opens alternate
between the two thread counts, each from a fresh evshmd (so that it finds neither an
index nor an extent, and so that no daemon keeps the extents of earlier opens: on this
virtual machine, faulting in memory that was not freed lately costs several times more,
which would make later opens slower than earlier ones): the daemon's index pass over the
file (one thread, whatever the option), the decode of every chunk into extents of an
arena (on up to N threads), publication, then the client's map and in-place read, timed
from ``evshm.Client.open`` to the table in hand. The daemons log each index pass and chunk
decode with its time, which splits every open into its serial part (the index) and the
rest. The first round is left out (warm-up) and gives the column sums that both thread
counts' tables must agree on. Writes ``threads.json``.

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
        root = os.path.dirname(source)
        opens: Dict[int, List[Dict[str, Any]]] = {n: [] for n in THREADS}
        reference: Dict[int, Dict[str, int]] = {}
        for rep in range(reps + 1):
            for n in THREADS if rep % 2 == 0 else THREADS[::-1]:
                name = f"threads-{fmt}-{n}-{rep}"
                with Evshmd(plan["evshmd"], root, os.path.join(plan["work"], f"{name}.sock"),
                            log=os.path.join(plan["work"], f"{name}.log"),
                            args=["--decode-threads", str(n)], log_level="info") as daemon:
                    with evshm.Client(daemon.socket) as client:
                        client.stats()  # connected before the clock starts
                        started = time.perf_counter()
                        rec = client.open(os.path.basename(source))
                        table = rec.table
                        took = time.perf_counter() - started
                        if rep == 0:
                            reference[n] = sums(table)
                        chunks, rows = len(rec.chunks), rec.rows
                        del table
                        rec.release()
                        del rec
                    log = daemon_log_times(daemon.log_path)
                if rows != events:
                    raise SystemExit(f"threads.py: {fmt}: {rows} events, expected {events}")
                if rep > 0:
                    opens[n].append({"seconds": took, "chunks": chunks,
                                     "index_ms": sum(log["index_ms"]),
                                     "decode_ms": [d["ms"] for d in log["decodes"]]})
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
