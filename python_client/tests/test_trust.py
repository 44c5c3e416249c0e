"""The checks of ``_trust`` on real sockets and directories of this process's user."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from evshm import UntrustedDaemon, _trust


def test_a_listener_of_this_user_is_trusted(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_trust.DAEMON_UID_VARIABLE, raising=False)
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        _trust.check_socket(path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            _trust.check_peer(path, client)
    assert _trust.trusted_daemon_uids(path) == [os.geteuid(), 0]


def test_the_fallback_directory_must_be_private(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fallback = tmp_path / "evshm-fallback"
    fallback.mkdir(mode=0o700)
    monkeypatch.setattr(_trust, "fallback_socket_dir", lambda: str(fallback))
    path = str(fallback / "evshm.sock")
    _trust.check_socket(path)  # private, and no socket yet: connect() will say so
    fallback.chmod(0o755)
    with pytest.raises(UntrustedDaemon) as info:
        _trust.check_socket(path)
    assert str(info.value) == (
        f"refusing evshmd at {path}: {fallback} is open to other users (mode 755, not 700): "
        "another user may have made it to catch this user's connections")
    fallback.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(fallback)
    monkeypatch.setattr(_trust, "fallback_socket_dir", lambda: str(link))
    with pytest.raises(UntrustedDaemon, match="is not a directory"):
        _trust.check_socket(str(link / "evshm.sock"))
