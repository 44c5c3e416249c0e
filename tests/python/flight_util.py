"""Helpers of the Flight tests: the service's address from the daemon's log, a token file,
and a self-signed TLS certificate (openssl)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from harness import Daemon, wait_for

TOKEN = "t0ken-for-the-tests"


def token_file(folder: Path, token: str = TOKEN) -> Path:
    path = folder / "flight.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def flight_address(daemon: Daemon) -> str:
    """``grpc://HOST:PORT`` as the daemon logged it (its port chosen by the system)."""
    pattern = re.compile(r"Flight service on (grpc(?:\+tls)?://\S+)")
    found: list[str] = []

    def logged() -> bool:
        found[:] = pattern.findall(daemon.log_text())
        return bool(found)

    wait_for(logged, "the Flight service's address in the daemon's log", 10.0)
    return found[-1]


def self_signed(folder: Path, ip: str) -> tuple[Path, Path]:
    """A certificate for ``ip`` (and localhost) and its key, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: cannot make a TLS certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=evshm-test", "-addext",
                    f"subjectAltName=IP:{ip},DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Equal columns, row for row (however the tables are chunked)."""
    return a.num_rows == b.num_rows and all(
        a.column(name).equals(b.column(name)) for name in a.schema.names)
