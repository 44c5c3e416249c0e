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
