"""Errors that say what to do, each reproduced against a real evshmd."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import evshm
from evshm import _arena, _client
from harness import Daemon, decode_whole, evshmd_binary, generate

#: Events per chunk: a chunk of two.raw is about 0.7 MB decoded.
CHUNK_EVENTS = 50_000
#: Bytes: one chunk fits, two do not.
BUDGET = 1_000_000


@pytest.fixture
def daemon_args() -> list[str]:
    return ["--chunk-events", str(CHUNK_EVENTS), "--memory-budget", str(BUDGET),
            "--budget-wait", "0.2"]


def test_a_window_across_two_chunks_over_the_budget_says_the_budget_it_needs(
        daemon: Daemon, tmp_path: Path):
    generate(daemon.root / "two.raw", 200_000, width=160, height=120)
    whole = decode_whole(daemon.root / "two.raw", tmp_path / "two.arrow")
    t = [int(value) for value in whole.column("t").to_numpy()]
    # Chunk 0 ends between events 50k and about 75k, chunk 1 after event 100k.
    start, end = t[25_000], t[90_000]
    with daemon.client() as client:
        with pytest.raises(evshm.OverBudget) as refused:
            client.open("two.raw", window=(start, end))
        assert isinstance(refused.value, evshm.ShmFull), "still caught as it was before"
        assert refused.value.code == "over_budget"
        message = refused.value.message
        assert message.startswith(f"two.raw: the window [{start}, {end}) spans chunks 0 and 1 "
                                  "(it crosses the boundary between them, so both must be "
                                  "resident at once), whose chunks need "), message
        assert "time windows" not in message
        needed = re.search(r"raise --memory-budget to at least (\d+)K, or make chunks "
                           r"smaller \(--chunk-events, --chunk-span\)$", message)
        assert needed is not None, message
        assert BUDGET < int(needed[1]) * 1024 < 2 * BUDGET
        with client.open("two.raw", window=(t[0], t[20_000])) as rec:  # one chunk fits
            assert rec.rows > 0 and len(rec.chunks) == 1


def test_an_unread_format_is_not_blamed_on_its_name(daemon: Daemon):
    (daemon.root / "capture.bin").write_bytes(bytes(range(256)) * 64)
    (daemon.root / "cut.raw").write_bytes(bytes(range(256)) * 64)
    with daemon.client() as client:
        with pytest.raises(evshm.UnsupportedFormat) as refused:
            client.open("capture.bin")
        message = refused.value.message
        assert message.startswith("capture.bin: not an event recording evshm reads "
                                  "(no `% ` header, and not text"), message
        assert "although" not in message and "ends in .bin" not in message
        assert message.endswith("convert other formats to one of these"), message
        with pytest.raises(evshm.UnsupportedFormat) as refused:
            client.open("cut.raw")
        assert ("the name ends in .raw, but a Prophesee RAW file starts with its `% ` "
                "header: was it cut off?") in refused.value.message


@pytest.fixture
def own_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A default socket of this test's own, for evshm.start; stopped at the end."""
    path = str(tmp_path / "evshm.sock")
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


def test_a_client_whose_daemon_restarted_reconnects_once(own_socket: str, root: Path):
    client = evshm.start(root)
    with client.open("small.raw") as rec:
        table = rec.table
    evshm.stop()
    evshm.start(root).close()
    with client.open("small.raw", window=(10_000_000, 10_001_000)) as rec:
        assert rec.rows > 0
    assert client.stats()["connections"] == 1, "one new connection"
    assert table.num_rows == 200_000, "what was mapped before stays readable"


def test_a_client_whose_daemon_stopped_is_told_so(own_socket: str, root: Path):
    client = evshm.start(root)
    evshm.stop()
    with pytest.raises(evshm.ConnectionLost) as lost:
        client.open("small.raw")
    message = str(lost.value)
    assert message.startswith(f"evshmd at {own_socket} stopped or restarted, closing this "
                              "client's connection ("), message
    assert ("reconnecting failed: cannot connect to evshmd at "
            f"{own_socket}: no such socket, no evshmd runs there; this is the default socket"
            ) in message


@pytest.mark.parametrize("restart", [True, False])
def test_arenas_removed_by_a_stop_during_an_open(own_socket: str, root: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 restart: bool):
    """evshmd stops between its reply and the mapping of the arena it named, as in a
    DataLoader worker mid-epoch: the open is made again on the restarted daemon, or the
    error says that evshmd stopped (not just `No such file or directory`)."""
    client = evshm.start(root)
    mapped = _arena.arena_mapping
    stopped: list[str] = []

    def stop_first(arena: evshm.ArenaInfo, fd: int | None) -> _arena.Mapping:
        if not stopped:
            assert arena.path is not None
            stopped.append(arena.path)
            evshm.stop()
            if restart:
                evshm.start(root).close()
        return mapped(arena, fd)

    monkeypatch.setattr(_client, "arena_mapping", stop_first)
    if restart:
        with client.open("small.raw") as rec:
            assert rec.rows == 200_000
            # The restarted daemon's arena, not the first one's.
            assert all(chunk.extent.arena != os.path.basename(stopped[0])
                       for chunk in rec.chunks)
        assert not os.path.exists(stopped[0]), "the first reply's arena is gone"
        assert os.path.basename(stopped[0]) not in _arena._MAPPED, "never mapped"
        return
    with pytest.raises(evshm.ConnectionLost) as lost:
        client.open("small.raw")
    message = str(lost.value)
    assert message.startswith(f"evshmd at {own_socket} stopped or restarted, closing this "
                              f"client's connection (arena {stopped[0]} is gone: evshmd "
                              "removes its arenas when it stops"), message
    assert "reconnecting failed" in message
