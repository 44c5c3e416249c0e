"""The pure parts of evshm.start: evshmd's options from keyword arguments, the roots,
where the binaries are found (the daemon itself is tested in tests/python/test_start.py)."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from evshm import _daemon


def test_keyword_arguments_become_evshmd_options():
    options = {"memory_budget": "8G", "sealed": True, "read_ahead": 2, "group": None,
               "allow_uid": [1001, 1002], "log_level": False}
    assert _daemon.daemon_args(options) == [
        "--memory-budget", "8G", "--sealed", "--read-ahead", "2",
        "--allow-uid", "1001", "--allow-uid", "1002"]


def test_roots_are_canonical_directories(tmp_path: Path):
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "link")
    real = str((tmp_path / "data").resolve())
    assert _daemon.canonical_roots(tmp_path / "link") == [real]
    assert _daemon.canonical_roots([str(tmp_path / "link"), tmp_path]) == [
        real, str(tmp_path.resolve())]
    with pytest.raises(NotADirectoryError):
        _daemon.canonical_roots(tmp_path / "missing")
    with pytest.raises(ValueError):
        _daemon.canonical_roots([])


def test_binaries_come_from_the_environment_then_the_installation_then_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("EVSHMD", "/opt/evshmd")
    assert _daemon.binary("evshmd") == "/opt/evshmd"
    monkeypatch.delenv("EVSHMD")
    scripts, on_path = tmp_path / "scripts", tmp_path / "bin"
    for folder in (scripts, on_path):
        folder.mkdir()
        (folder / "evshmd").write_text("#!/bin/sh\n")
        (folder / "evshmd").chmod(0o755)
    monkeypatch.setattr(sysconfig, "get_path", lambda name, scheme=None: str(scripts))
    monkeypatch.setenv("PATH", str(on_path))
    assert _daemon.binary("evshmd") == str(scripts / "evshmd")
    (scripts / "evshmd").unlink()
    assert _daemon.binary("evshmd") == str(on_path / "evshmd")
    (on_path / "evshmd").unlink()
    with pytest.raises(FileNotFoundError, match="comes with the evshm wheel"):
        _daemon.binary("evshmd")
