"""Two hosts on one machine: network namespaces joined by a veth pair (``ip netns``,
``ip link ... type veth``), for the tests of what crosses a network. Needs root and
iproute2; :func:`netns_pair` skips, saying why, where the machine does not allow it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass
class Hosts:
    """The server's and the client's namespaces, and their addresses on the link."""

    server: str
    client: str
    server_ip: str
    client_ip: str
    server_link: str

    def run_in(self, namespace: str, argv: list[str]) -> list[str]:
        """``argv`` as run inside ``namespace``."""
        return ["ip", "netns", "exec", namespace, *argv]

    def shape(self, rate: str) -> None:
        """Limit what the server sends to ``rate`` (e.g. ``100mbit``), with a token
        bucket (tbf) on its end of the link."""
        done = subprocess.run(["ip", "netns", "exec", self.server, "tc", "qdisc", "add",
                               "dev", self.server_link, "root", "tbf", "rate", rate, "burst",
                               "256kb", "latency", "2s"], capture_output=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot slow the link down (tc tbf): "
                        f"{done.stderr.decode(errors='replace').strip()}")


def ip(args: list[str]) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    return None


@contextlib.contextmanager
def netns_pair() -> Iterator[Hosts]:
    """Two new namespaces joined by a veth pair, each end addressed in a /24 of its own
    and up (loopback too); removed afterwards, with the link."""
    why = _why_not()
    if why is not None:
        pytest.skip(f"cannot simulate two machines: {why}")
    tag = secrets.token_hex(3)
    subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
    hosts = Hosts(server=f"evshm-srv-{tag}", client=f"evshm-cli-{tag}",
                  server_ip=f"{subnet}.1", client_ip=f"{subnet}.2", server_link=f"evs{tag}")
    made: list[str] = []
    try:
        for name in (hosts.server, hosts.client):
            ip(["netns", "add", name])
            made.append(name)
        client_link = f"evc{tag}"
        ip(["link", "add", hosts.server_link, "type", "veth", "peer", "name", client_link])
        ip(["link", "set", hosts.server_link, "netns", hosts.server])
        ip(["link", "set", client_link, "netns", hosts.client])
        for ns, link, addr in ((hosts.server, hosts.server_link, hosts.server_ip),
                               (hosts.client, client_link, hosts.client_ip)):
            ip(["-n", ns, "addr", "add", f"{addr}/24", "dev", link])
            ip(["-n", ns, "link", "set", link, "up"])
            ip(["-n", ns, "link", "set", "lo", "up"])
    except subprocess.CalledProcessError as exc:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        pytest.skip(f"cannot simulate two machines: {' '.join(exc.cmd)} failed: "
                    f"{exc.stderr.decode(errors='replace').strip()}")
    try:
        yield hosts
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
