"""The benchmark driver: runs every bench of evshm in one go and writes docs/BENCHMARKS.md.

Started by ``benches/run.sh`` (which makes the bench virtualenv first). Steps:

1. build release (the workspace and the criterion benches);
2. generate recordings with ``evshm generate`` into a temporary directory: EVT3 files whose
   tables span 1 MB to 4 GB for attach, one file per format for the decoders, and a
   large EVT3 file for the time window;
3. start ``evshmd`` on them (with a ``--chunk-events`` above every recording's size, so
   that each is served as one chunk, one extent, as the attach, load and readers benches
   assume) and ``evshm-bytecopy`` in front of it;
4. run, in this order, each with the same plan (``$EVSHM_BENCH_PLAN``): the Rust attach
   bench (criterion), the Python attach script, ``evshm-load``, the decoders' bench
   (criterion), the cold-open and peers script, the N-readers script, the cold-window
   script (``evshm-window`` for Rust) and the decode-threads script, the last two with
   evshmd daemons of their own at the default chunk size, and the transforms against
   tonic's on the real recordings;
5. stop everything, check that no arena is left in /dev/shm, write the report and the
   plots (``report.py``), and remove the temporary directory.

A step that fails is reported as such in the document and the run goes on. Raw results
and every step's log stay in ``target/bench-results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "python"))

from common import Evshmd  # noqa: E402

MB = 1_000_000
BYTES_PER_EVENT = 13
# --chunk-events of the driver's evshmd: more than any recording here holds (the 4 GB
# attach recording has 308 M events), so that every recording is one chunk.
ONE_CHUNK_EVENTS = 1 << 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small recordings and short measurements (a few minutes)")
    parser.add_argument("--no-build", action="store_true", help="use the existing build")
    parser.add_argument("--docs", default=os.path.join(REPO, "docs"),
                        help="where BENCHMARKS.md and the plots go (default: docs/)")
    args = parser.parse_args()
    os.chdir(REPO)
    started = time.time()
    touched = touch_memory()
    loadavg_start = loadavg()
    results_dir = os.path.join(REPO, "target", "bench-results")
    shutil.rmtree(results_dir, ignore_errors=True)
    os.makedirs(os.path.join(results_dir, "logs"))
    steps: List[Dict[str, Any]] = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(REPO, "python_client", "src"), os.path.join(HERE, "python")]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))

    def step(name: str, cmd: List[str], shown: Optional[str] = None,
             extra_env: Optional[Dict[str, str]] = None, must: bool = False,
             cpus: Optional[set] = None) -> bool:
        log = os.path.join(results_dir, "logs", f"{name}.log")
        print(f"== {name}: {shown or shlex.join(cmd)}", flush=True)
        t0 = time.time()
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        with open(log, "wb") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                                  env={**env, **(extra_env or {})}, preexec_fn=pin)
        took = time.time() - t0
        ok = proc.returncode == 0
        steps.append({"name": name, "command": shown or shlex.join(cmd), "ok": ok,
                      "seconds": took, "log": os.path.relpath(log, REPO)})
        print(f"   {'ok' if ok else 'FAILED'} in {took:.0f} s (log: {os.path.relpath(log)})",
              flush=True)
        if not ok:
            with open(log, errors="replace") as f:
                print("".join(f.readlines()[-15:]), flush=True)
            if must:
                raise SystemExit(f"run.py: {name} failed")
        return ok

    if not args.no_build:
        step("build", ["cargo", "build", "--release", "--workspace"], must=True)
        step("build-benches", ["cargo", "bench", "-p", "evshm-benches", "--no-run"], must=True)
    release = os.path.join(REPO, "target", "release")

    work = tempfile.mkdtemp(prefix="evshm-bench-")
    daemon: Optional[Evshmd] = None
    server: Optional[subprocess.Popen] = None
    try:
        root = os.path.join(work, "root")
        os.makedirs(os.path.join(root, "attach"))
        os.makedirs(os.path.join(root, "decode"))
        sizes = [1, 10, 100] if args.quick else [1, 10, 100, 1000, 4000]
        attach = []
        for size in sizes:
            label = f"{size} MB" if size < 1000 else f"{size // 1000} GB"
            events = size * MB // BYTES_PER_EVENT
            rel = f"attach/{label.replace(' ', '')}.raw"
            generate(release, os.path.join(root, rel), "evt3", events)
            attach.append({"label": label, "path": rel, "events": events})
        decode_events = 2_000_000 if args.quick else 1 << 25
        decode = []
        for fmt, name in (("dat", "events_td.dat"), ("evt2", "events-evt2.raw"),
                          ("evt21", "events-evt21.raw"), ("evt3", "events-evt3.raw")):
            rel = f"decode/{name}"
            generate(release, os.path.join(root, rel), fmt, decode_events)
            decode.append({"format": fmt, "file": os.path.join(root, rel), "path": rel,
                           "events": decode_events})
        window_events = 20_000_000 if args.quick else 300_000_000
        rel = "window/large-evt3.raw"
        os.makedirs(os.path.join(root, "window"))
        generate(release, os.path.join(root, rel), "evt3", window_events)
        window = {"format": "evt3", "file": os.path.join(root, rel), "path": rel,
                  "events": window_events, "window_us": 50_000}

        out_dir = os.path.join(results_dir, "json")
        os.makedirs(out_dir)
        socket_path = os.path.join(work, "evshmd.sock")
        bytecopy_socket = os.path.join(work, "bytecopy.sock")
        plan = {
            "socket": socket_path, "root": root, "bytecopy_socket": bytecopy_socket,
            "out_dir": out_dir, "quick": args.quick,
            "warm_up_s": 0.5 if args.quick else 1.0,
            "measure_s": 1.0 if args.quick else 3.0,
            "attach": attach, "decode": decode, "window": window,
            "evshmd": os.path.join(release, "evshmd"), "work": work,
            "evshm_window": os.path.join(release, "evshm-window"),
            "one_chunk_events": ONE_CHUNK_EVENTS,
            "reps": 1 if args.quick else 3, "reader_counts": [1, 2, 4, 8],
            "window_reps": 2 if args.quick else 5, "window_warm": 10 if args.quick else 30,
            "threads_reps": 2 if args.quick else 5,
        }
        daemon = Evshmd(plan["evshmd"], root, socket_path,
                        log=os.path.join(results_dir, "logs", "evshmd.log"),
                        args=["--chunk-events", str(ONE_CHUNK_EVENTS)])
        plan["evshmd_pid"] = daemon.proc.pid
        plan_path = os.path.join(work, "plan.json")
        with open(plan_path, "w") as f:
            json.dump(plan, f, indent=2)
        plan_env = {"EVSHM_BENCH_PLAN": plan_path}
        server = subprocess.Popen(
            [os.path.join(release, "evshm-bytecopy"), "--socket", bytecopy_socket,
             "--evshm-socket", socket_path],
            stderr=open(os.path.join(results_dir, "logs", "evshm-bytecopy.log"), "wb"))
        wait_for(bytecopy_socket)

        py = sys.executable
        rel_py = os.path.relpath(py, REPO)
        if rel_py.startswith(".."):  # a virtualenv elsewhere ($EVSHM_BENCH_VENV)
            rel_py = "$EVSHM_BENCH_VENV/bin/python"
        step("attach_rust", ["cargo", "bench", "-p", "evshm-benches", "--bench", "attach"],
             extra_env=plan_env)
        step("attach_python", [py, "benches/python/attach.py", plan_path],
             shown=f"{rel_py} benches/python/attach.py PLAN")
        load_path = attach[min(2, len(attach) - 1)]["path"]
        step("load", [os.path.join(release, "evshm-load"), "--socket", socket_path,
                      "--path", load_path, "--seconds", "1" if args.quick else "2",
                      "--out", os.path.join(out_dir, "load.json")],
             shown=f"target/release/evshm-load --socket SOCKET --path {load_path} "
                   f"--seconds {1 if args.quick else 2} --out load.json")
        # One client, with evshmd (its new connection threads inherit the main thread's
        # affinity) and the client pinned to the same vCPU, then to different vCPUs: what
        # the wake-ups of a round trip cost on this machine.
        everywhere = os.sched_getaffinity(daemon.proc.pid)
        if len(everywhere) >= 2:
            first, second = sorted(everywhere)[:2]
            for name, cpu in (("same", first), ("cross", second)):
                os.sched_setaffinity(daemon.proc.pid, {first})
                step(f"affinity_{name}",
                     [os.path.join(release, "evshm-load"), "--socket", socket_path,
                      "--path", load_path, "--clients", "1", "--seconds", "2",
                      "--out", os.path.join(out_dir, f"affinity_{name}.json")],
                     shown=f"evshmd pinned to CPU {first}; taskset -c {cpu} "
                           f"target/release/evshm-load --socket SOCKET --path {load_path} "
                           f"--clients 1 --seconds 2 --out affinity_{name}.json",
                     cpus={cpu})
            os.sched_setaffinity(daemon.proc.pid, everywhere)
        step("decode_rust", ["cargo", "bench", "-p", "evshm-benches", "--bench", "decode"],
             extra_env=plan_env)
        step("peers", [py, "benches/python/peers.py", plan_path],
             shown=f"{rel_py} benches/python/peers.py PLAN")
        step("readers", [py, "benches/python/readers.py", plan_path],
             shown=f"{rel_py} benches/python/readers.py PLAN")
        step("window", [py, "benches/python/window.py", plan_path],
             shown=f"{rel_py} benches/python/window.py PLAN")
        step("threads", [py, "benches/python/threads.py", plan_path],
             shown=f"{rel_py} benches/python/threads.py PLAN")
        step("transforms", [py, "benches/python/transforms.py", plan_path],
             shown=f"{rel_py} benches/python/transforms.py PLAN")
        step("flight", [py, "benches/python/flight.py", plan_path],
             shown=f"{rel_py} benches/python/flight.py PLAN")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait()
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    # Every Evshmd checks on stop that it left no arena; this is the byte-copy server's.
    left = [n for n in os.listdir("/dev/shm")
            if daemon is not None and n.startswith(daemon.arena_prefix)]

    meta = {
        "command": "benches/run.sh" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "total_s": time.time() - started,
        "loadavg_start": loadavg_start,
        "loadavg_end": loadavg(),
        "memory_touched": touched,
        "steps": steps,
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "shm_left": left,
        "plan": {k: v for k, v in plan.items() if k not in ("work", "root", "evshmd_pid")},
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    step("report", [py, os.path.join(HERE, "python", "report.py"), out_dir, args.docs],
         shown=f"{rel_py} benches/python/report.py RESULTS docs", must=True)
    print(f"== done in {time.time() - started:.0f} s: {os.path.relpath(args.docs)}/BENCHMARKS.md",
          flush=True)
    if left:
        raise SystemExit(f"run.py: arenas left in /dev/shm: {left}")


def generate(release: str, path: str, fmt: str, events: int) -> None:
    subprocess.run([os.path.join(release, "evshm"), "generate", path, "--format", fmt,
                    "--events", str(events)], check=True, stderr=subprocess.DEVNULL)


def touch_memory() -> Dict[str, float]:
    """Writes most of the machine's available memory once, through a file in /dev/shm
    removed right after, and says how much and how long it took.

    A virtual machine whose host backs guest memory lazily makes the first touch of a
    page several times dearer than the next one (docs/PAGES.md): without this, whichever
    bench first touches a page pays for it, and runs right after boot differ from later
    ones.
    """
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) for line in f
                         if line.startswith("MemAvailable")) * 1024
    size = min(int(available * 0.75), shutil.disk_usage("/dev/shm").free * 3 // 4)
    path = f"/dev/shm/evshm-bench-touch-{os.getpid()}"
    block = b"\1" * (64 << 20)
    began = time.monotonic()
    try:
        with open(path, "wb", buffering=0) as f:
            for _ in range(size // len(block)):
                f.write(block)
    finally:
        os.unlink(path)
    took = time.monotonic() - began
    print(f"== touched {size / 2**30:.1f} GiB of memory in {took:.1f} s", flush=True)
    return {"bytes": size // len(block) * len(block), "seconds": took}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return ", ".join(f.read().split()[:3])


def wait_for(path: str) -> None:
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"run.py: nothing listens on {path}")
        time.sleep(0.01)


def machine() -> Dict[str, Any]:
    cpu = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key in ("model name", "cpu MHz", "cache size") and key not in cpu:
                cpu[key] = value
    with open("/proc/meminfo") as f:
        mem = next(line.split()[1] for line in f if line.startswith("MemTotal"))
    return {"cpu": cpu.get("model name", "?"), "cpu_mhz": cpu.get("cpu MHz", "?"),
            "cache": cpu.get("cache size", "?"), "cores": os.cpu_count(),
            "mem_gib": round(int(mem) / 2**20, 1), "uname": " ".join(platform.uname()),
            "shm": shutil.disk_usage("/dev/shm").total}


def versions() -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for cmd in (["rustc", "--version"], ["cargo", "--version"]):
        out[cmd[0]] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    for package in ("pyarrow", "numpy", "matplotlib", "expelliarmus", "evt3", "ray", "tonic"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def git_state() -> Dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


if __name__ == "__main__":
    main()
