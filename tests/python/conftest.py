"""Fixtures of the cross-process tests (the harness itself is in harness.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from harness import (
    REPO,
    STOP_DEADLINE,
    Daemon,
    evshmd_binary,
    real_data_dir,
    real_manifest,
    wait_until_answering,
)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A fresh evshmd serving ``tmp_path/root``.

    The root holds copies of the real recordings (when available) at its top level, one
    of them again under ``sub/dir/``, and ``notes.txt`` (not a recording).
    """
    binary = evshmd_binary()
    root = tmp_path / "root"
    root.mkdir()
    real = real_data_dir()
    if real is not None:
        for entry in real_manifest():
            shutil.copyfile(real / entry["file"], root / entry["file"])
        (root / "sub" / "dir").mkdir(parents=True)
        shutil.copyfile(real / "evt3_test_pedestrians.raw",
                        root / "sub" / "dir" / "pedestrians.raw")
    (root / "notes.txt").write_text("not an event recording\n" * 10)
    sock = str(tmp_path / "evshmd.sock")
    log = tmp_path / "evshmd.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([str(binary), "--root", str(root), "--socket", sock],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                env={**os.environ, "RUST_LOG": "debug"})
    d = Daemon(proc=proc, root=root, socket=sock, log=log, real=real)
    try:
        wait_until_answering(d)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"evshmd did not exit within {STOP_DEADLINE} s of SIGTERM:\n"
                            f"{d.log_text()}")
    assert proc.returncode == 0, f"evshmd exited with {proc.returncode}:\n{d.log_text()}"
    left = d.segments()
    assert not left, f"segments left in /dev/shm after SIGTERM: {left}"
    assert not os.path.exists(sock), f"socket file {sock} left after SIGTERM"


@pytest.fixture
def real(daemon: Daemon) -> Path:
    """The real-data folder (its recordings are copied in the daemon's root)."""
    if daemon.real is None:
        pytest.skip("real recordings not found: set $EVSHM_REAL_DATA or provide "
                    f"{REPO.parent / 'shared' / 'data' / 'real'}")
    return daemon.real

