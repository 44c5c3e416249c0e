"""The wheel where there is no Rust: installed by pip into a fresh virtualenv whose PATH
has no cargo, it brings evshmd and evshm, and ``evshm.start`` serves a directory of
recordings from which a window is read, until ``evshm.stop`` leaves nothing behind (the
wheel is the one scripts/test.sh built, ``$EVSHM_WHEEL``)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import evshm
from harness import user_env

SCRIPT = """
import sys
from pathlib import Path

import evshm

client = evshm.start(sys.argv[1])
with client.open("cam0.raw", window=(0, 50_000)) as rec:
    print(rec.rows, len(rec.chunks), rec.table.column("t")[rec.rows - 1].as_py() < 50_000)
print(Path(client.socket_path + ".lock").read_text().strip())  # the instance, while it runs
client.close()
print(evshm.stop())
"""


def test_the_wheel_holds_the_package_and_both_binaries(wheel: Path):
    assert wheel.name.startswith(f"evshm-{evshm.__version__}-py3-none-manylinux_")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    data = f"evshm-{evshm.__version__}.data/scripts"
    assert {f"{data}/evshmd", f"{data}/evshm", "evshm/__init__.py", "evshm/py.typed"} <= names


def test_installed_without_rust_it_starts_reads_and_stops(bare_venv: Path, wheel: Path,
                                                          tmp_path: Path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = user_env(bare_venv, XDG_RUNTIME_DIR=str(runtime))
    assert shutil.which("cargo", path=env["PATH"]) is None
    assert shutil.which("rustc", path=env["PATH"]) is None

    def run(*argv: str) -> str:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    python = str(bare_venv / "bin" / "python")
    run(python, "-m", "pip", "install", "--quiet", str(wheel))  # pyarrow from the index
    assert shutil.which("evshmd", path=env["PATH"]) == str(bare_venv / "bin" / "evshmd")
    assert run("evshmd", "--version") == f"evshmd {evshm.__version__}\n"
    assert run(python, "-m", "evshm", "--version") == f"evshm {evshm.__version__}\n"

    root = tmp_path / "recordings"
    root.mkdir()
    run("evshm", "generate", str(root / "cam0.raw"), "--events", "200000")
    window, instance, stopped = run(python, "-c", SCRIPT, str(root)).splitlines()
    rows, chunks, inside = window.split()
    assert int(rows) > 0 and chunks == "1" and inside == "True"
    assert stopped == "True"
    socket_path = runtime / "evshm.sock"  # the default socket, in $XDG_RUNTIME_DIR
    assert sorted(os.listdir(runtime)) == ["evshm.sock.log"], "no socket nor lock file left"
    assert glob.glob(f"/dev/shm/evshm-v2-{instance}*") == [], "nothing in the shm directory"
    assert f"--socket {socket_path}" in (runtime / "evshm.sock.log").read_text()
