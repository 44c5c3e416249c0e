"""Whom the Python client takes for evshmd: a real evshmd run by another user is refused
before anything is sent or mapped, unless named in ``$EVSHM_DAEMON_UID``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import evshm
from harness import evshmd_binary, generate

NOBODY = 65534


@pytest.fixture
def impostor() -> Iterator[str]:
    """An evshmd run by ``nobody``, listening where this process can connect."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run a daemon as another user")
    # Not under pytest's tmp_path, which only its user may enter.
    public = Path(tempfile.mkdtemp(prefix="evshm-trust-"))
    public.chmod(0o1777)
    root = public / "root"
    root.mkdir()
    generate(root / "a.raw", 1000)
    (root / "a.raw").chmod(0o644)
    sock = str(public / "evshmd.sock")
    proc = subprocess.Popen([setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}",
                             "--clear-groups", str(evshmd_binary()), "--root", str(root),
                             "--socket", sock, "--log-level", "warn",
                             "--provision", "0"])
    try:
        deadline = time.monotonic() + 30
        while not _accepts(sock):
            assert proc.poll() is None, f"the impostor exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the impostor did not start"
            time.sleep(0.01)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        shutil.rmtree(public)


def _accepts(path: str) -> bool:
    """Whether something listens at ``path`` (the file exists before listen())."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def test_a_daemon_of_another_user_is_refused(impostor: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVSHM_DAEMON_UID", raising=False)
    with pytest.raises(evshm.UntrustedDaemon) as info:
        evshm.Client(impostor, timeout=10)
    assert str(info.value) == (
        f"refusing evshmd at {impostor}: the socket file belongs to uid {NOBODY}, not one "
        f"this client trusts ({os.geteuid()}, 0); for a daemon of another user, set "
        "EVSHM_DAEMON_UID to its uid")


def test_a_daemon_user_named_in_the_environment_is_trusted(
        impostor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVSHM_DAEMON_UID", str(NOBODY))
    with evshm.Client(impostor, timeout=10) as client, client.open("a.raw") as rec:
        assert rec.rows == 1000
    monkeypatch.setenv("EVSHM_DAEMON_UID", "nobody")
    with pytest.raises(evshm.UntrustedDaemon, match="is not a numeric user id"):
        evshm.Client(impostor, timeout=10)
