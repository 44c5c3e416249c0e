"""The complete training example of docs/PYTHON.md, taken from the page and run as a
script (``python train.py``) against a real evshmd that serves recordings of two sensor
sizes in class folders and nothing else, its DataLoader's two workers started by fork
and by spawn."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "torch", reason="torch is not installed, so the training example is not run "
                    "(pip install 'evshm[torch]')")

from harness import REPO, Daemon, python_env

#: Runs a script as ``__main__`` with the given start method as multiprocessing's default
#: (what the example's DataLoader uses). Guarded: spawned children import it again.
STARTER = '''import multiprocessing, runpy, sys

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    runpy.run_path(sys.argv[2], run_name="__main__")
'''


@pytest.fixture
def real_in_root() -> bool:
    return False  # the example trains on every recording the daemon serves


def training_example() -> str:
    """The first Python block after the heading "A complete training loop"."""
    page = (REPO / "docs" / "PYTHON.md").read_text()
    section = page.split("### A complete training loop", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_training_example_runs(mixed: Daemon, tmp_path: Path, method: str):
    code = training_example()
    assert "FolderClass()" in code and "size=SIZE" in code and "num_workers=2" in code
    (tmp_path / "train.py").write_text(code)
    (tmp_path / "start.py").write_text(STARTER)
    done = subprocess.run([sys.executable, str(tmp_path / "start.py"), method,
                           str(tmp_path / "train.py")], env=python_env(mixed.socket),
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    for epoch, line in enumerate(lines):
        found = re.fullmatch(rf"epoch {epoch}: mean loss (\d+\.\d+), (\d+) of (\d+) windows "
                             r"right \(background / cars\)", line)
        assert found, line
        assert 0 <= int(found[2]) <= int(found[3]) and int(found[3]) >= 16
