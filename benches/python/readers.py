"""N readers (1, 2, 4, 8) of one dataset: time until every reader holds usable numpy
columns, and the sum of the readers' PSS.

Methods, each reader a separate process started and warmed up (imports done) before the
clock starts:

- ``evshm``: connect to evshmd, open the (cached) recording, zero-copy numpy views;
- ``bytecopy``: connect to ``evshm-bytecopy``, receive the whole IPC stream (one copy per
  reader), read it in place with pyarrow, numpy views;
- ``decode``: every reader decodes the file itself with the fastest correct peer found by
  ``peers.py`` (the file is in the page cache);
- ``ray``: the columns put once in Ray's object store (``ray.put``; Ray start and put
  timed apart), each reader a Ray actor that ``ray.get``s them (zero-copy numpy). Run in
  a block of its own after the others, since Ray's processes keep running.

The clock starts when the coordinator tells every waiting reader to go. ``ready`` is when
the last reader holds the four columns; ``scanned`` when the last one has also summed
every column (a pass over all the data, which also checks it: every reader's sums must
equal evshm's). PSS comes from ``/proc/PID/smaps_rollup`` of every reader while all of
them still hold the data; ``data PSS`` is the growth over each reader's PSS just before
the start (the interpreter and libraries are not the data). Writes ``readers.json``.

Usage: python readers.py PLAN            (coordinator)
       python readers.py --worker METHOD PLAN   (one reader; driven over stdin/stdout)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from common import (
    COLUMNS,
    BytecopyClient,
    Evshmd,
    arena_shared_pss,
    column_sums,
    load_plan,
    now,
    numpy_columns,
    smaps_rollup,
    write_result,
)

METHODS = ("evshm", "bytecopy", "decode")


# ----------------------------------------------------------------------------- dataset

def dataset(plan: Dict[str, Any]) -> Dict[str, Any]:
    """The recording with the fastest correct peer (from ``peers.json``), and that peer."""
    with open(os.path.join(plan["out_dir"], "peers.json")) as f:
        formats = json.load(f)["formats"]
    best: Optional[Tuple[float, Dict[str, Any], str, Dict[str, Any]]] = None
    for result in formats:
        for name, peer in result["peers"].items():
            if not peer["agrees"] or not peer["time"]:
                continue
            rate = result["events"] / peer["time"]["p50_us"]
            if best is None or rate > best[0]:
                best = (rate, result, name, peer["params"])
    if best is None:
        raise SystemExit("readers.py: no peer decodes any format correctly")
    _, result, name, params = best
    item = next(d for d in plan["decode"] if d["format"] == result["format"])
    return {"format": item["format"], "file": item["file"], "path": item["path"],
            "events": item["events"], "peer": name, "peer_params": params,
            "peer_mev_s": best[0]}


# ----------------------------------------------------------------------------- worker

def worker(method: str, plan: Dict[str, Any]) -> None:
    data = plan["readers_dataset"]
    if method == "evshm":
        import evshm

        def load() -> Any:
            client = evshm.Client(plan["readers_socket"])
            rec = client.open(data["path"])
            return (client, rec), numpy_columns(rec.table)
    elif method == "bytecopy":
        def load() -> Any:
            conn = BytecopyClient(plan["bytecopy_socket"])
            table = conn.fetch(data["path"])
            return (conn, table), numpy_columns(table)
    elif data["peer"] == "expelliarmus":
        from expelliarmus import Wizard

        def load() -> Any:
            arr = Wizard(encoding=data["format"], **data["peer_params"]).read(data["file"])
            return arr, {name: arr[name] for name in COLUMNS}
    elif data["peer"] == "evt3":
        import evt3

        def load() -> Any:
            ev = evt3.decode_file(data["file"])
            return ev, {"t": ev.timestamp, "x": ev.x, "y": ev.y, "p": ev.polarity}
    else:
        raise SystemExit(f"readers.py: unknown peer {data['peer']}")
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    started = now()
    keep, columns = load()
    ready = now()
    sums = column_sums(columns)
    scanned = now()
    print(json.dumps({"started": started, "ready": ready, "scanned": scanned,
                      "rows": int(len(columns["t"])), "sums": sums}), flush=True)
    sys.stdin.readline()  # "exit": hold the data until every reader's PSS is read
    del keep, columns


def run_workers(method: str, n: int, plan_path: str, plan: Dict[str, Any],
                expected: Dict[str, int]) -> Dict[str, Any]:
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", method, plan_path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"readers.py: a {method} reader failed to start")
        before = [smaps_rollup(p.pid) for p in procs]
        go = now()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [json.loads(p.stdout.readline()) for p in procs]
        after = [smaps_rollup(p.pid) for p in procs]
        # evshmd keeps its mapping of the arena, through which it wrote the extent: the
        # readers share those pages with it, and its share of them is charged to it (the
        # coordinator maps none: it read the recording in a child process).
        publisher = arena_shared_pss(plan["readers_evshmd_pid"]) if method == "evshm" else None
        for p in procs:
            p.stdin.write("exit\n")
            p.stdin.flush()
    finally:
        for p in procs:
            p.stdin.close()
            p.wait()
    return measure(go, outs, before, after, expected, publisher)


def measure(go: float, outs: List[Dict[str, Any]], before: List[Dict[str, int]],
            after: List[Dict[str, int]], expected: Dict[str, int],
            publisher: Optional[int]) -> Dict[str, Any]:
    """What one run of N readers measured. ``publisher`` is the shared-memory PSS of the
    process that published the data (evshmd, or Ray's driver after its ``put``), read at
    the same moment as the readers': the part of the data's pages charged to it."""
    agree = all(o["sums"] == expected for o in outs)
    return {
        "ready_s": max(o["ready"] for o in outs) - go,
        "scanned_s": max(o["scanned"] for o in outs) - go,
        "pss_bytes": sum(a["Pss"] for a in after),
        "data_pss_bytes": sum(a["Pss"] - b["Pss"] for a, b in zip(after, before)),
        "rss_bytes": sum(a["Rss"] for a in after),
        "publisher_pss_bytes": publisher,
        "agrees": agree,
    }


# ----------------------------------------------------------------------------- ray

def run_ray(plan: Dict[str, Any], counts: List[int], reps: int,
            expected: Dict[str, int]) -> Dict[str, Any]:
    try:
        import ray
    except ImportError as exc:
        return {"skipped": f"ray does not import ({exc})"}
    import evshm

    data = plan["readers_dataset"]
    started = now()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    init_s = now() - started
    try:
        with evshm.Client(plan["readers_socket"]) as client, client.open(data["path"]) as rec:
            columns = numpy_columns(rec.table)
            started = now()
            ref = ray.put(dict(columns))
            put_s = now() - started
            del columns

        @ray.remote(num_cpus=0)
        class Reader:
            def pid(self) -> int:
                return os.getpid()

            def read(self, box: List[Any]) -> Dict[str, Any]:
                import time as _time

                import numpy as _np

                def clock() -> float:
                    return _time.clock_gettime(_time.CLOCK_MONOTONIC)

                began = clock()
                got = ray.get(box[0])
                cols = {name: got[name] for name in ("t", "x", "y", "p")}
                ready = clock()
                sums = {name: int(_np.sum(col, dtype=_np.int64)) for name, col in cols.items()}
                scanned = clock()
                self.keep = got
                return {"started": began, "ready": ready, "scanned": scanned,
                        "rows": int(len(cols["t"])), "sums": sums}

        runs: Dict[int, List[Dict[str, Any]]] = {n: [] for n in counts}
        for _ in range(reps):
            for n in counts:
                actors = [Reader.remote() for _ in range(n)]
                pids = ray.get([a.pid.remote() for a in actors])
                before = [smaps_rollup(pid) for pid in pids]
                go = now()
                outs = ray.get([a.read.remote([ref]) for a in actors])
                after = [smaps_rollup(pid) for pid in pids]
                publisher = smaps_rollup(os.getpid())["Pss_Shmem"]
                runs[n].append(measure(go, outs, before, after, expected, publisher))
                for a in actors:
                    ray.kill(a)
        return {"init_s": init_s, "put_s": put_s, "runs": runs}
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- main

def expected_sums(plan: Dict[str, Any]) -> Tuple[Dict[str, int], int]:
    """The column sums every reader must find, and one copy of the data: the bytes of
    the extents' pages (whole pages: no extent shares a page with another)."""
    import evshm

    data = plan["readers_dataset"]
    with evshm.Client(plan["readers_socket"]) as client, client.open(data["path"]) as rec:
        sums = column_sums(numpy_columns(rec.table))
        one_copy = sum(-(-chunk.extent.size // 4096) * 4096 for chunk in rec.chunks)
    return sums, one_copy


def main() -> None:
    if sys.argv[1] == "--worker":
        worker(sys.argv[2], load_plan(sys.argv[3]))
        return
    if sys.argv[1] == "--expected":
        print(json.dumps(expected_sums(load_plan(sys.argv[2]))))
        return
    plan_path = sys.argv[1]
    plan = load_plan(plan_path)
    plan["readers_dataset"] = dataset(plan)
    # An evshmd of its own, holding nothing but the dataset and nothing provisioned: its
    # share of the pages it maps is then its share of the readers' pages alone (the run's
    # main daemon also holds every other recording, which the byte-copy server maps too).
    socket_path = os.path.join(plan["work"], "readers.sock")
    args = ["--chunk-events", str(plan["one_chunk_events"]), "--provision", "0"]
    with Evshmd(plan["evshmd"], plan["root"], socket_path, args=args) as daemon:
        plan["readers_socket"], plan["readers_evshmd_pid"] = socket_path, daemon.proc.pid
        # Workers read the dataset and the daemon from the plan: write it back.
        with open(plan_path, "w") as f:
            json.dump(plan, f, indent=2)
        run_all(plan_path, plan)


def run_all(plan_path: str, plan: Dict[str, Any]) -> None:
    """The reader runs of every method and count, and ray's, into ``readers.json``."""
    data = plan["readers_dataset"]
    counts, reps = plan["reader_counts"], plan["reps"]
    print(f"readers.py: {data['events']} events of {data['format']} "
          f"({os.path.basename(data['file'])}), peer {data['peer']}", flush=True)

    # Read in a child: a process keeps its mapping of an arena (and the pages it read
    # there) for as long as evshmd has the arena, and the coordinator must not share the
    # readers' pages.
    child = subprocess.run([sys.executable, __file__, "--expected", plan_path],
                           capture_output=True, text=True, check=True)
    expected, one_copy = json.loads(child.stdout)
    runs: Dict[str, Dict[int, List[Dict[str, Any]]]] = {m: {n: [] for n in counts}
                                                         for m in METHODS}
    for rep in range(reps):
        for n in counts:
            for method in METHODS:
                r = run_workers(method, n, plan_path, plan, expected)
                runs[method][n].append(r)
                print(f"readers.py rep {rep} N={n} {method}: ready {r['ready_s'] * 1e3:.1f} ms, "
                      f"data PSS {r['data_pss_bytes'] / 1e6:.0f} MB"
                      f"{'' if r['agrees'] else ', DISAGREES'}", flush=True)
    ray_result = run_ray(plan, counts, reps, expected)
    if "skipped" in ray_result:
        print(f"readers.py: skipped: ray: {ray_result['skipped']}", flush=True)
    write_result(plan, "readers.json", {
        "dataset": data, "one_copy_bytes": one_copy,
        "counts": counts, "reps": reps,
        "runs": runs, "ray": ray_result,
    })


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
