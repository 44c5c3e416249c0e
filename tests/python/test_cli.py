"""``python -m evshm`` against a real daemon."""

from __future__ import annotations

import re
import subprocess
import sys

from harness import Daemon, python_env


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
    assert re.fullmatch(rf"segments  /dev/shm/{daemon.segment_prefix}\S+ "
                        r"\(\d+ bytes, decoded now\)", lines[3]), lines[3]
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
    for key in ("segments", "bytes_resident", "leases", "connections", "opens", "decodes",
                "cache_hits", "errors"):
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
