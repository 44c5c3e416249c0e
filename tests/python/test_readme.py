"""Docs that run: every shell and Python block of README.md, in order, in a fresh
virtualenv that has nothing but pip, no cargo on its PATH, a directory that holds the wheel
in dist/ (as scripts/wheel.sh leaves it), and a default socket of its own. The Rust blocks
are run by tests/readme.rs."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from harness import REPO, user_env
from readme_blocks import blocks

README = REPO / "README.md"
DRIVER = Path(__file__).with_name("readme_blocks.py")


def test_every_block_is_one_the_suite_runs():
    languages = [language for language, _ in blocks(README.read_text())]
    # `text`: a diagram, or a command for a machine of a kind this one is not (Across
    # machines): shown, not run.
    assert set(languages) <= {"sh", "python", "rust", "text"}, languages
    assert languages[:2] == ["sh", "python"], "the quick start: pip install, then Python"


def test_the_readme_runs_from_pip_install_to_stop(bare_venv: Path, wheel: Path,
                                                  tmp_path: Path):
    work, runtime = tmp_path / "work", tmp_path / "runtime"
    (work / "dist").mkdir(parents=True)
    runtime.mkdir(mode=0o700)
    shutil.copy(wheel, work / "dist")
    env = user_env(bare_venv, XDG_RUNTIME_DIR=str(runtime))
    python = str(bare_venv / "bin" / "python")
    socket_path = runtime / "evshm.sock"
    try:
        done = subprocess.run([python, str(DRIVER), str(README)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
        log = (runtime / "evshm.sock.log").read_text()
    finally:
        if socket_path.exists():  # the README did not get to its evshm.stop()
            subprocess.run([python, "-m", "evshm", "stop"], env=env, timeout=60)
    assert " events in [2 s, 2.05 s): ['t', 'x', 'y', 'p']" in done.stdout
    assert "started evshmd" in done.stderr
    assert sorted(os.listdir(runtime)) == ["evshm.sock.log"], "stopped, nothing left"
    ids = set(line.split("instance ")[1].split()[0] for line in log.splitlines()
              if "instance " in line and " serving " in line)
    # The quick start's daemon, and the one with Flight of *Across machines*.
    assert len(ids) == 2, log
    assert "Flight service on grpc://127.0.0.1:8815" in log
    for instance in ids:
        assert glob.glob(f"/dev/shm/evshm-v2-{instance}*") == [], "no arena left"
