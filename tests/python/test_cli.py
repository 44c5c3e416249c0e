"""``python -m evshm`` against a real daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc

import evshm
from harness import Daemon, evshm_cli_binary, evshmd_binary, python_env, wait_for


def run(daemon: Daemon, *args: str, socket_flag: bool = True) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "evshm"]
    if socket_flag:
        argv += ["--socket", daemon.socket]
    return subprocess.run(argv + list(args), env=python_env(), capture_output=True,
                          text=True, timeout=120)


def test_ls(daemon: Daemon, real):
    proc = run(daemon, "ls")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["PATH", "FORMAT", "SIZE", "DECODED"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["evt3_sample.raw"] == ["evt3", "618052", "no"]
    assert rows["NCARS_obj_004397_td.dat"] == ["dat", "35349", "no"]
    assert "notes.txt" not in rows


def test_open(daemon: Daemon, real):
    proc = run(daemon, "open", "evt3_sample.raw")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 8, proc.stdout
    assert lines[0] == "path      evt3_sample.raw"
    assert lines[1] == "format    evt3 1280x720"
    assert lines[2] == "rows      219596"
    assert re.fullmatch(r"extents   1, one per chunk, in 1 arena \(\d+ bytes, decoded now\)",
                        lines[3]), lines[3]
    assert lines[4] == "schema    t: int64, x: int16, y: int16, p: int8"
    assert lines[5] == "time      11718656 .. 11727457 us"
    assert re.fullmatch(r"request   \d+\.\d{3} ms \(round trip, includes the decode "
                        r"when not cached\)", lines[6]), lines[6]
    assert re.fullmatch(r"attach    \d+\.\d{3} ms \(map \+ Arrow IPC open, no copy\)",
                        lines[7]), lines[7]
    again = run(daemon, "open", "evt3_sample.raw")
    assert again.stdout.splitlines()[3].endswith(" bytes, cached)")


def test_stats_with_the_socket_from_the_environment(daemon: Daemon):
    argv = [sys.executable, "-m", "evshm", "stats"]
    proc = subprocess.run(argv, env=python_env(daemon.socket), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = dict(line.split() for line in proc.stdout.splitlines())
    for key in ("extents", "bytes_resident", "leases", "connections", "opens", "decodes",
                "cache_hits", "errors", "arenas", "bytes_arenas", "bytes_free",
                "bytes_provisioned", "largest_free"):
        assert stats[key].isdigit(), stats
    assert stats["connections"] == "1"


def test_errors_exit_1_with_a_message(daemon: Daemon, real):
    proc = run(daemon, "open", "missing.raw")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("evshm: ") and "missing.raw" in proc.stderr


def test_unreachable_daemon(daemon: Daemon, tmp_path):
    argv = [sys.executable, "-m", "evshm", "--socket", str(tmp_path / "no.sock"), "ls"]
    proc = subprocess.run(argv, env=python_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"evshm: cannot connect to evshmd at {tmp_path / 'no.sock'}")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evshm", *args],
                          env={**python_env(), **env}, capture_output=True, text=True,
                          timeout=120)


def test_version():
    proc = cli("--version")
    assert (proc.returncode, proc.stdout) == (0, f"evshm {evshm.__version__}\n")


def test_json_output(daemon: Daemon, real):
    listed = json.loads(run(daemon, "ls", "--json").stdout)
    assert {"path": "evt3_sample.raw", "format": "evt3", "size": 618052,
            "decoded": False} in listed
    opened = json.loads(run(daemon, "open", "--json", "evt3_sample.raw",
                            "--window", "11720000", "11721000").stdout)
    assert (opened["path"], opened["table"], opened["format"]) == ("evt3_sample.raw",
                                                                   "events", "evt3")
    assert (opened["width"], opened["height"], opened["window"]) == (1280, 720,
                                                                     [11720000, 11721000])
    assert opened["rows"] == sum(c["end"] - c["start"] for c in opened["chunks"]) > 0
    extent = opened["chunks"][0]["extent"]
    assert extent["arena"].startswith(daemon.arena_prefix)
    assert os.path.exists(f"/dev/shm/{extent['arena']}")
    assert extent["offset"] % 64 == 0 and extent["size"] > 0
    assert opened["schema"][0] == {"name": "t", "type": "int64"}
    assert 11720000 <= opened["time"][0] <= opened["time"][1] < 11721000
    assert opened["cached"] is False and opened["dropped"] == 0 and opened["skipped"] == 0
    assert opened["request_ms"] > 0 and opened["attach_ms"] > 0
    stats = json.loads(run(daemon, "stats", "--json").stdout)
    assert stats["opens"] == 1 and stats["clients"][0]["client"].startswith("evshm-python/")
    assert "ok" not in stats
    evicted = json.loads(run(daemon, "evict", "--json").stdout)
    assert evicted["evicted"] == 1 and evicted["bytes_evicted"] > 0
    assert run(daemon, "evict").stdout == "evicted 0 unleased chunks (0 bytes)\n"


def test_output_cut_short_is_no_error(daemon: Daemon, real):
    """``python -m evshm ls | head -1``: the reader goes away before the output is
    written; the command stops without a traceback."""
    reader, writer = os.pipe()
    os.close(reader)  # gone before anything is written: every write fails
    try:
        proc = subprocess.run([sys.executable, "-m", "evshm", "--socket", daemon.socket,
                               "ls", "--json"], env=python_env(), stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(writer)
    assert (proc.returncode, proc.stderr) == (141, "")
    piped = subprocess.run(f"{sys.executable} -m evshm --socket {daemon.socket} ls | head -1",
                           shell=True, env=python_env(), capture_output=True, text=True,
                           timeout=60)
    assert (piped.stdout.split(), piped.stderr) == (["PATH", "FORMAT", "SIZE", "DECODED"], "")


def test_generate_and_convert_run_the_evshm_binary(tmp_path: Path):
    env = {"EVSHM_CLI": str(evshm_cli_binary())}
    made = cli("generate", str(tmp_path / "a.raw"), "--events", "1000", **env)
    assert made.returncode == 0, made.stderr
    assert "wrote 1000 events" in made.stderr
    converted = cli("convert", str(tmp_path / "a.raw"), str(tmp_path / "a.arrow"), **env)
    assert converted.returncode == 0, converted.stderr
    with pa.ipc.open_file(str(tmp_path / "a.arrow")) as reader:
        assert reader.read_all().num_rows == 1000
    assert cli("generate", "--help", **env).stdout.startswith("Writes a synthetic")


def test_unknown_arguments_are_refused():
    proc = cli("ls", "--frobnicate")
    assert proc.returncode == 2 and "unrecognized arguments: --frobnicate" in proc.stderr


def test_serve_runs_evshmd_in_the_foreground(tmp_path: Path):
    root, socket_path = tmp_path / "root", str(tmp_path / "serve.sock")
    root.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "evshm", "--socket", socket_path, "serve",
                             str(root), "--memory-budget", "16M"],
                            env={**python_env(), "EVSHMD": str(evshmd_binary())},
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: evshm._connect.socket_accepts(socket_path), "evshmd to listen")
        with evshm.Client(socket_path) as client:
            assert client.roots == [str(root.resolve())]
            assert client.stats()["memory_budget"] == 16 << 20
            pid, _, _ = evshm._trust.peer_credentials(client._connection().sock)
        assert pid == proc.pid, "python replaced itself with evshmd"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        proc.stderr.close()
    assert not os.path.exists(socket_path)
