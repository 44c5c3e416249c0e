"""Two machines, simulated: evshmd with its Flight service in one network namespace, the
clients in another, joined by a veth pair (netns.py; needs root, skipped otherwise, saying
so). The remote node reads exactly what a local open gives, with a token, over TLS, in
parallel chunk streams; a service beyond loopback without a token is refused at start;
a stream holds a lease while it reads, and a daemon killed mid-stream leaves the client
with an error, never wrong data."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pytest
from flight_util import TOKEN, same_rows, self_signed, token_file
from netns import Hosts, netns_pair

from harness import Daemon, evshmd_binary, wait_for, wait_until_answering

PEER = Path(__file__).with_name("flight_peer.py")
PORT = 8815


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    with netns_pair() as pair:
        yield pair


@contextlib.contextmanager
def server(hosts: Hosts, tmp_path: Path, synthetic_dir: Path, *args: str) -> Iterator[Daemon]:
    """evshmd in the server's namespace, serving big.raw and small.raw; its control socket
    (a file: reachable from every namespace) lets the test open locally for reference.
    Segments go to a directory of the test, so a SIGKILL leaves nothing in /dev/shm."""
    root, shm = tmp_path / "root", tmp_path / "shm"
    root.mkdir(exist_ok=True)
    shm.mkdir(exist_ok=True)
    for name in ("big.raw", "small.raw"):
        if not (root / name).exists():
            os.link(synthetic_dir / name, root / name)
    sock, log = str(tmp_path / "evshmd.sock"), tmp_path / "evshmd.log"
    argv = [str(evshmd_binary()), "--root", str(root), "--socket", sock, "--shm-dir",
            str(shm), "--provision", "0", *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(hosts.run_in(hosts.server, argv), stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)
    daemon = Daemon(proc=proc, root=root, socket=sock, log=log, real=None)
    try:
        wait_until_answering(daemon)
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def peer_argv(hosts: Hosts, address: str, path: str, *args: str) -> list[str]:
    """flight_peer.py's command line in the client's namespace."""
    return hosts.run_in(hosts.client, [sys.executable, str(PEER), address, path, *args])


def peer(hosts: Hosts, address: str, path: str, *args: str) -> dict[str, Any]:
    """What flight_peer.py, run in the client's namespace, says (its JSON line)."""
    done = subprocess.run(peer_argv(hosts, address, path, *args), capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def read(path: Path) -> pa.Table:
    with pa.ipc.open_file(str(path)) as reader:
        return reader.read_all()


def test_a_remote_node_reads_exactly_what_a_local_open_gives(
        hosts: Hosts, tmp_path: Path, synthetic_dir: Path) -> None:
    address = f"grpc://{hosts.server_ip}:{PORT}"
    with server(hosts, tmp_path, synthetic_dir, "--chunk-events", "100000", "--flight",
                address, "--flight-token-file", str(token_file(tmp_path))) as daemon:
        local = daemon.client()
        for path, window in (("big.raw", None), ("big.raw", (1_000_000, 1_600_000)),
                             ("small.raw", (10_001_000, 10_002_000))):
            out = tmp_path / "remote.arrow"
            extra = ["--window", *map(str, window)] if window else []
            got = peer(hosts, address, path, "--token", TOKEN, "--out", str(out), *extra)
            assert got["ok"], got
            expected = local.open(path, window=window)
            assert got["rows"] == expected.rows and got["chunks"] == len(expected.chunks)
            assert same_rows(read(out), expected.table), (path, window)
        assert peer(hosts, address, "big.raw", "--token", TOKEN, "--parallel", "1",
                    "--out", str(tmp_path / "one.arrow"))["ok"]
        assert same_rows(read(tmp_path / "one.arrow"), local.open("big.raw").table)
        for token in ([], ["--token", "wrong"]):
            refused = peer(hosts, address, "small.raw", *token)
            assert refused == {**refused, "ok": False, "error": "AccessDenied"}, refused
        missing = peer(hosts, address, "nope.raw", "--token", TOKEN)
        assert missing["error"] == "RecordingNotFound", missing


def test_beyond_loopback_without_a_token_only_when_told(
        hosts: Hosts, tmp_path: Path, synthetic_dir: Path) -> None:
    address = f"grpc://{hosts.server_ip}:{PORT}"
    argv = [str(evshmd_binary()), "--root", str(tmp_path), "--socket",
            str(tmp_path / "refused.sock"), "--flight", address]
    refused = subprocess.run(hosts.run_in(hosts.server, argv), capture_output=True,
                             timeout=60)
    assert refused.returncode != 0
    assert b"without a token" in refused.stderr, refused.stderr
    with server(hosts, tmp_path, synthetic_dir, "--flight", address, "--flight-no-token"):
        assert peer(hosts, address, "small.raw")["rows"] == 200_000


def test_tls(hosts: Hosts, tmp_path: Path, synthetic_dir: Path) -> None:
    cert, key = self_signed(tmp_path, hosts.server_ip)
    address = f"grpc+tls://{hosts.server_ip}:{PORT}"
    with server(hosts, tmp_path, synthetic_dir, "--flight", address, "--flight-tls-cert",
                str(cert), "--flight-tls-key", str(key), "--flight-token-file",
                str(token_file(tmp_path))) as daemon:
        out = tmp_path / "tls.arrow"
        got = peer(hosts, address, "small.raw", "--token", TOKEN, "--certs", str(cert),
                   "--out", str(out))
        assert got["ok"], got
        assert same_rows(read(out), daemon.client().open("small.raw").table)
        # A certificate the client does not trust, or no TLS at all: nothing is read.
        untrusted = peer(hosts, address, "small.raw", "--token", TOKEN)
        assert not untrusted["ok"], untrusted
        plain = peer(hosts, f"grpc://{hosts.server_ip}:{PORT}", "small.raw", "--token", TOKEN)
        assert not plain["ok"], plain


def test_a_stream_holds_a_lease_and_a_daemon_killed_mid_stream_is_an_error(
        hosts: Hosts, tmp_path: Path, synthetic_dir: Path) -> None:
    """big.raw is one chunk of 39 MB here; the server's link sends 100 Mbit/s, so the
    stream lasts seconds."""
    address = f"grpc://{hosts.server_ip}:{PORT}"
    hosts.shape("100mbit")
    with server(hosts, tmp_path, synthetic_dir, "--flight", address,
                "--flight-no-token") as daemon:
        local = daemon.client()
        local.open("big.raw").release()  # decoded: the stream starts at once
        reading = subprocess.Popen(peer_argv(hosts, address, "big.raw"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: local.stats()["leases"] == 1, "the stream's lease", 60.0)
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(timeout=20)
        stdout, stderr = reading.communicate(timeout=120)
        assert reading.returncode == 0, stderr.decode(errors="replace")
        result = json.loads(stdout.decode().strip().splitlines()[-1])
        assert not result["ok"], "an error, not data"
        assert result["error"] in ("ConnectionLost", "DaemonError"), result
