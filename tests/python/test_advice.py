"""Errors that say what to do, each reproduced against a real evshmd."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import evshm
from harness import Daemon, decode_whole, generate

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
                                  "resident at once), whose segments need "), message
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
