"""evshmd on demand: ``evshm.start`` starts one detached on the default socket or reuses
the one there, ``evshm.stop`` ends it and nothing is left behind; the same through
``python -m evshm start|stop``; workers find the daemon through the default socket."""

from __future__ import annotations

import glob
import multiprocessing
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import evshm
import workers
from harness import evshmd_binary, python_env, wait_for

#: The line evshm.start prints on stderr when it starts a daemon.
STARTED = re.compile(r"evshm: started evshmd \(pid (\d+)\) serving (.+) on (\S+); "
                     r"log: (\S+); stop it with evshm\.stop\(\) or python -m evshm stop")


@pytest.fixture
def socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The default socket of this test, and its daemon's binary, through the environment
    (which children inherit); whatever runs there at the end is stopped."""
    path = str(tmp_path / "run" / "evshm.sock")
    os.mkdir(tmp_path / "run", 0o700)
    monkeypatch.setenv("EVSHM_SOCKET", path)
    monkeypatch.setenv("EVSHMD", str(evshmd_binary()))
    yield path
    evshm.stop(path)


@pytest.fixture
def root(tmp_path: Path, synthetic_dir: Path) -> Path:
    folder = tmp_path / "recordings"
    folder.mkdir()
    os.link(synthetic_dir / "small.raw", folder / "small.raw")
    return folder


def instance_of(socket_path: str) -> str:
    return Path(f"{socket_path}.lock").read_text().strip()


def left_behind(socket_path: str, instance: str) -> list[str]:
    """What a stopped daemon left: its arenas and liveness file, its socket and lock."""
    files = glob.glob(f"/dev/shm/evshm-v2-{instance}*")
    return files + [p for p in (socket_path, f"{socket_path}.lock") if os.path.exists(p)]


def test_start_starts_one_detached_then_reuses_it_and_stop_ends_it(
        socket_path: str, root: Path, capfd: pytest.CaptureFixture[str]):
    client = evshm.start(root, memory_budget="64M", chunk_events=50_000)
    started = STARTED.fullmatch(capfd.readouterr().err.strip())
    assert started is not None
    pid = int(started[1])
    assert started.group(2, 3, 4) == (str(root.resolve()), socket_path, f"{socket_path}.log")
    assert os.getsid(pid) == pid, "in a session of its own"
    log = os.stat(f"{socket_path}.log")
    assert stat.S_IMODE(log.st_mode) == 0o600
    assert client.roots == [str(root.resolve())]
    assert client.stats()["memory_budget"] == 64 << 20, "the options reached evshmd"
    instance = instance_of(socket_path)

    again = evshm.start(str(root))
    assert capfd.readouterr().err == "", "a running daemon is reused silently"
    assert again.stats()["connections"] == 2
    with again.open("small.raw", window=(10_000_000, 10_002_000)) as rec:
        table = rec.table
    assert table.num_rows > 0

    assert evshm.stop() is True
    assert not os.path.exists(f"/proc/{pid}"), "exited, and reaped"
    assert left_behind(socket_path, instance) == []
    assert table.column("t")[0].as_py() >= 10_000_000, "mappings outlive the daemon"
    assert evshm.stop() is False, "nothing runs there any more"
    assert "evshm.start (pid" in Path(f"{socket_path}.log").read_text()


def test_a_daemon_serving_another_root_is_left_alone(socket_path: str, root: Path,
                                                      tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    client = evshm.start(root)
    with pytest.raises(evshm.RootMismatch) as refused:
        evshm.start(other)
    message = str(refused.value)
    assert message == (f"evshmd at {socket_path} serves {root.resolve()}, not "
                       f"{other.resolve()}; stop it first (evshm.stop() or python -m evshm "
                       "stop), or start another on a socket of its own "
                       "(evshm.start(root, socket=PATH))")
    assert [info.path for info in client.list()] == ["small.raw"], "still serving"
    assert evshm.stop()


def test_a_daemon_that_cannot_start_is_reported_with_its_log(socket_path: str, root: Path):
    with pytest.raises(evshm.StartFailed) as failed:
        evshm.start(root, no_such_option=1)
    message = str(failed.value)
    assert f"evshmd could not start on {socket_path} (exit status 2)" in message
    assert "--no-such-option" in message and message.endswith(f"[log: {socket_path}.log]")
    assert not os.path.exists(socket_path)
    with pytest.raises(NotADirectoryError):
        evshm.start(root / "small.raw")


def test_two_starts_at_once_share_one_daemon(socket_path: str, root: Path):
    code = f"import evshm; print(evshm.start({str(root)!r}).roots)"
    starters = [subprocess.Popen([sys.executable, "-c", code], env=python_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    outputs = [starter.communicate(timeout=60) for starter in starters]
    assert [starter.returncode for starter in starters] == [0, 0], outputs
    assert [out for out, _ in outputs] == [f"['{root.resolve()}']\n"] * 2
    assert sum(bool(STARTED.search(err)) for _, err in outputs) == 1, outputs
    assert evshm.stop()


def test_workers_find_the_daemon_through_the_default_socket(socket_path: str, root: Path):
    with evshm.start(root) as client, client.open("small.raw") as rec:
        rows = rec.rows
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        counted = pool.map(workers.rows_at_default_socket, ["small.raw"] * 2)
    assert counted == [rows, rows]


def test_dataloader_workers_find_the_daemon_through_the_default_socket(socket_path: str,
                                                                      root: Path):
    torch_data = pytest.importorskip("torch.utils.data")
    from evshm.torch import EventWindowDataset

    evshm.start(root).close()
    dataset = EventWindowDataset(["small.raw"], duration=2_000, transform=workers.WindowProbe())
    loader = torch_data.DataLoader(dataset, batch_size=4, num_workers=2,
                                   multiprocessing_context="spawn", timeout=120)
    batches = list(loader)
    assert sum(len(batch["rows"]) for batch in batches) == len(dataset)
    assert sum(int(batch["rows"].sum()) for batch in batches) == 200_000
    assert os.getpid() not in {pid for batch in batches for pid in batch["pid"].tolist()}


def test_the_command_line_starts_and_stops_it(socket_path: str, root: Path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "evshm", *args], env=python_env(),
                              capture_output=True, text=True, timeout=60)

    first = run("start", str(root), "--memory-budget", "32M")
    assert first.returncode == 0, first.stderr
    started = STARTED.fullmatch(first.stderr.strip())
    assert started is not None and first.stdout == ""
    instance = instance_of(socket_path)
    again = run("start", str(root))
    assert again.stdout == f"evshmd already serves {root.resolve()} on {socket_path}\n"
    with evshm.Client() as client:
        assert client.stats()["memory_budget"] == 32 << 20
    stopped = run("stop")
    assert stopped.stdout == f"stopped evshmd on {socket_path}\n", stopped.stderr
    wait_for(lambda: not os.path.exists(f"/proc/{started[1]}"), "the daemon to be reaped")
    assert left_behind(socket_path, instance) == []
    assert run("stop").stdout == f"no evshmd runs on {socket_path}\n"


def test_a_daemon_this_process_started_and_another_stopped_is_reaped(
        socket_path: str, root: Path, capfd: pytest.CaptureFixture[str]):
    evshm.start(root).close()
    started = STARTED.fullmatch(capfd.readouterr().err.strip())
    assert started is not None
    stopped = subprocess.run([sys.executable, "-m", "evshm", "stop"], env=python_env(),
                             capture_output=True, text=True, timeout=60)
    assert stopped.stdout == f"stopped evshmd on {socket_path}\n", stopped.stderr
    evshm.start(root).close()  # this process's child exited: reaped, not left a zombie
    assert not os.path.exists(f"/proc/{started[1]}")
    assert evshm.stop()
