"""Arrow Flight: a cached 33.6 M-event recording (436 MB decoded) read over loopback,
side by side in one run, every reader a Python process:

- ``tcp``: the plain-TCP baseline. ``evshm-tcpsend`` (Rust, as evshmd) sends the
  recording's IPC bytes straight from evshm's mapped segments; Python receives them into
  one preallocated buffer (``recv_into``). The most a sender and a receiver of these two
  languages can do with these bytes here: the physical limit.
- ``evshmd, 1 stream``: ``evshm.RemoteClient(parallel=1)``: ``GetFlightInfo``, then one
  ``DoGet`` of every chunk, with the ticket it gives for that (pyarrow.flight underneath).
- ``evshmd, 4 streams``: a ``DoGet`` per chunk, four at once, each on its own connection.
- ``pyarrow.flight server``: a Flight server in Python (``pyarrow.flight.FlightServerBase``)
  serving the same table, copied into its memory in the same record batches, one
  ``DoGet`` of the whole table, read by pyarrow.flight.

The recording is opened (decoded) once before timing; each reader's result is checked
(rows, and the sum of ``t``) once, then the readers are timed in turn, round after round,
so that all see the same load; each figure is the median of the rounds. Throughput is the
table's bytes (13 per event) over the time from the first request to the table in hand.

Usage: python flight.py [PLAN]
    With the driver's PLAN (benches/run.py): its evshmd binaries, work and results
    directories. Alone (``ALONE``, from the repository after ``cargo build --release -p
    evshmd -p evshm -p evshm-benches``, in the virtualenv benches/run.sh makes, which has
    matplotlib): target/release/, a temporary directory (or
    ``$EVSHM_BENCH_WORK``), target/bench-results/json/; it also prints the report's
    section and writes its plot. ``$EVSHM_FLIGHT_EVENTS`` changes the recording's size.
Writes ``flight.json``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ALONE = "PYTHONPATH=python_client/src target/bench-venv/bin/python benches/python/flight.py"
EVENTS = int(os.environ.get("EVSHM_FLIGHT_EVENTS", 32 << 20))  # 33.6 M: 436 MB
ROUNDS = int(os.environ.get("EVSHM_FLIGHT_ROUNDS", 5))
RECORDING = "flight.raw"


# ---------------------------------------------------------------- the Python Flight server

class TableServer(flight.FlightServerBase):  # type: ignore[misc]
    """Serves one table from memory: any ticket gets all of it."""

    def __init__(self, table: pa.Table) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.table = table

    def do_get(self, context: Any, ticket: Any) -> flight.RecordBatchStream:
        return flight.RecordBatchStream(self.table)


def serve_pyarrow(evshm_socket: str, path: str) -> None:
    """The peer server (``--serve-pyarrow``): the recording's table, copied out of evshm's
    segments into this process's memory, batch by batch, served until killed."""
    import evshm

    with evshm.Client(evshm_socket) as client, client.open(path) as rec:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rec.table.schema) as writer:
            writer.write_table(rec.table)
    table = pa.ipc.open_stream(sink.getvalue()).read_all()  # owned by this process
    server = TableServer(table)
    print(server.port, flush=True)
    server.serve()


# ---------------------------------------------------------------- the readers

def tcp_reader(port: int) -> Callable[[], int]:
    def read() -> int:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = bytearray(8)
            view = memoryview(head)
            got = 0
            while got < 8:
                got += sock.recv_into(view[got:])
            total = int.from_bytes(head, "little")
            buffer = bytearray(total)
            view, got = memoryview(buffer), 0
            while got < total:
                n = sock.recv_into(view[got:])
                if n == 0:
                    raise RuntimeError("evshm-tcpsend closed early")
                got += n
        return total
    return read


def remote_reader(address: str, parallel: int) -> Callable[[], pa.Table]:
    import evshm

    def read() -> pa.Table:
        client = evshm.RemoteClient(address, parallel=parallel, timeout=600)
        try:
            return client.open(RECORDING).table
        finally:
            client.close()
    return read


def pyarrow_reader(port: int) -> Callable[[], pa.Table]:
    def read() -> pa.Table:
        client = flight.connect(f"grpc://127.0.0.1:{port}")
        try:
            return client.do_get(flight.Ticket(b"all")).read_all()
        finally:
            client.close()
    return read


def checksum(table: pa.Table) -> tuple[int, int]:
    import pyarrow.compute as pc

    return table.num_rows, int(pc.sum(table.column("t")).as_py())


# ---------------------------------------------------------------- the run

def binaries(plan: Optional[Dict[str, Any]]) -> Dict[str, str]:
    folder = os.path.join(REPO, "target", "release")
    if plan is not None:
        folder = os.path.dirname(plan["evshmd"])
    names = ("evshmd", "evshm", "evshm-tcpsend", "evshm-flightget")
    found = {name: os.path.join(folder, name) for name in names}
    for path in found.values():
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} is missing: cargo build --release -p evshmd -p evshm "
                             "-p evshm-benches")
    return found


def run(plan: Optional[Dict[str, Any]], work: str) -> Dict[str, Any]:
    from common import Evshmd

    import evshm

    exe = binaries(plan)
    root = os.path.join(work, "flight-root")
    os.makedirs(root, exist_ok=True)
    recording = os.path.join(root, RECORDING)
    if not os.path.exists(recording):
        subprocess.run([exe["evshm"], "generate", recording, "--events", str(EVENTS),
                        "--rate", "20000000"], check=True, capture_output=True)
    sock = os.path.join(work, "flight-evshmd.sock")
    port = free_port()
    address = f"grpc://127.0.0.1:{port}"
    helpers: List[subprocess.Popen[str]] = []
    with Evshmd(exe["evshmd"], root, sock, log=os.path.join(work, "flight-evshmd.log"),
                args=["--flight", address, "--provision", "0"]) as daemon:
        with evshm.Client(daemon.socket) as client, client.open(RECORDING) as rec:
            expected = checksum(rec.table)
            table_bytes = rec.table.nbytes
            chunks = len(rec.chunks)
        try:
            tcp = subprocess.Popen([exe["evshm-tcpsend"], "--evshm-socket", sock, "--path",
                                    RECORDING], stdout=subprocess.PIPE, text=True)
            helpers.append(tcp)
            assert tcp.stdout is not None
            tcp_port, stream_bytes = map(int, tcp.stdout.readline().split())
            peer = subprocess.Popen([sys.executable, __file__, "--serve-pyarrow", sock,
                                     RECORDING], stdout=subprocess.PIPE, text=True,
                                    env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                        [HERE, *sys.path])})
            helpers.append(peer)
            assert peer.stdout is not None
            peer_port = int(peer.stdout.readline())
            readers: Dict[str, Callable[[], Any]] = {
                "tcp": tcp_reader(tcp_port),
                "evshmd, 1 stream": remote_reader(address, 1),
                "evshmd, 4 streams": remote_reader(address, 4),
                "pyarrow.flight server": pyarrow_reader(peer_port),
            }
            for name, read in readers.items():
                got = read()
                if name == "tcp":
                    assert got == stream_bytes, (got, stream_bytes)
                else:
                    assert checksum(got) == expected, (name, checksum(got), expected)
                del got
            seconds: Dict[str, List[float]] = {name: [] for name in readers}
            for _ in range(ROUNDS):
                for name, read in readers.items():
                    start = time.perf_counter()
                    got = read()
                    seconds[name].append(time.perf_counter() - start)
                    del got
            rust = subprocess.run([exe["evshm-flightget"], "--address", address, "--path",
                                   RECORDING, "--tcp-port", str(tcp_port), "--rounds",
                                   str(ROUNDS)], check=True, capture_output=True, text=True)
            for name, value in json.loads(rust.stdout).items():
                seconds[name] = value["seconds"]
        finally:
            for helper in helpers:
                helper.terminate()
                helper.wait()
    rows = []
    for name, times in seconds.items():
        size = stream_bytes if name.endswith("tcp") else table_bytes
        median = statistics.median(times)
        rows.append({"reader": name, "seconds": times, "median_s": median,
                     "bytes": size, "mb_per_s": size / median / 1e6})
    return {"events": EVENTS, "table_bytes": table_bytes, "stream_bytes": stream_bytes,
            "chunks": chunks, "rounds": ROUNDS, "rows": rows,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the report

def by_reader(d: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {row["reader"]: row for row in d["rows"]}


def target_rows(d: Dict[str, Any]) -> List[List[str]]:
    """The report's rows of its targets table."""
    return [[f"Flight, {name} (cached 436 MB over loopback)", f"{figure:.2f}×; see section 8",
             "**met**" if met else "**missed**"]
            for name, figure, threshold, met in targets(d)]


def targets(d: Dict[str, Any]) -> List[tuple[str, float, float, bool]]:
    """(target, figure, threshold, met) of the issue's targets, for each client language:
    against TCP between the same two languages, against the Python Flight server, and
    four streams against one."""
    r = {name: row["mb_per_s"] for name, row in by_reader(d).items()}
    out = []
    for lang, prefix, tcp in (("Python", "", "tcp"), ("Rust", "rust: ", "rust: tcp")):
        one, four = r.get(prefix + "evshmd, 1 stream"), r.get(prefix + "evshmd, 4 streams")
        if one is None or four is None or tcp not in r:
            continue
        out.append((f"{lang} client: evshmd, 1 stream ≥ 0.8× plain TCP", one / r[tcp], 0.8,
                    one / r[tcp] >= 0.8))
        out.append((f"{lang} client: evshmd, 4 streams ≥ 1.5× 1 stream", four / one, 1.5,
                    four / one >= 1.5))
    peer = r["pyarrow.flight server"]
    one = r["evshmd, 1 stream"]
    out.insert(1, ("Python client: evshmd, 1 stream faster than a pyarrow.flight server",
                   one / peer, 1.0,
                   one > peer))
    return out


def section(d: Dict[str, Any], command: str) -> str:
    lines = [
        "## 8. Arrow Flight: a cached recording over loopback",
        "",
        f"A recording of {d['events'] / 1e6:.1f} M events ({d['table_bytes'] / 1e6:.0f} MB "
        f"decoded, {d['chunks']} chunks), resident in evshmd, read whole by a Python "
        "process over loopback: through evshmd's Flight service (`evshm.RemoteClient`, "
        "all chunks in one stream, or a stream per chunk, four at once), from a Flight "
        "server written in Python with pyarrow.flight serving the same table from its memory, and, as the limit, "
        "the same bytes over a plain TCP socket from a Rust sender (straight from the "
        "mapped segments) into one buffer allocated for each read; the same again with "
        "Rust readers (`evshm::RemoteClient`, `evshm-flightget`). Median of "
        f"{d['rounds']} rounds, the readers taking turns ({d['machine']}). {command}",
        "",
        "| reader | median | MB/s |",
        "|---|---|---|",
    ]
    for row in d["rows"]:
        lines.append(f"| {row['reader']} | {row['median_s'] * 1e3:.0f} ms | "
                     f"{row['mb_per_s']:.0f} |")
    lines += ["", "| target | figure | needed | |", "|---|---|---|---|"]
    for name, figure, threshold, met in targets(d):
        lines.append(f"| {name} | {figure:.2f}x | {threshold:.2f}x | "
                     f"{'met' if met else 'missed'} |")
    lines += ["",
              "What separates them: evshmd's send path copies nothing (each chunk's body "
              "goes from the mapped segment to the socket, `daemon/src/flight/doget.rs`), "
              "so the reader's side sets the pace. A Flight reader's gRPC receives into its "
              "own buffers and then into Arrow's (pyarrow; tonic, then arrow-flight where a "
              "body lands misaligned, in Rust), where the TCP reader receives straight into "
              "its buffer. \"1 stream\" is one `DoGet` of every chunk (the ticket "
              "`GetFlightInfo` gives for the whole answer), as the pyarrow.flight server "
              "sends its whole table in one; \"4 streams\" is a `DoGet` per chunk on four "
              "connections at once, which can use both cores. The machine was shared with other engineers' builds and tests during "
              "the run (see its load in the steps), so the absolute figures vary from run "
              "to run more than the ratios.",
              "", "![Flight throughput](bench_flight.png)", ""]
    return "\n".join(lines)


def plot(d: Dict[str, Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["reader"] for row in d["rows"]]
    values = [row["mb_per_s"] / 1e3 for row in d["rows"]]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    colors = ["#999999" if n.endswith("tcp") else "#dd8452" if "pyarrow" in n else "#4c72b0"
              for n in names]
    bars = ax.barh(names[::-1], values[::-1], color=colors[::-1])
    ax.bar_label(bars, fmt="%.2f GB/s", padding=3)
    ax.set_xlabel("GB/s (higher is better)")
    ax.set_title(f"A cached recording ({d['table_bytes'] / 1e6:.0f} MB) over loopback")
    ax.set_xlim(0, max(values) * 1.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--serve-pyarrow":
        serve_pyarrow(sys.argv[2], sys.argv[3])
        return
    sys.path.insert(0, HERE)
    plan = None
    if len(sys.argv) >= 2:
        from common import load_plan

        plan = load_plan(sys.argv[1])
    if plan is not None:
        result = run(plan, plan["work"])
        from common import write_result

        write_result(plan, "flight.json", result)
        return
    work = os.environ.get("EVSHM_BENCH_WORK") or tempfile.mkdtemp(prefix="evshm-flight-")
    result = run(None, work)
    out_dir = os.path.join(REPO, "target", "bench-results", "json")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "flight.json"), "w") as f:
        json.dump(result, f, indent=2)
    try:
        plot(result, os.path.join(REPO, "docs", "bench_flight.png"))
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
    print(section(result, f"Produced by `{ALONE}`."))


if __name__ == "__main__":
    main()
