"""Harness of the cross-process tests: start a real evshmd, find the real recordings.

The tests run against the installed evshm package, as its users do (scripts/test.sh
installs the wheel it builds); conftest.py stops them at once if that package is not the
working tree's. The daemon binary is ``$EVSHMD``, else the ``evshmd`` on ``PATH`` (the
wheel's); tests skip when there is none. The real recordings are read from
``$EVSHM_REAL_DATA``, else ``<repo>/../shared/data/real`` (third-party files, never copied
into the repository); tests that need them skip when the folder is absent. Each daemon gets
copies of the recordings in its own root, and on teardown must exit 0 on SIGTERM leaving
no arena of its instance in /dev/shm and no socket or lock file.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.ipc
import pytest

import evshm

REPO = Path(__file__).resolve().parents[2]
PYTHON_SRC = REPO / "python_client" / "src"

#: Recordings of two sensor sizes in class folders (``CLASS/NAME``), as a training set of
#: N-CARS' layout would be: name -> (width, height). The ``mixed`` fixture serves them.
MIXED = {"background/a.raw": (320, 240), "background/b.raw": (640, 480),
         "cars/c.raw": (320, 240), "cars/d.raw": (640, 480)}
#: Events of each: 1 M, about 50 ms.
MIXED_EVENTS = 1_000_000

START_DEADLINE = 30.0  # seconds for the daemon to answer hello
STOP_DEADLINE = 20.0  # seconds for the daemon to exit after SIGTERM


def installed_package_problem() -> str | None:
    """Why the installed evshm package is not the one of this working tree, if it is not:
    these tests would test something else than the code next to them."""
    installed = Path(evshm.__file__).resolve().parent
    if installed == PYTHON_SRC / "evshm":
        return None  # a development install of the working tree (pip install -e)
    for source in sorted((PYTHON_SRC / "evshm").glob("*.py")):
        copy = installed / source.name
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            return (f"the installed evshm ({installed}) is not python_client/src: "
                    f"{source.name} differs; scripts/test.sh builds and installs the wheel")
    return None


def evshmd_binary() -> Path:
    found = os.environ.get("EVSHMD") or shutil.which("evshmd")
    if found is None or not os.access(found, os.X_OK):
        pytest.skip("evshmd not found: install the wheel (scripts/wheel.sh), or point "
                    "$EVSHMD at a build of it")
    return Path(found)


def evshm_cli_binary() -> Path:
    """The ``evshm`` CLI (for ``evshm generate``): ``$EVSHM_CLI``, else beside evshmd."""
    path = Path(os.environ.get("EVSHM_CLI") or evshmd_binary().parent / "evshm")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"evshm binary not found at {path}: build it with "
                    "`cargo build --workspace` or point $EVSHM_CLI at it")
    return path


def generate(out: Path, events: int, *, width: int = 1280, height: int = 720,
             seed: int = 1, t0: int = 0, fmt: str = "evt3") -> Path:
    """Write a synthetic recording (EVT3 unless ``fmt`` says otherwise) with
    ``evshm generate``."""
    subprocess.run([str(evshm_cli_binary()), "generate", str(out), "--format", fmt,
                    "--events", str(events), "--width", str(width), "--height", str(height),
                    "--seed", str(seed), "--t0", str(t0)],
                   check=True, capture_output=True, timeout=120)
    return out


def real_data_dir() -> Path | None:
    path = Path(os.environ.get("EVSHM_REAL_DATA") or REPO.parent / "shared" / "data" / "real")
    return path if (path / "MANIFEST.json").is_file() else None


def real_manifest() -> list[dict[str, Any]]:
    folder = real_data_dir()
    if folder is None:
        return []
    return json.loads((folder / "MANIFEST.json").read_text())


@dataclass
class Daemon:
    """A running evshmd and where it lives."""

    proc: subprocess.Popen
    root: Path
    socket: str
    log: Path
    real: Path | None  # the real-data folder the root was filled from, if any
    #: The daemon's instance id, which names its arenas: read from its socket's lock
    #: file once it answers (a clean shutdown removes the file).
    instance: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def arena_prefix(self) -> str:
        return f"evshm-v2-{self.instance}-"

    def client(self, **kwargs: Any) -> evshm.Client:
        kwargs.setdefault("timeout", 60.0)
        return evshm.Client(self.socket, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def arenas(self) -> list[str]:
        """The arena files of this daemon in /dev/shm (none when it runs sealed)."""
        return glob.glob(f"/dev/shm/{self.arena_prefix}*")


def wait_until_answering(daemon: Daemon) -> None:
    deadline = time.monotonic() + START_DEADLINE
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            pytest.fail(f"evshmd exited with {daemon.proc.returncode} at startup:\n"
                        f"{daemon.log_text()}")
        if os.path.exists(daemon.socket):
            try:
                evshm.Client(daemon.socket, timeout=2.0).close()
                daemon.instance = Path(f"{daemon.socket}.lock").read_text().strip()
                return
            except evshm.EvshmError as exc:
                last = exc
        time.sleep(0.02)
    daemon.proc.kill()
    daemon.proc.wait()
    pytest.fail(f"evshmd did not answer on {daemon.socket} within {START_DEADLINE} s "
                f"({last}):\n{daemon.log_text()}")


def wait_for(predicate: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def python_env(socket_path: str | None = None) -> dict[str, str]:
    """Environment for a ``python -m evshm`` subprocess (of the installed package), with
    ``$EVSHM_SOCKET`` if ``socket_path`` is given."""
    env = dict(os.environ)
    if socket_path is not None:
        env["EVSHM_SOCKET"] = socket_path
    return env


def user_env(venv: Path, **extra: str) -> dict[str, str]:
    """The environment of a user of ``venv``: its bin/ first on a PATH without the
    directories of cargo and rustc, none of the variables that the tests point at binaries,
    sources or sockets with, and ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("EVSHMD", "EVSHM_CLI", "EVSHM_SOCKET", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *(
        folder for folder in os.environ.get("PATH", "").split(os.pathsep)
        if not any(os.access(os.path.join(folder, tool), os.X_OK)
                   for tool in ("cargo", "rustc")))])
    return {**env, **extra}


def decode_whole(recording: Path, out: Path) -> pa.Table:
    """``recording`` decoded in one piece, in this process's child ``evshm convert``
    (no daemon, no chunks): the reference a chunked decode must equal."""
    subprocess.run([str(evshm_cli_binary()), "convert", str(recording), str(out)],
                   check=True, capture_output=True, timeout=120)
    with pa.ipc.open_file(str(out)) as reader:
        return reader.read_all()


def arena_file(extent: evshm.ExtentInfo, shm_dir: str | Path = "/dev/shm") -> str:
    """The file of the arena ``extent`` lies in: ``shm_dir/<arena name>`` (an arena's name
    is its file name in evshmd's ``--shm-dir``; a sealed arena has no file)."""
    return os.path.join(str(shm_dir), extent.arena)


def arena_mapping(name: str, pid: int | str = "self") -> tuple[int, int]:
    """Start and end address of the one mapping of arena ``name`` in process ``pid``, read
    back from /proc/PID/maps (a file by its path, a sealed memfd as ``/memfd:NAME``): the
    client maps each arena once per process, whole, shared and read-only."""
    with open(f"/proc/{pid}/maps") as maps:
        found = [line.split() for line in maps
                 if len(line.split()) >= 6 and (line.split()[5].endswith(f"/{name}")
                                                or line.split()[5] == f"/memfd:{name}")]
    assert len(found) == 1, f"arena {name}: {len(found)} mappings, not one: {found}"
    [line] = found
    assert line[1] == "r--s", line
    start, end = (int(v, 16) for v in line[0].split("-"))
    return start, end


def time_bounds(rec: evshm.Recording) -> tuple[int, int]:
    """``rec.time_bounds`` of a recording that has events."""
    bounds = rec.time_bounds
    assert bounds is not None, "the recording has no events"
    return bounds


def extent_ranges(rec: evshm.Recording) -> list[tuple[int, int]]:
    """The address range of each of ``rec``'s chunks' extents, in chunk order, in this
    process's one mapping of the arena (read back from /proc/self/maps): the arena is
    mapped whole, so the range is its mapping's start plus the extent's offset and size.
    Also checks that each stream buffer of ``rec`` is exactly that range."""
    ranges = []
    for chunk, stream in zip(rec.chunks, rec.stream_buffers):
        start, end = arena_mapping(chunk.extent.arena)
        extent = chunk.extent
        assert extent.offset % 64 == 0 and extent.offset + extent.size <= end - start, extent
        first = start + extent.offset
        assert (stream.address, stream.size) == (first, extent.size), (hex(stream.address),
                                                                        hex(first))
        ranges.append((first, first + extent.size))
    return ranges


def assert_table_in_place(rec: evshm.Recording) -> None:
    """Every buffer of ``rec.table`` lies inside the extent of its chunk, in this process's
    mapping of its arena (column chunk ``i`` comes from the ``i``-th chunk that holds
    rows): zero copy."""
    used = [bounds for chunk, bounds in zip(rec.chunks, extent_ranges(rec))
            if chunk.end > chunk.start]
    for column in rec.table.columns:
        chunks = [chunk for chunk in column.chunks if len(chunk)]
        assert len(chunks) == len(used)
        for chunk, (start, end) in zip(chunks, used):
            for buf in chunk.buffers():
                if buf is not None:
                    assert start <= buf.address and buf.address + buf.size <= end, \
                        hex(buf.address)
