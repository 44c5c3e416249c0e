"""Fixtures of the cross-process tests (the harness itself is in harness.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    MIXED,
    MIXED_EVENTS,
    REPO,
    STOP_DEADLINE,
    Daemon,
    evshmd_binary,
    generate,
    installed_package_problem,
    real_data_dir,
    real_manifest,
    wait_until_answering,
)


def pytest_configure(config: pytest.Config) -> None:
    problem = installed_package_problem()
    if problem is not None:
        pytest.exit(problem, returncode=1)

#: Events of ``big.raw``: a few million, so that one copy (13 bytes an event) stands out
#: clearly in the memory counters of the sharing tests.
BIG_EVENTS = 3_000_000
#: Geometry of the synthetic recordings: small, so that histograms and voxel grids of a
#: batch stay small next to the recording's extent.
WIDTH, HEIGHT = 160, 120


@pytest.fixture
def daemon_args() -> list[str]:
    """Extra evshmd arguments; a test module overrides this fixture to change them."""
    return []


@pytest.fixture
def real_in_root() -> bool:
    """Whether the daemon's root holds the real recordings; a test module overrides this
    fixture (to ``False``) to serve only recordings of its own."""
    return True


@pytest.fixture
def daemon(tmp_path: Path, daemon_args: list[str], real_in_root: bool) -> Iterator[Daemon]:
    """A fresh evshmd serving ``tmp_path/root``.

    The root holds copies of the real recordings (when available and ``real_in_root``)
    at its top level, one of them again under ``sub/dir/``, and ``notes.txt`` (not a
    recording).
    """
    binary = evshmd_binary()
    root = tmp_path / "root"
    root.mkdir()
    real = real_data_dir() if real_in_root else None
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
        # No provisioned pages (--provision): free memory allocated ahead in the arenas,
        # held by every daemon of the suite, which would blur the tests that count the
        # pages of an arena (a test module that tests provisioning passes its own).
        provision = [] if "--provision" in daemon_args else ["--provision", "0"]
        proc = subprocess.Popen([str(binary), "--root", str(root), "--socket", sock,
                                 *provision, *daemon_args],
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
    left = d.arenas()
    assert not left, f"arenas left in /dev/shm after SIGTERM: {left}"
    assert not os.path.exists(sock), f"socket file {sock} left after SIGTERM"
    assert not os.path.exists(f"{sock}.lock"), f"lock file {sock}.lock left after SIGTERM"


@pytest.fixture
def real(daemon: Daemon) -> Path:
    """The real-data folder (its recordings are copied in the daemon's root)."""
    if daemon.real is None:
        pytest.skip("real recordings not found: set $EVSHM_REAL_DATA or provide "
                    f"{REPO.parent / 'shared' / 'data' / 'real'}")
    return daemon.real



@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic EVT3 recordings, generated once per session: ``big.raw``
    (:data:`BIG_EVENTS` events from t = 0) and ``small.raw`` (200,000 events from
    t = 10 s), both :data:`WIDTH` x :data:`HEIGHT`, about 20 M events/s."""
    folder = tmp_path_factory.mktemp("synthetic")
    generate(folder / "big.raw", BIG_EVENTS, width=WIDTH, height=HEIGHT, seed=1)
    generate(folder / "small.raw", 200_000, width=WIDTH, height=HEIGHT, seed=2,
             t0=10_000_000)
    return folder


@pytest.fixture
def synthetic(daemon: Daemon, synthetic_dir: Path) -> Daemon:
    """The daemon, with the synthetic recordings linked into its root."""
    for source in synthetic_dir.iterdir():
        os.link(source, daemon.root / source.name)
    return daemon


@pytest.fixture(scope="session")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The :data:`MIXED` recordings, generated once per session."""
    folder = tmp_path_factory.mktemp("mixed")
    for seed, (name, (width, height)) in enumerate(MIXED.items(), start=10):
        (folder / name).parent.mkdir(exist_ok=True)
        generate(folder / name, MIXED_EVENTS, width=width, height=height, seed=seed)
    return folder


@pytest.fixture
def mixed(daemon: Daemon, mixed_dir: Path) -> Daemon:
    """The daemon, with the :data:`MIXED` recordings linked into its root."""
    for name in MIXED:
        (daemon.root / name).parent.mkdir(exist_ok=True)
        os.link(mixed_dir / name, daemon.root / name)
    return daemon


@pytest.fixture(scope="session")
def wheel() -> Path:
    """The wheel scripts/test.sh built (``$EVSHM_WHEEL``)."""
    path = os.environ.get("EVSHM_WHEEL")
    if not path:
        ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
        message = "no wheel to test: scripts/test.sh sets $EVSHM_WHEEL to the one it builds"
        if ci:
            pytest.fail(f"CI is set, and {message}")
        pytest.skip(message)
    return Path(path)


@pytest.fixture
def bare_venv(tmp_path: Path) -> Path:
    """A new virtualenv with nothing but pip, as a user has before ``pip install``."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    return venv
